"""Peak memory of ``to-inference``, per model: ``python -m tf1_repro bench-inference`` reports it
beside the latencies (``memory`` in its JSON).

Each measurement is a child process (``python -m tf1_repro to-inference CKPT ...``), and its
peak resident set size is the one ``os.wait4`` returns for that child alone (``ru_maxrss``),
so nothing the benchmark itself holds is counted. Beside it, two baselines, each its own child:
``import tensorflow`` alone, and a plain restore of the checkpoint (``import_meta_graph`` and
``Saver.restore`` in a ``tf.Session``), and the model's size: the bytes of its checkpoint's
variables (every element of every variable, at its dtype's size).

Models (``CASES``): ``article_net``, the bench's own 6-block network with the article's
``bn_layer`` (``inference.build_network``, ~1 MB); ``slim_resnet_v1_50``, TF-Slim's
``resnet_v1_50`` (~94 MB of variables) at 32x32 with 10 classes, its ``is_training`` a
placeholder and the UPDATE_OPS wired into 2 SGD steps, as users trained it.

Memory is measured, never asserted (tests check that the fields are computed).
"""

import importlib
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CASES = ("article_net", "slim_resnet_v1_50")
RESNET_SIZE = 32
RESNET_CLASSES = 10
RESNET_STEPS = 2
LATENCY_RUNS = 3  # the timed runners are all alive whatever the count: memory does not depend on it
RESTORE_SCRIPT = """
import sys
import tensorflow.compat.v1 as tf
tf.disable_v2_behavior()
prefix = sys.argv[1]
with tf.Graph().as_default() as graph:
    saver = tf.train.import_meta_graph(prefix + ".meta")
    with tf.Session(graph=graph) as sess:
        saver.restore(sess, prefix)
"""


# Started by a small Python process, not by the benchmark's: a forked child's peak RSS
# (``ru_maxrss``) keeps what it had before ``exec``, the copy of its parent's pages (measured:
# a child that only exits, forked from a process holding TensorFlow, read 635 MB).
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def child_peak(argv, log_path=None):
    """Run ``argv`` in a child process started by a small launcher process; returns (exit
    status, peak RSS in MB of that child and the children it waited for, wall seconds). Its
    stdout and stderr go to ``log_path`` (or nowhere)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, open(log_path or os.devnull, "wb") as log:
        result = os.path.join(tmp, "peak")
        subprocess.run([sys.executable, "-c", LAUNCHER, result] + list(argv), stdout=log,
                       stderr=subprocess.STDOUT, check=True)
        with open(result, encoding="utf-8") as f:
            status, kilobytes = (int(v) for v in f.read().split())
    return status, kilobytes / 1024, time.perf_counter() - start


def variable_bytes(prefix):
    """Bytes of every variable in the checkpoint ``prefix`` (elements x dtype size)."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    reader = tf.train.load_checkpoint(prefix)
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    return int(sum(int(np.prod(shapes[name], dtype=np.int64)) * dtypes[name].size
                   for name in shapes))


def import_slim():
    """``tf_slim`` with tf-keras's legacy layers aliased where TF-Slim 1.1.0 looks for them (and
    the two TF names its ``smart_cond`` reads restored); ``tests/real_models.py`` uses it too."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    package = importlib.import_module("tf_keras.src.legacy_tf_layers")
    sys.modules.setdefault("tf_keras.legacy_tf_layers", package)
    for name in ("base", "core", "convolutional", "normalization", "pooling"):
        sys.modules.setdefault(f"tf_keras.legacy_tf_layers.{name}",
                               importlib.import_module(f"tf_keras.src.legacy_tf_layers.{name}"))
    # tf_slim.layers.utils.smart_cond (a tensor ``is_training``) reads ops.Tensor and
    # control_flow_ops.cond, which TF 2.21 keeps at framework.tensor.Tensor and ops.cond.cond
    from tensorflow.python.framework import ops, tensor  # pylint: disable=import-outside-toplevel
    from tensorflow.python.ops import cond, control_flow_ops  # pylint: disable=import-outside-toplevel
    if not hasattr(ops, "Tensor"):
        ops.Tensor = tensor.Tensor
    if not hasattr(control_flow_ops, "cond"):
        control_flow_ops.cond = cond.cond
    return importlib.import_module("tf_slim")


def build_slim_resnet(out_dir, seed=0):
    """TF-Slim ``resnet_v1_50`` on ``images`` [None, 32, 32, 3] with ``is_training`` a bool
    placeholder, logits ``logits`` [None, 10]; ``RESNET_STEPS`` SGD steps on N(0, 1) images with
    the UPDATE_OPS wired; saved with its .meta. Returns the checkpoint prefix. Turns TF1
    behaviour on (``runtime.use_tf1_behavior``: Switch/Merge conds, reference variables), as the
    TF1 code that trained such checkpoints ran: ``measure`` calls it in a child."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    from tf1_repro import runtime  # pylint: disable=import-outside-toplevel
    runtime.use_tf1_behavior()
    slim = import_slim()
    from tf_slim.nets import resnet_v1  # pylint: disable=import-outside-toplevel
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [None, RESNET_SIZE, RESNET_SIZE, 3], name="images")
        labels = tf.placeholder(tf.int32, [None], name="labels")
        is_training = tf.placeholder(tf.bool, [], name="is_training")
        with slim.arg_scope(resnet_v1.resnet_arg_scope()):
            net, _ = resnet_v1.resnet_v1_50(images, num_classes=RESNET_CLASSES,
                                            is_training=is_training, global_pool=True)
        logits = tf.reshape(net, [-1, RESNET_CLASSES], name="logits")
        loss = tf.losses.sparse_softmax_cross_entropy(labels, logits)
        step = tf.train.get_or_create_global_step()
        with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
            train = tf.train.GradientDescentOptimizer(0.01).minimize(loss, global_step=step)
        saver = tf.train.Saver()
        rng = np.random.default_rng(seed)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(RESNET_STEPS):
                sess.run(train, {images: rng.normal(size=(8, RESNET_SIZE, RESNET_SIZE, 3)),
                                 labels: rng.integers(0, RESNET_CLASSES, 8), is_training: True})
            return saver.save(sess, os.path.join(out_dir, "model.ckpt"))


