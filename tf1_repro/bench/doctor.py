"""Benchmark of ``doctor`` (not a test): a ResNet-50-sized TF1 graph is diagnosed in < 20 s, its
static part in < 5 s, on 2 cores.

``make bench-doctor`` (``python -m tf1_repro.bench.doctor``) builds ResNet-50
(v1.5 bottlenecks [3, 4, 6, 3], 53 ``tf.layers`` fused BN layers on a ``training``
placeholder, ``UPDATE_OPS`` wired into a ``GradientDescent`` train op, 224x224x3
inputs, 1000 classes, 25.6 M parameters) with random weights and random moving
statistics, saves it as a checkpoint with its ``.meta`` (nothing is trained), then
times, in interleaved rounds:

* ``diagnose(prefix, run=False)``: the static checks (load, finder, value checks);
* ``diagnose(prefix)``: static plus dynamic checks (restore, three runs at batch 4);

in this process (TensorFlow already imported), and once each through the CLI in a
fresh process (``python -m tf1_repro doctor PREFIX [--no-run]``, wall clock including
the TensorFlow import, which a process that only imports TensorFlow also times).

Then the same for a graph with a training and an evaluation tower: TF-Slim ``inception_v2``
(depth_multiplier 0.1, 32x32, 68 BN layers each called by both towers; the tests' builder in
``tests/real_models.py``, trained 3 steps), the shape that made the finder take minutes (issue
"Real-model defects"); the same targets. ``--no-two-towers`` skips it.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

BLOCKS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
CLASSES = 1000
IMAGE = (224, 224, 3)
TWO_TOWER_LAYERS = 68  # BN layers of slim inception_v2 (each shared by the two towers)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _build_resnet50():
    """ResNet-50 in TF1 style in the default graph; returns the number of BN layers built."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    from tf1_repro.comparisons.implementations import tf_layers_batch_normalization  # pylint: disable=import-outside-toplevel
    batch_norm = tf_layers_batch_normalization()
    count = [0]

    def conv(h, filters, size, stride, name):
        kernel = tf.get_variable(f"{name}/kernel", [size, size, h.shape[-1], filters],
                                 initializer=tf.variance_scaling_initializer(2.0))
        return tf.nn.conv2d(h, kernel, [1, stride, stride, 1], "SAME")

    def bn(h, training, name):
        count[0] += 1
        return batch_norm(
            h, training=training, momentum=0.9, name=name,
            gamma_initializer=tf.random_uniform_initializer(0.5, 1.5),
            beta_initializer=tf.random_normal_initializer(0.0, 0.1),
            moving_mean_initializer=tf.random_normal_initializer(0.0, 0.1),
            moving_variance_initializer=tf.random_uniform_initializer(0.5, 1.5))

    x = tf.placeholder(tf.float32, (None,) + IMAGE, name="x")
    labels = tf.placeholder(tf.int64, [None], name="labels")
    training = tf.placeholder(tf.bool, name="training")
    h = tf.nn.relu(bn(conv(x, 64, 7, 2, "conv1"), training, "bn_conv1"))
    h = tf.nn.max_pool2d(h, 3, 2, "SAME")
    for stage, (blocks, width) in enumerate(zip(BLOCKS, WIDTHS)):
        for block in range(blocks):
            name = f"res{stage + 2}{chr(ord('a') + block)}"
            stride = 2 if block == 0 and stage > 0 else 1
            shortcut = h
            if block == 0:
                shortcut = bn(conv(h, 4 * width, 1, stride, f"{name}_branch1"), training,
                              f"bn{name[3:]}_branch1")
            y = tf.nn.relu(bn(conv(h, width, 1, 1, f"{name}_branch2a"), training,
                              f"bn{name[3:]}_branch2a"))
            y = tf.nn.relu(bn(conv(y, width, 3, stride, f"{name}_branch2b"), training,
                              f"bn{name[3:]}_branch2b"))
            y = bn(conv(y, 4 * width, 1, 1, f"{name}_branch2c"), training, f"bn{name[3:]}_branch2c")
            h = tf.nn.relu(y + shortcut)
    h = tf.reduce_mean(h, axis=[1, 2])
    kernel = tf.get_variable("fc1000/kernel", [h.shape[-1], CLASSES])
    logits = tf.identity(tf.matmul(h, kernel), name="logits")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                         logits=logits))
    global_step = tf.train.get_or_create_global_step()
    with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
        train_op = tf.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=global_step)
    tf.add_to_collection(tf.GraphKeys.TRAIN_OP, train_op)
    return count[0]


def build(out_dir):
    """Save the random-weight ResNet-50 checkpoint (with .meta); returns (prefix, BN layers, params)."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    with tf.Graph().as_default() as graph:
        layers = _build_resnet50()
        params = int(sum(np.prod(v.shape.as_list()) for v in tf.trainable_variables()))
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, os.path.join(out_dir, "model.ckpt"))
    return prefix, layers, params


def _cli_seconds(prefix, *flags):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "doctor", prefix, *flags],
                          capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"doctor failed: {done.stderr.strip()}")
    return time.perf_counter() - started


def _import_seconds():
    """Wall time of a fresh process that only imports TensorFlow as the CLI does."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from tf1_repro import runtime; runtime.use_tf1_behavior()"],
                   capture_output=True, check=True)
    return time.perf_counter() - started


