r"""A seeded miniature on which REALM's retrieval learning can be observed in minutes.

World: S subjects; subject s has two facts (s, R1, a1), (s, R2, a2) with random
attributes, written in its one document "[CLS] [SEP] s R1 a1 R2 a2 [SEP]". Questions
"[CLS] s r [MASK] [SEP]" mask the attribute. REALM trains on R1 questions only; the
held-out questions ask R2 about the same subjects (never trained on; their evidence is in
the same documents, as the paper's held-out questions are answered by passages it saw).

Stages, all on `RealmModel` (tiny BERTs, H 64, 2 layers, no dropout):
1. reader warm start (REALM's reader starts from BERT, which reads): the reader alone on
   random facts drawn afresh for every example, so copying is all it can learn;
2. an ICT-style warm start of the retriever (the paper's starting point): in-batch
   contrastive on the subject mention alone ("[CLS] s [SEP]" -> its document), run until
   recall@k of the training questions reaches `ict_target` (at most `max_ict_steps`);
3. REALM: `realm_steps.make_train_step` with the BERT optimizer on the masked-attribute
   loss marginalized over the null document and the top `num_candidates - 1` documents of
   the current index (re-embedded every `refresh_every` steps); the reader frozen.

Used by `tests/test_realm_mechanism.py` and `bench/realm_mechanism_probe.py`.
"""

import dataclasses
import sys
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras

from realm_tf.featurization.bert_inputs import BertInputs
from realm_tf.ict import model as ict_model
from realm_tf.modeling import optimizer as optimizer_lib
from realm_tf.modeling import realm_steps
from realm_tf.modeling.realm_model import RealmModel
from tests import modeling_testing

CLS, SEP, MASK = modeling_testing.CLS_ID, modeling_testing.SEP_ID, modeling_testing.MASK_ID
R1, R2 = 5, 6  # the two relation tokens
Q, C = 5, 8  # query and document lengths
NULL_DOC = [CLS, SEP, SEP, 0, 0, 0, 0, 0]


@dataclasses.dataclass
class MiniatureSettings:
  """Sizes and schedules of one miniature run (defaults: about a minute per seed)."""
  num_subjects: int = 200
  num_attributes: int = 50
  hidden_size: int = 64
  batch_size: int = 32
  reader_steps: int = 500
  reader_learning_rate: float = 2e-3
  ict_target: float = 0.3
  max_ict_steps: int = 200
  ict_learning_rate: float = 5e-4
  realm_steps: int = 100
  realm_learning_rate: float = 1e-4
  realm_warmup_steps: Optional[int] = None  # None: the original's formula (100 here)
  num_candidates: int = 16  # the null document + the top 15
  refresh_every: int = 1
  k: int = 5


