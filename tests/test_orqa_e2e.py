"""End to end on the sample corpus, from the CLI: ICT -> encode -> fine-tune -> predict ->
evaluate. Fine-tuning must lift exact match clearly above the untrained model's.

Honest scope: a tiny BERT (L2/H128) trained from scratch on the sample passages cannot learn
open-domain QA that generalizes in two minutes of CPU, so the QA pairs used for
fine-tuning are also the ones evaluated (the first 32 of `qa_train.jsonl`): the test shows
that retrieval (question tower against the frozen ICT index) and reading (span scorer)
learn through the whole pipeline, not generalization. To fit the suite's time budget the
corpus is 128 of the sample's passages: every passage that contains one of the questions'
answers (62) and the first others (distractors).
"""
import json
import os
import subprocess
import sys

import pytest

from orqa import build_ict_examples
from realm_tf import sample_data
from realm_tf.corpus import build_retrieval_corpus
from tests.conftest import REPO_ROOT

NUM_QUESTIONS = 32
NUM_PASSAGES = 128
STEPS = 60  # fine-tuning steps
SEED = int(os.environ.get("REALM_E2E_SEED", "0"))  # to check other seeds by hand


def _passage_subset(questions, path):
  """Writes the passages containing an answer, then the first others, NUM_PASSAGES in all."""
  with open(sample_data.PASSAGES_PATH, encoding="utf-8") as f:
    passages = [line for line in f if line.strip()]
  answers = [a.lower() for q in questions for a in q["answer"]]
  def has_answer(line):
    passage = json.loads(line)
    text = f"{passage['title']} {passage['text']}".lower()
    return any(a in text for a in answers)
  gold = [line for line in passages if has_answer(line)]
  others = [line for line in passages if not has_answer(line)]
  subset = gold + others[:NUM_PASSAGES - len(gold)]
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(subset)
  return len(gold)


