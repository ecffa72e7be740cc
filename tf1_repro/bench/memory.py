"""Peak memory of ``to-inference``, per model: ``python -m tf1_repro bench-inference`` reports it
beside the latencies (``memory`` in its JSON).

Each measurement is a child process (``python -m tf1_repro to-inference CKPT ...``), and its
peak resident set size is the one ``os.wait4`` returns for that child alone (``ru_maxrss``),
so nothing the benchmark itself holds is counted. Beside it, two baselines, each its own child:
``import tensorflow`` alone, and a plain restore of the checkpoint (``import_meta_graph`` and
``Saver.restore`` in a ``tf.Session``), and the model's size: the bytes of its checkpoint's
variables (every element of every variable, at its dtype's size).

And the largest single step: each heavy step of ``to-inference`` run alone on the served frozen
graph in a fresh child (``run_step``): ``run`` (TensorFlow imports it and runs it at batch 1,
16 and 64, the sizes to-inference checks and times, in a default session: Grappler and all),
``onnx`` and ``tflite`` (``formats.write_onnx`` / ``write_tflite``, the converters as
to-inference calls them). ``to-inference`` cannot peak below
the largest of these, so ``peak / largest step`` is what its own orchestration adds (1.0: none).

Models (``CASES``): ``article_net``, the bench's own 6-block network with the article's
``bn_layer`` (``inference.build_network``, ~1 MB); ``slim_resnet_v1_50``, TF-Slim's
``resnet_v1_50`` (~94 MB of variables) at 32x32 with 10 classes, its ``is_training`` a
placeholder and the UPDATE_OPS wired into 2 SGD steps, as users trained it.

Memory is measured, never asserted (tests check that the fields are computed).
"""

import gc
import importlib
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CASES = ("article_net", "slim_resnet_v1_50")
STEPS = ("run", "onnx", "tflite")
RUN_BATCHES = (1, 16, 64)  # the batch sizes to-inference runs a served graph at (checks, timing)
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


def run_step(step, frozen_path, report_path, scratch):
    """One step of ``to-inference`` alone (see the module docstring) on the frozen graph
    ``frozen_path``, its inputs and outputs read from to-inference's JSON report; what it writes
    goes under ``scratch``. Called in a child process by ``measure``."""
    import json  # pylint: disable=import-outside-toplevel
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    from tf1_repro import runtime  # pylint: disable=import-outside-toplevel
    from tf1_repro.tools.inference import formats  # pylint: disable=import-outside-toplevel
    runtime.use_tf1_behavior()
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    inputs, outputs = report["inputs"], report["outputs"]
    graph_def = tf.GraphDef()
    with open(frozen_path, "rb") as f:
        graph_def.ParseFromString(f.read())
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
    shapes = {i: [None] + graph.get_tensor_by_name(i).shape.as_list()[1:] for i in inputs}
    if step == "run":
        rng = np.random.default_rng(0)
        with tf.Session(graph=graph) as sess:
            for size in RUN_BATCHES:
                sess.run(outputs, {i: rng.normal(size=[size] + shapes[i][1:]).astype(
                    graph.get_tensor_by_name(i).dtype.as_numpy_dtype) for i in inputs})
    elif step == "onnx":
        del graph
        gc.collect()  # a tf.Graph is a reference cycle: gone before the step, as in to-inference
        formats.write_onnx(graph_def, inputs, outputs, os.path.join(scratch, "model.onnx"))
    elif step == "tflite":
        del graph
        gc.collect()
        formats.write_tflite(graph_def, inputs, outputs, shapes, os.path.join(scratch, "model.tflite"))
    else:
        raise ValueError(f"step must be one of {', '.join(STEPS)}, got {step!r}")


def step_peaks(frozen_path, report_path):
    """{step: peak RSS in MB of ``run_step`` alone in a fresh child, or None when it failed}."""
    code = "import sys; from tf1_repro.bench.memory import run_step; run_step(*sys.argv[1:])"
    peaks = {}
    for step in STEPS:
        with tempfile.TemporaryDirectory() as scratch:
            status, peak, _ = child_peak([sys.executable, "-c", code, step, frozen_path,
                                          report_path, scratch])
        peaks[step] = peak if status == 0 else None
    return peaks


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
    peak_over_restore_mb, step_peaks_mb: {step: MB}, largest_step_mb, peak_over_largest_step,
    seconds, ok}]} (MB: 2**20 bytes). The steps are measured when to-inference succeeded."""
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
            ok, steps = False, {step: None for step in STEPS}
            if status == 0:
                with open(report, encoding="utf-8") as f:
                    ok = json.load(f)["ok"]
                steps = step_peaks(os.path.join(tmp, "served", "frozen_graph.pb"), report)
            size = variable_bytes(prefix)
        largest = max((p for p in steps.values() if p is not None), default=None)
        results.append({"case": case, "model_bytes": size, "restore_mb": restore,
                        "peak_rss_mb": peak, "peak_over_restore_mb": peak - restore,
                        "step_peaks_mb": steps, "largest_step_mb": largest,
                        "peak_over_largest_step": None if largest is None else peak / largest,
                        "seconds": seconds, "ok": bool(ok)})
        log(f"  memory: {case}: peak {peak:.0f} MB")
    return {"tf_import_mb": tf_import, "latency_runs": latency_runs, "cases": results}


def format_memory(result):
    """The memory table of ``measure``'s result."""
    lines = [f"  to-inference peak RSS (a child process each; --latency-runs "
             f"{result['latency_runs']}; import tensorflow alone: {result['tf_import_mb']:.0f} MB)",
             f"  {'model':<20} {'variables MB':>12} {'restore MB':>11} {'peak MB':>9} "
             f"{'peak-restore':>13} {'/ model':>8} {'largest step MB':>16} {'peak / step':>12} "
             f"{'s':>6}"]
    for c in result["cases"]:
        model_mb = c["model_bytes"] / 2 ** 20
        step = c.get("largest_step_mb")
        lines.append(f"  {c['case']:<20} {model_mb:>12.1f} {c['restore_mb']:>11.0f} "
                     f"{c['peak_rss_mb']:>9.0f} {c['peak_over_restore_mb']:>13.0f} "
                     f"{c['peak_over_restore_mb'] / model_mb:>7.1f}x "
                     f"{'-' if step is None else format(step, '.0f'):>16} "
                     f"{'-' if step is None else format(c['peak_over_largest_step'], '.2f') + 'x':>12} "
                     f"{c['seconds']:>6.1f}"
                     + ("" if c["ok"] else "  (to-inference failed or not verified)"))
    steps = [c for c in result["cases"] if c.get("largest_step_mb")]
    if steps:
        lines.append("  largest step: the peak of one step of to-inference alone in a fresh process "
                     "(" + "; ".join(f"{c['case']}: " + ", ".join(
                         f"{k} {v:.0f}" if v is not None else f"{k} failed"
                         for k, v in c["step_peaks_mb"].items()) for c in steps) + " MB)")
    return "\n".join(lines)
