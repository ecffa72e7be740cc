"""Behaviour audit of any BN builder ``FUNC(inputs, training)``, by probing, not by names.

The audit builds the layer in a fresh graph on a float32 placeholder and a
scalar ``tf.bool`` placeholder, then learns what it does from chosen feeds:

* which variables a training run changes (alone, or only with ``UPDATE_OPS``):
  the moving statistics, whatever they are called; of those, the ones the
  prediction output reads (changing them changes it);
* which is the mean and which the variance, the decay, zero-debiasing and the
  variance estimator, from three training steps on batches with chosen moments,
  by fitting ``s_k = d s_{k-1} + (1-d) t_k`` (plain EMA) or its debiased form
  ``s_k = sum_j d^(k-j) t_j / sum_j d^(k-j)`` to the shadows, with the target t
  the batch mean, the biased or the unbiased batch variance;
* epsilon from training outputs of batches ``±delta`` (batch variance delta^2):
  ``(y+ - y-) / (2 delta) = gamma / sqrt(delta^2 + eps)`` at delta = 1 and at a
  delta with delta^2 near eps gives eps with gamma cancelled;
* whether prediction changes the statistics, depends on the batch, and whether
  the statistics are trainable.
"""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.legacy import implementations as legacy
from tf1_repro.legacy import loader

ARTICLE_BEHAVIOUR = {"updates_on_training": True, "updates_need_update_ops": False,
                     "updates_on_inference": False, "inference_batch_independent": True,
                     "moving_stats_trainable": False}
KEYS = ("decay", "epsilon", "moving_mean_init", "moving_variance_init", "moving_variance_estimator",
        "zero_debias", "updates_on_training", "updates_need_update_ops", "updates_on_inference",
        "inference_batch_independent", "moving_stats_trainable", "matches_article", "differences",
        "warnings")
WHERE = "audit"


class _Layer:
    """The built layer in its graph and session, with probing helpers."""

    def __init__(self, func, input_shape, python_bool):
        self.shape = tuple(input_shape)
        self.graph = tf.Graph()
        self.notes = []
        with self.graph.as_default():
            self.x = tf.placeholder(tf.float32, (None,) + self.shape[1:], name="inputs")
            self.training = tf.placeholder(tf.bool, [], name="training")
            if python_bool:
                self.out_train = self._call(func, True, "FUNC(inputs, True)")
                first = set(self._variables())
                self.out_infer = self._call(func, False, "FUNC(inputs, False)")
                separate = [v for v in self._variables() if v not in first]
                if separate:
                    self.notes.append(
                        f"the two calls made separate variables ({', '.join(sorted(separate)[:4])}"
                        f"{', ...' if len(separate) > 4 else ''}): prediction never sees the trained "
                        f"statistics; share them with tf.variable_scope(..., reuse=tf.AUTO_REUSE)")
            else:
                self.out_train = self.out_infer = self._call(func, self.training, "FUNC(inputs, training)")
            self.variables = self.graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)
            self.trainable = {v.op.name for v in self.graph.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES)}
            self.update_ops = self.graph.get_collection(tf.GraphKeys.UPDATE_OPS)
            self.init = tf.global_variables_initializer()
        self.sess = tf.Session(graph=self.graph)

    def _variables(self):
        return [v.op.name for v in self.graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)]

    def _call(self, func, training, describe):
        out = loader.call(func, (self.x, training), WHERE, describe)
        if not isinstance(out, tf.Tensor) or not out.shape.is_compatible_with(self.x.shape):
            raise loader.BuilderError(
                f"{WHERE}: {describe} must return the layer's output, a tensor shaped like its "
                f"inputs {self.x.shape}, got {type(out).__name__}"
                f"{' of shape ' + str(out.shape) if isinstance(out, tf.Tensor) else ''}")
        return out

    def reset(self):
        self.sess.run(self.init)

    def values(self):
        return dict(zip([v.op.name for v in self.variables], self.sess.run(self.variables)))

    def load(self, values):
        for v in self.variables:
            v.load(values[v.op.name], self.sess)

    def run(self, batch, training, with_update_ops):
        out = self.out_train if training else self.out_infer
        fetches = [out] + (self.update_ops if with_update_ops else [])
        return self.sess.run(fetches, {self.x: batch, self.training: training})[0]


def _batch(shape, means, variances, rng):
    """A float32 batch whose per-channel mean and biased variance are exactly as asked (in float64)."""
    z = rng.standard_normal(shape)
    axes = tuple(range(len(shape) - 1))
    z = (z - z.mean(axes)) / z.std(axes)
    return (means + np.sqrt(variances) * z).astype(np.float32)


def _moments(batch):
    b = batch.astype(np.float64)
    axes = tuple(range(b.ndim - 1))
    n = int(np.prod(b.shape[:-1]))
    return b.mean(axes), b.var(axes), b.var(axes) * n / (n - 1)


