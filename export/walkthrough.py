r"""The end-to-end walkthrough on the embedded sample corpus (`make demo`).

The REALM paper's pipeline, each stage a realm-tf entry point, then what it learned:

1. A few REALM training examples of the sample corpus, decoded back to text.
2. Pre-training (`python -m realm_tf.pretrain --model_dir=runs/demo`): an ICT warm start
   of the retriever, then REALM with salient-span masking, the originating passage
   removed from the candidates, and an index that the refresh job rebuilds as training
   goes on. Its evaluations run on held-out passages and held-out questions.
3. ORQA fine-tuning (`python -m orqa.finetune`) on the training QA pairs from the newest
   REALM index and reader, evaluated on the held-out QA pairs before and after.
4. The serving SavedModel (`python -m export.serving`) answering held-out questions.
5. A before/after table from held-out data only: zero-shot evidence recall@5 of the
   held-out questions at the ICT start and after REALM (no stage before ORQA sees a
   question), MLM accuracy with retrieval vs with the null document alone, retrieval
   utility, and ORQA exact match of the untrained vs the fine-tuned model.

  python -m export.walkthrough [--model_dir=runs/demo] [--num_examples=1]
      [--stages=examples,pretrain,finetune,serve]

A finished run's stages start afresh; an interrupted pre-training resumes.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional

import export  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags
import tensorflow as tf

from orqa.evaluation import qa_metrics
from realm_tf import cli
from realm_tf import sample_data
from realm_tf.featurization import showcase
from realm_tf.retrieval import encoded_export
from realm_tf.training import eval_results

STAGES = ("examples", "pretrain", "finetune", "serve")
NUM_ANSWERS_SHOWN = 8
FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("model_dir", "runs/demo", "Pre-training run directory; ORQA and "
                      "serving go to <model_dir>_orqa and <model_dir>_serving.")
  flags.DEFINE_integer("num_examples", 1, "Featurized examples to print.")
  flags.DEFINE_list("stages", list(STAGES), f"Stages to run, of {STAGES}.")
  flags.DEFINE_integer("finetune_steps", 200, "ORQA fine-tuning steps.")
  flags.DEFINE_integer("seed", 0, "Seed of pre-training and fine-tuning.")


def _run(command: List[str], keep) -> None:
  """Runs a stage, printing the lines `keep(line)` accepts; exits on failure."""
  print("$ " + " ".join(command[2:]), flush=True)
  tail = []
  with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True) as process:
    for line in process.stdout:
      tail = (tail + [line])[-40:]
      if keep(line):
        print("  " + line.rstrip(), flush=True)
  if process.returncode:
    sys.exit(f"Stage failed (exit {process.returncode}):\n{''.join(tail)}")


def run_pretraining(model_dir: str, seed: int) -> None:
  """ICT warm start + REALM pre-training with inline index refresh (resumes if killed)."""
  if os.path.exists(os.path.join(model_dir, "TRAINING_DONE")):
    shutil.rmtree(model_dir)  # a finished demo run: start afresh
  print(f"\n[2/4] Pre-training a tiny REALM model on the sample corpus in {model_dir}: ICT "
        "warm start of the retriever, then REALM with index refreshes (TensorBoard: "
        f"tensorboard --logdir={model_dir})", flush=True)
  _run([sys.executable, "-m", "realm_tf.pretrain", f"--model_dir={model_dir}",
        f"--seed={seed}"],
       lambda line: line.startswith(("step ", "[eval]", "[ict", "ICT warm", "Training done",
                                     "Traceback")))


def run_finetuning(pretrain_dir: str, finetune_dir: str, num_train_steps: int,
                   seed: int) -> str:
  """ORQA on the training QA pairs from the newest REALM index (retriever) and its `bert`
  export (reader), as the REALM README prescribes; evaluated on the held-out pairs."""
  encoded = encoded_export.newest_encoded_dir(pretrain_dir)
  if encoded is None:
    sys.exit(f"No committed index under {pretrain_dir}/export/encoded to fine-tune from.")
  if os.path.isdir(finetune_dir):
    shutil.rmtree(finetune_dir)
  print(f"\n[3/4] Fine-tuning ORQA on {sample_data.QA_TRAIN_PATH} from {encoded}; exact "
        "match on the held-out questions before and after", flush=True)
  _run([sys.executable, "-m", "orqa.finetune", f"--model_dir={finetune_dir}",
        f"--retriever_module_path={encoded_export.embedder_path(encoded)}",
        f"--reader_module_path={os.path.join(encoded, 'bert')}",
        f"--block_records_path={pretrain_dir}/data/retrieval/blocks-*-of-*",
        f"--train_path={sample_data.QA_TRAIN_PATH}",
        f"--dev_path={sample_data.QA_HELDOUT_PATH}", "--batch_size=8",
        "--eval_batch_size=32", f"--num_train_steps={num_train_steps}",
        f"--num_warmup_steps={max(1, num_train_steps // 10)}",
        f"--save_checkpoints_steps={max(1, num_train_steps // 2)}", "--reader_seq_len=160",
        "--span_hidden_size=64", "--learning_rate=5e-4", "--searcher=brute_force",
        "--eval_before_training", f"--seed={seed}"],
       lambda line: "eval at step" in line or line.startswith("Traceback"))
  return finetune_dir


def run_serving(finetune_dir: str, serving_dir: str) -> Dict[str, float]:
  """Exports the serving SavedModel and answers the held-out questions with it."""
  print(f"\n[4/4] Exporting the serving SavedModel to {serving_dir} and answering the "
        "held-out questions with it", flush=True)
  _run([sys.executable, "-m", "export.serving", f"--finetuned_model={finetune_dir}",
        f"--output_dir={serving_dir}", "--overwrite"], lambda line: line.startswith("Trace"))
  import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
  serve = tf.saved_model.load(serving_dir).signatures["serving_default"]
  with open(sample_data.QA_HELDOUT_PATH, encoding="utf-8") as f:
    pairs = [json.loads(line) for line in f if line.strip()]
  answers = []
  for start in range(0, len(pairs), 32):
    batch = [p["question"] for p in pairs[start:start + 32]]
    answers.extend(a.decode() for a in serve(question=tf.constant(batch))["answer"].numpy())
  correct = [qa_metrics.is_correct(p["answer"], a, is_regex=False)
             for p, a in zip(pairs, answers)]
  for pair, answer, ok in list(zip(pairs, answers, correct))[:NUM_ANSWERS_SHOWN]:
    print(f"  Q: {pair['question']}\n     A: {answer!r}  {'right' if ok else 'wrong'} "
          f"(reference: {pair['answer'][0]!r})", flush=True)
  exact = sum(correct) / len(correct)
  print(f"  ... exact match of the serving model on all {len(pairs)} held-out questions: "
        f"{exact:.3f}\nDemo page: python -m orqa.demo --serving_model={serving_dir} "
        "--port=8080  then open http://127.0.0.1:8080/", flush=True)
  return dict(exact_match=exact)


def _fmt(value: Optional[float]) -> str:
  return "   -  " if value is None else f"{value:6.3f}"


def learning_table(pretrain_dir: str, finetune_dir: Optional[str]) -> str:
  """The before/after table of the run's held-out evaluations (eval_results.jsonl)."""
  evals = eval_results.read(pretrain_dir)
  ict = eval_results.read(os.path.join(pretrain_dir, "ict"))
  orqa = eval_results.read(finetune_dir) if finetune_dir else []
  first, last = (evals[0], evals[-1]) if evals else ({}, {})
  ict_first, ict_last = (ict[0], ict[-1]) if ict else ({}, {})

  def realm_row(name, key):
    return (name, first.get(key), last.get(key), "ICT start", "after REALM")

  rows = [
      ("zero-shot evidence recall@5, held-out questions", ict_first.get("recall@5"),
       ict_last.get("recall@5"), "random init", "after ICT"),
      realm_row("zero-shot evidence recall@5, held-out questions", "recall@5"),
      realm_row("zero-shot evidence recall@20, held-out questions", "recall@20"),
      realm_row("query embedding cosine, held-out questions (1: collapsed)", "query_cosine"),
      realm_row("retrieval mass on the null document, held-out passages",
                "null_document_mass"),
      realm_row("masked spans in a retrieved passage, held-out passages", "evidence_rate"),
      realm_row("retrieval utility (nats/token), held-out passages", "retrieval_utility"),
      realm_row("MLM accuracy with retrieval, held-out passages", "mlm_accuracy"),
      realm_row("MLM accuracy with the null document only", "null_mlm_accuracy"),
      ("ORQA exact match, held-out questions", orqa[0].get("exact_match") if orqa else None,
       max((e["exact_match"] for e in orqa), default=None), "untrained", "fine-tuned"),
  ]
  lines = [f"{'held-out metric':58s} {'before':>8s}  {'after':>8s}"]
  for name, before, after, when_before, when_after in rows:
    lines.append(f"{name:58s} {_fmt(before):>8s}  {_fmt(after):>8s}   ({when_before} -> "
                 f"{when_after})")
  if ict:
    lines.append(f"ICT in-batch retrieval accuracy, held-out passages: "
                 f"{ict[-1].get('accuracy', float('nan')):.3f}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  unknown = sorted(set(FLAGS.stages) - set(STAGES))
  if unknown:
    raise app.UsageError(f"Unknown --stages {unknown}; expected some of {STAGES}.")
  start = time.monotonic()
  model_dir = FLAGS.model_dir
  finetune_dir = model_dir + "_orqa"

  def examples():
    print("[1/4] REALM training examples of the sample corpus, decoded", flush=True)
    showcase.print_examples(FLAGS.num_examples)

  stages = dict(
      examples=examples, pretrain=lambda: run_pretraining(model_dir, FLAGS.seed),
      finetune=lambda: run_finetuning(model_dir, finetune_dir, FLAGS.finetune_steps,
                                      FLAGS.seed),
      serve=lambda: run_serving(finetune_dir, model_dir + "_serving"))
  seconds = {}
  for name in STAGES:
    if name in FLAGS.stages:
      stage_start = time.monotonic()
      stages[name]()
      seconds[name] = time.monotonic() - stage_start
  if os.path.exists(eval_results.path_in(model_dir)):
    print("\nWhat the model learned, measured on held-out data only:\n" +
          learning_table(model_dir, finetune_dir if os.path.isdir(finetune_dir) else None))
  print(f"\nDone in {time.monotonic() - start:.0f} s (" +
        ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items()) + ").", flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
