"""A reader initialization that can already copy from the retrieved passage.

REALM's retriever learns only from a reader whose masked-LM predictions improve when the
right document is retrieved. The original starts the reader from pre-trained BERT, which
reads from the start. A small random reader trained on a CPU never learns to read within
the embedded default's budget (docs/BENCHMARKS.md, "Does it learn?"), so the retriever
gets no signal. `copy_circuit_weights` constructs, without training, weights for a
BERT of at least 2 layers and 2 heads that copy a masked token from a place in the joint
input `[CLS] query [SEP] passage [SEP]` whose neighbours match the mask's neighbours: an
induction head (Olsson et al., 2022, "In-context learning and induction heads") built by
hand.

The residual stream (hidden size H, post-LayerNorm BERT) is split into subspaces:

* TOKEN (3H/8 dims): each word piece's code, random zero-mean unit vectors; [PAD] and
  [MASK] are 0, so a mask carries no token.
* CONTEXT (3H/8 dims): written by layer 0, the previous token's code plus a rotation of
  the next token's code.
* POSITION (the rest but 2): sinusoids of random frequencies, the last 2 dims making each
  position row sum to 0 (with zero-mean codes every embedding has mean 0, so the
  embedding LayerNorm only rescales).

Layer 0, head 0 attends from each position to the one before it (its query is the
position code rotated back by one step), head 1 to the one after; both write the token
code they find into CONTEXT. Layer 1, head 0 attends from each position to the positions
whose CONTEXT matches its own and writes their TOKEN code into TOKEN. The MLM head's
transform keeps TOKEN, and the tied output embeddings turn it into logits. All
feed-forward blocks, further layers and heads are 0 (the residual passes through), type
embeddings are 0, LayerNorms are identity-initialized. Training then starts from a reader
that reads, as the original's did.
"""

from typing import Dict

import numpy as np

from realm_tf.modeling import weights
from realm_tf.modeling.config import BertConfig

# Scales of the constructed circuit (the attention sharpness of the shift heads and of
# the matching head, and the gains of what they write). Chosen so that the reader copies
# ~90% of masked random tokens at the embedded default's lengths (tests/ and
# bench/reader_copy_probe.py --copy_circuit measure it).
SHIFT_SHARPNESS = 4.0
MATCH_SHARPNESS = 8.0
CONTEXT_GAIN = 1.0
COPY_GAIN = 2.0
MLM_TRANSFORM_GAIN = 1.0
CONFIDENCE_BIAS = 0.3
# Embeddings are scaled up (the embedding LayerNorm undoes it) and the tied output logits
# scaled back down by the MLM LayerNorm, so that an optimizer's first steps (Adam moves
# every weight by ~ the learning rate) do not scramble the token codes.
EMBEDDING_SCALE = 10.0
_PAD_ID = 0


def _layout(config: BertConfig):
  """(token, context, position) index arrays of the residual stream, and head size."""
  hidden, heads = config.hidden_size, config.num_attention_heads
  head_size = hidden // heads
  width = 3 * hidden // 8
  num_freqs = (hidden - 2 * width - 2) // 2
  if (config.num_hidden_layers < 2 or heads < 2 or num_freqs < 4
      or head_size < max(width, 2 * num_freqs)):
    raise ValueError(
        f"A copy circuit needs >= 2 layers, >= 2 heads, and heads of >= 3/8 of the hidden "
        f"size; got {config.num_hidden_layers} layers of {heads} heads, hidden size "
        f"{hidden}.")
  token = np.arange(width)
  context = np.arange(width, 2 * width)
  position = np.arange(2 * width, 2 * width + 2 * num_freqs)
  return token, context, position, head_size


def _zero_mean_orthogonal(rng, width: int) -> np.ndarray:
  """A random rotation [width, width] that maps zero-mean vectors to zero-mean vectors."""
  basis = np.linalg.qr(np.concatenate(
      [np.ones([width, 1]), rng.standard_normal([width, width - 1])], 1))[0][:, 1:]
  rotation = np.linalg.qr(rng.standard_normal([width - 1, width - 1]))[0]
  return basis @ rotation @ basis.T


def _shift(frequencies: np.ndarray, offset: int) -> np.ndarray:
  """[2F, 2F] map of the position code at i to the code at i + offset."""
  out = np.zeros([2 * len(frequencies)] * 2)
  for k, w in enumerate(frequencies):
    c, s = np.cos(w * offset), np.sin(w * offset)
    # (sin wi, cos wi) -> (sin w(i+o), cos w(i+o)); row vector times matrix.
    out[2 * k:2 * k + 2, 2 * k:2 * k + 2] = [[c, -s], [s, c]]
  return out


