"""Side-by-side: every BN implementation through one identical schedule of fed batches.

The schedule: ``train_steps`` training steps (training=True, plus each
implementation's update ops), then ``infer_batches`` fresh batches with
training=False. Inputs are [N, H, W, C] so the fused kernel applies. For each
implementation the largest absolute difference to the article's verbatim code
is taken over the training outputs, the moving mean and variance after every
step, and the prediction outputs. A first pass uses each implementation's
defaults; a second sets everything settable to the article's.
"""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.comparisons import implementations as catalog
from tf1_repro.layers import reference

SHAPE = (8, 2, 2, 4)  # n = 8*2*2 = 32 values per channel: Bessel factor 32/31
COLUMNS = ("training outputs", "moving mean", "moving variance", "prediction outputs")


def make_schedule(seed=0, train_steps=20, infer_batches=5):
    rng = np.random.default_rng(seed)
    channel_mean = rng.uniform(-3, 3, SHAPE[-1])
    channel_std = rng.uniform(0.5, 3, SHAPE[-1])

    def batch():
        return (channel_mean + channel_std * rng.standard_normal(SHAPE)).astype(np.float32)
    return {"train": [batch() for _ in range(train_steps)],
            "infer": [batch() for _ in range(infer_batches)]}


def run_tf(impl, schedule):
    """Outputs and moving statistics of one implementation over the schedule, in its own graph."""
    with tf.Graph().as_default() as graph:
        x = tf.placeholder(tf.float32, (None,) + SHAPE[1:], name="x")
        training = tf.placeholder(tf.bool, name="training")
        built = impl.build(x, training)
        init = tf.global_variables_initializer()
        graph.finalize()
        with tf.Session(graph=graph) as sess:
            sess.run(init)
            trace = {c: [] for c in COLUMNS}
            for batch in schedule["train"]:
                out, _ = sess.run([built.output, built.updates], {x: batch, training: True})
                mean, var = sess.run([built.moving_mean, built.moving_variance])
                trace["training outputs"].append(out)
                trace["moving mean"].append(mean)
                trace["moving variance"].append(var)
            for batch in schedule["infer"]:
                trace["prediction outputs"].append(sess.run(built.output, {x: batch, training: False}))
    return {c: np.array(v, dtype=np.float64) for c, v in trace.items()}


def run_reference(schedule):
    bn = reference.ReferenceBN(SHAPE[-1])
    trace = {c: [] for c in COLUMNS}
    for batch in schedule["train"]:
        trace["training outputs"].append(bn.step(batch, training=True))
        trace["moving mean"].append(bn.moving_mean)
        trace["moving variance"].append(bn.moving_var)
    for batch in schedule["infer"]:
        trace["prediction outputs"].append(bn.step(batch, training=False))
    return {c: np.array(v) for c, v in trace.items()}


def _diffs(trace, base):
    return {c: float(np.abs(trace[c] - base[c]).max()) for c in COLUMNS}


def _verdict(diffs, base, impl, matched):
    """Bitwise equal; equal within float32 rounding (1e-5 of the values' own scale); or not."""
    if all(d == 0.0 for d in diffs.values()):
        return "bitwise equal"
    if all(diffs[c] <= 1e-5 * max(1.0, float(np.abs(base[c]).max())) for c in COLUMNS):
        return "equal within float32 rounding (<= 1e-5 relative)"
    if matched and impl.cannot_match:
        return "cannot match: " + impl.cannot_match
    return "differs"


def compare(seed=0, train_steps=20, infer_batches=5):
    """Both passes; returns {"schedule", "passes": {"default"|"matched": [row, ...]}}."""
    schedule = make_schedule(seed, train_steps, infer_batches)
    n = int(np.prod(SHAPE[:-1]))
    result = {"schedule": {"shape": list(SHAPE), "train_steps": train_steps,
                           "infer_batches": infer_batches, "seed": seed,
                           "bessel_factor": n / (n - 1)},
              "passes": {}}
    for pass_name, matched in (("default", False), ("matched", True)):
        impls = catalog.implementations(matched)
        traces = {impl.name: run_tf(impl, schedule) for impl in impls}
        base = traces[impls[0].name]
        rows = []
        for impl in impls:
            diffs = _diffs(traces[impl.name], base)
            var_ratio = float(np.median(traces[impl.name]["moving variance"][-1]
                                        / base["moving variance"][-1]))
            rows.append({"impl": impl.name, "settings": impl.settings, "max_abs_diff": diffs,
                         "moving_variance_ratio": var_ratio,
                         "causes": catalog.causes(impl.settings),
                         "verdict": _verdict(diffs, base, impl, matched)})
        if matched:
            diffs = _diffs(run_reference(schedule), base)
            rows.insert(2, {"impl": "NumPy reference (float64)", "settings": dict(catalog.ARTICLE_SETTINGS),
                            "max_abs_diff": diffs, "moving_variance_ratio": 1.0, "causes": [],
                            "verdict": _verdict(diffs, base, catalog.Implementation("", {}, None), True)})
        result["passes"][pass_name] = rows
    return result


def format_compare(result):
    s = result["schedule"]
    lines = [f"Schedule: {s['train_steps']} training steps then {s['infer_batches']} prediction "
             f"batches of shape {s['shape']} (n = {round(s['bessel_factor'] / (s['bessel_factor'] - 1))} "
             f"values per channel), seed {s['seed']}; max |difference| to the article's verbatim code:"]
    for pass_name, title in (("default", "Pass 1: each implementation with its defaults"),
                             ("matched", "Pass 2: settings matched to the article where possible")):
        rows = result["passes"][pass_name]
        width = max(len(r["impl"]) for r in rows)
        lines += ["", title, f"{'implementation':<{width}}  " + "  ".join(f"{c:>18}" for c in COLUMNS)
                  + "  verdict"]
        for r in rows:
            lines.append(f"{r['impl']:<{width}}  " + "  ".join(
                f"{r['max_abs_diff'][c]:>18.3g}" for c in COLUMNS) + f"  {r['verdict']}")
        if pass_name == "default":
            lines.append("Causes:")
            for r in rows:
                for cause in r["causes"]:
                    lines.append(f"  {r['impl']}: {cause}")
        else:
            for r in rows:
                if r["verdict"].startswith("cannot match"):
                    lines.append(f"  {r['impl']}: moving variance / article's = "
                                 f"{r['moving_variance_ratio']:.5f}, n/(n-1) = {s['bessel_factor']:.5f}")
    return "\n".join(lines)
