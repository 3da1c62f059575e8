r"""Probe: has a REALM run's retriever collapsed, and where does the null document stand?

For every encoded export of a REALM run (`model_dir/export/encoded/<ts>/`), embeds the QA
questions and the null document with that export's embedder and reads its index, then
reports how the questions' scores split between the null document and the passages.

  python bench/null_document_probe.py --model_dir=runs/demo [--qa_path=questions.jsonl]

Prints one JSON line per export:
* `query_cosine` / `block_cosine`: mean pairwise cosine of the question / passage
  embeddings (near 1: everything embedded alike);
* `query_null_cosine`: mean cosine between each question and the null document;
* `null_score` and `top_block_score`: mean score of the null document, and of a question's
  top N-1 passages (N = the run's `num_candidates`);
* `null_mass`: mean probability of the null document under the retrieval softmax over
  itself and the top N-1 passages, which is what the REALM loss marginalizes over.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import realm_tf  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf  # noqa: E402

from realm_tf import sample_data  # noqa: E402
from realm_tf.featurization.featurizer import Featurizer  # noqa: E402
from realm_tf.modeling.config import RealmConfig  # noqa: E402
from realm_tf.retrieval import answer_recall, corpus_embedding, encoded_export  # noqa: E402
from realm_tf.retrieval import export_dirs  # noqa: E402


def probe_export(encoded_dir: str, featurizer: Featurizer, questions, num_candidates: int):
  """The figures of the module docstring for one encoded export."""
  embed = corpus_embedding.load_saved_model_embedder(encoded_export.embedder_path(encoded_dir))
  tokenizer = featurizer.tokenizer
  query = np.asarray(embed(*featurizer.featurize_query_tf(
      tokenizer.tokenize_ids(tf.constant(questions)))))  # [n, D]
  empty = tf.ragged.constant([[]], dtype=tf.int32)
  null = np.asarray(embed(*featurizer.featurize_documents_tf(empty, empty)))[0]  # [D]
  blocks = tf.train.load_checkpoint(
      encoded_export.block_emb_prefix(encoded_dir)).get_tensor("block_emb")  # [K, D]
  top = np.sort(query @ blocks.T, axis=1)[:, ::-1][:, :num_candidates - 1]  # [n, N-1]
  null_scores = query @ null  # [n]
  scores = np.concatenate([null_scores[:, None], top], axis=1)  # [n, N], null first
  scores -= scores.max(axis=1, keepdims=True)
  probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  return dict(
      query_cosine=answer_recall.mean_pairwise_cosine(query),
      block_cosine=answer_recall.mean_pairwise_cosine(blocks),
      query_null_cosine=float(np.mean(unit(query) @ unit(null))),
      null_score=float(null_scores.mean()), top_block_score=float(top.mean()),
      null_mass=float(probs[:, 0].mean()))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", required=True, help="A pre-training run directory.")
  parser.add_argument("--qa_path", default=sample_data.QA_HELDOUT_PATH,
                      help="Open-QA jsonl whose questions are embedded (default: the "
                      "sample's held-out questions).")
  args = parser.parse_args()
  config = RealmConfig.load(os.path.join(args.model_dir, "config.json"))
  featurizer = Featurizer.from_config(config)
  questions, _ = answer_recall.load_qa_pairs(args.qa_path)
  base = export_dirs.export_base(args.model_dir, "encoded")
  exports = export_dirs.export_paths(base)
  if not exports:
    raise SystemExit(f"No encoded exports under {base}.")
  for encoded_dir in exports:
    step = encoded_export.read_manifest(encoded_dir).get("embedder_step")
    print(json.dumps(dict(export=encoded_dir, step=step, **probe_export(
        encoded_dir, featurizer, questions, config.num_candidates))), flush=True)


if __name__ == "__main__":
  main()