def copy_circuit_weights(config: BertConfig, special_ids=(), seed: int = 0
                         ) -> Dict[str, np.ndarray]:
  """Canonical (TF1 BERT named, [in, out] kernels) weights of a copying reader.

  Args:
    config: the reader's BertConfig (>= 2 layers, >= 2 heads, head size >= 3/8 hidden).
    special_ids: ids whose token code is 0 besides [PAD] (id 0): the [MASK] id.
    seed: seed of the random codes, frequencies and rotation.

  Returns:
    A dict for `realm_tf.modeling.weights.assign_canonical`, MLM head included.
  """
  token, context, position, head_size = _layout(config)
  hidden, vocab = config.hidden_size, config.vocab_size
  rng = np.random.default_rng(seed)
  width, num_freqs = len(token), len(position) // 2
  f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731

  codes = rng.standard_normal([vocab, width])
  codes -= codes.mean(1, keepdims=True)
  codes /= np.linalg.norm(codes, axis=1, keepdims=True)
  codes[[_PAD_ID, *special_ids]] = 0.0
  words = np.zeros([vocab, hidden])
  words[:, token] = codes * EMBEDDING_SCALE

  frequencies = rng.uniform(0.3, np.pi - 0.1, num_freqs)
  angles = np.arange(config.max_position_embeddings)[:, None] * frequencies  # [P, F]
  sinusoids = np.stack([np.sin(angles), np.cos(angles)], -1).reshape(len(angles), -1)
  positions = np.zeros([len(angles), hidden])
  positions[:, position] = sinusoids * EMBEDDING_SCALE
  positions[:, -2:] = -positions.sum(1, keepdims=True) / 2  # each row sums to 0

  ones, zeros = np.ones([hidden]), np.zeros([hidden])
  weights = {
      "embeddings/word_embeddings": words,
      "embeddings/position_embeddings": positions,
      "embeddings/token_type_embeddings": np.zeros([config.type_vocab_size, hidden]),
      "embeddings/LayerNorm/gamma": ones, "embeddings/LayerNorm/beta": zeros,
      "pooler/dense/kernel": np.zeros([hidden, hidden]), "pooler/dense/bias": zeros,
      "cls/predictions/transform/dense/kernel": np.zeros([hidden, hidden]),
      "cls/predictions/transform/dense/bias": zeros,
      "cls/predictions/transform/LayerNorm/gamma": ones / EMBEDDING_SCALE,
      "cls/predictions/transform/LayerNorm/beta": zeros,
      "cls/predictions/output_bias": np.zeros([vocab]),
  }
  weights["cls/predictions/transform/dense/kernel"][token, token] = MLM_TRANSFORM_GAIN
  # A constant in the last dim sets the scale the transform's LayerNorm divides by, so a
  # weak copy (no match in the passage) gives flat logits instead of normalized noise.
  # Word rows are 0 there and the codes zero-mean: the logits do not see it otherwise.
  weights["cls/predictions/transform/dense/bias"] = np.eye(hidden)[-1] * CONFIDENCE_BIAS

  qkv = {}
  for layer in range(config.num_hidden_layers):
    prefix = f"encoder/layer_{layer}/"
    for part in ("query", "key", "value"):
      qkv[part] = np.zeros([hidden, hidden])
      weights[prefix + f"attention/self/{part}/bias"] = zeros
    out = np.zeros([hidden, hidden])
    head = lambda h, n: h * head_size + np.arange(n)  # noqa: E731  (head h's first n dims)
    if layer == 0:  # heads 0 / 1: the previous / next token's code into CONTEXT
      rotation = _zero_mean_orthogonal(rng, width)
      for h, offset, write in ((0, -1, np.eye(width)), (1, 1, rotation)):
        dims = head(h, 2 * num_freqs)
        qkv["query"][np.ix_(position, dims)] = SHIFT_SHARPNESS * _shift(frequencies, offset)
        qkv["key"][position, dims] = 1.0
        qkv["value"][token, head(h, width)] = 1.0
        out[np.ix_(head(h, width), context)] = CONTEXT_GAIN * write
    elif layer == 1:  # head 0: the TOKEN code of matching CONTEXTs into TOKEN
      dims = head(0, width)
      qkv["query"][context, dims] = MATCH_SHARPNESS
      qkv["key"][context, dims] = 1.0
      qkv["value"][token, dims] = 1.0
      out[dims, token] = COPY_GAIN
    for part in qkv:
      weights[prefix + f"attention/self/{part}/kernel"] = qkv[part]
    weights[prefix + "attention/output/dense/kernel"] = out
    weights[prefix + "attention/output/dense/bias"] = zeros
    weights[prefix + "intermediate/dense/kernel"] = np.zeros([hidden, config.intermediate_size])
    weights[prefix + "intermediate/dense/bias"] = np.zeros([config.intermediate_size])
    weights[prefix + "output/dense/kernel"] = np.zeros([config.intermediate_size, hidden])
    weights[prefix + "output/dense/bias"] = zeros
    for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
      weights[prefix + norm + "/gamma"], weights[prefix + norm + "/beta"] = ones, zeros
  return {name: f32(value) for name, value in weights.items()}


def initialize_reader(reader, mask_id: int, seed: int = 0):
  """Assigns `copy_circuit_weights` to a `KnowledgeAugmentedEncoder` (encoder and MLM
  head); `mask_id` is the vocabulary's [MASK] id."""
  reader.build_variables()
  config = reader.encoder_config
  return weights.assign_canonical(reader.encoder, config,
                                  copy_circuit_weights(config, [mask_id], seed),
                                  "copy circuit", reader.masked_lm)
