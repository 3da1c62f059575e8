"""The ORQA model: titled reader inputs, loss wiring vs NumPy, 2-replica step."""

import numpy as np
import pytest
import tensorflow as tf

from orqa.data import answer_spans
from orqa.data import titled_reader_features
from orqa.models import orqa_model
from orqa.models import towers
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf import tf_hub_modules as tf_hub
from tests.conftest import TINY_VOCAB
from tests import modeling_testing
from tests import strategy_utils

TITLES = ["paris", "eiffel tower", "new york", "nile", "cafe", "france"]
BODIES = ["paris is a city in france .", "the eiffel tower was built in 1889 in paris .",
          "new york is a city .", "the river nile .", "cafe au lait is a cafe .",
          "france is a city , the nile is a river , paris is a city ."]
QUESTIONS = ["the eiffel tower was built in", "the river of", "a city", "the tower"]
ANSWERS = [["1889"], ["nile"], ["new york", "paris"], ["lait", "unknown"]]


def _save_embedder_module(path, tokenizer):
  config = modeling_testing.tiny_bert_config(vocab_size=len(TINY_VOCAB), hidden_size=32,
                                          hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0)
  embedder = ProjectedEmbedder(config, projection_size=8, dropout_rate=0.0).build_variables()
  tf_hub.save_embedder(embedder, tokenizer, path, query_seq_len=8)
  return path


def _build_model(module_path, vocab_path, **config_overrides):
  tower, retriever_tokenizer = towers.load_embedder_module(module_path)
  reader, reader_tokenizer = towers.build_reader(towers.BertSource(
      preset="tiny", vocab_path=vocab_path, dropout_rate=0.0))
  block_emb = np.random.default_rng(0).normal(size=[len(BODIES), 8]).astype(np.float32)
  index = orqa_model.BlockIndex(block_emb, TITLES, BODIES)
  config = orqa_model.OrqaConfig(retrieval_beam_size=6, reader_beam_size=3,
                                 reader_seq_len=24, query_seq_len=8, span_hidden_size=16,
                                 max_span_width=3, **config_overrides)
  return orqa_model.OrqaModel(tower, retriever_tokenizer, reader, reader_tokenizer, index,
                              config).build_variables()


@pytest.fixture(scope="module")
def embedder_module(tmp_path_factory, tiny_tokenizer):
  path = str(tmp_path_factory.mktemp("orqa") / "embedder")
  return _save_embedder_module(path, tiny_tokenizer)


@pytest.fixture(scope="module")
def model(embedder_module, tiny_vocab_path):
  return _build_model(embedder_module, tiny_vocab_path)


def _ids(tokenizer, text):
  return tokenizer.tokenize_ids([text])[0].numpy().tolist()


def test_titled_reader_inputs_layout(tiny_tokenizer):
  tok = tiny_tokenizer
  features = titled_reader_features.featurize(
      ["the eiffel tower"], [["paris", "nile"]], [["paris is a city in france .",
                                                  "the river nile ."]],
      [["france", "paris"]], tok, max_sequence_len=14)
  inputs = features.inputs
  question = _ids(tok, "the eiffel tower")
  cls, sep = tok.cls_id, tok.sep_id
  block0 = _ids(tok, "paris is a city in france .")
  head = [cls] + question + [sep] + _ids(tok, "paris") + [sep]  # 7 positions
  expected0 = head + block0[:14 - len(head) - 1] + [sep]  # block truncated to fit [SEP]
  assert inputs.token_ids.numpy()[0, 0].tolist() == expected0
  assert inputs.segment_ids.numpy()[0, 0].tolist() == [0] * 5 + [1] * 9
  assert inputs.block_mask.numpy()[0, 0].tolist() == [0] * 7 + [1] * 6 + [0]
  assert inputs.token_map.numpy()[0, 0].tolist() == [-1] * 7 + list(range(6)) + [-1]
  # Gold spans only in the block: "paris" at 7 (not in the title), "france" at 12.
  gold = sorted(zip(inputs.gold_starts.numpy()[0, 0].tolist(),
                    inputs.gold_ends.numpy()[0, 0].tolist()))
  assert [g for g in gold if g[0] >= 0] == [(7, 7), (12, 12)]
  block1 = _ids(tok, "the river nile .")
  expected1 = [cls] + question + [sep] + _ids(tok, "nile") + [sep] + block1 + [sep]
  assert inputs.token_ids.numpy()[0, 1].tolist() == expected1 + [0] * (14 - len(expected1))
  assert (inputs.gold_starts.numpy()[0, 1] == -1).all()
  assert features.orig_tokens[0, 1].numpy().tolist() == [b"the", b"river", b"nile", b"."]
  # Without titles: the original layout.
  plain = titled_reader_features.featurize(
      ["the eiffel tower"], [["paris"]], [["paris is a city ."]], None, tok,
      max_sequence_len=14, include_titles=False)
  assert plain.inputs.token_ids.numpy()[0, 0].tolist()[:5] == (
      [cls] + question + [sep])[:5]
  assert plain.inputs.token_ids.numpy()[0, 0].tolist()[5] == _ids(tok, "paris")[0]