def _fit(states, targets):
    """Best of plain / debiased EMA for shadows s0..s3 and targets t1..t3: (error, decay, debiased)."""
    s0, s1, s2, s3 = states
    t1, t2, t3 = targets
    scale = np.maximum(np.abs(np.array(targets)).max(0), 1e-6)
    fits = []
    with np.errstate(divide="ignore", invalid="ignore"):
        d = float(np.median((s2 - t2) / (s1 - t2)))
        pred = [d * s0 + (1 - d) * t1, None, d * s2 + (1 - d) * t3]
        fits.append((max(np.abs(pred[0] - s1).max(), np.abs(pred[2] - s3).max()) / scale.max(), d, False))
        d = float(np.median((t2 - s2) / (s2 - t1)))
        pred3 = (d * d * t1 + d * t2 + t3) / (1 + d + d * d)
        fits.append((max(np.abs(s1 - t1).max(), np.abs(pred3 - s3).max()) / scale.max(), d, True))
    fits = [f for f in fits if np.isfinite(f[0]) and 0.0 <= f[1] <= 1.0]
    return min(fits) if fits else (np.inf, None, None)


def audit(func, input_shape=(8, 4), python_bool=False, seed=0):
    """The audit report (a dict with ``KEYS``); raises ``loader.BuilderError`` if FUNC won't build."""
    if len(input_shape) < 2 or input_shape[0] < 2 or input_shape[0] % 2:
        raise ValueError(f"{WHERE}: --input-shape must be N,...,C with rank >= 2 and an even batch "
                         f"size N >= 2, got {','.join(map(str, input_shape))}")
    layer = _Layer(func, input_shape, python_bool)
    try:
        return _probe(layer, np.random.default_rng(seed))
    finally:
        layer.sess.close()


def _probe(layer, rng):
    shape, channels = layer.shape, layer.shape[-1]
    c = np.arange(channels)
    report = dict.fromkeys(KEYS)
    warnings, differences = list(layer.notes), []

    # 1. Which variables does a training run change, with or without UPDATE_OPS?
    probe = _batch(shape, 5.0 + c, 4.0, rng)
    layer.reset()
    initial = layer.values()
    layer.run(probe, True, False)
    alone = {k for k, v in layer.values().items() if not np.array_equal(v, initial[k])}
    layer.reset()
    layer.run(probe, True, True)
    with_ops = {k for k, v in layer.values().items() if not np.array_equal(v, initial[k])}
    report["updates_on_training"] = bool(alone)
    report["updates_need_update_ops"] = bool(not alone and with_ops)
    train_with_ops = report["updates_need_update_ops"]
    changed = alone or with_ops
    candidates = [k for k in changed if initial[k].shape == (channels,)]

    # 2. Three training steps with chosen moments; which candidates does prediction read?
    means = [5.0 + c, -3.0 + 2 * c, 8.0 - c]
    variances = [4.0 * (1 + 0.1 * c), 0.25 * (1 + 0.1 * c), 9.0 * (1 + 0.1 * c)]
    steps = [_batch(shape, m, v, rng) for m, v in zip(means, variances)]
    layer.reset()
    history = [layer.values()]
    for batch in steps:
        layer.run(batch, True, train_with_ops)
        history.append(layer.values())
    trained = history[-1]
    query = _batch(shape, 1.0, 2.0, rng)
    base = layer.run(query, False, False)
    used = []
    for name in candidates:
        layer.load(dict(trained, **{name: trained[name] * 1.5 + 0.7}))
        if not np.allclose(layer.run(query, False, False), base, rtol=1e-6, atol=1e-6):
            used.append(name)
        layer.load(trained)
    pool = used or candidates

    # 3. Fit the update rule to each candidate: mean, biased or unbiased variance.
    moments = [_moments(b) for b in steps]
    fits = {}
    for name in pool:
        states = [h[name].astype(np.float64) for h in history]
        for kind, index in (("mean", 0), ("biased", 1), ("unbiased", 2)):
            fits[(name, kind)] = _fit(states, [m[index] for m in moments])
    mean_fit = min(((f, n) for (n, k), f in fits.items() if k == "mean"), default=None, key=lambda t: t[0][0])
    var_fit = min(((f, n, k) for (n, k), f in fits.items() if k != "mean"), default=None,
                  key=lambda t: t[0][0])
    tol = 1e-4
    if mean_fit and mean_fit[0][0] < tol:
        report["decay"] = round(mean_fit[0][1], 5)
        report["zero_debias"] = mean_fit[0][2]
        report["moving_mean_init"] = _init(initial[mean_fit[1]])
    if var_fit and var_fit[0][0] < tol and (not mean_fit or var_fit[1] != mean_fit[1]):
        report["moving_variance_estimator"] = var_fit[2]
        report["moving_variance_init"] = _init(initial[var_fit[1]])
        if report["decay"] is None:
            report["decay"] = round(var_fit[0][1], 5)
            report["zero_debias"] = var_fit[0][2]
    stats = [n for n in ([mean_fit[1]] if mean_fit and mean_fit[0][0] < tol else [])
             + ([var_fit[1]] if var_fit and var_fit[0][0] < tol else [])]
    report["moving_stats_trainable"] = bool(stats) and any(n in layer.trainable for n in stats)

    # 4. Epsilon from training outputs of +-delta batches (gamma cancels).
    report["epsilon"] = _epsilon(layer, shape, train_with_ops)

    # 5. Prediction: does it change the statistics; does it depend on the batch?
    layer.load(trained)
    layer.run(query, False, False)  # a prediction runs the output alone, never the train op's UPDATE_OPS
    report["updates_on_inference"] = any(
        not np.array_equal(v, trained[k]) for k, v in layer.values().items())
    report["inference_batch_independent"] = _batch_independent(layer, trained, query, rng)

    # 6. Verdict against the article.
    settings = {k: report[k] for k in legacy.ARTICLE_SETTINGS}
    for key in legacy.ARTICLE_SETTINGS:
        if settings[key] is None:
            differences.append(f"{key} could not be measured (no moving statistic follows an EMA "
                               f"of the batch moments): the layer may not keep moving averages")
    known = {k: v for k, v in settings.items() if v is not None}
    close = dict(known)
    if known.get("decay") is not None and abs(known["decay"] - 0.9) <= 1e-3:
        close["decay"] = 0.9
    if known.get("epsilon") is not None and abs(known["epsilon"] / 1e-5 - 1) <= 0.1:
        close["epsilon"] = 1e-5
    differences += legacy.causes(dict(legacy.ARTICLE_SETTINGS, **close))
    behaviour = {
        "updates_on_training": "moving statistics do not update when the output runs with "
                               "training=True",
        "updates_need_update_ops": "updates run only with the UPDATE_OPS collection: a train op "
                                   "without tf.control_dependencies(update_ops) leaves them at "
                                   "their initial values",
        "updates_on_inference": "a training=False run changes the moving statistics: predictions "
                                "drift with every batch predicted",
        "inference_batch_independent": "at prediction a sample's output depends on its batch "
                                       "(batch statistics are used): the article's warning",
        "moving_stats_trainable": "the moving statistics are trainable: an optimizer changes them "
                                  "by gradient as well",
    }
    for key, expected in ARTICLE_BEHAVIOUR.items():
        if report[key] != expected:
            differences.append(behaviour[key])
            if key != "updates_on_training":
                warnings.append(behaviour[key])
    if not report["updates_on_training"] and not report["updates_need_update_ops"]:
        warnings.append("the moving statistics never update, with or without UPDATE_OPS")
    report["matches_article"] = not differences and not layer.notes
    report["differences"] = differences
    report["warnings"] = warnings
    return report


