r"""The REALM paper's Table 2 effect, reproduced at a chosen scale: a resumable stage runner.

REALM's claim (Guu et al. 2020, Table 2): a retriever pre-trained with nothing but the
masked-LM signal back-propagated through retrieval finds evidence for open-domain
questions it never saw. The experiment, with the all-MiniLM-L6-v2 weights, the 178k
Wikipedia passages and NQ-open of `--shared_dir`:

  (a) ICT warm start of the MiniLM retriever                      (`python -m orqa.ict`)
  (b) REALM pre-training continued from (a), index refreshed      (`python -m realm_tf.pretrain
                                                                    --refresh=inline`)
  (c) the same with the index never refreshed (stale ablation)    (`--refresh=external` and
                                                                    no refresh job)
  zero-shot answer recall@5/20/100 of (a), (b), (c) on NQ dev questions against the WHOLE
  corpus embedded by each final document tower (`python -m realm_tf.refresh --once`; the
  index is committed as a retriever module), beside a unigram TF-IDF retriever;
  ORQA fine-tuning from (a) and from (b) (`orqa.finetune`, `orqa.predict`,
  `orqa.evaluate`): exact match on the NQ test set, each final model tested once.

Stages (`--stages`, in this order by default; each skips what it has done, so a killed
run resumes by running the same command again; results go to `<work_dir>/results/`):

  data           corpus subsets, retrieval shards (whole corpus and the pre-training
                 subset), the pre-training corpus with the precomputed spaCy salient spans,
                 ICT examples, QA subsets
  tfidf          unigram TF-IDF answer recall on the dev questions (and, as a check of the
                 method only, on the test file, to compare with ../shared/data/README.md)
  ict            (a)
  realm_refresh  (b)
  realm_stale    (c)
  zero_shot      whole-corpus index and recall@k of each finished model (a, b, c)
  orqa_a         ORQA from (a): question tower and index of (a), reader = MiniLM
  orqa_b         ORQA from (b): question tower and index of (b), reader = (b)'s reader
  report         the tables (markdown) from the JSON results

Scales (`--scale`): `tiny` (a few hundred blocks and a few steps: tests the pipeline in
minutes on a CPU; its numbers mean nothing and it never reads the test file), `cpu` (the
budget of docs/BENCHMARKS.md "Table 2 at CPU scale") and `gpu` (paper-like lengths,
candidates and batch sizes on one accelerator, bounded by `--max_hours`). Every setting
of a scale can be overridden by the flag of the same name.

  PYTHONPATH=. nice -n 19 python bench/table2.py --work_dir=/tmp/table2 --scale=cpu
  PYTHONPATH=. python bench/table2.py --work_dir=/tmp/t2gpu --scale=gpu --dry_run
"""

import dataclasses
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("data", "tfidf", "ict", "realm_refresh", "realm_stale", "zero_shot", "orqa_a",
          "orqa_b", "report")
MODELS = {"a": "ict", "b": "realm_refresh", "c": "realm_stale"}
MODEL_NAMES = {"a": "(a) ICT warm start", "b": "(b) REALM, index refreshed",
               "c": "(c) REALM, index never refreshed"}
CORPUS = os.path.join("data", "corpus", "enwiki2015-first30k.psgs100w.cap800.jsonl.gz")
NER = os.path.join("data", "corpus", "enwiki2015-first30k.psgs100w.cap800.ner.jsonl.gz")
MINILM = os.path.join("models", "all-MiniLM-L6-v2")
QA = os.path.join("data", "qa")
TRAIN_QA = "NQ-open.dpr-dev-from-train.jsonl"  # train
DEV_QA = "NQ-open.efficientqa.dev.1.1.jsonl"  # dev: model selection and zero-shot recall
TEST_QA = "NQ-open.dev.jsonl"  # test: once per final model
RECALL_KS = (1, 5, 20, 100)


@dataclasses.dataclass
class Scale:
  """The experiment's sizes. `0` for a count means "all"."""
  corpus_passages: int  # the retrieval corpus of zero-shot eval and ORQA (first N)
  realm_passages: int  # pre-training corpus and its retrieval corpus (first N)
  ict_stride: int  # ICT trains on every ict_stride-th passage of the corpus
  ict_eval_passages: int  # held-out ICT passages (offset ict_stride // 2)
  query_seq_len: int
  block_seq_len: int
  corpus_shards: int
  realm_shards: int  # shards of the pre-training corpus and of its retrieval corpus
  ict_steps: int
  ict_batch_size: int
  ict_learning_rate: float
  ict_eval_every: int  # ICT steps between evaluations (and checkpoints)
  ict_eval_steps: int  # held-out ICT batches per evaluation
  realm_steps: int
  realm_batch_size: int
  num_candidates: int
  max_masks: int
  realm_learning_rate: float
  realm_export_steps: int
  realm_eval_steps: int
  realm_reader_only_steps: int  # first REALM steps that train only the reader
  curve_questions: int  # dev questions tracked during pre-training (subset index)
  encode_batch_size: int
  dev_questions: int  # zero-shot recall and ORQA model selection
  orqa_steps: int
  orqa_batch_size: int
  orqa_learning_rate: float
  orqa_save_steps: int
  orqa_eval_questions: int  # first dev questions of each ORQA evaluation (model selection)
  orqa_beam: int
  reader_seq_len: int
  test_questions: int
  use_test_file: bool  # tiny runs never read the test file


