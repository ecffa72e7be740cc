"""Stock Keras 3 ``BatchNormalization`` next to the article's ``bn_layer``, measured.

One schedule per rank ([16, 4] and [8, 2, 2, 4]): a prediction before any training
(shadows at their initial values), ``train_steps`` training batches, then ``predict_steps``
prediction batches. The article's TF1 ``bn_layer`` runs it here (TF1 graph, session); each
Keras 3 configuration runs it in a Keras 3 child process (``keras3_worker``), eagerly,
under ``tf.function`` or under ``tf.function(jit_compile=True)`` (XLA, which fuses the
ops; Keras 3 itself has no fused BN path on TensorFlow: it calls ``tf.nn.moments`` and
``tf.nn.batch_normalization``). Each column is the max |difference| to the article's layer
over both ranks; ``variance_estimator`` is fitted from the final moving variance (closer to
the EMA of biased or of Bessel-corrected batch variances, each from the layer's own initial
value and momentum). A row reproduces the article when every column is within ``TOLERANCE``
times the column's scale: the largest |value| the article's layer gives there (at least 1).
"""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.layers.bn import bn_layer, bn_variables
from tf1_repro.comparisons import keras3_worker

TOLERANCE = 1e-5
SHAPES = {"rank 2": (16, 4), "rank 4": (8, 2, 2, 4)}
MATCHED = {"momentum": 0.9, "epsilon": 1e-5}
ZEROS = {**MATCHED, "moving_variance_initializer": "zeros"}
ROWS = (
    ("stock BatchNormalization(), defaults", "stock", {}, "eager"),
    ("stock, momentum=0.9, epsilon=1e-5", "stock", MATCHED, "eager"),
    ("stock, + moving_variance_initializer='zeros'", "stock", ZEROS, "eager"),
    ("stock, zeros, under tf.function", "stock", ZEROS, "function"),
    ("stock, zeros, tf.function(jit_compile=True) (XLA)", "stock", ZEROS, "xla"),
    ("stock, zeros, synchronized=True", "stock", {**ZEROS, "synchronized": True}, "eager"),
    ("ArticleBatchNormalization()", "article", {}, "eager"),
    ("ArticleBatchNormalization(), under tf.function", "article", {}, "function"),
    ("ArticleBatchNormalization(), XLA", "article", {}, "xla"),
)
COLUMNS = ("first_prediction", "training_output", "moving_mean", "moving_variance",
           "prediction_output")


def schedule(shape, train_steps, predict_steps, seed):
    """Batches (mean 3, std 2 per channel, shifted each step) and their training flags."""
    rng = np.random.default_rng(seed)
    flags = [False] + [True] * train_steps + [False] * predict_steps
    channels = shape[-1]
    batches = [(rng.normal(3.0, 2.0, size=channels) + rng.normal(size=shape)
                * rng.uniform(0.5, 2.0, size=channels)).astype(np.float32) for _ in flags]
    return batches, flags


def article_run(batches, flags, decay=0.9, eps=1e-5):
    """The TF1 ``bn_layer``'s outputs and shadows after each step of the schedule."""
    with tf.Graph().as_default() as graph:
        x = tf.placeholder(tf.float32, (None,) + batches[0].shape[1:])
        training = tf.placeholder(tf.bool, [])
        out = bn_layer(x, training, "bn", decay, eps)
        shadows = bn_variables("bn")
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            steps = []
            for batch, flag in zip(batches, flags):
                y = sess.run(out, {x: batch, training: flag})
                mean, var = sess.run([shadows["moving_mean"], shadows["moving_variance"]])
                steps.append((y, mean, var))
    return steps


def _estimator(batches, flags, momentum, initial, final):
    """Which EMA of batch variances (biased or n/(n-1) unbiased) the final shadow is closer to."""
    fits = {}
    for name, correct in (("biased", False), ("unbiased", True)):
        shadow = np.asarray(initial, np.float64)
        for batch, flag in zip(batches, flags):
            if flag:
                x = batch.reshape(-1, batch.shape[-1]).astype(np.float64)
                var = x.var(axis=0, ddof=1 if correct else 0)
                shadow = momentum * shadow + (1 - momentum) * var
        fits[name] = float(np.abs(shadow - final).max())
    return min(fits, key=fits.get), fits


def _diffs(reference, keras_out, flags, name):
    first = [i for i, f in enumerate(flags) if not f][0]
    train = [i for i, f in enumerate(flags) if f]
    last = [i for i, f in enumerate(flags) if not f and i > max(train)]

    def worst(indices, pick, key):
        return max(float(np.abs(keras_out[f"{name}/{key}_{i}"].astype(np.float64)
                                - reference[i][pick]).max()) for i in indices)
    return {"first_prediction": worst([first], 0, "out"),
            "training_output": worst(train, 0, "out"),
            "moving_mean": worst(range(len(flags)), 1, "moving_mean"),
            "moving_variance": worst(range(len(flags)), 2, "moving_variance"),
            "prediction_output": worst(last, 0, "out"),
            "moving_variance_by_training_step": [worst([i], 2, "moving_variance") for i in train]}


