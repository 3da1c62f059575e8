"""REALM Keras models and objective (`language/realm/model.py`), on tf-models-official.

* `config`: `BertConfig` (encoder presets) and `RealmConfig` (model_dir/config.json).
* `encoders`: `BertEncoderV2` from a `BertConfig`.
* `embedder`: `ProjectedEmbedder`, the retriever tower (BERT -> Dense(128) -> LayerNorm).
* `mlm_head`, `reader`: `KnowledgeAugmentedEncoder`, BERT with its tied MLM head.
* `realm_model`: `RealmModel`, the loss (per-token marginal over candidates) and metrics.
* `optimizer`: BERT's AdamW without bias correction and its warmup/decay schedule.
* `training`: train/eval steps under any `tf.distribute` strategy.
* `hf_bert`, `weights`: loading Hugging Face, TF1 and TF2 BERT weights.
* `architecture`: the architecture recorded with weights (activation, epsilons, sizes),
  checked by every loader and used to build models for them.
"""

from realm_tf.modeling.config import PRESETS, BertConfig, RealmConfig, default_num_warmup_steps
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.modeling.encoders import build_bert_encoder
from realm_tf.modeling.mlm_head import MaskedLMHead
from realm_tf.modeling.optimizer import (BertAdamWeightDecay, BertLearningRateSchedule,
                                         create_optimizer)
from realm_tf.modeling.reader import KnowledgeAugmentedEncoder
from realm_tf.modeling.realm_model import (RealmModel, gold_log_probs_from_logits,
                                           off_policy_delay_mins, realm_objective)
from realm_tf.modeling.realm_steps import make_eval_step, make_train_step
from realm_tf.modeling.weights import (LoadReport, WeightsMismatchError, load_bert_weights,
                                       load_pretrained_realm)