def build_two_towers(out_dir):
    """The TF-Slim inception_v2 with a training and an evaluation tower (``reuse=True``, Python
    bools, 68 BN layers; ``tests/real_models.py``, the tests' own builder), trained 3 steps and
    saved; returns (prefix, BN layers, params)."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    try:
        import real_models  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    prefix, _ = real_models.slim_inception_v2_two_towers(out_dir)
    graph = tf.Graph()
    with graph.as_default():
        tf.train.import_meta_graph(prefix + ".meta")
        params = int(sum(np.prod(v.shape.as_list()) for v in tf.trainable_variables()))
    return prefix, TWO_TOWER_LAYERS, params


def _measure(prefix, rounds, log):
    """(in-process seconds per kind, CLI seconds, last full report) for ``prefix``."""
    import warnings  # pylint: disable=import-outside-toplevel
    from tf1_repro.tools import doctor  # pylint: disable=import-outside-toplevel
    times = {"static": [], "full": []}
    report = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(rounds):
            for kind in (("static", "full") if i % 2 == 0 else ("full", "static")):
                started = time.perf_counter()
                found = doctor.diagnose(prefix, run=(kind == "full"))
                times[kind].append(time.perf_counter() - started)
                report = found if kind == "full" else report
                log(f"round {i + 1} {kind:6s} {times[kind][-1]:.2f} s")
    cli = {"static": _cli_seconds(prefix, "--no-run"), "full": _cli_seconds(prefix)}
    log(f"CLI (fresh process, TensorFlow import included): static {cli['static']:.2f} s, "
        f"full {cli['full']:.2f} s")
    return times, cli, report


def _summary(model, layers, params, rounds, times, cli, report):
    return {"model": model, "bn_layers_built": layers, "bn_layers_found": len(report["bn_layers"]),
            "parameters": params, "ran": report["ran"], "outputs": report.get("outputs"),
            "findings": sorted({f["id"] for f in report["findings"]}),
            "cpus": os.cpu_count(), "rounds": rounds,
            "in_process_s": {k: {"median": statistics.median(v), "min": min(v)}
                             for k, v in times.items()},
            "cli_s": cli, "targets_s": {"static": 5.0, "full": 20.0}}


def run(rounds=3, out_dir=None, log=print, two_towers=True):
    """Measure; returns a JSON-able dict of seconds (median and min of ``rounds``): ResNet-50's at
    the top level, the two-tower slim net's under ``two_towers``."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        prefix, layers, params = build(out_dir or tmp)
        log(f"built ResNet-50 ({layers} BN layers, {params / 1e6:.1f} M parameters) in "
            f"{time.perf_counter() - started:.1f} s")
        times, cli, report = _measure(prefix, rounds, log)
        cli["tensorflow_import"] = _import_seconds()
        log(f"a fresh process that only imports TensorFlow {cli['tensorflow_import']:.2f} s")
        result = _summary("ResNet-50, tf.layers fused BN, random weights, checkpoint + .meta",
                          layers, params, rounds, times, cli, report)
        if two_towers:
            started = time.perf_counter()
            prefix, layers, params = build_two_towers(os.path.join(out_dir or tmp, "two_towers"))
            log(f"built TF-Slim inception_v2 two towers ({layers} BN layers, "
                f"{params / 1e6:.2f} M parameters) in {time.perf_counter() - started:.1f} s")
            times, cli, report = _measure(prefix, rounds, log)
            result["two_towers"] = _summary(
                "TF-Slim inception_v2 (depth_multiplier 0.1, 32x32), a training and an evaluation "
                "tower (reuse=True, Python bools), trained 3 steps, checkpoint + .meta",
                layers, params, rounds, times, cli, report)
            result["two_towers"]["distinct_layer_names"] = len(
                {b["name"] for b in report["bn_layers"]})
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tf1_repro.bench.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--no-two-towers", action="store_true",
                        help="ResNet-50 only (the two-tower net needs tf-slim)")
    args = parser.parse_args(argv)
    from tf1_repro import runtime  # pylint: disable=import-outside-toplevel
    runtime.use_tf1_behavior()
    result = run(rounds=args.rounds, two_towers=not args.no_two_towers)
    print(json.dumps(result, indent=2))
    for label, part in (("ResNet-50", result), ("two towers", result.get("two_towers"))):
        if part is None:
            continue
        ok = part["in_process_s"]["static"]["median"] < 5 and \
            part["in_process_s"]["full"]["median"] < 20
        print(f"{label}: targets (static < 5 s, full < 20 s, medians in process): "
              f"{'met' if ok else 'NOT met'}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