SCALES = {
    "tiny": Scale(
        corpus_passages=600, realm_passages=240, ict_stride=2, ict_eval_passages=64,
        query_seq_len=32, block_seq_len=64, corpus_shards=2, realm_shards=4,
        ict_steps=6, ict_batch_size=8, ict_learning_rate=1e-4, ict_eval_every=3,
        ict_eval_steps=2,
        realm_steps=6, realm_batch_size=2, num_candidates=3, max_masks=5,
        realm_learning_rate=3e-5, realm_export_steps=3, realm_eval_steps=2,
        realm_reader_only_steps=2,
        curve_questions=16, encode_batch_size=64, dev_questions=24,
        orqa_steps=4, orqa_batch_size=2, orqa_learning_rate=3e-5, orqa_save_steps=2,
        orqa_eval_questions=0, orqa_beam=50, reader_seq_len=96,
        test_questions=16, use_test_file=False),
    "cpu": Scale(
        corpus_passages=0, realm_passages=25000, ict_stride=4, ict_eval_passages=2000,
        query_seq_len=32, block_seq_len=64, corpus_shards=20, realm_shards=50,
        ict_steps=600, ict_batch_size=32, ict_learning_rate=1e-4, ict_eval_every=200,
        ict_eval_steps=8,
        realm_steps=600, realm_batch_size=8, num_candidates=5, max_masks=10,
        realm_learning_rate=5e-5, realm_export_steps=100, realm_eval_steps=16,
        realm_reader_only_steps=0,
        curve_questions=600, encode_batch_size=256, dev_questions=0,
        orqa_steps=400, orqa_batch_size=4, orqa_learning_rate=3e-5, orqa_save_steps=200,
        orqa_eval_questions=600, orqa_beam=5000, reader_seq_len=192,
        test_questions=0, use_test_file=True),
    # Paper-like lengths and candidate counts (Q 96, C 288, 8 candidates, 10 masks) on one
    # accelerator with MiniLM (the weights at hand), REALM retrieving from the whole corpus.
    "gpu": Scale(
        corpus_passages=0, realm_passages=0, ict_stride=1, ict_eval_passages=4000,
        query_seq_len=96, block_seq_len=288, corpus_shards=20, realm_shards=100,
        ict_steps=10000, ict_batch_size=512, ict_learning_rate=1e-4, ict_eval_every=1000,
        ict_eval_steps=10,
        realm_steps=20000, realm_batch_size=64, num_candidates=8, max_masks=10,
        realm_learning_rate=3e-5, realm_export_steps=500, realm_eval_steps=50,
        realm_reader_only_steps=0,
        curve_questions=1800, encode_batch_size=1024, dev_questions=0,
        orqa_steps=11000, orqa_batch_size=16, orqa_learning_rate=1e-5,
        orqa_save_steps=1000, orqa_eval_questions=0, orqa_beam=5000, reader_seq_len=288,
        test_questions=0, use_test_file=True),
}

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", None, "Everything the experiment writes goes here.")
flags.DEFINE_string("shared_dir", os.path.join(REPO_ROOT, "..", "shared"),
                    "The project's shared data and weights (data/, models/).")
flags.DEFINE_list("stages", list(STAGES), f"Stages to run, of {', '.join(STAGES)}.")
flags.DEFINE_enum("scale", "cpu", list(SCALES), "Preset sizes (see the module docstring).")
flags.DEFINE_list("zero_shot_models", ["a", "b", "c"], "Models the zero_shot stage scores.")
flags.DEFINE_boolean("dry_run", False, "Print the commands and write the plan; run nothing.")
flags.DEFINE_float("max_hours", 0.0, "Stop (resumably) when the run has taken this long "
                   "(0: no limit); the running command is stopped at the deadline.")
flags.DEFINE_string("python", sys.executable, "Python of the product's entry points.")
flags.DEFINE_string("strategy", "default", "tf.distribute strategy of the training jobs.")
for _field in dataclasses.fields(Scale):
  _define = {int: flags.DEFINE_integer, float: flags.DEFINE_float,
             bool: flags.DEFINE_boolean}[_field.type]
  _define(_field.name, None, f"Override of the scale's {_field.name}.")


class StageError(RuntimeError):
  """A stage cannot run (missing input) or a command failed."""


class Deadline(RuntimeError):
  """--max_hours is spent; rerun the same command later to resume."""