def _scales(reference, flags):
    """The largest |value| the article's layer gives for each column (the tolerance's scale)."""
    first = flags.index(False)
    train = [i for i, f in enumerate(flags) if f]
    last = [i for i, f in enumerate(flags) if not f and i > max(train)]
    out = [float(np.abs(r[0]).max()) for r in reference]
    return {"first_prediction": out[first], "training_output": max(out[i] for i in train),
            "moving_mean": max(float(np.abs(r[1]).max()) for r in reference),
            "moving_variance": max(float(np.abs(r[2]).max()) for r in reference),
            "prediction_output": max(out[i] for i in last)}


def compare(seed=0, train_steps=20, predict_steps=5, rows=ROWS):
    """Measure each row (label, "stock" | "article", kwargs, mode) of ``rows`` against the TF1
    article layer; returns a JSON-able dict."""
    table = rows
    arrays, schedules, runs = {}, [], {}
    for index, (rank, shape) in enumerate(SHAPES.items()):
        batches, flags = schedule(shape, train_steps, predict_steps, seed + index)
        prefix = rank.replace(" ", "")
        arrays.update({f"{prefix}/batch_{i}": b for i, b in enumerate(batches)})
        schedules.append({"prefix": prefix, "training": flags})
        runs[rank] = (prefix, batches, flags, article_run(batches, flags))
    specs = [{"name": f"row{i}", "layer": layer, "kwargs": kwargs, "mode": mode}
             for i, (_, layer, kwargs, mode) in enumerate(table)]
    keras_out, info = keras3_worker.run("replay", arrays, {"schedules": schedules, "specs": specs})
    rows = []
    for i, (label, layer, kwargs, mode) in enumerate(table):
        momentum = kwargs.get("momentum", 0.99 if layer == "stock" else 0.9)
        per_rank, estimators, worst = {}, {}, dict.fromkeys(COLUMNS, 0.0)
        scale = dict.fromkeys(COLUMNS, 1.0)
        for rank, (prefix, batches, flags, reference) in runs.items():
            name = f"{prefix}/row{i}"
            per_rank[rank] = _diffs(reference, keras_out, flags, name)
            for column in COLUMNS:
                worst[column] = max(worst[column], per_rank[rank][column])
            for column, value in _scales(reference, flags).items():
                scale[column] = max(scale[column], value)
            estimators[rank] = _estimator(batches, flags, momentum,
                                          keras_out[f"{name}/initial_moving_variance"],
                                          keras_out[f"{name}/moving_variance_{len(flags) - 1}"])
        differs = [c for c in COLUMNS if worst[c] > TOLERANCE * scale[c]]
        rows.append({"label": label, "layer": layer, "kwargs": kwargs, "mode": mode,
                     "max_abs_diff": worst, "per_rank": per_rank,
                     "variance_estimator": sorted({e[0] for e in estimators.values()}),
                     "estimator_fit": {r: e[1] for r, e in estimators.items()},
                     "initial_moving_variance": float(keras_out[
                         f"{runs['rank 2'][0]}/row{i}/initial_moving_variance"][0]),
                     "differs_in": differs, "reproduces_article": not differs})
    return {"seed": seed, "train_steps": train_steps, "predict_steps": predict_steps,
            "shapes": {k: list(v) for k, v in SHAPES.items()}, "tolerance": TOLERANCE,
            "keras_worker": info, "rows": rows}


def format_compare(result):
    head = ("| Keras 3 layer | first prediction | training out | moving mean | moving var "
            "| prediction out | moving var estimator | reproduces the article |")
    by_label = {row["label"]: row for row in result["rows"]}
    matched = by_label.get("stock, momentum=0.9, epsilon=1e-5")
    lines = [f"Stock Keras 3 BatchNormalization vs the article's bn_layer (TF1), max |difference| "
             f"over ranks 2 and 4 ({result['train_steps']} training steps, "
             f"{result['predict_steps']} prediction batches, seed {result['seed']})", "",
             head, "|" + "---|" * 8]
    for row in result["rows"]:
        d = row["max_abs_diff"]
        verdict = "yes" if row["reproduces_article"] else "no: " + ", ".join(
            c.replace("_", " ") for c in row["differs_in"])
        lines.append(f"| {row['label']} | " + " | ".join(f"{d[c]:.2g}" for c in COLUMNS)
                     + f" | {'/'.join(row['variance_estimator'])} | {verdict} |")
    if matched:
        steps = matched["per_rank"]["rank 2"]["moving_variance_by_training_step"]
        shown = [k for k in (1, 2, 5, 10, 20) if k <= len(steps)]
        lines.append("")
        lines.append("First steps, momentum=0.9 with the ones initialiser (rank 2): moving-variance "
                     "gap to the article after k training steps (0.9**k of the initial 1): "
                     + ", ".join(f"k={k}: {steps[k - 1]:.3g}" for k in shown))
    return "\n".join(lines)