def _marginal(logits, correct):
  logits = logits.astype(np.float64)
  def lse(x):
    m = x.max(-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]
  loss = lse(logits) - lse(logits + (1 - correct) * -10000.0)
  return loss * correct.any(-1)


def test_retriever_and_reader_losses_wiring(model, tiny_tokenizer):
  answers = tf.ragged.constant(ANSWERS).to_tensor("")
  out = model(tf.constant(QUESTIONS), answers, training=False, with_text=True)
  # Retrieval: exact top-k of q . block_emb, logits are those dot products.
  question_emb = model.embed_questions(tf.constant(QUESTIONS)).numpy()
  scores = question_emb @ model.index.block_emb.numpy().T  # [4, 6]
  block_ids = out["block_ids"].numpy()
  np.testing.assert_array_equal(block_ids, np.argsort(-scores, axis=1, kind="stable"))
  np.testing.assert_allclose(out["retriever_logits"].numpy(),
                             np.take_along_axis(scores, block_ids, 1), rtol=1e-5, atol=1e-5)
  # has_answer on the retrieved block texts; the retriever loss over the beam.
  correct = np.array([[any(a in BODIES[b] for a in answers_) for b in row]
                      for row, answers_ in zip(block_ids, ANSWERS)])
  np.testing.assert_array_equal(out["retriever_correct"].numpy(), correct)
  np.testing.assert_allclose(out["retriever_loss"].numpy(),
                             _marginal(out["retriever_logits"].numpy(), correct), rtol=1e-4)
  # Reader: marginal over all spans of the 3 read blocks; gold spans are the answers.
  reader_logits = out["reader_logits"].numpy()  # [4, 3, S]
  reader_correct = out["reader_correct"].numpy()
  np.testing.assert_allclose(
      out["reader_loss"].numpy(),
      _marginal(reader_logits.reshape(4, -1), reader_correct.reshape(4, -1)), rtol=1e-4)
  np.testing.assert_allclose(out["loss"].numpy(),
                             out["retriever_loss"].numpy() + out["reader_loss"].numpy())
  read_ids = block_ids[:, :3]
  features = titled_reader_features.featurize(
      QUESTIONS, np.array(TITLES)[read_ids], np.array(BODIES)[read_ids], answers,
      tiny_tokenizer, 24)
  starts, ends, span_mask = answer_spans.span_candidates(features.inputs.block_mask, 3)
  token_ids = features.inputs.token_ids.numpy()
  answer_ids = [[_ids(tiny_tokenizer, a) for a in answers_] for answers_ in ANSWERS]
  num_gold = 0
  for b, r, s in zip(*np.nonzero(reader_correct)):
    span = token_ids[b, r, starts[s]:ends[s] + 1].tolist()
    assert span in answer_ids[b]
    num_gold += 1
  for b in range(4):  # Every answer occurrence in a read block is a gold span.
    for r, block in enumerate(read_ids[b]):
      expected = sum(BODIES[block].split().count(a) for a in ANSWERS[b] if " " not in a)
      expected += sum(BODIES[block].count(a) for a in ANSWERS[b] if " " in a)
      assert reader_correct[b, r].sum() == expected
  assert num_gold > 0 and reader_correct[3].sum() == (
      sum(BODIES[i].split().count("lait") for i in read_ids[3]))
  # Span scores: outside the block -10000; the block's retriever logit is added.
  assert (reader_logits[span_mask.numpy() == 0] < -5000).all()
  scorer = model.span_scorer(tf.reshape(model.reader(dict(
      input_word_ids=tf.reshape(features.inputs.token_ids, [-1, 24]),
      input_mask=tf.reshape(features.inputs.mask, [-1, 24]),
      input_type_ids=tf.reshape(features.inputs.segment_ids, [-1, 24])))["sequence_output"],
      [12, 24, -1]), starts, ends).numpy().reshape(4, 3, -1)
  inside = span_mask.numpy() == 1
  expected_logits = scorer + out["retriever_logits"].numpy()[:, :3, None]
  np.testing.assert_allclose(reader_logits[inside], expected_logits[inside], rtol=1e-4,
                             atol=1e-3)
  # The prediction is the global argmax; exact_match is reader_correct there.
  flat = reader_logits.reshape(4, -1).argmax(-1)
  np.testing.assert_array_equal(out["predicted_block"].numpy(), flat // reader_logits.shape[2])
  np.testing.assert_array_equal(out["exact_match"].numpy(),
                                reader_correct.reshape(4, -1)[np.arange(4), flat])
  assert out["answer"].dtype == tf.string and out["answer"].shape == (4,)


def _mean_loss_gradients(model):
  """(model outputs, trainable variables, gradients of the mean loss) for QUESTIONS on one
  device."""
  answers = tf.ragged.constant(ANSWERS).to_tensor("")
  with tf.GradientTape() as tape:
    out = model(tf.constant(QUESTIONS), answers, training=True)
    loss = tf.reduce_mean(out["loss"])
  variables = model.trainable_variables
  return out, variables, tape.gradient(loss, variables)


def test_gradients_reach_question_tower_reader_and_span_scorer(model):
  _, variables, grads = _mean_loss_gradients(model)
  norms = {v.name: float(tf.norm(tf.convert_to_tensor(g))) for g, v in zip(grads, variables)
           if g is not None}
  tower = [v.name for v in model.question_tower.trainable_variables]
  reader = [v.name for v in model.reader.trainable_variables]
  scorer = [v.name for v in model.span_scorer.trainable_variables]
  assert any(norms.get(n, 0) > 0 for n in tower if "projection" in n)
  assert any(norms.get(n, 0) > 0 for n in reader if "word_embeddings" in n)
  assert all(norms.get(n, 0) > 0 for n in scorer)
  # The block index is frozen and outside the model.
  assert all("block_emb" not in v.name for v in variables)


def test_one_batched_finetune_step_on_two_replicas_equals_one_device(model, embedder_module,
                                                                      tmp_path,
                                                                      tiny_vocab_path):
  # Reference: one SGD step on one device, from the gradient of the mean loss.
  out, variables, grads = _mean_loss_gradients(model)
  expected = [v.numpy() - 0.1 * (0 if g is None else tf.convert_to_tensor(g).numpy())
              for g, v in zip(grads, variables)]
  weights = str(tmp_path / "weights.npz")
  np.savez(weights, *(model.reader.get_weights() + model.span_scorer.get_weights()))
  num_reader = len(model.reader.get_weights())
  module = embedder_module
  # The same model on two replicas (a 2-question shard each), one SGD step.
  result = strategy_utils.run_with_logical_cpus(f"""
import numpy as np
import tf_keras
from orqa.experiments import finetune_steps
from tests import test_orqa_model as t

strategy = mirrored_strategy()
arrays = np.load({weights!r})
arrays = [arrays[f"arr_{{i}}"] for i in range(len(arrays.files))]
with strategy.scope():
  model = t._build_model({module!r}, {tiny_vocab_path!r})
  model.reader.set_weights(arrays[:{num_reader}])
  model.span_scorer.set_weights(arrays[{num_reader}:])
  optimizer = tf_keras.optimizers.SGD(0.1)
step = finetune_steps.make_train_step(model, optimizer, 4, strategy)
batch = dict(question=tf.constant(t.QUESTIONS),
             answers=tf.ragged.constant(t.ANSWERS).to_tensor(""))
batch = next(iter(finetune_steps.distribute(strategy, tf.data.Dataset.from_tensors(batch))))
sums = {{k: float(v) for k, v in step(batch).items()}}
np.savez({str(tmp_path / "updated.npz")!r}, *[v.numpy() for v in model.trainable_variables])
emit(sums)
""")
  assert result["num_questions"] == 4
  np.testing.assert_allclose(result["loss"] / 4, float(tf.reduce_mean(out["loss"])), rtol=1e-4)
  np.testing.assert_allclose(result["exact_match"], float(np.sum(out["exact_match"])))
  updated = np.load(str(tmp_path / "updated.npz"))
  updated = [updated[f"arr_{i}"] for i in range(len(updated.files))]
  assert len(updated) == len(expected)
  for got, want, variable in zip(updated, expected, variables):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=variable.name)
  changed = sum(not np.allclose(e, v.numpy()) for e, v in zip(expected, variables))
  assert changed > len(variables) // 2


