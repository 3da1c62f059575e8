"""The retriever's ICT warm start inside a pre-training run (the REALM paper's pipeline).

REALM starts its embedder from an ICT-trained one (the original's `embedder` hub module).
`ict_warm_start` trains the model's document tower with the Inverse Cloze Task on the
pre-training corpus's own passages, training passages against held-out (eval-shard)
ones, in `model_dir/ict/` (resumable; a finished warm start is not repeated), and copies
the result into a separate query tower if there is one. Pre-training then indexes the
corpus with it (`initial_index`) and starts from it.
"""

import os
from typing import Dict, Optional, Sequence

from absl import logging
import tensorflow as tf

from realm_tf.featurization import Featurizer
from realm_tf.ict import examples as ict_examples
from realm_tf.ict import training as ict_training
from realm_tf.retrieval import answer_recall, corpus_embedding
from realm_tf.tokenization import Tokenizer

ICT_DIR = "ict"


def _build_examples(paths: Sequence[str], output_path: str, tokenizer: Tokenizer) -> None:
  if not tf.io.gfile.exists(output_path):
    counts = ict_examples.build(ict_examples.pretrain_passages(paths), output_path, tokenizer)
    logging.info("ICT examples %s: %s", output_path, counts)


def ict_warm_start(model, tokenizer: Tokenizer, featurizer: Featurizer,
                   config: ict_training.IctConfig, model_dir: str,
                   train_paths: Sequence[str], eval_paths: Sequence[str],
                   retrieval_paths: Sequence[str],
                   strategy: Optional[tf.distribute.Strategy] = None,
                   zero_shot: Optional[answer_recall.ZeroShotRecall] = None
                   ) -> Dict[str, float]:
  """Trains `model.document_embedder` with ICT; returns its last (held-out) evaluation.

  Args:
    model: the `RealmModel` (variables built under `strategy`'s scope).
    tokenizer, featurizer: the run's tokenizer and featurizer (block inputs for the index).
    config: the ICT hyperparameters.
    model_dir: the pre-training run's directory; ICT works in `model_dir/ict/`.
    train_paths, eval_paths: pre-training corpus shards (train and eval splits): their
      passages are ICT's training and held-out blocks.
    retrieval_paths: the retrieval corpus, indexed for `zero_shot` at each evaluation.
    strategy: the distribution strategy.
    zero_shot: QA questions whose zero-shot answer recall is evaluated.
  """
  ict_dir = os.path.join(model_dir, ICT_DIR)
  data_dir = os.path.join(ict_dir, "data")
  tf.io.gfile.makedirs(data_dir)
  train_examples = os.path.join(data_dir, "train.tfr.gz")
  eval_examples = os.path.join(data_dir, "eval.tfr.gz")
  _build_examples(train_paths, train_examples, tokenizer)
  _build_examples(eval_paths, eval_examples, tokenizer)
  tower = model.document_embedder

  def index_fn():
    def embed(input_ids, input_mask, segment_ids):
      return tower((input_ids, input_mask, segment_ids), training=False)
    return corpus_embedding.embed_shards(sorted(retrieval_paths), embed, featurizer, 256)

  print(f"ICT warm start of the retriever ({config.num_train_steps} steps of "
        f"{config.batch_size}) in {ict_dir}", flush=True)
  metrics = ict_training.train(tower, tokenizer, config, ict_dir, [train_examples],
                               [eval_examples], strategy, index_fn, zero_shot)
  if model.query_embedder is not tower:
    model.query_embedder.set_weights(tower.get_weights())
  return metrics