class Runner:
  """Runs the stages: paths, commands, logs, results."""

  def __init__(self, work_dir: str, shared_dir: str, scale: Scale, dry_run: bool = False,
               python: str = sys.executable, strategy: str = "default",
               deadline: Optional[float] = None):
    self.work = os.path.abspath(work_dir)
    self.shared = os.path.abspath(shared_dir)
    self.scale = scale
    self.dry_run = dry_run
    self.python = python
    self.strategy = strategy
    self.deadline = deadline
    self.commands: List[str] = []
    for sub in ("data", "logs", "results"):
      os.makedirs(self.path(sub), exist_ok=True)

  # ------------------------------------------------------------------------ helpers

  def path(self, *parts) -> str:
    return os.path.join(self.work, *parts)

  def shared_path(self, *parts) -> str:
    path = os.path.join(self.shared, *parts)
    if not os.path.exists(path) and not self.dry_run:
      raise StageError(f"{path} is absent: the experiment needs the shared data folder "
                       "(--shared_dir).")
    return path

  @property
  def vocab(self) -> str:
    return self.shared_path(MINILM, "vocab.txt")

  def result_path(self, name: str) -> str:
    return self.path("results", f"{name}.json")

  def result(self, name: str) -> Optional[dict]:
    path = self.result_path(name)
    if not os.path.exists(path):
      return None
    with open(path, encoding="utf-8") as f:
      return json.load(f)

  def write_result(self, name: str, value: dict) -> None:
    path = self.result_path(name)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      json.dump(value, f, indent=2, sort_keys=True)
      f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"[table2] wrote {path}", flush=True)

  def run(self, args: Sequence[str], log_name: str) -> float:
    """Runs a product entry point (`python -m ...`) to completion; returns its wall
    seconds. Output goes to logs/<log_name>.log. The command is recorded for the report."""
    command = [self.python, *args]
    shown = " ".join(_quote(a) for a in command)
    self.commands.append(shown)
    print(f"[table2] $ {shown}", flush=True)
    if self.dry_run:
      return 0.0
    timeout = None
    if self.deadline is not None:
      timeout = self.deadline - time.time()
      if timeout <= 0:
        raise Deadline("--max_hours is spent before this command")
    log_path = self.path("logs", f"{log_name}.log")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    start = time.time()
    with open(log_path, "a", encoding="utf-8") as log:
      log.write(f"\n$ {shown}\n")
      log.flush()
      process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
      try:
        code = process.wait(timeout=timeout)
      except BaseException as e:
        # Stop this command and whatever it started (its own process group).
        os.killpg(process.pid, signal.SIGTERM)
        try:
          process.wait(timeout=60)
        except subprocess.TimeoutExpired:
          os.killpg(process.pid, signal.SIGKILL)
          process.wait()
        if isinstance(e, subprocess.TimeoutExpired):
          raise Deadline(f"--max_hours reached during: {shown}") from None
        raise
    wall = time.time() - start
    if code != 0:
      raise StageError(f"exit code {code} after {wall:.0f} s: {shown}\n"
                       f"{_tail(log_path)}\n(full log: {log_path})")
    print(f"[table2]   done in {wall / 60:.1f} min (log {log_path})", flush=True)
    return wall

  def stage(self, name: str, fn) -> Optional[dict]:
    """Runs stage `fn` unless its result exists; records wall time and commands."""
    done = self.result(name)
    if done is not None and not self.dry_run:
      print(f"[table2] {name}: done ({self.result_path(name)})", flush=True)
      return done
    print(f"[table2] {name}: running", flush=True)
    self.commands = []
    start = time.time()
    value = fn()
    if self.dry_run:
      return None
    value = dict(value, stage=name, wall_secs=round(time.time() - start, 1),
                 commands=list(self.commands), scale=dataclasses.asdict(self.scale))
    self.write_result(name, value)
    return value

  # --------------------------------------------------------------------------- data

  def data_files(self) -> Dict[str, str]:
    d = self.path("data")
    s = self.scale
    return dict(
        corpus=(self.shared_path(CORPUS) if not s.corpus_passages
                else os.path.join(d, "passages.jsonl.gz")),
        realm_passages=(self.shared_path(CORPUS) if not s.realm_passages
                        else os.path.join(d, "realm_passages.jsonl.gz")),
        realm_ner=(self.shared_path(NER) if not s.realm_passages
                   else os.path.join(d, "realm_ner.jsonl.gz")),
        ict_train=os.path.join(d, "ict_train.jsonl.gz"),
        ict_eval=os.path.join(d, "ict_eval.jsonl.gz"),
        blocks=os.path.join(d, "blocks"),
        realm_blocks=os.path.join(d, "realm_blocks"),
        pretrain=os.path.join(d, "pretrain"),
        ict_train_examples=os.path.join(d, "ict_train.tfr.gz"),
        ict_eval_examples=os.path.join(d, "ict_eval.tfr.gz"),
        train_qa=self.shared_path(QA, TRAIN_QA),
        dev_qa=(self.shared_path(QA, DEV_QA) if not s.dev_questions
                else os.path.join(d, "dev.jsonl")),
        curve_qa=os.path.join(d, "dev_curve.jsonl"),
        test_qa=(os.path.join(d, "test.jsonl") if not s.use_test_file
                 else self.shared_path(QA, TEST_QA) if not s.test_questions
                 else os.path.join(d, "test.jsonl")))

  def glob(self, prefix: str, num_shards: int) -> str:
    return f"{prefix}-*-of-{num_shards:05d}"

  def stage_data(self) -> dict:
    s, f = self.scale, self.data_files()
    counts = {}
    if not self.dry_run:
      corpus, ner = self.shared_path(CORPUS), self.shared_path(NER)
      if s.corpus_passages:
        counts["corpus"] = _head_lines(corpus, f["corpus"], s.corpus_passages)
      if s.realm_passages:
        counts["realm_passages"] = _head_lines(corpus, f["realm_passages"],
                                               s.realm_passages)
        counts["realm_ner"] = _head_lines(ner, f["realm_ner"], s.realm_passages)
      counts["ict_train"], counts["ict_eval"] = _strided_lines(
          f["corpus"], f["ict_train"], f["ict_eval"], s.ict_stride, s.ict_eval_passages)
      dev = self.shared_path(QA, DEV_QA)
      if s.dev_questions:
        counts["dev"] = _head_lines(dev, f["dev_qa"], s.dev_questions)
      counts["curve"] = _head_lines(dev, f["curve_qa"], s.curve_questions)
      if not s.use_test_file:
        # A tiny run scores its plumbing on dev questions (after those it selects on).
        counts["test"] = _slice_lines(dev, f["test_qa"], s.dev_questions,
                                      s.dev_questions + s.test_questions)
      elif s.test_questions:
        counts["test"] = _head_lines(self.shared_path(QA, TEST_QA), f["test_qa"],
                                     s.test_questions)
    built = []
    for prefix, source, shards in ((f["blocks"], f["corpus"], s.corpus_shards),
                                   (f["realm_blocks"], f["realm_passages"], s.realm_shards)):
      if self.dry_run or not os.path.exists(prefix + ".manifest.json"):
        self.run(["-m", "realm_tf.corpus.build_retrieval_corpus", f"--input={source}",
                  f"--output_prefix={prefix}", f"--vocab_path={self.vocab}",
                  f"--num_shards={shards}", "--num_workers=1"],
                 "data")
        built.append(prefix)
    if self.dry_run or not os.path.exists(f["pretrain"] + ".manifest.json"):
      self.run(["-m", "realm_tf.corpus.build_pretrain_corpus",
                f"--input={f['realm_passages']}", f"--output_prefix={f['pretrain']}",
                f"--spans=precomputed:{f['realm_ner']}", f"--num_shards={s.realm_shards}",
                "--eval_shards=1", "--num_workers=1"], "data")
    for source, output in ((f["ict_train"], f["ict_train_examples"]),
                           (f["ict_eval"], f["ict_eval_examples"])):
      if self.dry_run or not os.path.exists(output):
        self.run(["-m", "orqa.build_ict_examples", f"--input={source}",
                  f"--output={output}", f"--vocab_path={self.vocab}"], "data")
    manifests = {}
    if not self.dry_run:
      for name in ("blocks", "realm_blocks", "pretrain"):
        with open(f[name] + ".manifest.json", encoding="utf-8") as m:
          manifest = json.load(m)
        manifests[name] = {k: manifest[k] for k in ("count", "num_shards", "counters",
                                                    "eval_count", "train_count")
                           if k in manifest}
    return dict(lines=counts, manifests=manifests, files=f)

  # ----------------------------------------------------------------------- TF-IDF

  def stage_tfidf(self) -> dict:
    f = self.data_files()
    if self.dry_run:
      print("[table2]   (in-process) TF-IDF over the corpus; recall on the dev questions",
            flush=True)
      return {}
    from bench import tfidf  # pylint: disable=g-import-not-at-top
    start = time.time()
    titles, texts = tfidf.read_passages(f["corpus"])
    index = tfidf.TfidfIndex.build([f"{t} {x}" for t, x in zip(titles, texts)])
    build_secs = time.time() - start
    out = dict(num_passages=len(texts), build_secs=round(build_secs, 1),
               vocabulary=index.vocabulary_size)
    sets = [("dev", f["dev_qa"])]
    if self.scale.use_test_file and not self.scale.corpus_passages:
      # The method check against ../shared/data/README.md's reference figures (which are
      # on this file): compared, never tuned on.
      sets.append(("test_method_check", f["test_qa"]))
    for name, path in sets:
      out[name] = tfidf.answer_recall(index, texts, path, RECALL_KS)
      print(f"[table2]   TF-IDF {name}: {out[name]}", flush=True)
    return out

  # -------------------------------------------------------------------------- ICT (a)

  def stage_ict(self) -> dict:
    model_dir = self.path("ict")
    wall = 0.0
    if self.dry_run or not self._ict_done():
      wall = self._run_ict(model_dir)
    if self.dry_run:
      return {}
    return dict(train_secs=wall, module=self.ict_module(),
                eval=_read_jsonl(os.path.join(model_dir, "eval_results.jsonl")))

  def _ict_done(self) -> bool:
    encoded = _newest_dir(os.path.join(self.path("ict"), "export", "encoded"))
    if encoded is None:
      return False
    with open(os.path.join(encoded, "global_step.txt"), encoding="utf-8") as g:
      return int(g.read().strip()) >= self.scale.ict_steps

  def _run_ict(self, model_dir: str) -> float:
    s, f = self.scale, self.data_files()
    return self.run([
        "-m", "orqa.ict", f"--model_dir={model_dir}",
        f"--examples_path={f['ict_train_examples']}",
        f"--eval_examples_path={f['ict_eval_examples']}",
        f"--init_hf_bert={self.shared_path(MINILM)}",
        f"--query_seq_len={s.query_seq_len}", f"--block_seq_len={s.block_seq_len}",
        f"--batch_size={s.ict_batch_size}", f"--eval_batch_size={s.ict_batch_size}",
        f"--num_train_steps={s.ict_steps}", f"--learning_rate={s.ict_learning_rate}",
        f"--save_checkpoints_steps={s.ict_eval_every}", f"--num_eval_steps={s.ict_eval_steps}",
        f"--strategy={self.strategy}",
        # The index REALM starts from: the pre-training subset, embedded by (a).
        "--encode", f"--retrieval_corpus_path={self.glob(f['realm_blocks'], s.realm_shards)}",
        "--searcher=brute_force", f"--encode_batch_size={s.encode_batch_size}"], "ict")

  def ict_module(self) -> str:
    """(a): the ICT embedder module with its index of the pre-training subset."""
    encoded = _newest_dir(os.path.join(self.path("ict"), "export", "encoded"))
    if encoded is None:
      if self.dry_run:
        return self.path("ict", "export", "encoded", "<ts>", "embedder")
      raise StageError("The ict stage has not produced export/encoded/<ts>/embedder.")
    return os.path.join(encoded, "embedder")

  # ------------------------------------------------------------------ REALM (b), (c)

  def stage_realm(self, name: str, refresh: bool) -> dict:
    s, f = self.scale, self.data_files()
    model_dir = self.path(name)
    wall = 0.0
    if self.dry_run or not os.path.exists(os.path.join(model_dir, "TRAINING_DONE")):
      wall = self._run_realm(name, model_dir, refresh)
    if self.dry_run:
      return {}
    curve = _read_jsonl(os.path.join(model_dir, "eval_results.jsonl"))
    timestamps = sorted({int(r.get("index_timestamp", 0)) for r in curve})
    # The index of each logged training step ("index ts <timestamp>"; 0: the initial one).
    used = sorted({int(t) for t in re.findall(r"index ts (\d+)",
                                              _read_text(self.path("logs", f"{name}.log")))})
    if not refresh and (timestamps != [0] or used != [0]):
      raise StageError(f"{name} was to keep the initial index, but it used index "
                       f"timestamps {timestamps} (eval) and {used} (training).")
    return dict(train_secs=wall, final_export=self.final_export(name),
                eval_index_timestamps=timestamps, training_index_timestamps=used,
                num_training_indexes=len(used), curve=curve)

  def _run_realm(self, name: str, model_dir: str, refresh: bool) -> float:
    s, f = self.scale, self.data_files()
    return self.run([
        "-m", "realm_tf.pretrain", f"--model_dir={model_dir}",
        f"--pretrain_corpus_path={self.glob(f['pretrain'], s.realm_shards)}",
        f"--retrieval_corpus_path={self.glob(f['realm_blocks'], s.realm_shards)}",
        f"--vocab_path={self.vocab}", f"--init_hf_bert={self.shared_path(MINILM)}",
        f"--initial_embedder_module={self.ict_module()}",
        f"--query_seq_len={s.query_seq_len}", f"--candidate_seq_len={s.block_seq_len}",
        f"--num_candidates={s.num_candidates}", f"--max_masks={s.max_masks}",
        f"--batch_size={s.realm_batch_size}", f"--eval_batch_size={s.realm_batch_size}",
        f"--learning_rate={s.realm_learning_rate}", f"--num_train_steps={s.realm_steps}",
        f"--save_checkpoints_steps={s.realm_export_steps}",
        f"--export_steps={s.realm_export_steps}", f"--num_eval_steps={s.realm_eval_steps}",
        f"--reader_only_steps={s.realm_reader_only_steps}",
        "--eval_shards=1", "--num_shards_per_mips_refresh=1",
        f"--retrieval_batch_size={max(8, s.realm_batch_size * 4)}",
        f"--eval_qa_path={f['curve_qa']}", "--searcher=brute_force",
        f"--strategy={self.strategy}", "--log_every_steps=10",
        # (c): no refresh job runs, so the initial index of (a) is used throughout.
        f"--refresh={'inline' if refresh else 'external'}"], name)

  def final_export(self, name: str) -> str:
    """The export (embedder/, bert/, global_step.txt) of a run's last step."""
    exports = []
    for prefix in ("tf_hub", "encoded"):
      base = os.path.join(self.path(name), "export", prefix)
      for entry in os.listdir(base) if os.path.isdir(base) else []:
        step_file = os.path.join(base, entry, "global_step.txt")
        if entry.isdigit() and os.path.exists(step_file):
          with open(step_file, encoding="utf-8") as g:
            exports.append((int(g.read().strip()), int(entry), os.path.join(base, entry)))
    if not exports:
      if self.dry_run:
        return self.path(name, "export", "<prefix>", "<ts>")
      raise StageError(f"No export under {self.path(name, 'export')}.")
    return max(exports)[2]

  # -------------------------------------------------------------------- zero-shot

  def retriever_module(self, model: str) -> str:
    """The model's embedder with its index of the whole corpus (a --retriever_module_path)."""
    encoded = _newest_dir(self.path("zero_shot", model, "export", "encoded"))
    if encoded is None:
      if self.dry_run:
        return self.path("zero_shot", model, "export", "encoded", "<ts>", "embedder")
      raise StageError(f"No whole-corpus index for model {model}: run the zero_shot stage.")
    return os.path.join(encoded, "embedder")

  def zero_shot_one(self, model: str) -> dict:
    s, f = self.scale, self.data_files()
    run = MODELS[model]
    if not self.dry_run and self.result(run) is None:
      raise StageError(f"Model {model} needs the {run} stage first.")
    model_dir = self.path("zero_shot", model)
    wall = 0.0
    if self.dry_run or _newest_dir(os.path.join(model_dir, "export", "encoded")) is None:
      source = (os.path.dirname(self.ict_module()) if model == "a"
                else self.final_export(run))
      if not self.dry_run:
        _stage_embedder_export(source, model_dir)
      wall = self.run([
          "-m", "realm_tf.refresh", f"--model_dir={model_dir}",
          f"--retrieval_corpus_path={self.glob(f['blocks'], s.corpus_shards)}", "--once",
          "--searcher=brute_force", f"--candidate_seq_len={s.block_seq_len}",
          f"--vocab_path={self.vocab}", "--do_lower_case",
          "--separate_candidate_segments", f"--predict_batch_size={s.encode_batch_size}",
          f"--num_neighbors={max(RECALL_KS)}"], f"zero_shot_{model}")
    if self.dry_run:
      return {}
    module = self.retriever_module(model)
    recall = _zero_shot_recall(module, f["dev_qa"], self.glob(f["blocks"], s.corpus_shards),
                               self.vocab, s.query_seq_len, s.block_seq_len)
    with open(os.path.join(os.path.dirname(module), "manifest.json"), encoding="utf-8") as m:
      manifest = json.load(m)
    print(f"[table2]   zero-shot {model}: {recall}", flush=True)
    return dict(retriever_module=module, embed_secs=wall or manifest["timings"]["embed_secs"],
                blocks_per_sec=manifest["blocks_per_sec"], num_blocks=manifest["num_blocks"],
                embedder_step=manifest["embedder_step"], dev=recall)

  def stage_zero_shot(self, models: Sequence[str]) -> None:
    for model in models:
      self.stage(f"zero_shot_{model}", lambda m=model: self.zero_shot_one(m))

  # ------------------------------------------------------------------------- ORQA

  def stage_orqa(self, model: str) -> dict:
    s, f = self.scale, self.data_files()
    name = f"orqa_{model}"
    model_dir = self.path(name)
    reader = (self.shared_path(MINILM) if model == "a"
              else os.path.join(self.final_export(MODELS[model]), "bert"))
    blocks = self.glob(f["blocks"], s.corpus_shards)
    predictions = os.path.join(model_dir, "test_predictions.jsonl")
    metrics_path = os.path.join(model_dir, "test_metrics.json")
    train_wall = 0.0
    evaluated = {r.get("global_step") for r in _read_jsonl(
        os.path.join(model_dir, "eval_results.jsonl"))}
    if self.dry_run or s.orqa_steps not in evaluated:
      train_wall = self._run_orqa(name, model, model_dir, reader, blocks)
    predict_wall = 0.0
    if self.dry_run or not os.path.exists(metrics_path):
      # The test set, once, with the model selected on dev.
      predict_wall = self.run([
          "-m", "orqa.predict", f"--model_dir={model_dir}", f"--dataset_path={f['test_qa']}",
          f"--predictions_path={predictions}", "--batch_size=16",
          f"--num_retrieved={max(RECALL_KS)}", f"--strategy={self.strategy}"], name)
      predict_wall += self.run([
          "-m", "orqa.evaluate", f"--references={f['test_qa']}",
          f"--predictions={predictions}", f"--blocks_path={blocks}",
          f"--recall_ks={','.join(map(str, RECALL_KS))}", f"--output={metrics_path}"], name)
    if self.dry_run:
      return {}
    with open(metrics_path, encoding="utf-8") as m:
      test = json.load(m)
    best = os.path.join(model_dir, "export", "best_default", "best_metric.json")
    with open(best, encoding="utf-8") as b:
      record = json.load(b)
    best_step, best_em = record["global_step"], record["value"]
    return dict(train_secs=train_wall, test_secs=predict_wall, reader=reader,
                dev_curve=_read_jsonl(os.path.join(model_dir, "eval_results.jsonl")),
                selected_step=int(best_step), selected_dev_em=float(best_em),
                test=test, test_file=f["test_qa"])

  def _run_orqa(self, name: str, model: str, model_dir: str, reader: str,
                blocks: str) -> float:
    s, f = self.scale, self.data_files()
    return self.run([
        "-m", "orqa.finetune", f"--model_dir={model_dir}",
        f"--retriever_module_path={self.retriever_module(model)}",
        f"--reader_module_path={reader}", f"--block_records_path={blocks}",
        f"--train_path={f['train_qa']}", f"--dev_path={f['dev_qa']}",
        f"--num_eval_examples={s.orqa_eval_questions}", "--searcher=brute_force",
        f"--batch_size={s.orqa_batch_size}",
        f"--learning_rate={s.orqa_learning_rate}", f"--reader_seq_len={s.reader_seq_len}",
        f"--query_seq_len={s.query_seq_len}", f"--retrieval_beam_size={s.orqa_beam}",
        f"--num_train_steps={s.orqa_steps}", f"--save_checkpoints_steps={s.orqa_save_steps}",
        f"--strategy={self.strategy}", "--eval_before_training"], name)

  # ----------------------------------------------------------------------- report

  def stage_report(self) -> dict:
    report = render_report({name: self.result(name) for name in (
        "data", "tfidf", "ict", "realm_refresh", "realm_stale", "zero_shot_a",
        "zero_shot_b", "zero_shot_c", "orqa_a", "orqa_b")})
    path = self.path("results", "report.md")
    if not self.dry_run:
      with open(path, "w", encoding="utf-8") as r:
        r.write(report)
    print(report, flush=True)
    return dict(report=path)


