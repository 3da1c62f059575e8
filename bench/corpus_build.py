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
  pretrain_precomputed build_pretrain_corpus --spans=precomputed:<spaCy entities>.

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
        "pretrain_precomputed")


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
  out_dir = os.path.dirname(prefix)
  size = sum(os.path.getsize(os.path.join(out_dir, s["name"]))
             for s in manifest["shards"])
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
