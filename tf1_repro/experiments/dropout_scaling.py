"""dropout-scaling: the article's two ways to align dropout in training and prediction.

keep_prob = 1 - dropout rate. Inverted (second way, ``tf.nn.dropout``): training
x*mask/keep_prob, prediction x. Vanilla (first way): training x*mask, prediction
x*keep_prob. Each keeps E[training output] = prediction output. Using the vanilla
prediction factor on top of ``tf.nn.dropout`` (the mistake of mixing them)
shrinks outputs by keep_prob.

Ratios are sum over masks and units of the training outputs / (masks x sum of
prediction outputs), for x_j in [0.5, 1.5]; the standard error of the inverted
one is sqrt((1-k)/k * sum x^2 / M) / sum x (M masks), of the vanilla one
sqrt(k(1-k) * sum x^2 / M) / (k sum x).
"""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.layers.dropout import (inverted_dropout, keep_prob_placeholder, source_formula_dropout,
                               vanilla_dropout_predict, vanilla_dropout_train)
from tf1_repro.experiments.core import Claim, Param, Result, Series, keep_prob, register

UNITS = 1000
MASKS = 2000


@register("dropout-scaling", "tf.nn.dropout divides kept units by keep_prob in training (the "
          "article's second way); both ways keep the expectation; mixing them shrinks outputs", [
              Param("keep_prob", 0.8, "keep probability in training", keep_prob),
          ])
def run(p, seed, bn):  # pylint: disable=unused-argument
    k = p["keep_prob"]
    rng = np.random.default_rng(seed)
    x_value = rng.uniform(0.5, 1.5, UNITS).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.tile(tf.constant(x_value)[None], [MASKS, 1], name="x_tiled")
        kp = keep_prob_placeholder()
        op_seed = int(rng.integers(1, 2**31))
        source = source_formula_dropout(x, kp, seed=op_seed)
        tf_dropout = inverted_dropout(x, kp, seed=op_seed)
        vanilla_train = vanilla_dropout_train(x, kp, seed=op_seed + 1)
        vanilla_predict = vanilla_dropout_predict(tf.constant(x_value), kp)
        inverted_predict = inverted_dropout(tf.constant(x_value), kp)
        graph.finalize()
        with tf.Session(graph=graph) as sess:
            src, tfd, vt = sess.run([source, tf_dropout, vanilla_train], {kp: k})
            inv_pred = sess.run(inverted_predict, {kp: 1.0})
            van_pred = sess.run(vanilla_predict, {kp: k})
    sum_x, sum_x2 = float(x_value.sum(dtype=np.float64)), float((x_value.astype(np.float64) ** 2).sum())
    inv_ratio = float(tfd.sum(dtype=np.float64) / MASKS / inv_pred.sum(dtype=np.float64))
    van_ratio = float(vt.sum(dtype=np.float64) / MASKS / van_pred.sum(dtype=np.float64))
    # the mistake: tf.nn.dropout in training, x * keep_prob at prediction
    mixed_ratio = float(van_pred.sum(dtype=np.float64) / (tfd.sum(dtype=np.float64) / MASKS))
    se_inv = np.sqrt((1 - k) / k * sum_x2 / MASKS) / sum_x
    se_van = np.sqrt(k * (1 - k) * sum_x2 / MASKS) / (k * sum_x)
    differing = int((src != tfd).sum())
    kept = float((tfd != 0).mean())
    claims = [
        Claim("inverted-equals-tf-dropout",
              f"the article's quoted source (floor(keep_prob + uniform) mask, x/keep_prob*mask) and "
              f"tf.nn.dropout with the same op seed: elements that differ out of {MASKS * UNITS} "
              f"(bitwise; holds when 1-(1-keep_prob) == keep_prob in float32, e.g. keep_prob >= 0.5)",
              differing, 0, 0),
        Claim("inverted-expectation",
              f"inverted: mean training output / prediction output (keep_prob fed 1.0) over {MASKS} "
              f"masks x {UNITS} units (tolerance 5 standard errors = 5*{se_inv:.2g})",
              inv_ratio, 1.0, 5 * se_inv),
        Claim("vanilla-expectation",
              f"vanilla: mean training output (x*mask) / prediction output (x*keep_prob) "
              f"(tolerance 5 standard errors = 5*{se_van:.2g})",
              van_ratio, 1.0, 5 * se_van),
        Claim("double-scaling-detected",
              f"mixing the ways (tf.nn.dropout in training, x*keep_prob at prediction): prediction / "
              f"mean training output = keep_prob (tolerance 5 standard errors, 5*{k * se_inv:.2g})",
              mixed_ratio, k, 5 * k * se_inv),
    ]
    rows = [
        ["inverted (tf.nn.dropout)", f"x*mask/{k:g}", "x (keep_prob=1.0)", float(tfd.mean()),
         float(inv_pred.mean()), inv_ratio],
        ["vanilla", "x*mask", f"x*{k:g}", float(vt.mean()), float(van_pred.mean()), van_ratio],
        ["mixed (mistake)", f"x*mask/{k:g}", f"x*{k:g}", float(tfd.mean()), float(van_pred.mean()),
         1 / mixed_ratio],
    ]
    return Result(
        headers=["convention", "training", "prediction", "mean training output",
                 "mean prediction output", "training / prediction"],
        rows=rows, claims=claims, graph=graph,
        series={"expectation_ratio": Series(
            [0, 1, 2], {"mean training output / prediction output": [inv_ratio, van_ratio, 1 / mixed_ratio],
                        "expected": [1.0, 1.0, 1 / k]},
            f"convention (keep_prob {k:g}, {MASKS} masks x {UNITS} units)", "training / prediction",
            theory=["expected"],
            categories=["inverted (tf.nn.dropout)", "vanilla", "mixed (mistake)"],
            claim="double-scaling-detected")},
        notes=[f"kept fraction {kept:.4f} (keep_prob {k:g}); kept units of tf.nn.dropout equal "
               f"x/{k:g}: {bool(np.allclose(tfd[tfd != 0], np.broadcast_to(x_value, tfd.shape)[tfd != 0] / np.float32(k)))}"])
