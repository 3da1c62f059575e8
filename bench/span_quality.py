"""Quality of the `rules` salient-span annotator (benchmark, not a test).

Two comparisons, printed and written as JSON:

* SQuAD v1.1 dev (human answer spans in Wikipedia paragraphs): the share of questions
  whose answer is exactly a rule span (after SQuAD normalisation: lowercase, no
  punctuation, no articles), the share whose answer's character range overlaps a rule
  span, and spans per sentence.
* The 178k-passage corpus with precomputed spaCy `en_core_web_sm` entities (salient
  labels): exact-offset precision/recall/F1 of rule spans against the entities, overlap
  recall, per-label recall, and sentence-boundary agreement with spaCy's sentences.

Usage:
  .venv/bin/python bench/span_quality.py --output=/tmp/span_quality.json
"""

import argparse
import collections
import gzip
import json
import os
import re
import string
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from realm_tf.corpus import rules  # pylint: disable=g-import-not-at-top
from realm_tf.corpus import salient_spans as spans_lib  # pylint: disable=g-import-not-at-top
from realm_tf.corpus import sentences as sentences_lib  # pylint: disable=g-import-not-at-top

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                     "data")


def normalize_answer(s: str) -> str:
  """SQuAD normalisation: lowercase, drop punctuation and articles, squeeze spaces."""
  s = s.lower()
  s = "".join(ch for ch in s if ch not in set(string.punctuation))
  s = re.sub(r"\b(a|an|the)\b", " ", s)
  return " ".join(s.split())


def annotate(text):
  sents = sentences_lib.split_sentences(text)
  return sents, rules.find_salient_spans(text, sents)


def squad_quality(path):
  with open(path) as f:
    data = json.load(f)["data"]
  questions = exact = overlap = positional = 0
  num_sentences = num_spans = sentences_with_span = 0
  for article in data:
    for paragraph in article["paragraphs"]:
      context = paragraph["context"]
      sents, spans = annotate(context)
      num_sentences += len(sents)
      num_spans += len(spans)
      sentences_with_span += sum(
          any(s <= a and b <= e for a, b in spans) for s, e in sents)
      span_texts = {normalize_answer(context[a:b]) for a, b in spans}
      span_set = set(spans)
      for qa in paragraph["qas"]:
        questions += 1
        answers = qa["answers"]
        ranges = [(a["answer_start"], a["answer_start"] + len(a["text"]))
                  for a in answers]
        exact += any(normalize_answer(a["text"]) in span_texts for a in answers)
        positional += any(r in span_set for r in ranges)
        overlap += any(a < e and s < b for s, e in ranges for a, b in spans)
  return {
      "questions": questions,
      "answer_exact_match_recall": exact / questions,
      "answer_exact_offsets_recall": positional / questions,
      "answer_overlap_recall": overlap / questions,
      "spans_per_sentence": num_spans / num_sentences,
      "sentences_with_a_span": sentences_with_span / num_sentences,
      "paragraphs_sentences_spans": [sum(len(a["paragraphs"]) for a in data),
                                     num_sentences, num_spans],
  }


