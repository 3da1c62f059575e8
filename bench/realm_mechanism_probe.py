r"""Probe: REALM's retrieval learning on a seeded miniature, and what breaks it.

World: S = 200 subjects; subject s has two facts (s, R1, a1), (s, R2, a2) with random
attributes, written in its one document "[CLS] [SEP] s R1 a1 R2 a2 [SEP]". Questions
"[CLS] s r [MASK] [SEP]" mask the attribute. The REALM stage asks only R1 questions; the
held-out questions ask R2 about the same subjects (never trained on; their evidence is in
the same documents, as the paper's held-out questions).

Stages, all on `RealmModel` (tiny BERTs, H 64, 2 layers, no dropout):
1. reader warm start (as REALM's reader starts from BERT): the reader alone on random
   facts drawn afresh for every example, so reading is all it can learn (600 steps);
2. a weak ICT-style warm start of the retriever: in-batch contrastive on the subject
   mention alone ("[CLS] s [SEP]" -> its document), `--ict_steps`;
3. REALM: `realm_steps.make_train_step` on the masked-attribute loss marginalized over the
   null document and the top-15 documents of the current index (re-embedded every 10
   steps); the reader frozen unless `--train_reader`.

  python bench/realm_mechanism_probe.py [--seeds=0,1,2] [--lr=2e-4] [--steps=250]

Prints one JSON line per seed: recall@5 of the held-out and the training questions at the
REALM start and end, and the last retrieval utility (nats). Progress goes to stderr.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import realm_tf  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from realm_tf.featurization.bert_inputs import BertInputs  # noqa: E402
from realm_tf.modeling import optimizer as optimizer_lib  # noqa: E402
from realm_tf.modeling import realm_steps  # noqa: E402
from realm_tf.modeling.realm_model import RealmModel  # noqa: E402
from tests import modeling_testing  # noqa: E402

CLS, SEP, MASK = modeling_testing.CLS_ID, modeling_testing.SEP_ID, modeling_testing.MASK_ID
R1, R2 = 5, 6
Q, C = 5, 8


def run(seed, num_subjects=200, num_attributes=50, steps=300, batch=32, num_candidates=16,
        refresh_every=10, lr=1e-3, hidden=64, reader_steps=200, reader_lr=1e-3,
        freeze_reader=True, verbose=True, k=5, ict_steps=15, ict_lr=1e-3):
  """Reader warm start, ICT warm start, then REALM steps; returns the held-out and
  training recall@k at the REALM start and end, and the last utility."""
  rng = np.random.default_rng(seed)
  tf.random.set_seed(seed)
  first_subject = 10
  first_attr = first_subject + num_subjects
  vocab = first_attr + num_attributes
  subjects = np.arange(num_subjects) + first_subject
  attrs = rng.integers(0, num_attributes, (num_subjects, 2)) + first_attr
  bert = modeling_testing.tiny_bert_config(vocab_size=vocab, hidden_size=hidden, max_len=16,
                                           hidden_dropout_prob=0.0,
                                           attention_probs_dropout_prob=0.0)
  config = modeling_testing.tiny_realm_config(
      query_seq_len=Q, candidate_seq_len=C, num_candidates=num_candidates, max_masks=1,
      bert=bert, embedder=bert, embedder_dropout_rate=0.0, learning_rate=lr,
      num_train_steps=steps, num_warmup_steps=10, batch_size=batch)
  model = RealmModel(config).build_variables()

  def doc_row(s, a1, a2):
    return [CLS, SEP, s, R1, a1, R2, a2, SEP]

  docs = np.array([doc_row(s, *a) for s, a in zip(subjects, attrs)])
  doc_seg = np.tile([0, 0, 1, 1, 1, 1, 1, 1], (len(docs), 1))
  doc_inputs = BertInputs(tf.constant(docs, tf.int32), tf.ones_like(docs, tf.int32),
                          tf.constant(doc_seg, tf.int32))
  null = [CLS, SEP, SEP, 0, 0, 0, 0, 0]

  def joint_row(s, r, doc):
    body = [t for t in doc[2:] if t not in (SEP, 0)]
    ids = [CLS, s, r, MASK, SEP] + body + [SEP]
    pad = Q + C - len(ids)
    return (ids + [0] * pad, [1] * len(ids) + [0] * pad,
            [0] * 5 + [1] * (len(body) + 1) + [0] * pad)

  def queries(ids, relation):
    q = np.array([[CLS, subjects[i], relation, MASK, SEP] for i in ids])
    return BertInputs(tf.constant(q, tf.int32), tf.ones_like(q, tf.int32),
                      tf.zeros_like(q, tf.int32))

  def doc_emb():
    return model.document_embedder(doc_inputs, training=False).numpy()

  def recall(relation, emb):
    ids = np.arange(num_subjects)
    q = model.embed_queries(queries(ids, relation), training=False).numpy()
    top = np.argsort(-q @ emb.T, axis=1)[:, :k]
    return float(np.mean([i in row for i, row in zip(ids, top)]))

  # The reader learns to read first (REALM's starts from BERT): random facts drawn afresh
  # for every example, so reading is all it can learn. The retriever is not touched.
  reader_opt = tf_keras.optimizers.Adam(reader_lr)
  reader_vars = model.reader.trainable_variables

  @tf.function
  def reader_step(ids, mask, seg, targets):
    with tf.GradientTape() as tape:
      out = model.reader(dict(input_word_ids=ids, input_mask=mask, input_type_ids=seg),
                         mlm_positions=tf.fill([tf.shape(ids)[0], 1], 3), training=True)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          targets, out["mlm_logits"]))
    reader_opt.apply_gradients(zip(tape.gradient(loss, reader_vars), reader_vars))
    return loss

  for step in range(reader_steps):
    rows, targets = [], []
    for _ in range(batch):
      s = rng.integers(0, num_subjects) + first_subject
      a = rng.integers(0, num_attributes, 2) + first_attr
      r = R1 if rng.random() < 0.5 else R2
      rows.append(joint_row(s, r, doc_row(s, *a)))
      targets.append(a[0] if r == R1 else a[1])
    ids, mask, seg = (tf.constant(np.array([x[j] for x in rows]), tf.int32) for j in range(3))
    loss = reader_step(ids, mask, seg, tf.constant(np.array(targets)[:, None], tf.int32))
    if verbose and (step + 1) % 100 == 0:
      print(f"reader warm start {step + 1}: loss {float(loss):.3f}", file=sys.stderr,
            flush=True)

  # A weak ICT-style warm start of the retriever (the paper's starting point): in-batch
  # contrastive on pseudo-queries "[CLS] s [SEP]" (the subject mention alone) -> its doc.
  ict_opt = tf_keras.optimizers.Adam(ict_lr)
  emb_vars = model.document_embedder.trainable_variables

  @tf.function
  def ict_step(q_ids, d_ids, d_seg):
    with tf.GradientTape() as tape:
      q = model.embed_queries(BertInputs(q_ids, tf.ones_like(q_ids), tf.zeros_like(q_ids)),
                              training=True)
      d = model.document_embedder(BertInputs(d_ids, tf.ones_like(d_ids), d_seg),
                                  training=True)
      logits = tf.matmul(q, d, transpose_b=True)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          tf.range(tf.shape(q)[0]), logits))
    ict_opt.apply_gradients(zip(tape.gradient(loss, emb_vars), emb_vars))
    return loss

  for step in range(ict_steps):
    ids = rng.choice(num_subjects, batch, replace=False)
    q_ids = tf.constant(np.array([[CLS, subjects[i], SEP] for i in ids]), tf.int32)
    loss = ict_step(q_ids, tf.constant(docs[ids], tf.int32), tf.constant(doc_seg[ids], tf.int32))
  if verbose and ict_steps:
    print(f"ict warm start {ict_steps}: loss {float(loss):.3f}", file=sys.stderr, flush=True)

  if freeze_reader:
    model.reader.trainable = False
  optimizer = optimizer_lib.create_optimizer(config)
  train_step = realm_steps.make_train_step(model, optimizer)

  def features(ids, emb):
    q_inputs = queries(ids, R1)
    q = model.embed_queries(q_inputs, training=False).numpy()
    top = np.argsort(-q @ emb.T, axis=1)[:, :num_candidates - 1]  # [B, N-1]
    cand, joint = [], []
    for i, row in zip(ids, top):
      rows = [null] + [list(docs[j]) for j in row]
      cand.append(rows)
      joint.append([joint_row(subjects[i], R1, r) for r in rows])
    cand = np.array(cand)
    cmask = (cand != 0).astype(np.int32)
    cseg = np.zeros_like(cand)
    cseg[:, :, 2:] = 1
    cseg *= cmask
    jparts = [np.array([[r[j] for r in ex] for ex in joint]) for j in range(3)]
    n = len(ids)
    return dict(
        query_inputs=q_inputs,
        candidate_inputs=BertInputs(tf.constant(cand, tf.int32), tf.constant(cmask),
                                    tf.constant(cseg, tf.int32)),
        joint_inputs=BertInputs(*[tf.constant(p, tf.int32) for p in jparts]),
        mlm_targets=tf.constant(attrs[ids, 0][:, None], tf.int32),
        mlm_positions=tf.constant(np.full([n, 1], 3), tf.int32),
        mlm_mask=tf.ones([n, 1], tf.int32),
        candidate_labels=tf.zeros([n, num_candidates], tf.float32),
        export_timestamp=tf.zeros([n], tf.int32))

  emb = doc_emb()
  start = dict(held_out=recall(R2, emb), train=recall(R1, emb))
  t0 = time.time()
  for step in range(steps):
    if step % refresh_every == 0:
      emb = doc_emb()
    ids = rng.choice(num_subjects, batch, replace=False)
    out = train_step(features(ids, emb))
    if verbose and (step + 1) % 50 == 0:
      e = doc_emb()
      print(f"seed {seed} step {step + 1}: loss {float(out['loss']):.3f} utility "
            f"{float(out['retrieval_utility']):.3f} recall@{k} held-out {recall(R2, e):.3f} "
            f"train {recall(R1, e):.3f} ({time.time() - t0:.0f}s)", file=sys.stderr,
            flush=True)
  emb = doc_emb()
  return dict(start=start, end=dict(held_out=recall(R2, emb), train=recall(R1, emb)),
              retrieval_utility=float(out["retrieval_utility"]))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--lr", type=float, default=2e-4, help="REALM learning rate")
  parser.add_argument("--steps", type=int, default=250, help="REALM steps")
  parser.add_argument("--ict_steps", type=int, default=15)
  parser.add_argument("--train_reader", action="store_true",
                      help="train the reader in the REALM stage too (default: frozen)")
  args = parser.parse_args()
  for seed in [int(s) for s in args.seeds.split(",")]:
    result = run(seed, lr=args.lr, steps=args.steps, ict_steps=args.ict_steps,
                 freeze_reader=not args.train_reader, reader_steps=600, reader_lr=2e-3)
    print(json.dumps(dict(seed=seed, lr=args.lr, steps=args.steps,
                          ict_steps=args.ict_steps, train_reader=args.train_reader,
                          **result)), flush=True)


if __name__ == "__main__":
  main()
