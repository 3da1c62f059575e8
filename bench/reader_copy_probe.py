"""Probe: can the embedded default's tiny reader learn to copy from a passage?

REALM's retriever only learns when the reader gains from the retrieved passage. The
embedded default's reader (tiny BERT L2/H128, sample vocabulary, random init) never did
(docs/BENCHMARKS.md, "Does it learn?"). This probe trains that reader alone on a task
that can only be solved by reading: random-token passages, the query a window copied from
the passage with 10-30% of its tokens masked, `[CLS] query [SEP] passage [SEP]` (the
reader's joint input, by default Q 48 + C 128). Memorizing is impossible; the masked
tokens are in the passage at the positions whose neighbours match. A control run leaves
the tokens unmasked (the target is the visible token: identity), which only checks the
harness.

  python bench/reader_copy_probe.py --steps=1000 [--identity] [--seed=0]
      [--query_len=48 --passage_len=128 --min_passage_len=40] [--vocab_limit=N]
      [--word_embedding_std=0.02] [--copy_circuit]

`--vocab_limit` draws the passages' tokens from the first N word pieces only;
`--word_embedding_std` re-initializes the (input and tied output) word embeddings with
that standard deviation instead of BERT's 0.02; `--copy_circuit` starts the reader from
the constructed copying weights of `realm_tf.modeling.copy_circuit` (`--steps=0` measures
them untrained).

Prints a JSON line per evaluation: held-out masked-token accuracy and loss (chance: the
log of the number of tokens drawn, 8.66 for the 5,763-token sample vocabulary).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import realm_tf  # noqa: E402,F401  (selects Keras 2 and oneDNN before TensorFlow loads)
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from realm_tf import sample_data  # noqa: E402
from realm_tf.modeling import copy_circuit  # noqa: E402
from realm_tf.modeling.config import BertConfig  # noqa: E402
from realm_tf.modeling.reader import KnowledgeAugmentedEncoder  # noqa: E402
from realm_tf.tokenization import Tokenizer  # noqa: E402

MAX_MASKS = 10


def word_range(tokenizer, vocab_limit: int):
  """[first, end) of the ids drawn: after [PAD] [UNK] [CLS] [SEP] [MASK], below
  `vocab_limit` (0: the whole vocabulary)."""
  return tokenizer.mask_id + 1, vocab_limit or len(tokenizer.vocab)


def copy_example(rng, tokenizer, args):
  """One example: (ids, mask, segments) [Q + C], (positions, targets, weights) [M]."""
  passage = rng.integers(*word_range(tokenizer, args.vocab_limit),
                         rng.integers(args.min_passage_len, args.passage_len - 2))
  longest = min(args.query_len - 2, len(passage))
  query_len = rng.integers(min(12, longest), longest + 1)
  offset = rng.integers(0, len(passage) - query_len + 1)
  query = passage[offset:offset + query_len].copy()
  num_masks = int(min(MAX_MASKS, max(1, round(query_len * rng.uniform(0.1, 0.3)))))
  positions = np.sort(rng.choice(query_len, num_masks, replace=False))
  targets = query[positions].copy()
  if not args.identity:
    query[positions] = tokenizer.mask_id
  tokens = [tokenizer.cls_id, *query, tokenizer.sep_id, *passage, tokenizer.sep_id]
  ids = np.zeros([args.query_len + args.passage_len], np.int32)  # [Q + C]
  ids[:len(tokens)] = tokens
  segments = np.zeros_like(ids)
  segments[query_len + 2:len(tokens)] = 1
  mlm = np.zeros([3, MAX_MASKS], np.float32)  # positions, targets, weights
  mlm[0, :num_masks] = positions + 1  # + 1 for [CLS]
  mlm[1, :num_masks] = targets
  mlm[2, :num_masks] = 1.0
  return ids, (ids > 0).astype(np.int32), segments, mlm


def make_batch(rng, tokenizer, size: int, args):
  ids, mask, segments, mlm = zip(*(copy_example(rng, tokenizer, args)
                                   for _ in range(size)))
  mlm = np.stack(mlm)  # [B, 3, M]
  inputs = dict(input_word_ids=np.stack(ids), input_mask=np.stack(mask),
                input_type_ids=np.stack(segments))
  return (inputs, mlm[:, 0].astype(np.int32), mlm[:, 1].astype(np.int32), mlm[:, 2])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=1000)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--learning_rate", type=float, default=1e-3)
  parser.add_argument("--eval_every", type=int, default=250)
  parser.add_argument("--identity", action="store_true",
                      help="Control: leave the tokens unmasked.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--query_len", type=int, default=48, help="Q, with [CLS] and [SEP].")
  parser.add_argument("--passage_len", type=int, default=128, help="C, with [SEP].")
  parser.add_argument("--min_passage_len", type=int, default=40)
  parser.add_argument("--vocab_limit", type=int, default=0,
                      help="Draw tokens from the first N word pieces (0: all).")
  parser.add_argument("--word_embedding_std", type=float, default=None,
                      help="Re-initialize the word embeddings with this std (BERT: 0.02).")
  parser.add_argument("--copy_circuit", action="store_true",
                      help="Start from realm_tf.modeling.copy_circuit's weights.")
  args = parser.parse_args()
  if not 4 <= args.min_passage_len < args.passage_len - 2 or args.query_len < 6:
    parser.error("need 4 <= --min_passage_len < --passage_len - 2 and --query_len >= 6")
  tf_keras.utils.set_random_seed(args.seed)
  rng = np.random.default_rng(args.seed)
  tokenizer = Tokenizer(sample_data.VOCAB_PATH, do_lower_case=True)
  config = BertConfig.preset("tiny", vocab_size=len(tokenizer.vocab),
                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  reader = KnowledgeAugmentedEncoder(config)
  reader.build_variables()
  if args.word_embedding_std is not None:
    table = reader.encoder.get_embedding_table()  # [V, H], tied to the MLM output
    table.assign(tf.random.truncated_normal(table.shape, stddev=args.word_embedding_std,
                                            seed=args.seed))
  if args.copy_circuit:
    copy_circuit.initialize_reader(reader, tokenizer.mask_id, args.seed)
  optimizer = tf_keras.optimizers.Adam(args.learning_rate)

  def log_probs(inputs, positions, training):
    logits = reader(inputs, mlm_positions=positions, training=training)["mlm_logits"]
    return tf.nn.log_softmax(logits, -1)  # [B, M, V]

  @tf.function
  def train_step(inputs, positions, targets, weights):
    with tf.GradientTape() as tape:
      nll = -tf.gather(log_probs(inputs, positions, True), targets, batch_dims=2)  # [B, M]
      loss = tf.reduce_sum(nll * weights) / tf.reduce_sum(weights)
    variables = reader.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  evaluate = tf.function(lambda inputs, positions: log_probs(inputs, positions, False))
  heldout = make_batch(np.random.default_rng(10_000 + args.seed), tokenizer, 256, args)
  first, end = word_range(tokenizer, args.vocab_limit)
  start = time.time()
  for step in range(args.steps + 1):
    if step % args.eval_every == 0 or step == args.steps:
      inputs, positions, targets, weights = heldout
      logp = evaluate(inputs, positions).numpy()
      hits = (logp.argmax(-1) == targets) * weights
      nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0] * weights
      print(json.dumps(dict(step=step, identity=args.identity, seed=args.seed,
                            word_embedding_std=args.word_embedding_std,
                            vocab_limit=args.vocab_limit, copy_circuit=args.copy_circuit,
                            heldout_accuracy=round(float(hits.sum() / weights.sum()), 4),
                            heldout_loss=round(float(nll.sum() / weights.sum()), 3),
                            chance_loss=round(float(np.log(end - first)), 3),  # uniform
                            seconds=round(time.time() - start, 1))), flush=True)
    if step == args.steps:
      break
    train_step(*make_batch(rng, tokenizer, args.batch_size, args))


if __name__ == "__main__":
  main()
