"""``python -m tf1_repro bench``: BN implementations timed in one process, one run.

Cases: the article's ``bn_layer``, ``fast_bn_layer``, the fused kernel
(``FusedBatchNormV3`` with its running-average update, as ``tf.nn.fused_batch_norm``
runs it), ``tf.compat.v1.layers.batch_normalization(fused=False)`` and a plain
copy of the tensor (the memory floor: one read, one write), at each shape, in
two modes:

* ``train``: forward, backward to the input and to gamma/beta, and the moving
  statistics' update;
* ``infer``: the forward pass with the moving statistics.

The input lives in the graph (a variable), so feeding is not what is measured
(a second table prices ``feed_dict`` separately). Every result is assigned into
a variable, so the graph optimizer cannot prune the work. ``training`` is a
``placeholder_with_default``, so the ``tf.cond`` is decided at run time as
with a fed placeholder. Each case has its own graph and session; after a
warm-up, cases are timed in interleaved rounds, in a new random order each
round (a case that always ran right after a heavy one was measured up to 20%
slower), and the median is reported.

A hygiene check trains the demo model for many steps on a finalized graph and
compares the process's RSS after 1/10 of the steps with the RSS at the end.
"""

import gc
import resource
import time

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro import progress as progress_display
from tf1_repro.model import data
from tf1_repro.comparisons import implementations
from tf1_repro.layers.bn import bn_layer, bn_variables
from tf1_repro.layers.fast_bn import fast_bn_layer
from tf1_repro.model import ArticleModel

SHAPES = ((256, 1024), (64, 32, 32, 64))
IMPLS = ("article", "fast", "fused", "tf.layers", "copy")
DECAY, EPS = 0.9, 1e-5


def _fused_kernel(x, training):
    """FusedBatchNormV3 with its running-average update (exponential_avg_factor = 1 - decay)."""
    channels = x.shape[-1]
    nhwc = x if x.shape.ndims == 4 else tf.reshape(x, [-1, 1, 1, channels])
    gamma = tf.get_variable("gamma", channels, initializer=tf.ones_initializer())
    beta = tf.get_variable("beta", channels, initializer=tf.zeros_initializer())
    mean = tf.get_variable("moving_mean", channels, initializer=tf.zeros_initializer(), trainable=False)
    var = tf.get_variable("moving_variance", channels, initializer=tf.ones_initializer(), trainable=False)

    out = tf.raw_ops.FusedBatchNormV3(x=nhwc, scale=gamma, offset=beta, mean=mean, variance=var,
                                      epsilon=EPS, exponential_avg_factor=1.0 - DECAY,
                                      data_format="NHWC", is_training=training)
    updates = [mean.assign(out.batch_mean), var.assign(out.batch_variance)] if training else []
    return tf.reshape(out.y, tf.shape(x)), updates, (gamma, beta)


def _build_case(impl, shape, mode, seed):
    """(graph, init op, step op) for one case."""
    graph = tf.Graph()
    training = mode == "train"
    with graph.as_default():
        rng = np.random.default_rng(seed)
        x = tf.Variable((3.0 + 2.0 * rng.standard_normal(shape)).astype(np.float32), name="x")
        flag = tf.placeholder_with_default(training, [], name="training")
        updates = []
        if impl == "copy":
            y, params = tf.identity(x), ()
        elif impl == "fused":
            y, updates, params = _fused_kernel(x, training)
        elif impl == "tf.layers":
            y = implementations.tf_layers_batch_normalization()(x, training=flag, momentum=DECAY, epsilon=EPS,
                                                       fused=False)
            updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            params = tuple(tf.trainable_variables())
        else:
            y = (bn_layer if impl == "article" else fast_bn_layer)(x, flag, "bn", DECAY, EPS)
            v = bn_variables("bn")
            params = (v["gamma"], v["beta"])
        out = tf.Variable(tf.zeros(shape), name="y")
        work = [out.assign(y)]
        if training and impl != "copy":
            upstream = tf.constant(rng.standard_normal(shape).astype(np.float32) * 0.01)
            grads = tf.gradients(y, [x] + list(params), grad_ys=upstream)
            sinks = [tf.Variable(tf.zeros(g.shape), name=f"grad{i}") for i, g in enumerate(grads)]
            work += [s.assign(g) for s, g in zip(sinks, grads)] + list(updates)
        step = tf.group(*work)
        init = tf.global_variables_initializer()
    graph.finalize()
    return graph, init, step