def render_report(results: Dict[str, Optional[dict]]) -> str:
  """Markdown tables of the finished stages."""
  lines = ["| retriever | " + " | ".join(f"R@{k}" for k in RECALL_KS) + " |",
           "|---|" + "---|" * len(RECALL_KS)]
  tfidf_result = results.get("tfidf")
  if tfidf_result:
    lines.append("| TF-IDF (unigrams) | " + " | ".join(
        f"{tfidf_result['dev'][f'recall@{k}']:.3f}" for k in RECALL_KS) + " |")
  for model in ("a", "b", "c"):
    zs = results.get(f"zero_shot_{model}")
    if zs:
      lines.append(f"| {MODEL_NAMES[model]} (step {zs['embedder_step']}) | " + " | ".join(
          f"{zs['dev'][f'recall@{k}']:.3f}" for k in RECALL_KS) + " |")
  lines += ["", "| ORQA from | selected step (dev EM) | test EM | test R@5 | R@20 | R@100 |",
            "|---|---|---|---|---|---|"]
  for model in ("a", "b"):
    o = results.get(f"orqa_{model}")
    if o:
      answer, retrieval = o["test"]["answer"], o["test"]["retrieval"]["top_k_accuracy"]
      lines.append(f"| {MODEL_NAMES[model]} | {o['selected_step']} ({o['selected_dev_em']:.3f})"
                   f" | {answer['accuracy']:.4f} ({answer['num_correct']} / "
                   f"{answer['num_total']}) | " + " | ".join(
                       f"{retrieval[str(k)]:.3f}" for k in (5, 20, 100)) + " |")
  lines += ["", "| stage | wall |", "|---|---|"]
  for name, value in results.items():
    if value:
      lines.append(f"| {name} | {value['wall_secs'] / 60:.1f} min |")
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- utilities


