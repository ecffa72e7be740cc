"""Behaviour audit of any dropout builder ``FUNC(x, keep_prob, training)``.

Training feed: keep_prob=k, training=True. Two prediction feeds, in this order:
"keep_prob=1.0" (keep_prob=1.0, training=False: the article's) and
"training=False" (keep_prob=k, training=False). Measured:

* ``convention``: the scale of kept units in training, 1/k ("inverted", the
  article's second way and ``tf.nn.dropout``), 1 ("vanilla", the first way), or
  "none" when nothing is dropped;
* ``keep_fraction``: the fraction of units kept in training;
* per prediction feed, ``deterministic`` (two runs equal) and ``ratio`` = mean
  prediction output / mean training output over many masks;
* ``aligned``: some feed is deterministic with ratio 1 within 5 standard errors
  of the training mean; ``aligned_feed`` the first such feed, or None;
* ``matches_article``: inverted, and both feeds behave as the article's
  ``tf.nn.dropout(x, keep_prob)`` does (keep_prob=1.0: deterministic with
  ratio 1; keep_prob=k at prediction: still random).
"""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.layers import checks
from tf1_repro.comparisons import loader

WHERE = "audit-dropout"
FEEDS = ("keep_prob=1.0", "training=False")
UNITS = (64, 256)
TRAIN_RUNS = 40


def audit_dropout(func, keep_prob=0.8, seed=0):
    """The dropout audit report; raises ``loader.BuilderError`` if FUNC won't build."""
    k = checks.check_keep_prob(WHERE, keep_prob)
    rng = np.random.default_rng(seed)
    x_value = rng.uniform(0.5, 1.5, UNITS).astype(np.float32)
    with tf.Graph().as_default() as graph:
        tf.set_random_seed(seed)  # the masks, so the same builder gives the same report every run
        x = tf.placeholder(tf.float32, (None, UNITS[1]), name="x")
        kp = tf.placeholder(tf.float32, [], name="keep_prob")
        training = tf.placeholder(tf.bool, [], name="training")
        out = loader.call(func, (x, kp, training), WHERE, "FUNC(x, keep_prob, training)")
        if not isinstance(out, tf.Tensor) or not out.shape.is_compatible_with(x.shape):
            raise loader.BuilderError(
                f"{WHERE}: FUNC(x, keep_prob, training) must return a tensor shaped like x "
                f"{x.shape}, got {type(out).__name__}")
        init = tf.global_variables_initializer()
        graph.finalize()
        with tf.Session(graph=graph) as sess:
            sess.run(init)
            train = np.array([sess.run(out, {x: x_value, kp: k, training: True})
                              for _ in range(TRAIN_RUNS)], dtype=np.float64)
            feeds = {FEEDS[0]: {x: x_value, kp: 1.0, training: False},
                     FEEDS[1]: {x: x_value, kp: k, training: False}}
            predictions = {name: [sess.run(out, f).astype(np.float64) for _ in range(2)]
                           for name, f in feeds.items()}
    kept = train != 0
    keep_fraction = float(kept.mean())
    scale = float(np.median(train[kept] / np.broadcast_to(x_value, train.shape)[kept])) if kept.any() else 0.0
    if keep_fraction == 1.0 and abs(scale - 1.0) < 1e-6:
        convention = "none"
    elif abs(scale - 1.0 / k) < 1e-4 / k:
        convention = "inverted"
    elif abs(scale - 1.0) < 1e-4:
        convention = "vanilla"
    else:
        convention = None
    train_mean = float(train.mean())
    se = float(train.std() / np.sqrt(train.size) / train_mean) if train_mean else np.inf
    inference = {}
    for name, (first, second) in predictions.items():
        inference[name] = {"deterministic": bool(np.array_equal(first, second)),
                           "ratio": float(first.mean() / train_mean) if train_mean else None}
    aligned_feed = next((n for n in FEEDS if inference[n]["deterministic"] and inference[n]["ratio"]
                         is not None and abs(inference[n]["ratio"] - 1) <= 5 * se + 1e-6), None)
    matches = (convention == "inverted" and aligned_feed == FEEDS[0]
               and not inference[FEEDS[1]]["deterministic"])
    return {"convention": convention, "keep_fraction": keep_fraction, "inference": inference,
            "aligned": aligned_feed is not None, "aligned_feed": aligned_feed,
            "matches_article": matches}


def notes(report, keep_prob):
    """Plain-language findings for the console (not part of the JSON)."""
    out = []
    infer = report["inference"]
    if report["convention"] == "inverted" and infer[FEEDS[1]]["deterministic"] and \
            infer[FEEDS[1]]["ratio"] is not None and abs(infer[FEEDS[1]]["ratio"] - keep_prob) < 0.02:
        out.append(f"double scaling: prediction multiplies by keep_prob on top of inverted dropout "
                   f"(ratio {infer[FEEDS[1]]['ratio']:.3f}); correct only while keep_prob is fed 1.0")
    if report["convention"] == "vanilla" and report["aligned_feed"] == FEEDS[1]:
        out.append("vanilla dropout (the article's first way): feed the training keep_prob at "
                   "prediction, not 1.0, or outputs are 1/keep_prob too large")
    if report["convention"] == "none":
        out.append("nothing is dropped in training: keep_prob has no effect")
    if not report["aligned"]:
        out.append("no prediction feed reproduces the training-time expectation")
    return out


def format_report(report, builder, keep_prob):
    """What ``audit-dropout`` prints for ``builder`` (its ``PATH.py:FUNC``): the verdict, the
    convention, the keep fraction, each prediction feed, the alignment and the ``notes``."""
    lines = [f"audit-dropout of {builder} (keep_prob {keep_prob:g} in training): "
             f"{'matches' if report['matches_article'] else 'differs from'} the article's "
             f"tf.nn.dropout(x, keep_prob)",
             f"  convention       {report['convention']}  (kept units scaled by "
             f"{'1/keep_prob' if report['convention'] == 'inverted' else '1'})",
             f"  keep_fraction    {report['keep_fraction']:.4f}"]
    for feed, r in report["inference"].items():
        lines.append(f"  prediction feed {feed:<15} deterministic {r['deterministic']!s:<5}  "
                     f"prediction / mean training output {r['ratio']:.4f}")
    lines.append(f"  aligned          {report['aligned']}  (feed: {report['aligned_feed']})")
    lines += [f"  ! {note}" for note in notes(report, keep_prob)]
    return "\n".join(lines)