def _rss_mb():
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_cases(shapes=SHAPES, repeat=25, warmup=3, seed=0, log=None, progress=None):
    """Median milliseconds per case, timed in interleaved rounds (``progress`` counts rounds)."""
    cases = []
    for shape in shapes:
        for mode in ("train", "infer"):
            for impl in IMPLS:
                if impl == "copy" and mode == "train":
                    continue
                graph, init, step = _build_case(impl, shape, mode, seed)
                sess = tf.Session(graph=graph)
                sess.run(init)
                for _ in range(warmup):
                    sess.run(step)
                cases.append({"impl": impl, "shape": list(shape), "mode": mode, "sess": sess,
                              "step": step, "times": []})
    order = np.random.default_rng(seed)
    bar = progress_display.resolve(progress)("bench: timing", repeat, "round")
    for r in range(repeat):
        for i in order.permutation(len(cases)):  # a new order each round: no case always follows another
            case = cases[i]
            started = time.perf_counter()
            case["sess"].run(case["step"])
            case["times"].append(time.perf_counter() - started)
        bar.update(1)
        if log and (r + 1) % max(1, repeat // 5) == 0:
            log(f"  round {r + 1}/{repeat}")
    bar.close()
    for case in cases:
        case["sess"].close()
        case["median_ms"] = 1e3 * float(np.median(case.pop("times")))
        del case["sess"], case["step"]
    for case in cases:
        same = {c["impl"]: c["median_ms"] for c in cases
                if c["shape"] == case["shape"] and c["mode"] in (case["mode"], "infer")
                and (c["mode"] == case["mode"] or c["impl"] == "copy")}
        case["ratio_to_fused"] = case["median_ms"] / same["fused"]
        case["ratio_to_copy"] = case["median_ms"] / same["copy"]
    return cases


def time_feed(shapes=SHAPES, repeat=25, seed=0):
    """Cost of feeding the input through feed_dict instead of reading it from the graph."""
    rows = []
    for shape in shapes:
        value = (3.0 + 2.0 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)
        with tf.Graph().as_default() as graph:
            x_ph = tf.placeholder(tf.float32, shape)
            x_var = tf.Variable(value)
            out = tf.Variable(tf.zeros(shape))
            from_feed, from_graph = out.assign(x_ph).op, out.assign(x_var).op
            init = tf.global_variables_initializer()
        with tf.Session(graph=graph) as sess:
            sess.run(init)
            timings = {"feed_dict": [], "in graph": []}
            for _ in range(3):
                sess.run(from_feed, {x_ph: value})
                sess.run(from_graph)
            for _ in range(repeat):
                for key, op, feed in (("feed_dict", from_feed, {x_ph: value}), ("in graph", from_graph, None)):
                    started = time.perf_counter()
                    sess.run(op, feed)
                    timings[key].append(time.perf_counter() - started)
        fed, graph_ms = (1e3 * float(np.median(timings[k])) for k in ("feed_dict", "in graph"))
        rows.append({"shape": list(shape), "megabytes": value.nbytes / 2**20, "copy_fed_ms": fed,
                     "copy_in_graph_ms": graph_ms, "feed_cost_ms": fed - graph_ms})
    return rows


def hygiene(steps=10_000, seed=0, log=None, progress=None):
    """RSS after steps/10 and after all steps of a training loop on a finalized graph."""
    dataset = data.Blobs(seed=seed)
    batches = [data.train_batch(dataset, 64, seed, i) for i in range(100)]
    checkpoint = max(1, steps // 10)
    with tf.Graph().as_default() as graph:
        model = ArticleModel(dataset.input_shape, dataset.classes, seed=seed)
        graph.finalize()  # no op can be added per step
        with tf.Session(graph=graph) as sess:
            sess.run(model.init_op)
            ops_before = len(graph.get_operations())
            rss = {}
            started = time.perf_counter()
            bar = progress_display.resolve(progress)("bench: hygiene", steps, "step")
            for step in range(1, steps + 1):
                x, y = batches[step % len(batches)]
                model.train_step(sess, x, y, keep_prob=0.8, check_finite=False)
                bar.update(1)
                if step in (checkpoint, steps):
                    gc.collect()
                    rss[step] = _rss_mb()
                    if log:
                        log(f"  hygiene: step {step}, RSS {rss[step]:.1f} MB")
            seconds = time.perf_counter() - started
            bar.close()
            ops_after = len(graph.get_operations())
    growth = rss[steps] / rss[checkpoint] - 1
    return {"steps": steps, "rss_mb_early": rss[checkpoint], "early_step": checkpoint,
            "rss_mb_final": rss[steps], "growth": growth, "within_5_percent": abs(growth) <= 0.05,
            "graph_ops_constant": ops_before == ops_after, "steps_per_second": steps / seconds}


def run(shapes=SHAPES, repeat=25, hygiene_steps=10_000, log=print, progress=None):
    """Time the cases, the feed_dict cost and the hygiene loop (``progress``: a progress factory)."""
    if log:
        log(f"timing {len(IMPLS)} implementations x {len(shapes)} shapes x 2 modes, "
            f"{repeat} interleaved rounds ...")
    cases = time_cases(shapes, repeat, log=log, progress=progress)
    feed = time_feed(shapes, repeat)
    if log:
        log(f"hygiene: {hygiene_steps} training steps on a finalized graph ...")
    clean = hygiene(hygiene_steps, log=log, progress=progress)
    return {"cases": cases, "feed_dict": feed, "hygiene": clean, "peak_rss_mb": _peak_rss_mb(),
            "repeat": repeat}


def format_bench(result):
    lines = ["", f"median of {result['repeat']} interleaved runs (ms); ratios to the fused kernel "
                 f"and to a plain copy of the tensor (one read + one write)"]
    header = f"{'shape':<16} {'mode':<6} {'implementation':<10} {'median ms':>10} {'x fused':>8} {'x copy':>7}"
    lines += [header, "-" * len(header)]
    for c in result["cases"]:
        lines.append(f"{str(c['shape']):<16} {c['mode']:<6} {c['impl']:<10} {c['median_ms']:>10.3f} "
                     f"{c['ratio_to_fused']:>8.2f} {c['ratio_to_copy']:>7.2f}")
    lines += ["", "feed_dict cost (copy of the input into a variable, fed vs read from the graph):"]
    for r in result["feed_dict"]:
        lines.append(f"  {str(r['shape']):<16} {r['megabytes']:6.1f} MB  fed {r['copy_fed_ms']:.3f} ms, "
                     f"in graph {r['copy_in_graph_ms']:.3f} ms: feeding costs {r['feed_cost_ms']:.3f} ms")
    h = result["hygiene"]
    lines += ["", f"hygiene: {h['steps']} training steps on a finalized graph ({h['steps_per_second']:,.0f} "
                  f"steps/s): RSS {h['rss_mb_early']:.1f} MB after step {h['early_step']}, "
                  f"{h['rss_mb_final']:.1f} MB after step {h['steps']} ({100 * h['growth']:+.2f}%, "
                  f"{'within' if h['within_5_percent'] else 'OUTSIDE'} 5%); graph ops constant: "
                  f"{h['graph_ops_constant']}",
              f"peak RSS of the whole run: {result['peak_rss_mb']:.0f} MB"]
    return "\n".join(lines)
