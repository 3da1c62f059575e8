"""bench/table2.py (the REALM Table 2 experiment) and its TF-IDF baseline (bench/tfidf.py).

The experiment itself takes hours (docs/BENCHMARKS.md); its `--scale=tiny` mode runs the
whole pipeline in tens of minutes and is run by hand. Here: the accelerator plan in
`--dry_run` (every stage's command with the paper-like settings, nothing run), the
report, and the TF-IDF retriever against hand-computed weights and rankings.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

sys.path.insert(0, REPO_ROOT)
from bench import table2  # noqa: E402  pylint: disable=wrong-import-position
from bench import tfidf  # noqa: E402  pylint: disable=wrong-import-position


def test_gpu_dry_run_prints_every_stage_and_runs_nothing(tmp_path):
  work = tmp_path / "work"
  result = subprocess.run(
      [sys.executable, "bench/table2.py", f"--work_dir={work}", "--scale=gpu", "--dry_run",
       f"--shared_dir={tmp_path / 'absent'}", "--max_hours=3"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
      env=dict(os.environ, PYTHONPATH=REPO_ROOT))
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  commands = [line for line in out.splitlines() if line.startswith("[table2] $ ")]
  modules = [c.split(" -m ")[1].split()[0] for c in commands]
  assert modules == (["realm_tf.corpus.build_retrieval_corpus"] * 2 +
                     ["realm_tf.corpus.build_pretrain_corpus"] +
                     ["orqa.build_ict_examples"] * 2 + ["orqa.ict"] +
                     ["realm_tf.pretrain"] * 2 + ["realm_tf.refresh"] * 3 +
                     ["orqa.finetune", "orqa.predict", "orqa.evaluate"] * 2)
  pretrain = [c for c in commands if "realm_tf.pretrain" in c]
  for command in pretrain:  # the paper's lengths, candidates and masks
    for flag in ("--query_seq_len=96", "--candidate_seq_len=288", "--num_candidates=8",
                 "--max_masks=10", "--batch_size=64", "--initial_embedder_module="):
      assert flag in command, (flag, command)
  assert "--refresh=inline" in pretrain[0] and "--refresh=external" in pretrain[1]
  # ORQA from (b) reads with (b)'s reader; from (a) with MiniLM; both on the test file.
  finetune = [c for c in commands if "orqa.finetune" in c]
  assert "realm_refresh/export" in finetune[1] and "all-MiniLM-L6-v2" in finetune[0]
  assert sum(table2.TEST_QA in c for c in commands) == 4  # predict + evaluate, twice
  plan = json.loads((work / "results" / "plan.json").read_text())
  assert plan["settings"]["block_seq_len"] == 288 and plan["scale"] == "gpu"
  # Nothing ran: no stage results, no logs.
  assert sorted(os.listdir(work / "results")) == ["plan.json"]
  assert os.listdir(work / "logs") == []


def test_overrides_replace_scale_settings():
  scale = table2.SCALES["cpu"]
  assert scale.corpus_passages == 0 and scale.use_test_file
  assert not table2.SCALES["tiny"].use_test_file  # tiny runs never read the test file


def test_report_tables_from_results():
  recall = lambda base: {f"recall@{k}": base + k / 1000 for k in table2.RECALL_KS}
  results = {
      "tfidf": dict(dev=recall(0.1), wall_secs=60),
      "zero_shot_a": dict(dev=recall(0.2), embedder_step=1000, wall_secs=1200),
      "zero_shot_b": dict(dev=recall(0.3), embedder_step=600, wall_secs=1200),
      "orqa_b": dict(test={"answer": {"accuracy": 0.0125, "num_correct": 5, "num_total": 400},
                           "retrieval": {"top_k_accuracy": {"1": 0.1, "5": 0.2, "20": 0.3,
                                                            "100": 0.4}}},
                     selected_step=200, selected_dev_em=0.01, wall_secs=1800),
  }
  report = table2.render_report(results)
  assert "| TF-IDF (unigrams) | 0.101 | 0.105 | 0.120 | 0.200 |" in report
  assert "| (a) ICT warm start (step 1000) | 0.201 | 0.205 | 0.220 | 0.300 |" in report
  assert "| (b) REALM, index refreshed (step 600) | 0.301 |" in report
  assert ("| (b) REALM, index refreshed | 200 (0.010) | 0.0125 (5 / 400) | 0.200 | 0.300 | "
          "0.400 |") in report
  assert "(c)" not in report
  assert "| orqa_b | 30.0 min |" in report


DOCS = ["the cat sat on the mat", "dogs chase cats", "a cat and a dog", "stock markets fell"]


def test_tfidf_weights_are_the_documented_formula():
  index = tfidf.TfidfIndex.build(DOCS)
  # "cat": in documents 0 and 2 (df 2 of 4); "the" twice in document 0; "a" is too short.
  assert "a" not in index.vocabulary and "cat" in index.vocabulary
  idf = lambda df: math.log(5 / (1 + df)) + 1
  row = index.doc_matrix[0].toarray().ravel()
  raw = {"the": 2 * idf(1), "cat": idf(2), "sat": idf(1), "on": idf(1), "mat": idf(1)}
  norm = math.sqrt(sum(v * v for v in raw.values()))
  for term, value in raw.items():
    assert row[index.vocabulary[term]] == pytest.approx(value / norm, rel=1e-6)
  assert np.count_nonzero(row) == len(raw)


def test_tfidf_search_ranks_by_cosine_then_id():
  index = tfidf.TfidfIndex.build(DOCS)
  retrieved = index.search(["cat", "markets", "unknownword"], k=4)
  assert retrieved.shape == (3, 4)
  # "cat" matches documents 0 and 2 (not "cats" in 1); the shorter document 2 scores higher.
  assert list(retrieved[0][:2]) == [2, 0]
  assert retrieved[1][0] == 3
  # No known term: every score is 0 and ties go to the lower id.
  assert list(retrieved[2]) == [0, 1, 2, 3]


def test_tfidf_answer_recall(tmp_path):
  qa = tmp_path / "qa.jsonl"
  qa.write_text("\n".join(json.dumps(r) for r in [
      {"question": "what did the cat sit on", "answer": ["the mat"]},
      {"question": "what fell", "answer": ["Stock markets"]},
      {"question": "who chases", "answer": ["wolves"]}]) + "\n")
  index = tfidf.TfidfIndex.build(DOCS)
  result = tfidf.answer_recall(index, DOCS, str(qa), ks=[1, 4])
  assert result["recall@1"] == pytest.approx(2 / 3)
  assert result["recall@4"] == pytest.approx(2 / 3)
  assert result["num_questions"] == 3


def test_finished_ict_stage_reports_its_held_out_evaluations(tmp_path):
  """A finished ICT run (export at the last step) is not rerun; its result carries the
  held-out evaluations that orqa.ict wrote to eval_results.jsonl."""
  scale = table2.SCALES["tiny"]
  runner = table2.Runner(str(tmp_path), str(tmp_path / "shared"), scale)
  encoded = tmp_path / "ict" / "export" / "encoded" / "1000"
  (encoded / "embedder").mkdir(parents=True)
  (encoded / "global_step.txt").write_text(str(scale.ict_steps))
  evals = [dict(global_step=0, accuracy=0.25), dict(global_step=scale.ict_steps, accuracy=0.5)]
  (tmp_path / "ict" / "eval_results.jsonl").write_text(
      "".join(json.dumps(e) + "\n" for e in evals))
  result = runner.stage_ict()
  assert result["eval"] == evals
  assert result["module"] == str(encoded / "embedder")
  assert result["train_secs"] == 0.0
