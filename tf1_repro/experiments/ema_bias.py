"""ema-bias: the moving averages are a zero-initialised, non-debiased EMA of the batch moments.

The article's shadows follow ``s_k = d * s_{k-1} + (1 - d) * v_k`` from ``s_0 = 0``
(``ExponentialMovingAverage`` on tensors, ``zero_debias=False``). Three measurements:

1. TF's shadows on random batches from N(mean, std^2) vs the same recurrence in
   NumPy (float64) on the same fed batches.
2. Constant batches of value ``mean``: the shadow mean after k steps is
   ``mean * (1 - d**k)``, not ``mean`` (that would need debiasing).
3. Steps until the moving variance is within 1% of the population variance, for
   several decays: with batches whose moments are exactly (mean, std^2) the
   zero-init bias alone sets it, ``k* = ceil(ln 0.01 / ln d)``; with random
   batches the EMA of *biased* batch variances aims at (n-1)/n of it.
"""

import math

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.layers import reference
from tf1_repro.experiments import _common
from tf1_repro.experiments.core import (Claim, Param, Result, Series, finite, float32_ulp,
                                        in_open_unit, at_least, positive, register)

CHANNELS = 4
BATCH = 64
DECAYS = (0.5, 0.9, 0.99)


def _moment_matched(rng, n, channels, mean, std):
    z = rng.standard_normal((n, channels))
    z = (z - z.mean(0)) / z.std(0)
    return (mean + std * z).astype(np.float32)


@register("ema-bias", "moving averages are a zero-initialised, non-debiased EMA: after k steps the "
          "moving mean of a constant m is m(1 - decay^k)", [
              Param("decay", 0.9, "EMA decay of the layer", in_open_unit),
              Param("steps", 50, "training steps fed (parts 1 and 2)", at_least(1)),
              Param("mean", 3.0, "mean of the fed batches", finite),
              Param("std", 2.0, "standard deviation of the fed batches", positive),
          ])
