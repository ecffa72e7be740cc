"""The demo model's check: when the checkpoint is the demo's (``model.json`` beside it),
``model.keras`` with ``ArticleBatchNormalization``, its predictions vs the TF1 checkpoint's on
held-out data, then ``train_steps`` more training steps in both (the same batches, dropout off,
Adam's state from the checkpoint), comparing every BN shadow after every step."""

import json
import os

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.comparisons import keras3_worker
from tf1_repro.layers.bn import bn_variables
from tf1_repro.tools.migrate.common import ROLES, TOLERANCE, TRAJECTORY_TOLERANCE, MigrateError


def demo_config(art, layers):
    """The ArticleModel config when the checkpoint is the demo's (model.json beside it)."""
    folder = os.path.dirname(os.path.abspath(art.checkpoint))
    path = os.path.join(folder, "model.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    names = ["bn_conv"] if config.get("kind") == "conv" else ["bn_input", "bn_hidden"]
    if sorted(names) != sorted(layer.name for layer in layers):
        return None
    train_file = os.path.join(folder, "train.json")
    batch_size = 64
    if os.path.isfile(train_file):
        with open(train_file, encoding="utf-8") as f:
            batch_size = json.load(f).get("batch_size", 64)
    return {"config": config, "batch_size": batch_size}


def _demo_dataset(config):
    """The demo's data for a model.json config: Blobs (dense) or Stripes (conv), sized to it."""
    from tf1_repro.model import data  # pylint: disable=import-outside-toplevel
    shape = config["input_shape"]
    if config["kind"] == "dense":
        return data.Blobs(features=shape[0], classes=config["num_classes"], seed=config["seed"])
    if shape[0] == shape[1] and shape[2] == 1 and config["num_classes"] == 2:
        return data.Stripes(size=shape[0])
    raise MigrateError(f"migrate: model.json beside PATH must describe the demo's data (dense, or "
                       f"conv on [S, S, 1] with 2 classes), got input_shape {shape}")


GRADIENT_FREE = 1e-6  # a parameter whose gradient is below this fraction of the largest one


def _demo_tf1(art, demo, train_steps):
    """The TF1 demo model: held-out logits, the gradient-free parameters, and ``train_steps``
    steps (dropout off) twice: all parameters trained, then the gradient-free ones held at
    their checkpoint values after every step."""
    from tf1_repro.model import data, network  # pylint: disable=import-outside-toplevel
    config = demo["config"]
    dataset = _demo_dataset(config)
    x_pred, _ = data.held_out(dataset, 256, config["seed"])
    arrays = {"x_pred": x_pred}
    with tf.Graph().as_default() as graph:
        model = network.ArticleModel(**config)
        shadows = {name: bn_variables(name) for name in model.bn_outputs}
        trainable = tf.trainable_variables()
        gradients = tf.gradients(model.loss, trainable)
        with tf.Session(graph=graph) as sess:
            model.saver.restore(sess, art.checkpoint)
            step = int(sess.run(model.global_step))
            logits = model.logits_for(sess, x_pred, training=False, keep_prob=1.0)
            batches = [data.train_batch(dataset, demo["batch_size"], config["seed"], step + i)
                       for i in range(train_steps)]
            for i, (x, y) in enumerate(batches):
                arrays[f"x_{i}"], arrays[f"y_{i}"] = x, y
            sizes = {}
            if batches:
                values = sess.run(gradients, model.feed(batches[0][0], training=True,
                                                        keep_prob=1.0, y=batches[0][1]))
                sizes = {v.op.name: float(np.abs(g).max()) for v, g in zip(trainable, values)}
            largest = max(sizes.values(), default=0.0)
            pinned = sorted(k for k, g in sizes.items() if g <= GRADIENT_FREE * largest)
            start = {v.op.name: sess.run(v) for v in trainable}
            by_name = {v.op.name: v for v in trainable}
            trajectories = {}
            for run, pins in (("all", []), ("pinned", pinned)):
                if run == "pinned" and not pinned:
                    break
                model.saver.restore(sess, art.checkpoint)
                trajectory = []
                for x, y in batches:
                    sess.run(model.train_op, model.feed(x, training=True, keep_prob=1.0, y=y))
                    for key in pins:
                        by_name[key].load(start[key], sess)
                    trajectory.append(sess.run({n: {"moving_mean": s["moving_mean"],
                                                    "moving_variance": s["moving_variance"]}
                                                for n, s in shadows.items()}))
                trajectories[run] = trajectory
    return arrays, logits, trajectories, step, {k: sizes[k] for k in pinned}, largest


def _trajectory_diff(reference, out, run):
    steps = []
    for i, stats in enumerate(reference):
        worst = 0.0
        for name, values in stats.items():
            for role, value in values.items():
                diff = np.abs(out[f"{run}/step_{i}/{name}/{role}"] - value).max()
                worst = max(worst, float(diff / max(np.abs(value).max(), 1e-12)))
        steps.append(worst)
    return steps


def demo_check(art, demo, weights, train_steps, model_path):
    arrays, logits, trajectories, step, pinned, largest = _demo_tf1(art, demo, train_steps)
    reader = tf.train.load_checkpoint(art.checkpoint)
    for key in reader.get_variable_to_shape_map():
        arrays[f"tf1:{key}"] = reader.get_tensor(key)
    for name, w in weights.items():
        for role in ROLES:
            arrays[f"bn:{name}/{role}"] = w[role]
    runs = [{"name": run, "pinned": sorted(pinned) if run == "pinned" else []}
            for run in trajectories]
    out, info = keras3_worker.run("demo-model", arrays, {
        "config": demo["config"], "step": step, "train_steps": train_steps, "save": model_path,
        "keep_prob": 0.8, "runs": runs})
    scale = float(np.abs(logits).max())
    prediction = float(np.abs(out["logits_pred"] - logits).max())
    diffs = {run: _trajectory_diff(reference, out, run) for run, reference in trajectories.items()}
    checked = "pinned" if "pinned" in diffs else "all"
    worst = max(diffs[checked], default=0.0)
    reloaded = bool(np.array_equal(out["logits_reloaded"], out["logits_pred"]))
    return {"step": step, "prediction_samples": int(arrays["x_pred"].shape[0]),
            "prediction_max_abs_diff": prediction, "prediction_relative": prediction / scale,
            "reloaded_identical": reloaded, "train_steps": train_steps,
            "gradient_free": pinned, "largest_gradient": largest,
            "trajectory_relative_diff_per_step": diffs,
            "trajectory_checked": checked,
            "trajectory_max_relative_diff": {run: max(d, default=0.0) for run, d in diffs.items()},
            "ok": bool(prediction / scale <= TOLERANCE and reloaded
                       and worst <= TRAJECTORY_TOLERANCE),
            "keras": info.get("keras_version")}
