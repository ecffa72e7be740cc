"""``python -m tf1_repro bench-inference``: what BN costs at serving, before and after to-inference.

The network is CIFAR-shaped and written in the article's style: inputs [N, 32, 32, 3],
``BLOCKS`` conv 3x3 (no bias) -> the article's ``bn_layer`` -> relu blocks (stride 2
where the width doubles), mean over H and W, ``tf.nn.dropout(h, keep_prob)``, dense
logits (10 classes); ``training`` and ``keep_prob`` are the article's placeholders.
It is trained for a few steps (so the moving statistics are not their initial
values), saved as a checkpoint and converted with ``to_inference``. Timed, in one
process, in interleaved rounds (a new random order each round), medians:

* ``floor``: the same network with every BN deleted and a bias add in its place,
  frozen (what a network without BN costs);
* ``folded``: the to-inference frozen graph (BN folded into the convolutions);
* ``frozen_unfolded``: the same with each BN as one multiply-add;
* ``original``: the article's training graph run with training=False, keep_prob=1.0
  (its batch moments are computed and thrown away: ``tf.nn.moments`` sits outside
  the ``tf.cond``);
* ``onnxruntime`` and ``tflite``: the ONNX and TFLite artefacts.

Every variant is fed the same input through ``feed_dict`` (or its runtime's feed).

Then ``memory`` (``bench.memory``, skipped with ``memory=False``): the peak RSS of
``to-inference`` in a child process, on this network and on TF-Slim's ResNet-50, beside
``import tensorflow`` alone, a plain restore of the checkpoint and the bytes of its variables.
"""

import os
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.layers.bn import bn_layer
from tf1_repro.layers.dropout import inverted_dropout, keep_prob_placeholder

WIDTHS = (32, 32, 64, 64, 128, 128)
SHAPE = (32, 32, 3)
CLASSES = 10
BATCHES = (1, 64)
TRAIN_STEPS = 3
VARIANTS = ("floor", "folded", "frozen_unfolded", "original", "onnxruntime", "tflite")


def _conv(h, filters, stride, name, seed):
    kernel = tf.get_variable(f"{name}/kernel", [3, 3, h.shape[-1], filters],
                             initializer=tf.glorot_uniform_initializer(seed=seed))
    return tf.nn.conv2d(h, kernel, [1, stride, stride, 1], "SAME")


def build_network(with_bn=True):
    """The benchmark network in the default graph; returns (x, training, keep_prob, logits,
    train_op). Without BN, each BN is replaced by a bias (and there is no mode switch)."""
    x = tf.placeholder(tf.float32, (None,) + SHAPE, name="x")
    training = tf.placeholder(tf.bool, name="training") if with_bn else None
    keep_prob = keep_prob_placeholder() if with_bn else None
    h, previous = x, WIDTHS[0]
    for i, width in enumerate(WIDTHS):
        stride = 2 if width != previous else 1
        h = _conv(h, width, stride, f"conv{i + 1}", seed=i)
        if with_bn:
            h = bn_layer(h, training, name=f"bn{i + 1}")
        else:
            h = tf.nn.bias_add(h, tf.get_variable(f"bias{i + 1}", [width],
                                                  initializer=tf.zeros_initializer()))
        h = tf.nn.relu(h)
        previous = width
    h = tf.reduce_mean(h, axis=[1, 2])
    if with_bn:
        h = inverted_dropout(h, keep_prob, seed=0)
    kernel = tf.get_variable("logits/kernel", [WIDTHS[-1], CLASSES],
                             initializer=tf.glorot_uniform_initializer(seed=99))
    bias = tf.get_variable("logits/bias", [CLASSES], initializer=tf.zeros_initializer())
    logits = tf.nn.bias_add(tf.matmul(h, kernel), bias, name="logits")
    train_op = None
    if with_bn:
        labels = tf.placeholder(tf.int64, [None], name="labels")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                             logits=logits))
        train_op = tf.train.MomentumOptimizer(0.01, 0.9).minimize(loss)
    return x, training, keep_prob, logits, train_op


def _train_and_save(prefix, seed=0):
    rng = np.random.default_rng(seed)
    with tf.Graph().as_default() as graph:
        x, training, keep_prob, _, train_op = build_network(with_bn=True)
        labels = graph.get_tensor_by_name("labels:0")
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(TRAIN_STEPS):
                batch = rng.normal(0.5, 0.25, (64,) + SHAPE).astype(np.float32)
                sess.run(train_op, {x: batch, labels: rng.integers(0, CLASSES, 64),
                                    training: True, keep_prob: 0.8})
            tf.train.Saver().save(sess, prefix)


def _floor_graph_def():
    """The network without BN (a bias instead), frozen."""
    with tf.Graph().as_default() as graph:
        _, _, _, logits, _ = build_network(with_bn=False)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            return tf.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(),
                                                                [logits.op.name])


