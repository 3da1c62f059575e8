"""Wall time of the corpus builders on a real corpus (benchmark, not a test).

Runs the builders as a user would (`python -m ...` subprocesses) and writes one JSON
object: for each job its exact command, wall seconds, records/s, output size, peak
memory of the worker processes and the build counters from the manifest.

Jobs (default: all):
  retrieval_passages   build_retrieval_corpus --mode=passages on the 178k passages;
  retrieval_articles   build_retrieval_corpus --mode=articles on the same passages
                       re-joined into their 27,926 articles (consecutive passages with
                       the same title), i.e. ORQA block packing;
  pretrain_rules       build_pretrain_corpus --spans=rules;
  pretrain_precomputed build_pretrain_corpus --spans=precomputed:<spaCy entities>;
  pathological         the sentence splitter and the rules annotator, in this process,
                       on texts that were quadratic (one long word, runs of periods,
                       30k sentences, 40k spans in one sentence, ...) at n and 4n
                       characters: the time ratio (4 when linear) and the characters/s
                       relative to real passages measured in the same run; then the two
                       builders end to end on a 5 MB one-word line (pre-training,
                       rules) and a 210 KB article of 30k sentences (--mode=articles).

Usage:
  .venv/bin/python bench/corpus_build.py --output=/tmp/corpus_build.json
"""

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO_ROOT, "..", "shared")
CORPUS = os.path.join(SHARED, "data", "corpus", "enwiki2015-first30k.psgs100w.cap800.jsonl.gz")
NER = os.path.join(SHARED, "data", "corpus",
                   "enwiki2015-first30k.psgs100w.cap800.ner.jsonl.gz")
VOCAB = os.path.join(SHARED, "models", "all-MiniLM-L6-v2", "vocab.txt")
JOBS = ("retrieval_passages", "retrieval_articles", "pretrain_rules",
        "pretrain_precomputed", "pathological")

