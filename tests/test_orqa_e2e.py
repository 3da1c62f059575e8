"""End to end on the sample corpus, from the CLI: ICT -> encode -> fine-tune -> predict ->
evaluate. Fine-tuning must lift exact match clearly above the untrained model's.

Honest scope: a tiny BERT (L2/H128) trained from scratch on the sample passages cannot learn
open-domain QA that generalizes in two minutes of CPU, so the QA pairs used for
fine-tuning are also the ones evaluated (the first 32 of the sample's 185): the test shows
that retrieval (question tower against the frozen ICT index) and reading (span scorer)
learn through the whole pipeline, not generalization. Retrieval is over all sample blocks.
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
  blocks = str(work / "blocks.tfr")
  build_retrieval_corpus.build(sample_data.PASSAGES_PATH, blocks, vocab, num_shards=2,
                               num_workers=1)
  ict_examples = str(work / "ict.tfr.gz")
  build_ict_examples.build(sample_data.PASSAGES_PATH, ict_examples, vocab)

  # ICT warm start of a tiny BERT, then the corpus index.
  ict_dir = str(work / "ict")
  _cli("orqa.ict", f"--model_dir={ict_dir}", f"--examples_path={ict_examples}",
       "--bert_preset=tiny", f"--vocab_path={vocab}", "--batch_size=32",
       "--eval_batch_size=32", "--num_train_steps=80", "--num_warmup_steps=8",
       "--save_checkpoints_steps=1000", "--block_seq_len=144", "--query_seq_len=32",
       "--learning_rate=5e-4", "--num_eval_steps=2", "--projection_dropout_rate=0",
       "--bert_dropout_rate=0", "--encode", f"--retrieval_corpus={blocks}-*",
       "--searcher=brute_force", "--encode_batch_size=64",
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
       "--batch_size=8", "--eval_batch_size=16", "--num_train_steps=120",
       "--num_warmup_steps=12", "--save_checkpoints_steps=1000", "--reader_seq_len=160",
       "--span_hidden_size=64", "--learning_rate=5e-4", "--searcher=brute_force",
       "--eval_before_training", log_path=str(work / "finetune.log"))
  with open(os.path.join(model_dir, "eval_results.jsonl"), encoding="utf-8") as f:
    evals = [json.loads(line) for line in f]
  assert [e["global_step"] for e in evals] == [0, 120]
  with open(os.path.join(model_dir, "export", "best_default", "best_metric.txt"),
            encoding="utf-8") as f:
    assert f.read().split()[0] == "120"

  # Predict and evaluate, fine-tuned and untrained (checkpoint 0), from the CLI.
  metrics = {}
  for name, extra in (("finetuned", []),
                      ("untrained", [f"--checkpoint_path={model_dir}/checkpoints/ckpt-0"])):
    predictions = str(work / f"predictions_{name}.jsonl")
    _cli("orqa.predict", f"--model_dir={model_dir}", f"--dataset_path={qa_path}",
         f"--predictions_path={predictions}", "--num_retrieved=20", *extra,
         log_path=str(work / f"predict_{name}.log"))
    output = str(work / f"metrics_{name}.json")
    _cli("orqa.evaluate", f"--references={qa_path}", f"--predictions={predictions}",
         f"--blocks_path={blocks}", "--recall_ks=1,5,20", f"--output={output}",
         log_path=str(work / f"evaluate_{name}.log"))
    with open(output, encoding="utf-8") as f:
      metrics[name] = json.load(f)
  with open(str(work / "predictions_finetuned.jsonl"), encoding="utf-8") as f:
    first = json.loads(f.readline())
  assert {"question", "answer", "prediction", "score", "block_ids",
          "block_titles"} <= set(first)
  assert len(first["block_ids"]) == 20

  untrained = metrics["untrained"]["answer"]["accuracy"]
  finetuned = metrics["finetuned"]["answer"]["accuracy"]
  recall = {name: m["retrieval"]["top_k_accuracy"]["5"] for name, m in metrics.items()}
  print(f"\nORQA e2e on {NUM_QUESTIONS} sample questions: exact match untrained "
        f"{untrained:.3f} -> fine-tuned {finetuned:.3f}; answer recall@5 "
        f"{recall['untrained']:.3f} -> {recall['finetuned']:.3f}")
  # The CLI's official exact match agrees with the trainer's eval of the same weights.
  assert abs(evals[0]["official_exact_match"] - untrained) < 1e-6
  assert abs(evals[-1]["official_exact_match"] - finetuned) < 1e-6
  assert finetuned >= untrained + 0.25, metrics
  assert recall["finetuned"] > recall["untrained"], metrics