def run(p, seed, bn):
    decay, steps, mean, std = p["decay"], p["steps"], p["mean"], p["std"]
    decays = sorted(set(DECAYS) | {decay})
    horizon = int(1.5 * max(math.ceil(math.log(0.01) / math.log(d)) for d in decays)) + 10
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        x, training = _common.placeholders(CHANNELS)
        x_random = tf.placeholder(tf.float32, [None, CHANNELS], name="x_random")
        layers = _common.standalone_layers(bn, x, training, [decay] + decays)
        main, sweep = layers[0], layers[1:]
        random_layers = _common.standalone_layers(bn, x_random, training, decays, prefix="bn_random")
        init = tf.global_variables_initializer()
        graph.finalize()
        with tf.Session(graph=graph) as sess:
            # 1. random batches vs the NumPy recurrence
            sess.run(init)
            batches = [(mean + std * rng.standard_normal((BATCH, CHANNELS))).astype(np.float32)
                       for _ in range(steps)]
            shadow_vars = [main[2]["moving_mean"], main[2]["moving_variance"]]
            tf_means, tf_vars = [], []
            for batch in batches:
                sess.run(main[1], {x: batch, training: True})
                m, v = sess.run(shadow_vars)
                tf_means.append(m)
                tf_vars.append(v)
            moments = [reference.batch_moments(b) for b in batches]
            ref_means = reference.ema_recurrence([m for m, _ in moments], decay)
            ref_vars = reference.ema_recurrence([v for _, v in moments], decay)
            error = max(np.abs(np.array(tf_means) - ref_means).max(),
                        np.abs(np.array(tf_vars) - ref_vars).max())
            scale = max(np.abs(ref_means).max(), np.abs(ref_vars).max(), abs(mean), std ** 2)
            recurrence_tol = 8 * float32_ulp(scale) / (1 - decay)

            # 2. constant batches of value `mean`
            sess.run(init)
            constant = np.full((BATCH, CHANNELS), mean, np.float32)
            const_means = []
            for _ in range(steps):
                sess.run(main[1], {x: constant, training: True})
                const_means.append(float(sess.run(main[2]["moving_mean"])[0]))

            # 3. steps to within 1% of the population variance
            sess.run(init)
            fetch = [l[1] for l in sweep] + [l[1] for l in random_layers]
            matched_var = {d: [] for d in decays}
            random_var = {d: [] for d in decays}
            batch_means = []
            for k in range(horizon):
                rb = (mean + std * rng.standard_normal((BATCH, CHANNELS))).astype(np.float32)
                sess.run(fetch, {x: _moment_matched(rng, BATCH, CHANNELS, mean, std),
                                 x_random: rb, training: True})
                mv = sess.run([l[2]["moving_variance"] for l in sweep])
                rv = sess.run([l[2]["moving_variance"] for l in random_layers])
                for d, a, b in zip(decays, mv, rv):
                    matched_var[d].append(float(a.mean()))
                    random_var[d].append(float(b.mean()))
                if k < 50:
                    batch_means.append((k, rb.mean(0)))

    claims = [
        Claim("ema-matches-recurrence",
              f"TF shadows after each of {steps} training steps equal the zero-initialised NumPy "
              f"recurrence on the same batches (max abs error; tolerance 8 float32 ulps of the "
              f"largest value, divided by 1-decay for accumulated rounding)",
              error, 0.0, recurrence_tol),
        Claim("zero-init-bias",
              f"constant batches of {mean}: the moving mean after {steps} steps is "
              f"mean*(1-decay^{steps}) = {mean * (1 - decay ** steps):.6g}, not the debiased {mean} "
              f"(tolerance: 8 float32 ulps of mean, / (1-decay))",
              const_means[-1], reference.zero_init_ema_of_constant(mean, decay, steps),
              8 * float32_ulp(mean) / (1 - decay)),
    ]
    rows = []
    for d in decays:
        target = std ** 2
        expected = math.ceil(math.log(0.01) / math.log(d))
        measured = _first_within(matched_var[d], target, 0.01)
        claims.append(Claim(
            f"steps-to-1pct-decay-{d:g}",
            f"decay {d:g}, batches with moments exactly ({mean}, {std}^2): steps until the moving "
            f"variance is within 1% of {target:g} = ceil(ln 0.01 / ln {d:g}) (tolerance 1 step: "
            f"float32 batch moments differ from exact by ~1e-7)",
            measured if measured is not None else float("nan"), expected, 1))
        random_steps = _first_within(random_var[d], target, 0.01)
        rows.append([f"{d:g}", expected, measured, random_steps if random_steps is not None
                     else f"not in {horizon}", f"{random_var[d][-1] / target:.4f}",
                     f"{(BATCH - 1) / BATCH:.4f}"])
    ks = sorted({1, 2, 5, 10, 20, steps} & set(range(1, steps + 1)))
    notes = [f"zero-init bias, constant batches of {mean}: "
             + ", ".join(f"k={k}: {const_means[k - 1]:.4f} (formula {mean * (1 - decay ** k):.4f},"
                         f" debiased {const_means[k - 1] / (1 - decay ** k):.4f})" for k in ks)]
    series = {
        "moving_variance_matched": Series(list(range(1, horizon + 1)),
                                          {f"decay {d:g}": v for d, v in matched_var.items()},
                                          "step", "moving variance (moment-matched batches)",
                                          log_x=True, reference={f"std^2 ± 1%": (std ** 2, 0.01 * std ** 2)},
                                          claim=f"steps-to-1pct-decay-{decays[len(decays) // 2]:g}"),
        "moving_variance_random": Series(list(range(1, horizon + 1)),
                                         {f"decay {d:g}": v for d, v in random_var.items()},
                                         "step", "moving variance (random batches)", log_x=True,
                                         reference={f"(n-1)/n std^2, n={BATCH}":
                                                    ((BATCH - 1) / BATCH * std ** 2, 0)}),
        "zero_init_bias": Series(list(range(1, steps + 1)), {
            "shadow mean": const_means,
            "mean*(1-decay^k)": [mean * (1 - decay ** k) for k in range(1, steps + 1)]},
            "step", "moving mean (constant batches)", theory=["mean*(1-decay^k)"],
            reference={f"debiased mean {mean:g}": (mean, 0)}, claim="zero-init-bias"),
    }
    return Result(
        headers=["decay", "expected steps to 1%", "measured (matched batches)",
                 "measured (random batches)", "final moving var / std^2 (random)", "(n-1)/n"],
        rows=rows, claims=claims, series=series, graph=graph, notes=notes,
        histograms={"batch_mean": batch_means})


def _first_within(values, target, rel):
    for k, v in enumerate(values, start=1):
        if abs(v - target) <= rel * target:
            return k
    return None
