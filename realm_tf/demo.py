r"""The README's main job on the embedded sample corpus (`make demo`).

1. REALM featurization, shown: for the first QA pairs of the sample set, the sentence
   holding the answer becomes the query with the answer masked as its salient span; the
   candidates are the null document plus the passages a bag-of-wordpieces TF-IDF ranks
   highest, the originating passage removed; featurized in-graph, printed as text.
2. REALM pre-training of a tiny model on the sample corpus with inline index refresh
   (`python -m realm_tf.pretrain --model_dir=runs/demo`), printing loss and
   retrieval_utility as it goes. A finished demo run is started afresh; an interrupted
   one resumes.
3. ORQA fine-tuning on the sample QA pairs from the newest REALM index and reader
   (`runs/demo_orqa`), then the serving SavedModel (`runs/demo_serving`) answering three
   sample questions, and the command that starts the demo page.

  python -m realm_tf.demo [--num_examples=3] [--model_dir=runs/demo] [--nopretrain]
"""

import json
import os
import re
import shutil
import subprocess
import sys

from absl import flags

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf

from realm_tf import cli
from realm_tf import sample_data
from realm_tf.featurization import Featurizer, get_document_uid, prepend_null_document
from realm_tf.retrieval import encoded_export
from realm_tf.tokenization import Tokenizer

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags (only when run as a program: tests import this
  module beside other entry points)."""
  flags.DEFINE_string("vocab_path", sample_data.VOCAB_PATH,
                      "BERT vocab.txt; default: the sample corpus's own wordpiece vocab.")
  flags.DEFINE_integer("num_examples", 3, "Examples to print.")
  flags.DEFINE_integer("query_seq_len", 96, "Q.")
  flags.DEFINE_integer("candidate_seq_len", 288, "C.")
  flags.DEFINE_integer("num_candidates", 4, "N, including the null document.")
  flags.DEFINE_integer("max_masks", 10, "M.")
  flags.DEFINE_string("model_dir", "runs/demo", "Model directory of the pre-training run.")
  flags.DEFINE_boolean("pretrain", True, "Run the sample pre-training after the examples.")

def read_jsonl(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def sentence_containing(text: str, start: int):
  """(start, end) character offsets of the sentence around character `start`."""
  for match in re.finditer(r"[^.!?]*(?:[.!?]+|$)\s*", text):
    if match.start() <= start < match.end():
      return match.start(), len(match.group(0).rstrip()) + match.start()
  return 0, len(text)


def tfidf_rank(doc_ids, query_ids, vocab_size):
  """Passage indices by descending TF-IDF cosine to the query (bag of wordpieces)."""
  counts = np.zeros([len(doc_ids), vocab_size], np.float32)
  for row, ids in enumerate(doc_ids):
    np.add.at(counts[row], ids, 1.0)
  idf = np.log((1 + len(doc_ids)) / (1 + (counts > 0).sum(0))) + 1
  docs = counts * idf
  docs /= np.linalg.norm(docs, axis=1, keepdims=True) + 1e-9
  query = np.zeros([vocab_size], np.float32)
  np.add.at(query, query_ids, 1.0)
  return np.argsort(-(docs @ (query * idf)), kind="stable")


def main(argv):
  del argv
  tokenizer = Tokenizer(FLAGS.vocab_path, do_lower_case=True)
  featurizer = Featurizer(FLAGS.query_seq_len, FLAGS.candidate_seq_len,
                          FLAGS.num_candidates, FLAGS.max_masks, tokenizer)
  passages = read_jsonl(sample_data.PASSAGES_PATH)
  qa_pairs = read_jsonl(sample_data.QA_TRAIN_PATH)[:FLAGS.num_examples]
  print(f"Sample corpus: {len(passages)} passages; featurizing {len(qa_pairs)} examples "
        f"(Q={FLAGS.query_seq_len}, C={FLAGS.candidate_seq_len}, N={FLAGS.num_candidates})")

  title_ids = tokenizer.tokenize_ids([p["title"] for p in passages])
  body_ids = tokenizer.tokenize_ids([p["text"] for p in passages])
  uids = [get_document_uid(p["title"].encode(), p["text"].encode()) for p in passages]

  queries, spans, candidates, origins = [], [], [], []
  for qa in qa_pairs:
    answer = qa["answer"][0]
    origin = next(i for i, p in enumerate(passages) if answer in p["text"])
    text = passages[origin]["text"]
    char_start = text.index(answer)
    sent_start, sent_end = sentence_containing(text, char_start)
    sentence = text[sent_start:sent_end]
    span_start = len(sentence[:char_start - sent_start].encode())
    queries.append(sentence.encode())
    spans.append([span_start, span_start + len(answer.encode())])
    query_ids = tokenizer.tokenize_ids([sentence])[0].numpy()
    ranked = tfidf_rank(body_ids.to_list(), query_ids, tokenizer.vocab_size)
    # Remove the originating passage (by UID, as the original) and keep N-1.
    kept = [i for i in ranked if uids[i] != uids[origin]][:FLAGS.num_candidates - 1]
    candidates.append(kept)
    origins.append(origin)

  spans = tf.constant(spans, tf.int64)
  masking = featurizer.tokenize_and_mask_tf(tf.constant(queries), spans[:, :1], spans[:, 1:])
  flat = tf.constant(np.reshape(candidates, [-1]))

  def gather(ids):  # [batch, N-1, (len)] -> with the null document first
    rows = tf.RaggedTensor.from_uniform_row_length(tf.gather(ids, flat),
                                                   FLAGS.num_candidates - 1)
    return prepend_null_document(rows)

  features = featurizer.featurize_examples_tf(masking, gather(title_ids), gather(body_ids), 0)
  for i, qa in enumerate(qa_pairs):
    print("\n" + "=" * 78)
    print(f"Example {i}: from passage {passages[origins[i]]['title']!r}  (error code "
          f"{int(masking['error'][i])})")
    print(f"  question (not used by pre-training): {qa['question']}")
    q = features["query_inputs"]
    print("  query_inputs: " + tokenizer.token_ids_to_str(q.token_ids[i]))
    n = int(features["mlm_mask"][i].numpy().sum())
    positions = features["mlm_positions"][i][:n].numpy().tolist()
    print(f"  mlm_positions: {positions}  mlm_targets: "
          f"{tokenizer.token_ids_to_str(features['mlm_targets'][i][:n])!r}")
    for j in range(FLAGS.num_candidates):
      cand = tokenizer.token_ids_to_str(features["candidate_inputs"].token_ids[i, j])
      label = "null document" if j == 0 else passages[candidates[i][j - 1]]["title"]
      print(f"  candidate {j} ({label}): {cand[:150]}{'...' if len(cand) > 150 else ''}")
    joint = tokenizer.token_ids_to_str(features["joint_inputs"].token_ids[i, 1])
    print(f"  joint_inputs[1]: {joint[:200]}{'...' if len(joint) > 200 else ''}")
  if FLAGS.pretrain:
    run_pretraining(FLAGS.model_dir)
    finetuned = run_finetuning(FLAGS.model_dir, FLAGS.model_dir + "_orqa")
    run_serving_stage(finetuned, FLAGS.model_dir + "_serving")


def run_pretraining(model_dir: str) -> None:
  """Runs the sample pre-training job, streaming its progress lines."""
  if os.path.exists(os.path.join(model_dir, "TRAINING_DONE")):
    shutil.rmtree(model_dir)  # a finished demo run: start afresh
  print(f"\nPre-training a tiny REALM model on the sample corpus in {model_dir} "
        "(inline index refresh; TensorBoard logs in logs/)...", flush=True)
  command = [sys.executable, "-m", "realm_tf.pretrain", f"--model_dir={model_dir}"]
  with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True) as process:
    for line in process.stdout:
      if line.startswith(("step ", "[eval]", "Training done", "Traceback")) or (
          "Error" in line and not line.startswith(("I", "W"))):
        print(line, end="", flush=True)
  if process.returncode:
    sys.exit(f"Pre-training failed (exit {process.returncode}); rerun to resume, or see "
             f"python -m realm_tf.pretrain --model_dir={model_dir}")


def run_finetuning(pretrain_dir: str, finetune_dir: str, num_train_steps: int = 150) -> str:
  """Fine-tunes ORQA on the sample QA pairs from the pre-training run's newest index.

  The retriever is the newest `export/encoded/<ts>/embedder` (with its block index), the
  reader the `bert` exported beside it, as the REALM README prescribes for ORQA.
  """
  encoded = encoded_export.newest_encoded_dir(pretrain_dir)
  if encoded is None:
    sys.exit(f"No committed index under {pretrain_dir}/export/encoded to fine-tune from.")
  if os.path.isdir(finetune_dir):
    shutil.rmtree(finetune_dir)
  print(f"\nFine-tuning ORQA on the sample QA pairs from {encoded} into {finetune_dir}...",
        flush=True)
  command = [sys.executable, "-m", "orqa.finetune", f"--model_dir={finetune_dir}",
             f"--retriever_module_path={encoded_export.embedder_path(encoded)}",
             f"--reader_module_path={os.path.join(encoded, 'bert')}",
             f"--block_records_path={pretrain_dir}/data/retrieval/blocks-*-of-*",
             f"--train_path={sample_data.QA_TRAIN_PATH}", f"--dev_path={sample_data.QA_TRAIN_PATH}",
             "--batch_size=8", "--eval_batch_size=16", f"--num_train_steps={num_train_steps}",
             "--num_warmup_steps=15", f"--save_checkpoints_steps={num_train_steps}",
             "--reader_seq_len=160", "--span_hidden_size=64", "--learning_rate=5e-4",
             "--searcher=brute_force", "--eval_before_training"]
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  for line in (result.stdout + result.stderr).splitlines():
    if "exact_match" in line and "official" in line:
      print("  " + line.split("] ", 1)[-1][:200], flush=True)
  if result.returncode:
    sys.exit(f"Fine-tuning failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
  return finetune_dir


def run_serving_stage(finetuned_model_dir: str, serving_dir: str,
                      num_questions: int = 3) -> str:
  """Exports the serving SavedModel of a fine-tuned ORQA model_dir and answers sample
  questions with it (the stage after fine-tuning); prints how to start the demo page."""
  print(f"\nExporting the serving SavedModel of {finetuned_model_dir} to {serving_dir}...",
        flush=True)
  command = [sys.executable, "-m", "export.serving", f"--finetuned_model={finetuned_model_dir}",
             f"--output_dir={serving_dir}", "--overwrite"]
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  if result.returncode:
    sys.exit(f"Serving export failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
  import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
  model = tf.saved_model.load(serving_dir)
  questions = [qa["question"] for qa in read_jsonl(sample_data.QA_TRAIN_PATH)[:num_questions]]
  out = model.signatures["serving_default"](question=tf.constant(questions))
  for i, question in enumerate(questions):
    print(f"  Q: {question}\n  A: {out['answer'][i].numpy().decode()}  (from "
          f"{out['answer_block_title'][i].numpy().decode()!r}, score "
          f"{float(out['answer_score'][i]):.2f})")
  print(f"\nDemo page: python -m orqa.demo --serving_model={serving_dir} --port=8080  "
        "then open http://127.0.0.1:8080/")
  return serving_dir


if __name__ == "__main__":
  define_flags()
  cli.run(main)