def _build(case, out_dir, seed):
    """(checkpoint prefix, output tensor) of ``case``, trained and saved under ``out_dir``."""
    if case == "article_net":
        from tf1_repro.bench import inference  # pylint: disable=import-outside-toplevel
        prefix = os.path.join(out_dir, "model.ckpt")
        inference._train_and_save(prefix, seed)  # pylint: disable=protected-access
        return prefix, "logits:0"
    if case == "slim_resnet_v1_50":
        prefix = os.path.join(out_dir, "model.ckpt")
        # in a child: the benchmark's process never holds the ResNet's graph
        code = ("import sys; from tf1_repro.bench.memory import build_slim_resnet; "
                "build_slim_resnet(sys.argv[1], int(sys.argv[2]))")
        status, _, _ = child_peak([sys.executable, "-c", code, out_dir, str(seed)],
                                  os.path.join(out_dir, "build.log"))
        if status != 0:
            raise RuntimeError(f"building {case} failed (exit {status}); see its log")
        return prefix, "logits:0"
    raise ValueError(f"case must be one of {', '.join(CASES)}, got {case!r}")


def measure(cases=CASES, latency_runs=LATENCY_RUNS, seed=0, log=None):
    """Build each case, then measure in children: ``import tensorflow``, a plain restore of
    the checkpoint and ``to-inference`` (``--latency-runs latency_runs``). Returns
    {"tf_import_mb", "latency_runs", "cases": [{case, model_bytes, restore_mb, peak_rss_mb,
    peak_over_restore_mb, seconds, ok}]} (MB: 2**20 bytes)."""
    import json  # pylint: disable=import-outside-toplevel
    log = log or (lambda line: None)
    _, tf_import, _ = child_peak([sys.executable, "-c", "import tensorflow"])
    results = []
    for case in cases:
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = os.path.join(tmp, "model")
            os.makedirs(model_dir)
            prefix, output = _build(case, model_dir, seed)
            _, restore, _ = child_peak([sys.executable, "-c", RESTORE_SCRIPT, prefix])
            report = os.path.join(tmp, "report.json")
            status, peak, seconds = child_peak(
                [sys.executable, "-m", "tf1_repro", "to-inference", prefix, "--outputs", output,
                 "--out", os.path.join(tmp, "served"), "--latency-runs", str(latency_runs),
                 "--quiet", "--json", report], os.path.join(tmp, "to_inference.log"))
            ok = False
            if status == 0:
                with open(report, encoding="utf-8") as f:
                    ok = json.load(f)["ok"]
            size = variable_bytes(prefix)
        results.append({"case": case, "model_bytes": size, "restore_mb": restore,
                        "peak_rss_mb": peak, "peak_over_restore_mb": peak - restore,
                        "seconds": seconds, "ok": bool(ok)})
        log(f"  memory: {case}: peak {peak:.0f} MB")
    return {"tf_import_mb": tf_import, "latency_runs": latency_runs, "cases": results}


def format_memory(result):
    """The memory table of ``measure``'s result."""
    lines = [f"  to-inference peak RSS (a child process each; --latency-runs "
             f"{result['latency_runs']}; import tensorflow alone: {result['tf_import_mb']:.0f} MB)",
             f"  {'model':<20} {'variables MB':>12} {'restore MB':>11} {'peak MB':>9} "
             f"{'peak-restore':>13} {'/ model':>8} {'s':>6}"]
    for c in result["cases"]:
        model_mb = c["model_bytes"] / 2 ** 20
        lines.append(f"  {c['case']:<20} {model_mb:>12.1f} {c['restore_mb']:>11.0f} "
                     f"{c['peak_rss_mb']:>9.0f} {c['peak_over_restore_mb']:>13.0f} "
                     f"{c['peak_over_restore_mb'] / model_mb:>7.1f}x {c['seconds']:>6.1f}"
                     + ("" if c["ok"] else "  (to-inference failed or not verified)"))
    return "\n".join(lines)