def _quote(arg: str) -> str:
  return f"'{arg}'" if re.search(r"[*?\s<>]", arg) else arg


def _tail(path: str, lines: int = 30) -> str:
  with open(path, encoding="utf-8", errors="replace") as f:
    return "".join(f.readlines()[-lines:])


def _open_text(path: str, mode: str = "rt"):
  return gzip.open(path, mode, encoding="utf-8") if path.endswith(".gz") else open(
      path, mode, encoding="utf-8")


def _write_lines_atomic(path: str, lines) -> int:
  count = 0
  with _open_text(path + ".tmp" + (".gz" if path.endswith(".gz") else ""), "wt") as out:
    for line in lines:
      out.write(line)
      count += 1
  os.replace(path + ".tmp" + (".gz" if path.endswith(".gz") else ""), path)
  return count


def _read_text(path: str) -> str:
  with open(path, encoding="utf-8", errors="replace") as f:
    return f.read()


def _count_lines(path: str) -> int:
  with _open_text(path) as f:
    return sum(1 for _ in f)


def _head_lines(source: str, output: str, n: int) -> int:
  """Writes the first n lines of `source` to `output` (once)."""
  return _slice_lines(source, output, 0, n)


def _slice_lines(source: str, output: str, start: int, stop: int) -> int:
  if os.path.exists(output):
    return _count_lines(output)

  def lines():
    with _open_text(source) as f:
      for i, line in enumerate(f):
        if i >= stop:
          break
        if i >= start:
          yield line
  return _write_lines_atomic(output, lines())


