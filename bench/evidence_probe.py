r"""Probe: how often do REALM's retrieved passages hold what the masked span needs?

REALM's retriever learns only from masked spans that a retrieved passage can help
predict. This probe generates a REALM run's evaluation examples with a given index (an
embedder export with its `encoded/` block embeddings) and counts, per masked span (a run
of consecutive masked positions), whether its exact wordpieces appear contiguously in one
of the N - 1 retrieved passages (the originating passage is excluded by generation, as in
the original): pre-training's own `evidence_rate` (`realm_tf/modeling/evidence.py`), here
for any index. For chance, the same spans against the passages retrieved for the batch
half the stream away (`--batches` / 2 later, cyclically): unrelated examples. (Not the
other examples of the same batch: the evaluation stream is read in corpus order, so
neighbouring examples come from the same article and retrieve the same passages.)

  python bench/evidence_probe.py --model_dir=RUN \
      --pretrain_corpus_path='DIR/pretrain-*' --retrieval_corpus_path='DIR/blocks-*' \
      --embedder_module=RUN/export/encoded/TS/embedder [--batches=16]

Prints one JSON line: `spans`, `evidence_rate` (spans found in a retrieved passage),
`chance_rate` (found in the unrelated batch's passages). With `--count_in_corpus`, also how
often the spans recur in the retrieval corpus (whole block bodies, untruncated):
`in_another_passage` (spans in at least two blocks, the originating one and another) and
`median_passages`.
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import realm_tf  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf  # noqa: E402

from realm_tf.featurization.featurizer import Featurizer  # noqa: E402
from realm_tf.generation.stream import ExampleStream, split_shards  # noqa: E402
from realm_tf.modeling.config import RealmConfig  # noqa: E402
from realm_tf.modeling.embedder import unpack_inputs  # noqa: E402
from realm_tf.modeling.evidence import masked_span_evidence, masked_spans  # noqa: E402
from realm_tf.retrieval import answer_recall, corpus_reader  # noqa: E402


def _candidate_ids(features) -> np.ndarray:
  return np.asarray(unpack_inputs(features["candidate_inputs"])["input_word_ids"])


def batch_counts(features, other):
  """(spans, found, found by chance) of one batch and the batch's masked spans. Chance:
  the same spans against the candidates of `other`, an unrelated batch (its rows reused
  cyclically if it is smaller)."""
  masks = [features[k] for k in ("mlm_positions", "mlm_targets", "mlm_mask")]
  candidates = _candidate_ids(features)  # [B, N, C]
  unrelated = np.resize(_candidate_ids(other), candidates.shape)  # [B, N, C]
  own = masked_span_evidence(candidates, *masks)
  chance = masked_span_evidence(unrelated, *masks)
  spans = [span for row in zip(*(np.asarray(m) for m in masks))
           for span in masked_spans(*row)]
  return (int(own["spans"]), int(own["evidence"]), int(chance["evidence"])), spans


def passages_holding(spans, block_texts, tokenizer, batch_size: int = 4096) -> np.ndarray:
  """For each span, the number of block bodies whose wordpieces contain it."""
  keys = [f" {' '.join(map(str, span))} " for span in spans]
  counts = np.zeros(len(spans), np.int64)
  for start in range(0, len(block_texts), batch_size):
    rows = tokenizer.tokenize_ids(tf.constant(block_texts[start:start + batch_size]))
    for row in rows.to_list():
      text = f" {' '.join(map(str, row))} "
      counts += [key in text for key in keys]
  return counts


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", required=True, help="A pre-training run (config.json).")
  parser.add_argument("--pretrain_corpus_path", required=True)
  parser.add_argument("--retrieval_corpus_path", required=True)
  parser.add_argument("--embedder_module", required=True,
                      help="Embedder export whose encoded/ index retrieves the passages.")
  parser.add_argument("--eval_shards", type=int, default=1)
  parser.add_argument("--batches", type=int, default=16)
  parser.add_argument("--count_in_corpus", action="store_true",
                      help="Also count the retrieval-corpus blocks holding each span.")
  args = parser.parse_args()
  config = RealmConfig.load(os.path.join(args.model_dir, "config.json"))
  featurizer = Featurizer.from_config(config)
  eval_paths, _ = split_shards(corpus_reader.list_shards(args.pretrain_corpus_path),
                               args.eval_shards)
  retrieval_paths = corpus_reader.list_shards(args.retrieval_corpus_path)
  with tempfile.TemporaryDirectory() as scratch:  # no committed indexes: use the module's
    stream = ExampleStream(scratch, eval_paths, retrieval_paths, featurizer,
                           config.eval_batch_size, initial_embedder=args.embedder_module,
                           training=False, seed=config.seed or 0)
    batches = list(stream.dataset().take(args.batches))
  totals, all_spans = np.zeros(3, np.int64), []
  for i, features in enumerate(batches):
    # Chance against the batch half the stream away: neighbouring evaluation examples
    # come from the same article, so their passages are no baseline.
    other = batches[(i + len(batches) // 2) % len(batches)]
    counts, batch_spans = batch_counts(features, other)
    totals += counts
    all_spans += batch_spans
  spans, found, chance = (int(t) for t in totals)
  result = dict(embedder_module=args.embedder_module, spans=spans,
                evidence_rate=found / max(spans, 1), chance_rate=chance / max(spans, 1))
  if args.count_in_corpus:
    counts = passages_holding(all_spans, answer_recall.load_block_texts(retrieval_paths),
                              featurizer.tokenizer)
    result.update(in_another_passage=float(np.mean(counts >= 2)),
                  median_passages=float(np.median(counts)))
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
