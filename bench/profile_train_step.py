"""Profile of one REALM or ORQA train step: time by component and by op type, with FLOPs.

Components are timed one by one, each as its own `tf.function` on the step's shapes
(forward alone, then forward and backward; the backward time is the difference), next to
the whole train step; then one whole step runs under the TensorFlow profiler, whose op
times are summed by op type, by direction (forward, backward = `gradient_tape/`,
optimizer) and by the part of the transformer layers they belong to. FLOPs of every
component come from the shapes (`realm_tf.modeling.flops`), so each component also gets
its achieved GFLOP/s as a share of the float32 matmul rate measured in the same process.

  python bench/profile_train_step.py --step=realm --preset=minilm --batch_size=4 \
      --output=/tmp/profile_realm.json
  python bench/profile_train_step.py --step=orqa --preset=minilm --batch_size=4 \
      --output=/tmp/profile_orqa.json

REALM components: query tower, candidate (document) tower, reader encoder, MLM head with
the loss, optimizer update. ORQA components: question tower, retrieval (exact search over
the index, has_answer over the beam), reader featurization (string ops), reader encoder,
span scorer with the losses, optimizer update. The REALM input pipeline is measured by
`bench/pretrain_generation.py` (live vs cached batches).
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import realm_tf  # noqa: E402,F401  (selects Keras 2 and oneDNN before TensorFlow loads)
import tensorflow as tf  # noqa: E402

import step_bench  # noqa: E402
from realm_tf.modeling import flops as flops_lib  # noqa: E402
from realm_tf.modeling import recompute  # noqa: E402
from realm_tf.modeling.embedder import unpack_inputs  # noqa: E402
from realm_tf.modeling.realm_model import (flatten_candidates,  # noqa: E402
                                           gold_log_probs_from_logits, realm_objective)


def timed(fn, repeats: int) -> float:
  """Seconds per call of `fn` (a traced function), after one untimed call."""
  tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, fn())
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn()
  tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
  return (time.perf_counter() - start) / repeats


def forward_and_backward(forward, variables, sources=()):
  """(forward fn, forward+backward fn) as tf.functions; the loss is the sum of outputs."""
  forward_fn = tf.function(lambda: tf.nest.map_structure(tf.reduce_sum, forward()))

  @tf.function
  def both():
    with tf.GradientTape() as tape:
      tape.watch(list(sources))
      loss = tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32))
                       for t in tf.nest.flatten(forward())])
    grads = tape.gradient(loss, list(variables) + list(sources))
    return [tf.reduce_sum(tf.cast(tf.convert_to_tensor(g), tf.float32))
            for g in grads if g is not None]

  return forward_fn, both


def component_table(components, flops, limit):
  """Rows: forward, backward and total seconds, FLOPs and share of the matmul limit."""
  rows = {}
  for name, (fwd_s, both_s) in components.items():
    row = dict(forward_s=round(fwd_s, 3))
    if both_s is not None:
      row.update(backward_s=round(both_s - fwd_s, 3), total_s=round(both_s, 3))
    total_s = both_s if both_s is not None else fwd_s
    if name in flops:
      train = flops[name] * (flops_lib.TRAINING_MULTIPLIER if both_s is not None else 1)
      row.update(gflop=round(train / 1e9, 2),
                 achieved_gflops=round(train / total_s / 1e9, 2),
                 share_of_float32_matmul=round(train / total_s / 1e9 / limit, 3))
    rows[name] = row
  return rows


def realm_scope(name: str, op_type: str) -> str:
  """direction|component|layer part|matmul or element-wise of one REALM step op."""
  direction = ("backward" if name.startswith("gradient_tape/") else
               "optimizer" if "BertAdamWeightDecay" in name or "global_norm" in name else
               "forward")
  if "/bert/cls/" in name:
    component = "mlm_head"
  elif "/bert/bert_encoder/" in name:
    component = "reader"
  elif "/embedder/" in name:
    component = "retriever_towers"
  elif name.startswith(("realm/", "gradient_tape/realm/")):
    component = "loss_and_scores"
  else:
    component = "other"
  matmul = "matmul" if op_type in step_bench.MATMUL_TYPES else "elementwise"
  return f"{direction}|{component}|{step_bench.layer_kind(name)}|{matmul}"


def profile_realm(args, logdir):
  import realm_train_step  # pylint: disable=g-import-not-at-top
  config = realm_train_step.make_config(args.preset, args.batch_size, args.recompute,
                                        "float32", False)
  model, optimizer, step, features = realm_train_step.build_step(config)
  limit = step_bench.matmul_rate(tf.float32)
  b, n = config.batch_size, config.num_candidates
  joint = flatten_candidates(features["joint_inputs"])
  positions = tf.reshape(tf.tile(features["mlm_positions"][:, None, :], [1, n, 1]),
                         [b * n, -1])
  hidden = config.bert.hidden_size
  sequence = tf.random.normal([b * n, config.query_seq_len + config.candidate_seq_len,
                               hidden])

  def reader_encoder():
    if config.recompute_activations:
      return recompute.encoder_outputs(model.reader.encoder, joint,
                                       training=True)["sequence_output"]
    return model.reader.encoder(joint, training=True)["sequence_output"]

  def mlm_and_loss():
    logits = model.reader.masked_lm(sequence, positions)  # [B*N, M, V]
    logits = tf.reshape(tf.cast(logits, tf.float32), [b, n, config.max_masks, -1])
    gold = gold_log_probs_from_logits(logits, features["mlm_targets"])
    return realm_objective(tf.zeros([b, n]), gold, features["mlm_mask"])["loss"]

  tower_vars = model.query_embedder.trainable_variables
  reader_vars = [v for v in model.reader.encoder.trainable_variables
                 if "pooler" not in v.name]
  parts = dict(
      query_tower=forward_and_backward(
          lambda: model.embed_queries(features["query_inputs"], training=True), tower_vars),
      candidate_tower=forward_and_backward(
          lambda: model.embed_candidates(features["candidate_inputs"], training=True),
          model.document_embedder.trainable_variables),
      reader=forward_and_backward(reader_encoder, reader_vars),
      mlm_head=forward_and_backward(mlm_and_loss, model.reader.masked_lm.trainable_variables,
                                    [sequence]))
  variables = model.trainable_variables
  grads = [tf.random.normal(v.shape) * 1e-3 for v in variables]
  update = tf.function(lambda: optimizer.apply_gradients(zip(grads, variables)))
  components = {}
  for name, (fwd, both) in parts.items():
    components[name] = (timed(fwd, args.repeats), timed(both, args.repeats))
    print(f"# {name}: {components[name]}", flush=True)
  components["optimizer_update"] = (timed(update, args.repeats), None)
  step_s = timed(lambda: step(features), args.repeats)
  limit = (limit + step_bench.matmul_rate(tf.float32)) / 2
  forward = flops_lib.realm_forward_flops(config, b)
  flops = dict(forward, mlm_head=forward["mlm_head"] + forward["scores"])
  total_flops = flops_lib.realm_train_flops(config, b)
  profile = step_bench.profile_op_types(lambda: float(step(features)["loss"]), logdir,
                                        realm_scope)
  return dict(step="realm", preset=args.preset, batch_size=b,
              recompute_activations=config.recompute_activations,
              shapes=realm_train_step.SHAPES, float32_matmul_gflops=round(limit, 1),
              train_step_s=round(step_s, 3),
              train_step_share_of_float32_matmul=round(total_flops / step_s / 1e9 / limit, 3),
              train_tflop=round(total_flops / 1e12, 4),
              forward_gflop={k: round(v / 1e9, 2) for k, v in forward.items()},
              components=component_table(components, flops, limit),
              profile=profile, **step_bench.device_description())


def orqa_scope(name: str, op_type: str) -> str:
  direction = ("backward" if name.startswith("gradient_tape/") else
               "optimizer" if "BertAdamWeightDecay" in name or "global_norm" in name else
               "forward")
  if "/reader/" in name or name.startswith("orqa/reader") or "/read/" in name:
    component = "reader"
  elif "question_tower" in name:
    component = "question_tower"
  elif "span_scorer" in name:
    component = "span_scorer"
  else:
    component = "other"
  matmul = "matmul" if op_type in step_bench.MATMUL_TYPES else "elementwise"
  return f"{direction}|{component}|{step_bench.layer_kind(name)}|{matmul}"


def profile_orqa(args, logdir):
  import orqa_train_step  # pylint: disable=g-import-not-at-top
  from orqa.data import titled_reader_features  # pylint: disable=g-import-not-at-top
  from orqa.ops import orqa_ops  # pylint: disable=g-import-not-at-top
  work_dir = args.work_dir or tempfile.mkdtemp(prefix="orqa_profile_")
  corpus = orqa_train_step.write_corpus(work_dir, args.num_blocks)
  one = dict(preset=args.preset, batch_size=args.batch_size, precision="float32",
             recompute=args.recompute, jit_compile=False)
  model, optimizer, step, batch, config, bert = orqa_train_step.build(one, corpus, work_dir)
  limit = step_bench.matmul_rate(tf.float32)
  questions, answers = batch["question"], batch["answers"]
  beam, num_read = config.retrieval_beam_size, config.reader_beam_size
  question_emb = model.embed_questions(questions)
  block_ids, _ = model.index.search(question_emb, beam)
  read_ids = block_ids[:, :num_read]
  features = titled_reader_features.featurize(
      questions, tf.gather(model.index.titles, read_ids),
      tf.gather(model.index.bodies, read_ids), answers, model.reader_tokenizer,
      config.reader_seq_len, include_titles=config.include_titles)
  flat = [tf.reshape(t, [-1, config.reader_seq_len]) for t in (
      features.inputs.token_ids, features.inputs.mask, features.inputs.segment_ids)]
  reader_inputs = dict(input_word_ids=flat[0], input_mask=flat[1], input_type_ids=flat[2])
  sequence = tf.random.normal([args.batch_size * num_read, config.reader_seq_len,
                               bert.hidden_size])

  def retrieval():
    ids, valid = model.index.search(question_emb, beam)
    bodies = tf.gather(model.index.bodies, ids)
    return tf.cast(orqa_ops.has_answer_batch(bodies, answers), tf.int32) + tf.cast(valid, tf.int32)

  def featurize():
    f = titled_reader_features.featurize(
        questions, tf.gather(model.index.titles, read_ids),
        tf.gather(model.index.bodies, read_ids), answers, model.reader_tokenizer,
        config.reader_seq_len, include_titles=config.include_titles)
    return f.inputs.token_ids

  def reader_encoder():
    if config.recompute_activations:
      return recompute.encoder_outputs(model.reader, reader_inputs,
                                       training=True)["sequence_output"]
    return model.reader(reader_inputs, training=True)["sequence_output"]

  from orqa.data import answer_spans  # pylint: disable=g-import-not-at-top
  starts, ends, _ = answer_spans.span_candidates(features.inputs.block_mask, config.max_span_width)

  def span_scores():
    return model.span_scorer(sequence, starts, ends)

  parts = dict(
      question_tower=forward_and_backward(
          lambda: model.embed_questions(questions, training=True),
          model.question_tower.trainable_variables),
      reader=forward_and_backward(reader_encoder, [
          v for v in model.reader.trainable_variables if "pooler" not in v.name]),
      span_scorer=forward_and_backward(span_scores, model.span_scorer.trainable_variables,
                                       [sequence]))
  variables = model.trainable_variables
  grads = [tf.random.normal(v.shape) * 1e-3 for v in variables]
  update = tf.function(lambda: optimizer.apply_gradients(zip(grads, variables)))
  components = {}
  for name, (fwd, both) in parts.items():
    components[name] = (timed(fwd, args.repeats), timed(both, args.repeats))
    print(f"# {name}: {components[name]}", flush=True)
  components["retrieval_and_labels"] = (timed(tf.function(retrieval), args.repeats), None)
  components["reader_featurization"] = (timed(tf.function(featurize), args.repeats), None)
  components["optimizer_update"] = (timed(update, args.repeats), None)
  step_s = timed(lambda: step(batch), args.repeats)
  limit = (limit + step_bench.matmul_rate(tf.float32)) / 2
  forward = orqa_train_step.forward_flops(bert, args.batch_size, len(corpus["bodies"]))
  flops = dict(forward, retrieval_and_labels=forward["retrieval"])
  total_flops = flops_lib.orqa_train_flops(forward)
  profile = step_bench.profile_op_types(lambda: float(step(batch)["loss"]), logdir,
                                        orqa_scope)
  return dict(step="orqa", preset=args.preset, batch_size=args.batch_size,
              recompute_activations=config.recompute_activations,
              shapes=orqa_train_step.SHAPES, num_blocks=len(corpus["bodies"]),
              float32_matmul_gflops=round(limit, 1), train_step_s=round(step_s, 3),
              train_step_share_of_float32_matmul=round(total_flops / step_s / 1e9 / limit, 3),
              train_tflop=round(total_flops / 1e12, 4),
              forward_gflop={k: round(v / 1e9, 2) for k, v in forward.items()},
              components=component_table(components, flops, limit),
              profile=profile, **step_bench.device_description())


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--step", choices=["realm", "orqa"], default="realm")
  parser.add_argument("--preset", default="minilm")
  parser.add_argument("--batch_size", type=int, default=4)
  parser.add_argument("--recompute", action="store_true")
  parser.add_argument("--repeats", type=int, default=1, help="Timed calls per component.")
  parser.add_argument("--num_blocks", type=int, default=6000)
  parser.add_argument("--work_dir", default=None)
  parser.add_argument("--logdir", default=None, help="Profiler output (default: temp).")
  parser.add_argument("--output", default=None)
  args = parser.parse_args()
  logdir = args.logdir or tempfile.mkdtemp(prefix="profile_")
  result = (profile_realm if args.step == "realm" else profile_orqa)(args, logdir)
  text = json.dumps(result, indent=1)
  print(text)
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