def run(repeat=30, seed=0, progress=None, memory=True):
    """Build, convert, verify and time; returns the measurements (JSON-able). ``progress``: a
    progress factory (``tf1_repro.progress.factory()``) for the conversion and the rounds.
    ``memory``: also measure to-inference's peak RSS per model (``bench.memory.measure``,
    ``result["memory"]``; None when skipped)."""
    from tf1_repro.tools.inference import formats  # pylint: disable=import-outside-toplevel
    from tf1_repro.tools import inference  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "ckpt", "model.ckpt")
        _train_and_save(prefix, seed)
        report = inference.to_inference(prefix, ["logits:0"], os.path.join(tmp, "served"),
                                        latency_runs=0, progress=progress)
        graph, sess, findings = inference.open_model(prefix)
        try:
            conv = inference.convert(graph, sess, ["logits:0"], findings)
            floor = _floor_graph_def()
            runners = {
                "floor": formats.open_graph_def(floor, ["logits:0"]),
                "folded": formats.open_graph_def(conv["folded"], ["logits:0"]),
                "frozen_unfolded": formats.open_graph_def(conv["unfolded"], ["logits:0"]),
                "original": formats.open_session(graph, sess, ["logits:0"], conv["feeds"]),
                "onnxruntime": formats.open_onnx(report["artefacts"]["onnx"]["path"], ["logits:0"]),
                "tflite": formats.open_tflite(report["artefacts"]["tflite"]["path"], ["x:0"],
                                              ["logits:0"]),
            }
            rng = np.random.default_rng(seed + 1)
            batches = {b: {"x:0": rng.normal(0.5, 0.25, (b,) + SHAPE).astype(np.float32)}
                       for b in BATCHES}
            latency = inference.measure_latency(runners, batches, repeat, seed, progress=progress)
            for runner in runners.values():
                runner.close()
        finally:
            sess.close()
    from tf1_repro.bench import memory as bench_memory  # pylint: disable=import-outside-toplevel
    return {"memory": bench_memory.measure(seed=seed) if memory else None,
            "network": {"input": [64] + list(SHAPE), "blocks": len(WIDTHS), "widths": list(WIDTHS),
                        "bn": "the article's bn_layer", "dropout": "tf.nn.dropout before logits",
                        "train_steps": TRAIN_STEPS},
            "repeat": repeat, "latency_ms": latency,
            "ratio_to_floor": {v: {b: t[b] / latency["floor"][b] for b in t}
                               for v, t in latency.items()},
            "verified": {k: {key: a[key] for key in ("max_abs_diff", "batch_independent",
                                                     "deterministic")}
                         for k, a in report["artefacts"].items()},
            "compute_ops": {"folded": _compute_ops(conv["folded"]), "floor": _compute_ops(floor)},
            "bn_folded": sum(b["folded"] for b in report["bn_layers"]),
            "bn_layers": len(report["bn_layers"]), "ok": report["ok"],
            "ops_before": sum(report["ops_before"].values()),
            "ops_after": sum(report["ops_after"].values())}


def _compute_ops(graph_def):
    """Op counts without Const/Identity/Placeholder: what runs per prediction."""
    from tf1_repro.tools import inference  # pylint: disable=import-outside-toplevel
    return {op: n for op, n in inference.op_counts(graph_def).items()
            if op not in ("Const", "Identity", "Placeholder")}


def format_bench(result):
    lat, ratio = result["latency_ms"], result["ratio_to_floor"]
    lines = [f"bench-inference: {result['network']['blocks']} conv-BN-relu blocks (the article's "
             f"bn_layer), input {result['network']['input']}, medians of {result['repeat']} "
             f"interleaved runs",
             f"  to-inference: {result['bn_folded']}/{result['bn_layers']} BN folded, ops "
             f"{result['ops_before']} -> {result['ops_after']}, artefacts verified: {result['ok']}",
             f"  folded graph runs {_ops_text(result['compute_ops']['folded'])}; the floor "
             f"{_ops_text(result['compute_ops']['floor'])}"
             + (" (the same ops)" if result['compute_ops']['folded'] == result['compute_ops']['floor']
                else ""),
             f"  {'variant':<16} {'batch 1 ms':>11} {'x floor':>8} {'batch 64 ms':>12} {'x floor':>8}"]
    for v in VARIANTS:
        lines.append(f"  {v:<16} {lat[v]['1']:>11.3f} {ratio[v]['1']:>7.2f}x {lat[v]['64']:>12.3f} "
                     f"{ratio[v]['64']:>7.2f}x")
    lines.append(f"  original / folded: {lat['original']['1'] / lat['folded']['1']:.2f}x at batch 1, "
                 f"{lat['original']['64'] / lat['folded']['64']:.2f}x at batch 64")
    if result.get("memory"):
        from tf1_repro.bench import memory as bench_memory  # pylint: disable=import-outside-toplevel
        lines.append(bench_memory.format_memory(result["memory"]))
    return "\n".join(lines)


def _ops_text(counts):
    return ", ".join(f"{n} {op}" for op, n in counts.items())