# name -> text of about n characters.
PATHOLOGICAL_TEXTS = {
    "one_long_word": lambda n: "a" * n,
    "run_of_periods": lambda n: "Paris. " + "." * n,
    "many_sentences": lambda n: "Paris is big. " * (n // 14),
    "many_spans_in_one_sentence": lambda n: "Paris and " * (n // 10),
    "many_years_in_one_sentence": lambda n: "1999 " * (n // 5),
    "capitalised_function_words": lambda n: "The " * (n // 4) + "Paris",
}


def write_articles(passages_path: str, output_path: str) -> int:
  """Re-joins consecutive passages with the same title into articles."""
  count = 0
  with gzip.open(passages_path, "rt", encoding="utf-8") as src, \
       gzip.open(output_path, "wt", encoding="utf-8") as dst:
    title, texts = None, []
    for line in src:
      row = json.loads(line)
      if row["title"] != title and texts:
        dst.write(json.dumps({"title": title, "text": " ".join(texts)}) + "\n")
        count += 1
        texts = []
      title = row["title"]
      texts.append(row["text"])
    if texts:
      dst.write(json.dumps({"title": title, "text": " ".join(texts)}) + "\n")
      count += 1
  return count


def _annotate_seconds(texts, repeats: int = 3) -> float:
  """The best of `repeats` timings of sentences + rule spans over `texts` (less noise)."""
  from realm_tf.corpus import rules, sentences  # pylint: disable=g-import-not-at-top
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    for text in texts:
      rules.find_salient_spans(text, sentences.split_sentences(text))
    best = min(best, time.perf_counter() - start)
  return best


def pathological(args, work_dir: str) -> dict:
  """In-process scaling of the annotator on bad texts, then the builders end to end."""
  sys.path.insert(0, REPO_ROOT)
  real = []
  with gzip.open(args.input, "rt", encoding="utf-8") as f:
    for line in f:
      real.append(json.loads(line)["text"])
      if len(real) == 2000:
        break
  real_chars_per_sec = sum(map(len, real)) / _annotate_seconds(real)
  n = args.pathological_chars
  result = {"real_passages_chars_per_second": round(real_chars_per_sec), "texts": {}}
  for name, make in PATHOLOGICAL_TEXTS.items():
    small, large = make(n), make(4 * n)
    t_small, t_large = _annotate_seconds([small]), _annotate_seconds([large])
    result["texts"][name] = {
        "chars": [len(small), len(large)],
        "seconds": [round(t_small, 3), round(t_large, 3)],
        "time_ratio_4x_chars": round(t_large / max(t_small, 1e-9), 2),
        "chars_per_second_vs_real": round(len(large) / t_large / real_chars_per_sec, 2),
    }
  source = os.path.join(work_dir, "pathological.jsonl")
  with open(source, "w", encoding="utf-8") as f:
    f.write(json.dumps({"title": "Long word", "text": "a" * 5_000_000}) + "\n")
  articles = os.path.join(work_dir, "pathological_article.jsonl")
  with open(articles, "w", encoding="utf-8") as f:
    text = "Ab cd. " * 30_000  # 210 KB, 30k sentences
    f.write(json.dumps({"title": "Many sentences", "text": text}) + "\n")
  py = sys.executable
  prefix = os.path.join(work_dir, "pathological", "pretrain")
  result["pretrain_5mb_word"] = run_job("pathological pretrain", [
      py, "-m", "realm_tf.corpus.build_pretrain_corpus", f"--input={source}",
      f"--output_prefix={prefix}", "--num_workers=1", "--num_shards=2",
      "--eval_shards=1", "--allow_empty"], prefix)
  prefix = os.path.join(work_dir, "pathological", "articles")
  result["articles_30k_sentences"] = run_job("pathological articles", [
      py, "-m", "realm_tf.corpus.build_retrieval_corpus", f"--input={articles}",
      f"--output_prefix={prefix}", f"--vocab_path={args.vocab_path}",
      "--mode=articles", "--num_workers=1", "--num_shards=1"], prefix)
  return result


def run_job(name, command, prefix):
  start = time.time()
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
  seconds = time.time() - start
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if proc.returncode:
    sys.stderr.write(proc.stderr[-5000:])
    raise SystemExit(f"{name} failed with exit code {proc.returncode}")
  with open(prefix + ".manifest.json") as f:
    manifest = json.load(f)
  size = sum(s["bytes"] for s in manifest["shards"])
  inputs = manifest["counters"]["input_records"]
  return {
      "command": " ".join(command),
      "wall_seconds": round(seconds, 1),
      "input_records": inputs,
      "input_records_per_second": round(inputs / seconds, 1),
      "output_records": manifest["count"],
      "output_bytes": size,
      "cpu_seconds_children": round((after.ru_utime - before.ru_utime) +
                                    (after.ru_stime - before.ru_stime), 1),
      "max_rss_mb_largest_child": round(after.ru_maxrss / 1024, 1),
      "counters": manifest["counters"],
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--input", default=CORPUS)
  parser.add_argument("--ner", default=NER)
  parser.add_argument("--vocab_path", default=VOCAB)
  parser.add_argument("--num_workers", type=int, default=os.cpu_count())
  parser.add_argument("--jobs", default=",".join(JOBS))
  parser.add_argument("--work_dir", default="")
  parser.add_argument("--output", default="")
  parser.add_argument("--pathological_chars", type=int, default=200_000,
                      help="n of the pathological job (texts of n and 4n characters).")
  args = parser.parse_args()
  for path in (args.input, args.vocab_path):
    if not os.path.exists(path):
      sys.exit(f"Not found: {path} (the benchmark needs ../shared)")
  work_dir = args.work_dir or tempfile.mkdtemp(prefix="corpus_build_")
  py = sys.executable
  results = {"num_workers": args.num_workers, "cpu_count": os.cpu_count(),
             "input": os.path.abspath(args.input), "jobs": {}}
  common = [f"--num_workers={args.num_workers}", "--num_shards=50"]
  for job in args.jobs.split(","):
    prefix = os.path.join(work_dir, job, "corpus")
    if job == "retrieval_passages":
      command = [py, "-m", "realm_tf.corpus.build_retrieval_corpus",
                 f"--input={args.input}", f"--output_prefix={prefix}",
                 f"--vocab_path={args.vocab_path}", "--mode=passages"] + common
    elif job == "retrieval_articles":
      articles = os.path.join(work_dir, "articles.jsonl.gz")
      if not os.path.exists(articles):
        results["articles"] = write_articles(args.input, articles)
      command = [py, "-m", "realm_tf.corpus.build_retrieval_corpus",
                 f"--input={articles}", f"--output_prefix={prefix}",
                 f"--vocab_path={args.vocab_path}", "--mode=articles"] + common
    elif job == "pretrain_rules":
      command = [py, "-m", "realm_tf.corpus.build_pretrain_corpus",
                 f"--input={args.input}", f"--output_prefix={prefix}",
                 "--spans=rules"] + common
    elif job == "pretrain_precomputed":
      command = [py, "-m", "realm_tf.corpus.build_pretrain_corpus",
                 f"--input={args.input}", f"--output_prefix={prefix}",
                 f"--spans=precomputed:{args.ner}"] + common
    elif job == "pathological":
      os.makedirs(work_dir, exist_ok=True)
      print(f"running {job} ...", file=sys.stderr, flush=True)
      results["jobs"][job] = pathological(args, work_dir)
      print(json.dumps(results["jobs"][job]), file=sys.stderr, flush=True)
      continue
    else:
      sys.exit(f"Unknown job {job}")
    print(f"running {job} ...", file=sys.stderr, flush=True)
    results["jobs"][job] = run_job(job, command, prefix)
    print(json.dumps(results["jobs"][job]), file=sys.stderr, flush=True)
  text = json.dumps(results, indent=2, sort_keys=True)
  print(text)
  if args.output:
    with open(args.output, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