def corpus_agreement(corpus_path, ner_path, max_passages):
  labels = spans_lib.SALIENT_LABELS
  tp = tp_the = n_rule = n_ent = ent_overlap = 0
  label_total = collections.Counter()
  label_hit = collections.Counter()
  sent_tp = sent_rule = sent_spacy = 0
  num_sentences = num_spans = 0
  passages = 0
  with gzip.open(corpus_path, "rt") as fc, gzip.open(ner_path, "rt") as fn:
    for doc_line, ner_line in zip(fc, fn):
      doc, ner = json.loads(doc_line), json.loads(ner_line)
      assert doc["id"] == ner["id"], (doc["id"], ner["id"])
      text = doc["text"]
      sents, spans = annotate(text)
      num_sentences += len(sents)
      num_spans += len(spans)
      ents = [(s, e, l) for s, e, l in ner["ents"] if l in labels]
      span_set = set(spans)
      # spaCy often includes a leading article ("the United States", "the 1990s");
      # CoNLL-style taggers (as REALM's) and the rules do not.
      span_set_the = span_set | {(a - 4, b) for a, b in spans
                                 if text[max(a - 4, 0):a].lower() == "the "}
      n_rule += len(spans)
      n_ent += len(ents)
      for s, e, label in ents:
        label_total[label] += 1
        if (s, e) in span_set:
          tp += 1
          label_hit[label] += 1
        if (s, e) in span_set_the:
          tp_the += 1
        if any(a < e and s < b for a, b in spans):
          ent_overlap += 1
      # Sentence boundaries: compare sentence end offsets (spaCy keeps trailing spaces).
      spacy_ends = {e - (len(text[s:e]) - len(text[s:e].rstrip())) for s, e in
                    ner["sents"]}
      rule_ends = {e for _, e in sents}
      sent_tp += len(spacy_ends & rule_ends)
      sent_rule += len(rule_ends)
      sent_spacy += len(spacy_ends)
      passages += 1
      if max_passages and passages >= max_passages:
        break
  precision = tp / max(n_rule, 1)
  recall = tp / max(n_ent, 1)
  precision_the = tp_the / max(n_rule, 1)
  recall_the = tp_the / max(n_ent, 1)
  return {
      "passages": passages,
      "spacy_labels": sorted(labels),
      "rule_spans": n_rule,
      "spacy_entities": n_ent,
      "exact_precision": precision,
      "exact_recall": recall,
      "exact_f1": 2 * precision * recall / max(precision + recall, 1e-9),
      "exact_ignoring_leading_the_precision": precision_the,
      "exact_ignoring_leading_the_recall": recall_the,
      "exact_ignoring_leading_the_f1": 2 * precision_the * recall_the / max(
          precision_the + recall_the, 1e-9),
      "entity_overlap_recall": ent_overlap / max(n_ent, 1),
      "recall_by_label": {l: round(label_hit[l] / label_total[l], 4)
                          for l in sorted(label_total)},
      "entities_by_label": dict(sorted(label_total.items())),
      "rule_spans_per_sentence": num_spans / max(num_sentences, 1),
      "sentence_end_precision": sent_tp / max(sent_rule, 1),
      "sentence_end_recall": sent_tp / max(sent_spacy, 1),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--squad", default=os.path.join(
      _DATA, "squad", "dev-v1.1.reconstructed.json"))
  parser.add_argument("--corpus", default=os.path.join(
      _DATA, "corpus", "enwiki2015-first30k.psgs100w.cap800.jsonl.gz"))
  parser.add_argument("--ner", default=os.path.join(
      _DATA, "corpus", "enwiki2015-first30k.psgs100w.cap800.ner.jsonl.gz"))
  parser.add_argument("--max_passages", type=int, default=0,
                      help="corpus passages to compare (0: all)")
  parser.add_argument("--skip_squad", action="store_true")
  parser.add_argument("--skip_corpus", action="store_true")
  parser.add_argument("--output", default="")
  args = parser.parse_args()

  result = {"annotator": "rules"}
  if not args.skip_squad:
    if not os.path.exists(args.squad):
      sys.exit(f"SQuAD file not found: {args.squad}")
    t = time.time()
    result["squad_dev"] = squad_quality(args.squad)
    result["squad_dev"]["seconds"] = round(time.time() - t, 1)
  if not args.skip_corpus:
    if not os.path.exists(args.corpus):
      sys.exit(f"Corpus not found: {args.corpus}")
    t = time.time()
    result["corpus_vs_spacy"] = corpus_agreement(args.corpus, args.ner,
                                                 args.max_passages)
    result["corpus_vs_spacy"]["seconds"] = round(time.time() - t, 1)
  text = json.dumps(result, indent=2, sort_keys=True)
  print(text)
  if args.output:
    with open(args.output, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