def test_recomputed_and_compiled_reader_give_the_same_values(model, embedder_module,
                                                             tiny_vocab_path):
  _, variables, grads = _mean_loss_gradients(model)
  expected = {v.name: g for g, v in zip(grads, variables)}
  for overrides in (dict(recompute_activations=True, jit_compile=False),
                    dict(recompute_activations=False, jit_compile=True)):
    other = _build_model(embedder_module, tiny_vocab_path, **overrides)
    other.reader.set_weights(model.reader.get_weights())
    other.span_scorer.set_weights(model.span_scorer.get_weights())
    if overrides["jit_compile"]:  # XLA: the inference outputs (compiling a backward
      # pass too would only slow the suite down).
      questions = tf.constant(QUESTIONS)
      np.testing.assert_allclose(other(questions, training=False)["reader_logits"].numpy(),
                                 model(questions, training=False)["reader_logits"].numpy(),
                                 rtol=1e-5, atol=1e-4)
      continue
    _, other_variables, other_grads = _mean_loss_gradients(other)
    assert [v.name for v in other_variables] == list(expected)
    for g, v in zip(other_grads, other_variables):
      if g is None:
        assert expected[v.name] is None, v.name
        continue
      np.testing.assert_allclose(tf.convert_to_tensor(g).numpy(),
                                 tf.convert_to_tensor(expected[v.name]).numpy(),
                                 rtol=1e-5, atol=1e-6, err_msg=v.name)
  # A SavedModel module (a hub.KerasLayer) cannot be recomputed layer by layer.
  tower, tokenizer = towers.load_embedder_module(embedder_module)
  with pytest.raises(ValueError, match="recompute_activations needs a Keras BERT reader"):
    orqa_model.OrqaModel(tower, tokenizer, tower, tokenizer, model.index,
                         orqa_model.OrqaConfig(recompute_activations=True))
