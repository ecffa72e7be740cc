"""Tiny TF2 models for the to-inference tests, made in child processes (the tests run with TF1
behaviour): ``python inference_tf2_models.py OUT_DIR [--keras3]``.

tf-keras run (``TF_USE_LEGACY_KERAS=1``): a functional Conv2D -> BatchNormalization -> Dropout ->
Flatten -> Dense trained two steps, healthy (``tfk_ok``) and with ``training=True`` baked into
the BN and Dropout calls (``tfk_train``), each saved with ``save_format="tf"`` (``NAME_sm``) and
as ``NAME.h5``; a ``tf.Module`` with a hand-written BN normalising with ``tf.nn.moments`` of its
input and updating its moving statistics in the serving function (``moments_sm``).
Keras 3 run (``--keras3``): the same two models as ``k3_ok.keras`` and ``k3_train.keras``, and
the broken one exported (``k3_train_export``).

Writes ``stats_tfk.npz`` / ``stats_k3.npz``: each model's BN gamma, beta, moving mean and
variance, epsilon, the Dense kernel and bias (``NAME/...``), for the NumPy expectations.
"""

import os
import sys

import numpy as np


def _data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(8, 8, 8, 1)).astype("float32") * 2.0 + 1.0,
            rng.normal(size=(8, 3)).astype("float32"))


def _functional(keras, training):
    """Conv2D -> BN -> Dropout -> Flatten -> Dense; ``training`` baked into BN and Dropout."""
    x = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(2, 3, name="conv")(x)
    bn = keras.layers.BatchNormalization(name="bn", momentum=0.9, epsilon=0.01)
    h = bn(h, training=True) if training else bn(h)
    drop = keras.layers.Dropout(0.5, name="drop")
    h = drop(h, training=True) if training else drop(h)
    h = keras.layers.Flatten(name="flat")(h)
    y = keras.layers.Dense(3, name="head")(h)
    model = keras.Model(x, y)
    model.compile("sgd", "mse")
    xs, ys = _data()
    model.fit(xs, ys, batch_size=4, epochs=1, verbose=0)  # 2 steps: the statistics move
    return model


def _stats(model, name):
    bn, head = model.get_layer("bn"), model.get_layer("head")
    values = {"gamma": bn.gamma, "beta": bn.beta, "moving_mean": bn.moving_mean,
              "moving_variance": bn.moving_variance, "kernel": head.kernel, "bias": head.bias,
              "conv_kernel": model.get_layer("conv").kernel, "conv_bias": model.get_layer("conv").bias}
    out = {f"{name}/{k}": np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in values.items()}
    out[f"{name}/epsilon"] = np.float64(bn.epsilon)
    return out


def tf_keras_models(out):
    import tf_keras as keras  # pylint: disable=import-outside-toplevel
    stats = {}
    for name, training in (("tfk_ok", False), ("tfk_train", True)):
        model = _functional(keras, training)
        model.save(os.path.join(out, f"{name}_sm"), save_format="tf")
        model.save(os.path.join(out, f"{name}.h5"))
        stats.update(_stats(model, name))
    stats.update(moments_module(out))
    return stats


def moments_module(out):
    """A ``tf.Module`` whose serving function normalises with the moments of its input and
    updates its moving statistics (a TF1-style hand-written BN in training mode)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(1)

    class Moments(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(rng.normal(size=(4, 3)).astype("float32"), name="w")
            self.gamma = tf.Variable(rng.uniform(0.5, 1.5, 3).astype("float32"), name="gamma")
            self.beta = tf.Variable(rng.normal(size=3).astype("float32"), name="beta")
            self.moving_mean = tf.Variable(rng.normal(size=3).astype("float32"), name="moving_mean")
            self.moving_variance = tf.Variable(rng.uniform(0.5, 2.0, 3).astype("float32"),
                                               name="moving_variance")

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            h = tf.matmul(x, self.w)
            mean, variance = tf.nn.moments(h, axes=[0])
            self.moving_mean.assign(0.9 * self.moving_mean + 0.1 * mean)
            self.moving_variance.assign(0.9 * self.moving_variance + 0.1 * variance)
            y = tf.nn.batch_normalization(h, mean, variance, self.beta, self.gamma, 1e-3)
            return {"y": tf.nn.relu(y)}

    module = Moments()
    values = {k: getattr(module, k).numpy() for k in ("w", "gamma", "beta", "moving_mean",
                                                       "moving_variance")}
    tf.saved_model.save(module, os.path.join(out, "moments_sm"),
                        signatures={"serving_default": module.serve})
    return {f"moments/{k}": v for k, v in values.items()}


def keras3_models(out):
    import keras  # pylint: disable=import-outside-toplevel
    stats = {}
    for name, training in (("k3_ok", False), ("k3_train", True)):
        model = _functional(keras, training)
        model.save(os.path.join(out, f"{name}.keras"))
        if training:
            model.export(os.path.join(out, f"{name}_export"), verbose=False)
        stats.update(_stats(model, name))
    return stats


def main(out, keras3):
    stats = keras3_models(out) if keras3 else tf_keras_models(out)
    np.savez(os.path.join(out, "stats_k3.npz" if keras3 else "stats_tfk.npz"), **stats)


if __name__ == "__main__":
    main(sys.argv[1], "--keras3" in sys.argv)
