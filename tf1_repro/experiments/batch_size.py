"""batch-size: batch statistics depend on the batch; a batch of one collapses.

The article: each batch is small, so its mean and variance differ from batch to
batch and from the population's; at prediction time one usually feeds a single
sample, whose batch variance is 0. Measured:

1. training=True on a batch of 1 outputs beta (any gamma, any sample): the
   batch variance is 0 and x - mean is exactly 0.
2. The spread of batch means across batches of n samples is std / sqrt(n).
3. The mean biased batch variance is (n - 1)/n * std^2: small prediction batches
   underestimate the population variance.
"""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.experiments import _common
from tf1_repro.experiments.core import (Claim, Param, Result, Series, at_least, finite,
                                        float32_ulp, positive, register)

CHANNELS = 8
BATCHES = 2000  # batches drawn per size
SINGLES = 32  # single samples fed in training mode


@register("batch-size", "batch statistics vary as std/sqrt(n) with the batch size n, and a batch "
          "of one in training mode outputs beta", [
              Param("sizes", [1, 2, 4, 8, 16, 32, 64, 128], "batch sizes (comma-separated)",
                    at_least(1)),
              Param("mean", 3.0, "mean of the data", finite),
              Param("std", 2.0, "standard deviation of the data", positive),
          ])
def run(p, seed, bn):
    sizes, mean, std = sorted(set(p["sizes"])), p["mean"], p["std"]
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        x, training = _common.placeholders(CHANNELS)
        (_, out, variables), = _common.standalone_layers(bn, x, training, [0.9])
        gamma_value = rng.uniform(0.5, 2.0, CHANNELS).astype(np.float32)
        beta_value = rng.uniform(-2.0, 2.0, CHANNELS).astype(np.float32)
        set_affine = tf.group(variables["gamma"].assign(gamma_value),
                              variables["beta"].assign(beta_value))
        n_per_batch = tf.placeholder(tf.int32, [], name="n")
        grouped = tf.reshape(x, [-1, n_per_batch, CHANNELS])
        batch_mean, batch_var = tf.nn.moments(grouped, [1], name="per_batch_moments")
        init = tf.global_variables_initializer()
        graph.finalize()
        with tf.Session(graph=graph) as sess:
            sess.run([init])
            sess.run(set_affine)
            singles = (mean + std * rng.standard_normal((SINGLES, CHANNELS))).astype(np.float32)
            outs = np.array([sess.run(out, {x: s[None], training: True})[0] for s in singles])
            collapse_error = float(np.abs(outs - beta_value).max())
            biggest = float(np.abs(singles * gamma_value / np.sqrt(_common.EPS)).max())
            collapse_tol = float32_ulp(biggest + np.abs(beta_value).max()) + float32_ulp(
                np.abs(beta_value).max())
            spreads, var_ratios, rows = [], [], []
            for n in sizes:
                data = (mean + std * rng.standard_normal((BATCHES * n, CHANNELS))).astype(np.float32)
                means, variances = sess.run([batch_mean, batch_var], {x: data, n_per_batch: n})
                spread = float(np.sqrt(means.var(axis=0, ddof=1).mean()))  # pooled over channels
                spreads.append(spread / (std / np.sqrt(n)))
                var_ratios.append(float(variances.mean() / std ** 2))
                rows.append([n, spread, std / np.sqrt(n), spreads[-1],
                             float(np.abs(means - mean).mean()), var_ratios[-1], (n - 1) / n])

    dof = CHANNELS * (BATCHES - 1)
    spread_tol = 5 / np.sqrt(2 * dof)
    # standard error of mean(biased batch var)/std^2 over BATCHES*CHANNELS batches of n Gaussian
    # samples: Var(s^2_biased)/std^4 = 2(n-1)/n^2; n = 1 has variance exactly 0 and is skipped
    z_scores = [abs(r - (n - 1) / n) / (np.sqrt(2 * (n - 1)) / n / np.sqrt(BATCHES * CHANNELS))
                for r, n in zip(var_ratios, sizes) if n > 1]
    claims = [
        Claim("single-sample-training-collapses",
              f"training=True on {SINGLES} single samples (random gamma in [0.5, 2], beta in [-2, 2]):"
              f" max |output - beta| (tolerance: the float32 rounding of beta - a + a, "
              f"a = gamma*x/sqrt(eps), i.e. ulp(|a|+|beta|) + ulp(|beta|))",
              collapse_error, 0.0, collapse_tol),
        Claim("batch-mean-noise",
              f"the spread (std) of batch means over {BATCHES} batches of n samples is std/sqrt(n) "
              f"for every n in {sizes}: max |spread/(std/sqrt(n)) - 1| (tolerance 5 standard errors "
              f"of a pooled sample std with {CHANNELS} channels x {BATCHES - 1} degrees of freedom: "
              f"5/sqrt(2*{dof}))",
              float(np.max(np.abs(np.array(spreads) - 1))), 0.0, spread_tol),
        Claim("batch-var-bias",
              f"the mean biased batch variance is (n-1)/n * std^2 for every n >= 2 in {sizes}: max "
              f"|mean(var)/std^2 - (n-1)/n| in standard errors sqrt(2(n-1))/n/sqrt({BATCHES}*"
              f"{CHANNELS}) (Gaussian data; tolerance 5 standard errors)",
              max(z_scores) if z_scores else float("nan"), 0.0, 5.0),
    ]
    var_se = [5 * np.sqrt(2 * (n - 1)) / n / np.sqrt(BATCHES * CHANNELS) for n in sizes]
    series = {"batch_mean_spread": Series(sizes, {
        "measured spread": [r[1] for r in rows], "std/sqrt(n)": [r[2] for r in rows]},
        "batch size n", "std of batch means", log_x=True, log_y=True, theory=["std/sqrt(n)"],
        band={"std/sqrt(n)": ([r[2] * (1 - spread_tol) for r in rows],
                              [r[2] * (1 + spread_tol) for r in rows])}, claim="batch-mean-noise"),
        "batch_variance": Series(sizes, {"mean batch var / std^2": var_ratios,
                                         "(n-1)/n": [(n - 1) / n for n in sizes]},
                                 "batch size n", "ratio", log_x=True, theory=["(n-1)/n"],
                                 band={"(n-1)/n": ([(n - 1) / n - e for n, e in zip(sizes, var_se)],
                                                   [(n - 1) / n + e for n, e in zip(sizes, var_se)])},
                                 claim="batch-var-bias")}
    return Result(
        headers=["n", "spread of batch means", "std/sqrt(n)", "ratio", "mean |batch mean - mean|",
                 "mean batch var / std^2", "(n-1)/n"],
        rows=rows, claims=claims, series=series, graph=graph,
        notes=[f"single samples in training mode: max |output - beta| = {collapse_error:.3g} over "
               f"{SINGLES} samples; the output does not depend on the sample"])
