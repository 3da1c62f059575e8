"""The `python -m orqa.ict` job as a library: `IctJob` and `run(job, strategy)`.

Trains one `ProjectedEmbedder` with the shared ICT job (`realm_tf.ict.training`, on Orbit),
exports it as `model_dir/export/tf_hub/<ts>/embedder` and, when `retrieval_corpus_path` is
set, embeds that corpus with it (the REALM refresher, once) and commits
`export/encoded/<ts>/` (block_emb + searcher): the `--retriever_module_path` of
`orqa.finetune` and the starting index of REALM pre-training. A notebook can build an
`IctJob` and call `run` as the entry point does.
"""

import dataclasses
import os
from typing import Optional, Tuple

from absl import logging
import tensorflow as tf

from orqa.models import towers
from realm_tf import errors
from realm_tf.ict import training as ict_training
from realm_tf.retrieval import export_dirs
from realm_tf.retrieval import refresher as refresher_lib
from realm_tf.retrieval import searchers
from realm_tf import tf_hub_modules as tf_hub

EXPORT_PREFIX = "tf_hub"
MODULE_NAME = "embedder"


@dataclasses.dataclass
class IctJob:
  """One ICT run (defaults: the original's `ict_experiment` flags).

  Attributes:
    model_dir: checkpoints, logs and exports go here.
    examples_path: glob of ICT block examples (`orqa.build_ict_examples`).
    ict: the training hyperparameters (`IctConfig`, saved as `ict_config.json`).
    bert: the initial BERT of the tower (weights and/or preset size).
    eval_examples_path: glob of held-out blocks (None: every `eval_holdout_every`-th
      block of `examples_path`, not trained on).
    projection_size, projection_dropout_rate: D (128) and the dropout on the projected
      embedding in training (0.1).
    exports_to_keep: tf_hub exports kept (1, as the original).
    retrieval_corpus_path: a retrieval corpus to embed after training (None: none).
    searcher, searcher_num_neighbors, encode_batch_size: the encoded index's searcher,
      its default k (capped at the number of blocks) and the embedding batch.
  """
  model_dir: str
  examples_path: str
  ict: ict_training.IctConfig
  bert: towers.BertSource
  eval_examples_path: Optional[str] = None
  eval_holdout_every: int = 10
  projection_size: int = 128
  projection_dropout_rate: float = 0.1
  exports_to_keep: int = 1
  retrieval_corpus_path: Optional[str] = None
  searcher: str = searchers.SCANN
  searcher_num_neighbors: int = 5000
  encode_batch_size: int = 256


def export_embedder(embedder, tokenizer, model_dir: str, step: int,
                    query_seq_len: int, exports_to_keep: int = 1) -> str:
  """Writes `model_dir/export/tf_hub/<ts>/embedder` + global_step.txt atomically."""
  base = export_dirs.export_base(model_dir, EXPORT_PREFIX)
  final = os.path.join(base, str(export_dirs.new_timestamp(base)))
  staging = export_dirs.temp_dir_for(final)
  tf_hub.save_embedder(embedder, tokenizer, os.path.join(staging, MODULE_NAME),
                       query_seq_len)
  export_dirs.write_global_step(staging, step)
  export_dirs.commit_directory(staging, final)
  if exports_to_keep:
    export_dirs.clean_exports(model_dir, EXPORT_PREFIX, exports_to_keep)
  logging.info("Exported the embedder module to %s.", os.path.join(final, MODULE_NAME))
  return final


def encode_export(model_dir: str, retrieval_corpus: str, tokenizer, block_seq_len: int,
                  searcher: str, num_neighbors: int, batch_size: int,
                  strategy=None) -> str:
  """Embeds the corpus with the newest tf_hub export (REALM's refresher, once) and
  commits `export/encoded/<ts>/`; returns that directory."""
  options = refresher_lib.RefreshOptions(
      candidate_seq_len=block_seq_len, vocab_path=tokenizer.vocab_path,
      do_lower_case=tokenizer.do_lower_case, batch_size=batch_size, searcher=searcher,
      num_neighbors=num_neighbors)
  refresher = refresher_lib.Refresher(model_dir, retrieval_corpus, options, strategy=strategy)
  options.num_neighbors = min(num_neighbors, refresher.num_blocks)
  with refresher.lock(wait_secs=0):  # A refresh job on this model_dir would race.
    encoded = refresher.refresh_once()
  if encoded is None:
    raise RuntimeError(f"No tf_hub export in {model_dir} newer than its encoded exports.")
  logging.info("Retriever module with its index: %s", os.path.join(encoded, MODULE_NAME))
  return encoded


def _example_paths(job: IctJob) -> Tuple[list, list]:
  paths = sorted(tf.io.gfile.glob(job.examples_path))
  eval_paths = sorted(tf.io.gfile.glob(job.eval_examples_path)) if (
      job.eval_examples_path) else []
  if not paths or (job.eval_examples_path and not eval_paths):
    raise FileNotFoundError(f"No ICT examples match {job.examples_path!r} / "
                            f"{job.eval_examples_path!r}.")
  return paths, eval_paths


def run(job: IctJob, strategy: Optional[tf.distribute.Strategy] = None
        ) -> Tuple[str, Optional[str]]:
  """Trains, exports and (with `retrieval_corpus_path`) encodes; returns the tf_hub
  export directory and the encoded one (None without a corpus).

  Raises:
    errors.ArgumentError: a setting that cannot run.
    FileNotFoundError: no examples match a glob.
  """
  if job.exports_to_keep < 0:
    raise errors.ArgumentError(f"exports_to_keep must be >= 0, got {job.exports_to_keep}.")
  strategy = strategy or tf.distribute.get_strategy()
  paths, eval_paths = _example_paths(job)
  with strategy.scope():
    embedder, tokenizer = towers.build_embedder(job.bert, job.projection_size,
                                                job.projection_dropout_rate)
  ict_training.train(embedder, tokenizer, job.ict, job.model_dir, paths, eval_paths,
                     strategy, holdout_every=0 if eval_paths else job.eval_holdout_every)
  export = export_embedder(embedder, tokenizer, job.model_dir, job.ict.num_train_steps,
                           job.ict.query_seq_len, job.exports_to_keep)
  encoded = None
  if job.retrieval_corpus_path:
    encoded = encode_export(job.model_dir, job.retrieval_corpus_path, tokenizer,
                            job.ict.block_seq_len, job.searcher, job.searcher_num_neighbors,
                            job.encode_batch_size, strategy)
  return export, encoded