def _strided_lines(source: str, train: str, held_out: str, stride: int,
                   num_held_out: int):
  """Every stride-th line (from 0) to `train`; lines at stride // 2 offsets (the first
  num_held_out) to `held_out`. With stride 1, the held-out lines are the last ones."""
  if not (os.path.exists(train) and os.path.exists(held_out)):
    with _open_text(source) as f:
      all_lines = f.readlines()
    if stride == 1:
      kept, other = all_lines[:-num_held_out], all_lines[-num_held_out:]
    else:
      kept = all_lines[::stride]
      other = all_lines[stride // 2::stride][:num_held_out]
    _write_lines_atomic(train, kept)
    _write_lines_atomic(held_out, other)
  return _count_lines(train), _count_lines(held_out)


def _newest_dir(base: str) -> Optional[str]:
  entries = sorted((int(e) for e in os.listdir(base) if e.isdigit()) if os.path.isdir(base)
                   else [])
  return os.path.join(base, str(entries[-1])) if entries else None


def _read_jsonl(path: str) -> List[dict]:
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _stage_embedder_export(source_export: str, model_dir: str) -> None:
  """Copies the embedder module of an export (and its global step) into
  `model_dir/export/tf_hub/<ts>/`, where the refresh job embeds the corpus with it."""
  base = os.path.join(model_dir, "export", "tf_hub")
  if _newest_dir(base) is not None:
    return  # staged before a kill; the refresh job resumes from it
  from realm_tf.retrieval import export_dirs  # pylint: disable=g-import-not-at-top
  final = os.path.join(base, str(export_dirs.new_timestamp(base)))
  staging = export_dirs.temp_dir_for(final)
  shutil.copytree(os.path.join(source_export, "embedder"),
                  os.path.join(staging, "embedder"),
                  ignore=shutil.ignore_patterns("encoded"))  # not the old index
  export_dirs.write_global_step(staging, export_dirs.read_global_step(source_export) or 0)
  export_dirs.commit_directory(staging, final)


def _zero_shot_recall(module: str, qa_path: str, blocks_glob: str, vocab: str,
                      query_seq_len: int, block_seq_len: int) -> Dict[str, float]:
  """Answer recall@k of the questions embedded by the module's query tower against the
  module's own index (`realm_tf.retrieval.answer_recall.ZeroShotRecall`)."""
  import realm_tf  # pylint: disable=g-import-not-at-top,unused-import
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
  from realm_tf.featurization import Featurizer  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import answer_recall, block_emb_file, corpus_reader  # pylint: disable=g-import-not-at-top
  from realm_tf.tokenization import Tokenizer  # pylint: disable=g-import-not-at-top
  tokenizer = Tokenizer(vocab, do_lower_case=True)
  featurizer = Featurizer(query_seq_len, block_seq_len, 2, 1, tokenizer)
  questions, answers = answer_recall.load_qa_pairs(qa_path)
  texts = answer_recall.load_block_texts(corpus_reader.list_shards(blocks_glob))
  recall = answer_recall.ZeroShotRecall(
      questions, answers, texts,
      lambda q: featurizer.featurize_query_tf(tokenizer.tokenize_ids(q)), ks=RECALL_KS)
  loaded = tf.saved_model.load(module)
  block_emb = block_emb_file.read_block_emb(block_emb_file.checkpoint_prefix(module))
  if block_emb.shape[0] != len(texts):
    raise StageError(f"{module} indexes {block_emb.shape[0]} blocks, {blocks_glob} has "
                     f"{len(texts)}.")

  def embed(inputs):
    return loaded.projected(inputs.token_ids, inputs.mask, inputs.segment_ids)["default"]

  result = recall(embed, block_emb)
  result["num_questions"] = recall.num_questions
  return result


def scale_from_flags() -> Scale:
  scale = SCALES[FLAGS.scale]
  overrides = {f.name: getattr(FLAGS, f.name) for f in dataclasses.fields(Scale)
               if getattr(FLAGS, f.name) is not None}
  return dataclasses.replace(scale, **overrides)


def _interrupt(signum, frame):
  del frame
  raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
  del argv
  # A SIGTERM stops the running command's process group too (Runner.run), as Ctrl-C does.
  signal.signal(signal.SIGTERM, _interrupt)
  unknown = sorted(set(FLAGS.stages) - set(STAGES))
  if unknown:
    raise app.UsageError(f"Unknown stages {unknown}; choose from {list(STAGES)}.")
  deadline = time.time() + FLAGS.max_hours * 3600 if FLAGS.max_hours else None
  runner = Runner(FLAGS.work_dir, FLAGS.shared_dir, scale_from_flags(), FLAGS.dry_run,
                  FLAGS.python, FLAGS.strategy, deadline)
  plan = dict(scale=FLAGS.scale, settings=dataclasses.asdict(runner.scale),
              stages=[s for s in STAGES if s in FLAGS.stages])
  with open(runner.path("results", "plan.json"), "w", encoding="utf-8") as f:
    json.dump(plan, f, indent=2)
  actions = {
      "data": runner.stage_data, "tfidf": runner.stage_tfidf, "ict": runner.stage_ict,
      "realm_refresh": lambda: runner.stage_realm("realm_refresh", refresh=True),
      "realm_stale": lambda: runner.stage_realm("realm_stale", refresh=False),
      "orqa_a": lambda: runner.stage_orqa("a"), "orqa_b": lambda: runner.stage_orqa("b"),
  }
  try:
    for name in plan["stages"]:
      if name == "zero_shot":
        runner.stage_zero_shot(FLAGS.zero_shot_models)
      elif name == "report":
        runner.stage_report()
      else:
        runner.stage(name, actions[name])
  except Deadline as e:
    print(f"[table2] stopped: {e}. Run the same command again to resume.", flush=True)
    sys.exit(3)
  except StageError as e:
    sys.exit(f"[table2] failed: {e}")


if __name__ == "__main__":
  flags.mark_flag_as_required("work_dir")
  app.run(main)
