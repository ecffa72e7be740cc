"""Keras 3 computations for ``migrate`` and ``compare-keras3``, run in a child process.

The command line (and the tests) run TensorFlow with TF1 behaviour, under which Keras 3
cannot run, so the TF1 side calls ``run(task, arrays, params)``: it writes the arrays and
parameters to a temporary folder and runs ``python -m tf1_repro.comparisons.keras3_worker TASK
DIR`` in a fresh interpreter with TF2 behaviour (eager), which writes ``out.npz`` and
``out.json`` back. The tasks are the functions in ``TASKS``; each takes
``(arrays, params)`` and returns ``(arrays, json-able dict)``.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np


class WorkerError(RuntimeError):
    """The Keras 3 child process failed; the message ends with its last stderr line."""


def run(task, arrays, params, timeout=600):
    """Run ``task`` in a Keras 3 child process; returns ``(arrays, result dict)``."""
    with tempfile.TemporaryDirectory(prefix="tf1_repro_keras3_") as folder:
        np.savez(os.path.join(folder, "in.npz"), **arrays)
        with open(os.path.join(folder, "in.json"), "w", encoding="utf-8") as f:
            json.dump(params, f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
        env.pop("TF_USE_LEGACY_KERAS", None)  # the parent's tf.compat.v1.layers setting
        done = subprocess.run([sys.executable, "-m", "tf1_repro.comparisons.keras3_worker", task, folder],
                              capture_output=True, text=True, timeout=timeout, env=env, check=False)
        if done.returncode != 0:
            last = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise WorkerError(f"the Keras 3 process ({task}) failed with status {done.returncode}: "
                              f"{last[-1] if last else 'no message'}")
        with np.load(os.path.join(folder, "out.npz")) as out:
            out_arrays = dict(out)
        with open(os.path.join(folder, "out.json"), encoding="utf-8") as f:
            return out_arrays, json.load(f)


# ---- the child's side (imports Keras 3) -------------------------------------------------

def _bn(spec):
    import keras  # pylint: disable=import-outside-toplevel
    from tf1_repro.layers.keras3 import ArticleBatchNormalization  # pylint: disable=import-outside-toplevel
    kwargs = dict(spec.get("kwargs", {}))
    if spec["layer"] == "article":
        axis = kwargs.pop("axis", -1)  # the article's layer normalises the last axis only
        if axis != -1:
            raise ValueError(f"ArticleBatchNormalization: axis must be -1, got {axis!r}")
        return ArticleBatchNormalization(**kwargs)
    return keras.layers.BatchNormalization(**kwargs)


def _caller(layer, mode):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    def call(x, training):
        return layer(x, training=training)
    if mode == "eager":
        return call
    return tf.function(call, jit_compile=(mode == "xla"), reduce_retracing=False)


def replay(arrays, params):
    """Feed each schedule through each spec'd layer; record outputs and shadows.

    params: ``schedules`` (list of {prefix, training: list of bools}; the batches are the
    arrays ``{prefix}/batch_i``) and ``specs`` (list of {name, layer: "article" | "stock",
    kwargs, mode: "eager" | "function" | "xla"}). Returns, per schedule and spec,
    ``{prefix}/{name}/out_i``, ``.../moving_mean_i`` and ``.../moving_variance_i`` (after
    step i) and ``.../initial_moving_variance``.
    """
    out = {}
    for schedule in params["schedules"]:
        prefix, flags = schedule["prefix"], schedule["training"]
        batches = [arrays[f"{prefix}/batch_{i}"] for i in range(len(flags))]
        for spec in params["specs"]:
            layer = _bn(spec)
            layer.build(batches[0].shape)
            call = _caller(layer, spec.get("mode", "eager"))
            name = f"{prefix}/{spec['name']}"
            out[f"{name}/initial_moving_variance"] = np.asarray(layer.moving_variance.numpy())
            for i, (batch, training) in enumerate(zip(batches, flags)):
                out[f"{name}/out_{i}"] = np.asarray(call(batch, bool(training)))
                out[f"{name}/moving_mean_{i}"] = np.asarray(layer.moving_mean.numpy())
                out[f"{name}/moving_variance_{i}"] = np.asarray(layer.moving_variance.numpy())
    return out, {"specs": [s["name"] for s in params["specs"]]}


def predict_layers(arrays, params):
    """Each layer of ``params['layers']`` ({name, layer, kwargs}; kwargs may hold the channel
    ``axis``) built with ``{name}/{role}`` weights (C,) and fed ``{name}/inputs`` in prediction
    mode; returns ``{name}/outputs``."""
    out = {}
    for spec in params["layers"]:
        name = spec["name"]
        inputs = arrays[f"{name}/inputs"]
        layer = _bn(spec)
        layer.build(inputs.shape)
        for role in ("gamma", "beta", "moving_mean", "moving_variance"):
            getattr(layer, role).assign(arrays[f"{name}/{role}"])
        out[f"{name}/outputs"] = np.asarray(layer(inputs, training=False))
    return out, {}


def demo_model(arrays, params):
    """The demo model in Keras 3: build from the TF1 weights, save ``model.keras``, reload
    and predict ``x_pred``, then continue training from the checkpoint's Adam state on
    ``x_i``/``y_i`` with dropout off, recording every BN shadow after each step, once per
    entry of ``params['runs']`` ({name, pinned: checkpoint keys reset to their checkpoint
    values after every step})."""
    import keras  # pylint: disable=import-outside-toplevel
    from tf1_repro.model import keras3_model  # pylint: disable=import-outside-toplevel
    config = params["config"]
    tf1 = {k[len("tf1:"):]: v for k, v in arrays.items() if k.startswith("tf1:")}
    bn = {k[len("bn:"):]: v for k, v in arrays.items() if k.startswith("bn:")}
    model = keras3_model.build(config, keep_prob=params.get("keep_prob", 0.8))
    keras3_model.set_weights(model, config, tf1, bn)
    out = {"logits_pred": np.asarray(model.predict(arrays["x_pred"], verbose=0))}
    if params.get("save"):
        model.save(params["save"])
        reloaded = keras.models.load_model(params["save"])
        out["logits_reloaded"] = np.asarray(reloaded.predict(arrays["x_pred"], verbose=0))
    names = keras3_model.bn_layer_names(config)
    trainer = keras3_model.build(config, keep_prob=1.0)  # dropout off: x / 1.0 * 1 == x
    optimizer = keras3_model.adam(config)
    trainer.compile(optimizer=optimizer, jit_compile=False,
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keys = keras3_model.trainable_checkpoint_keys(trainer, config)
    for run in params["runs"]:  # one model and one traced train step, reset for each run
        keras3_model.set_weights(trainer, config, tf1, bn)
        keras3_model.restore_adam(optimizer, trainer, config, tf1, params["step"])
        pins = [(v, tf1[k]) for v, k in zip(trainer.trainable_variables, keys) if k in run["pinned"]]
        for i in range(params["train_steps"]):
            trainer.train_on_batch(arrays[f"x_{i}"], arrays[f"y_{i}"])
            for variable, value in pins:
                variable.assign(value)
            for name in names:
                layer = trainer.get_layer(name)
                for role in ("moving_mean", "moving_variance"):
                    out[f"{run['name']}/step_{i}/{name}/{role}"] = np.asarray(
                        getattr(layer, role).numpy())
    return out, {"keras_version": keras.__version__, "bn_layers": names}


TASKS = {"replay": replay, "predict-layers": predict_layers, "demo-model": demo_model}


def main(argv):
    task, folder = argv
    with np.load(os.path.join(folder, "in.npz")) as loaded:
        arrays = dict(loaded)
    with open(os.path.join(folder, "in.json"), encoding="utf-8") as f:
        params = json.load(f)
    out_arrays, result = TASKS[task](arrays, params)
    np.savez(os.path.join(folder, "out.npz"), **out_arrays)
    with open(os.path.join(folder, "out.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