def _init(value):
    value = np.asarray(value, dtype=np.float64)
    return float(value[0]) if np.all(value == value[0]) else float(value.mean())


def _epsilon(layer, shape, with_update_ops):
    signs = np.where(np.arange(shape[0]) % 2 == 0, 1.0, -1.0).reshape((-1,) + (1,) * (len(shape) - 1))

    def slope(delta):
        layer.reset()
        out = layer.run((signs * delta * np.ones(shape)).astype(np.float32), True, with_update_ops)
        return (out[0].astype(np.float64) - out[1]).reshape(-1, shape[-1]).mean(0) / (2 * delta)

    a = slope(1.0)
    if not np.all(np.isfinite(a)) or np.any(a == 0):
        return None
    best = None
    for delta in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4):
        b = slope(delta)
        ratio = float(np.median(a / b))  # sqrt((delta^2 + eps) / (1 + eps))
        eps = np.median((a ** 2 - b ** 2 * delta ** 2) / (b ** 2 - a ** 2))
        quality = abs(ratio - 0.5)  # best conditioned when delta^2 is comparable to eps
        if np.isfinite(eps) and eps > 0 and (best is None or quality < best[0]):
            best = (quality, float(eps))
    layer.reset()
    return None if best is None else float(f"{best[1]:.3g}")


def _batch_independent(layer, trained, query, rng):
    """Each query sample alone, in its batch and in a 3x batch gives the same output."""
    other = _batch((2 * query.shape[0],) + query.shape[1:], -2.0, 9.0, rng)
    layer.load(trained)
    in_batch = layer.run(query, False, False)
    layer.load(trained)
    in_big = layer.run(np.concatenate([query, other]), False, False)[:len(query)]
    alone = []
    for i in range(len(query)):
        layer.load(trained)
        alone.append(layer.run(query[i:i + 1], False, False)[0])
    alone = np.array(alone)
    scale = max(1.0, float(np.abs(in_batch).max()))
    return bool(np.abs(in_batch - in_big).max() <= 1e-5 * scale
                and np.abs(in_batch - alone).max() <= 1e-5 * scale)


def format_audit(report):
    lines = []
    for key in KEYS[:-2]:
        lines.append(f"  {key:<28} {report[key]}")
    lines.append("  differences from the article:" + ("" if report["differences"] else " none"))
    lines += [f"    - {d}" for d in report["differences"]]
    lines.append("  warnings:" + ("" if report["warnings"] else " none"))
    lines += [f"    ! {w}" for w in report["warnings"]]
    return "\n".join(lines)