def _cli(module, *args, log_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  with open(log_path, "w", encoding="utf-8") as log:
    proc = subprocess.run([sys.executable, "-m", module, *args], stdout=log,
                          stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env, timeout=600,
                          check=False)
  with open(log_path, encoding="utf-8") as log:
    output = log.read()
  assert proc.returncode == 0, f"{module} failed:\n{output[-6000:]}"
  return output


@pytest.mark.slow
def test_ict_encode_finetune_predict_evaluate(tmp_path):
  work = tmp_path
  vocab = sample_data.VOCAB_PATH
  qa_path = str(work / "qa.jsonl")
  with open(sample_data.QA_TRAIN_PATH, encoding="utf-8") as f:
    lines = f.readlines()[:NUM_QUESTIONS]
  with open(qa_path, "w", encoding="utf-8") as f:
    f.writelines(lines)
  passages = str(work / "passages.jsonl")
  assert _passage_subset([json.loads(line) for line in lines], passages) >= NUM_QUESTIONS
  blocks = str(work / "blocks.tfr")
  build_retrieval_corpus.build(passages, blocks, vocab, num_shards=2, num_workers=1)
  ict_examples = str(work / "ict.tfr.gz")
  build_ict_examples.build(passages, ict_examples, vocab)

  # ICT warm start of a tiny BERT, then the corpus index.
  ict_dir = str(work / "ict")
  _cli("orqa.ict", f"--model_dir={ict_dir}", f"--examples_path={ict_examples}",
       "--bert_preset=tiny", f"--vocab_path={vocab}", "--batch_size=32",
       "--eval_batch_size=12", "--num_train_steps=40", "--num_warmup_steps=4",
       "--save_checkpoints_steps=1000", "--block_seq_len=144", "--query_seq_len=32",
       "--learning_rate=5e-4", "--num_eval_steps=1", "--projection_dropout_rate=0",
       "--bert_dropout_rate=0", "--encode", f"--retrieval_corpus_path={blocks}-*",
       "--searcher=brute_force", "--encode_batch_size=64", f"--seed={SEED}",
       log_path=str(work / "ict.log"))
  encoded = os.path.join(ict_dir, "export", "encoded")
  (timestamp,) = os.listdir(encoded)
  retriever = os.path.join(encoded, timestamp, "embedder")
  assert os.path.exists(os.path.join(retriever, "encoded", "encoded.ckpt.index"))
  assert os.path.exists(os.path.join(encoded, timestamp, "brute_force", "manifest.json"))

  # Fine-tuning: question tower + random tiny reader; checkpoint 0 is the untrained model.
  model_dir = str(work / "orqa")
  _cli("orqa.finetune", f"--model_dir={model_dir}", f"--retriever_module_path={retriever}",
       "--reader_preset=tiny", f"--reader_vocab_path={vocab}", "--reader_dropout_rate=0",
       f"--block_records_path={blocks}", f"--train_path={qa_path}", f"--dev_path={qa_path}",
       "--batch_size=8", "--eval_batch_size=16", f"--num_train_steps={STEPS}",
       f"--num_warmup_steps={STEPS // 10}", "--save_checkpoints_steps=1000",
       "--reader_seq_len=160",
       "--span_hidden_size=64", "--learning_rate=5e-4", "--searcher=brute_force",
       "--eval_before_training", f"--seed={SEED}", log_path=str(work / "finetune.log"))
  with open(os.path.join(model_dir, "eval_results.jsonl"), encoding="utf-8") as f:
    evals = [json.loads(line) for line in f]
  assert [e["global_step"] for e in evals] == [0, STEPS]
  with open(os.path.join(model_dir, "export", "best_default", "best_metric.json"),
            encoding="utf-8") as f:
    best = json.load(f)
  assert best["metric"] == "exact_match" and best["global_step"] == STEPS
  assert best["value"] == best["metrics"]["exact_match"] == evals[-1]["exact_match"]

  # Predict and evaluate the fine-tuned checkpoint from the CLI (untrained: the step-0 eval).
  predictions = str(work / "predictions.jsonl")
  _cli("orqa.predict", f"--model_dir={model_dir}", f"--dataset_path={qa_path}",
       f"--predictions_path={predictions}", "--num_retrieved=20",
       f"--checkpoint_path={model_dir}/checkpoints/ckpt-{STEPS}",
       log_path=str(work / "predict.log"))
  output = str(work / "metrics.json")
  _cli("orqa.evaluate", f"--references={qa_path}", f"--predictions={predictions}",
       f"--blocks_path={blocks}", "--recall_ks=1,5,20", f"--output={output}",
       log_path=str(work / "evaluate.log"))
  with open(output, encoding="utf-8") as f:
    metrics = json.load(f)
  with open(predictions, encoding="utf-8") as f:
    first = json.loads(f.readline())
  assert {"question", "answer", "prediction", "score", "block_ids",
          "block_titles"} <= set(first)
  assert len(first["block_ids"]) == 20

  untrained, finetuned = evals[0]["official_exact_match"], metrics["answer"]["accuracy"]
  recall = dict(untrained=evals[0]["top_5_match"],
                finetuned=metrics["retrieval"]["top_k_accuracy"]["5"])
  print(f"\nORQA e2e on {NUM_QUESTIONS} sample questions, seed {SEED}: exact match "
        f"untrained {untrained:.3f} -> fine-tuned {finetuned:.3f}; answer recall@5 "
        f"{recall['untrained']:.3f} -> {recall['finetuned']:.3f}")
  # The CLI's official exact match and recall agree with the trainer's eval of the weights.
  assert abs(evals[-1]["official_exact_match"] - finetuned) < 1e-6
  assert abs(evals[-1]["top_5_match"] - recall["finetuned"]) < 1e-6
  assert finetuned >= untrained + 0.25, metrics
  assert recall["finetuned"] > recall["untrained"], (recall, metrics)