class Miniature:
  """The world, the model and its three training stages for one seed."""

  def __init__(self, seed: int, settings: Optional[MiniatureSettings] = None,
               verbose: bool = False):
    settings = settings or MiniatureSettings()
    self.s = settings
    self.verbose = verbose
    self.rng = np.random.default_rng(seed)
    tf.random.set_seed(seed)
    self.first_subject = 10
    self.first_attr = self.first_subject + settings.num_subjects
    vocab = self.first_attr + settings.num_attributes
    self.subjects = np.arange(settings.num_subjects) + self.first_subject  # [S]
    self.attrs = self.rng.integers(0, settings.num_attributes,
                                   (settings.num_subjects, 2)) + self.first_attr  # [S, 2]
    bert = modeling_testing.tiny_bert_config(
        vocab_size=vocab, hidden_size=settings.hidden_size, max_len=16,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    self.config = modeling_testing.tiny_realm_config(
        query_seq_len=Q, candidate_seq_len=C, num_candidates=settings.num_candidates,
        max_masks=1, bert=bert, embedder=bert, embedder_dropout_rate=0.0,
        learning_rate=settings.realm_learning_rate, num_train_steps=settings.realm_steps,
        num_warmup_steps=settings.realm_warmup_steps, batch_size=settings.batch_size)
    self.model = RealmModel(self.config).build_variables()
    self.docs = np.array([self._doc_row(s, *a)
                          for s, a in zip(self.subjects, self.attrs)])  # [S, C]
    self.doc_segments = np.tile([0, 0, 1, 1, 1, 1, 1, 1], (len(self.docs), 1))  # [S, C]

  @staticmethod
  def _doc_row(subject, a1, a2):
    return [CLS, SEP, subject, R1, a1, R2, a2, SEP]

  @staticmethod
  def _joint_row(subject, relation, doc):
    """(ids, mask, segments) of "[CLS] s r [MASK] [SEP] body [SEP]", length Q + C."""
    body = [t for t in doc[2:] if t not in (SEP, 0)]
    ids = [CLS, subject, relation, MASK, SEP] + body + [SEP]
    pad = Q + C - len(ids)
    return (ids + [0] * pad, [1] * len(ids) + [0] * pad,
            [0] * 5 + [1] * (len(body) + 1) + [0] * pad)

  def _queries(self, ids, relation) -> BertInputs:
    q = np.array([[CLS, self.subjects[i], relation, MASK, SEP] for i in ids])  # [B, Q]
    return BertInputs(tf.constant(q, tf.int32), tf.ones_like(q, tf.int32),
                      tf.zeros_like(q, tf.int32))

  def _log(self, message: str):
    if self.verbose:
      print(message, file=sys.stderr, flush=True)

  def doc_embeddings(self) -> np.ndarray:
    """The index: every document embedded by the current document tower. [S, D]"""
    inputs = BertInputs(tf.constant(self.docs, tf.int32), tf.ones_like(self.docs, tf.int32),
                        tf.constant(self.doc_segments, tf.int32))
    return self.model.document_embedder(inputs, training=False).numpy()

  def recall(self, relation: int, emb: np.ndarray = None) -> float:
    """Share of the subjects' `relation` questions whose document is in the top k."""
    emb = self.doc_embeddings() if emb is None else emb
    ids = np.arange(self.s.num_subjects)
    q = self.model.embed_queries(self._queries(ids, relation), training=False).numpy()
    top = np.argsort(-q @ emb.T, axis=1)[:, :self.s.k]  # [S, k]
    return float(np.mean([i in row for i, row in zip(ids, top)]))

  def warm_start_reader(self):
    """Trains the reader alone to copy the asked attribute from the subject's document."""
    s = self.s
    opt = tf_keras.optimizers.Adam(s.reader_learning_rate)
    reader = self.model.reader

    @tf.function
    def step(ids, mask, seg, targets):
      with tf.GradientTape() as tape:
        out = reader(dict(input_word_ids=ids, input_mask=mask, input_type_ids=seg),
                     mlm_positions=tf.fill([tf.shape(ids)[0], 1], 3), training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            targets, out["mlm_logits"]))
      opt.apply_gradients(zip(tape.gradient(loss, reader.trainable_variables),
                              reader.trainable_variables))
      return loss

    for i in range(s.reader_steps):
      rows, targets = [], []
      for _ in range(s.batch_size):
        subject = self.rng.integers(0, s.num_subjects) + self.first_subject
        a = self.rng.integers(0, s.num_attributes, 2) + self.first_attr
        relation = R1 if self.rng.random() < 0.5 else R2
        rows.append(self._joint_row(subject, relation, self._doc_row(subject, *a)))
        targets.append(a[0] if relation == R1 else a[1])
      ids, mask, seg = (tf.constant(np.array([r[j] for r in rows]), tf.int32)
                        for j in range(3))  # each [B, Q + C]
      loss = step(ids, mask, seg, tf.constant(np.array(targets)[:, None], tf.int32))
      if (i + 1) % 100 == 0:
        self._log(f"reader warm start {i + 1}: loss {float(loss):.3f}")
    self.model.reader.trainable = False

  def warm_start_retriever(self) -> int:
    """ICT-style steps until recall@k of the training questions reaches `ict_target`;
    returns the number of steps taken."""
    s = self.s
    opt = tf_keras.optimizers.Adam(s.ict_learning_rate)
    variables = self.model.document_embedder.trainable_variables

    @tf.function
    def step(q_ids, d_ids, d_seg):
      with tf.GradientTape() as tape:
        q = self.model.embed_queries(
            BertInputs(q_ids, tf.ones_like(q_ids), tf.zeros_like(q_ids)), training=True)
        d = self.model.document_embedder(BertInputs(d_ids, tf.ones_like(d_ids), d_seg),
                                         training=True)
        logits, labels = ict_model.in_batch_logits(q, d)  # [B, B], in-batch negatives
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
      opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

    steps = 0
    while steps < s.max_ict_steps and self.recall(R1) < s.ict_target:
      ids = self.rng.choice(s.num_subjects, s.batch_size, replace=False)
      q_ids = np.array([[CLS, self.subjects[i], SEP] for i in ids])  # [B, 3]
      step(tf.constant(q_ids, tf.int32), tf.constant(self.docs[ids], tf.int32),
           tf.constant(self.doc_segments[ids], tf.int32))
      steps += 1
    self._log(f"ict warm start: {steps} steps")
    return steps

  def _features(self, ids, emb) -> Dict[str, object]:
    """A REALM batch for the R1 questions of `ids`: null + top N-1 of the index `emb`."""
    n_cand = self.s.num_candidates
    q_inputs = self._queries(ids, R1)
    q = self.model.embed_queries(q_inputs, training=False).numpy()
    top = np.argsort(-q @ emb.T, axis=1)[:, :n_cand - 1]  # [B, N-1]
    cand, joint = [], []
    for i, row in zip(ids, top):
      rows = [NULL_DOC] + [list(self.docs[j]) for j in row]
      cand.append(rows)
      joint.append([self._joint_row(self.subjects[i], R1, r) for r in rows])
    cand = np.array(cand)  # [B, N, C]
    cmask = (cand != 0).astype(np.int32)
    cseg = np.zeros_like(cand)
    cseg[:, :, 2:] = 1
    cseg *= cmask
    joint_parts = [np.array([[r[j] for r in ex] for ex in joint])
                   for j in range(3)]  # each [B, N, Q + C]
    n = len(ids)
    return dict(
        query_inputs=q_inputs,
        candidate_inputs=BertInputs(tf.constant(cand, tf.int32), tf.constant(cmask),
                                    tf.constant(cseg, tf.int32)),
        joint_inputs=BertInputs(*[tf.constant(p, tf.int32) for p in joint_parts]),
        mlm_targets=tf.constant(self.attrs[ids, 0][:, None], tf.int32),
        mlm_positions=tf.constant(np.full([n, 1], 3), tf.int32),
        mlm_mask=tf.ones([n, 1], tf.int32),
        candidate_labels=tf.zeros([n, n_cand], tf.float32),
        export_timestamp=tf.zeros([n], tf.int32))

  def train_realm(self) -> Dict[str, float]:
    """REALM steps on R1 questions; returns the last step's loss and retrieval utility."""
    s = self.s
    train_step = realm_steps.make_train_step(
        self.model, optimizer_lib.create_optimizer(self.config))
    t0 = time.time()
    for i in range(s.realm_steps):
      if i % s.refresh_every == 0:
        emb = self.doc_embeddings()
      out = train_step(self._features(
          self.rng.choice(s.num_subjects, s.batch_size, replace=False), emb))
      if (i + 1) % 25 == 0:
        self._log(f"REALM step {i + 1}: loss {float(out['loss']):.3f} utility "
                  f"{float(out['retrieval_utility']):.3f} recall@{s.k} held-out "
                  f"{self.recall(R2):.3f} ({time.time() - t0:.0f}s)")
    return dict(loss=float(out["loss"]), retrieval_utility=float(out["retrieval_utility"]))

  def run(self) -> Dict[str, object]:
    """All three stages; the held-out (R2) and training (R1) recall@k at the REALM start
    and end, the ICT steps taken and the last REALM step's loss and utility."""
    self.warm_start_reader()
    ict_steps = self.warm_start_retriever()
    emb = self.doc_embeddings()
    start = dict(held_out=self.recall(R2, emb), train=self.recall(R1, emb))
    last = self.train_realm()
    emb = self.doc_embeddings()
    end = dict(held_out=self.recall(R2, emb), train=self.recall(R1, emb))
    return dict(start=start, end=end, ict_steps=ict_steps, **last)
