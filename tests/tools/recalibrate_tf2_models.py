"""Tiny TF2 SavedModels and Keras files for the recalibrate tests, made in child processes (the
tests run with TF1 behaviour): ``python recalibrate_tf2_models.py OUT_DIR [--keras3]``.

tf-keras (``TF_USE_LEGACY_KERAS=1``): ``tfk_conv`` (Conv2D -> BN -> Flatten -> Dense) and
``tfk_dense`` (Dense -> BN -> Dense), each fitted 1 step and saved as a SavedModel
(``save_format="tf"``, ``<name>_sm``) and ``<name>.h5``; ``tfk_never`` (Dense -> BN -> Dense)
trained 1 step by a custom loop that calls the model with ``training=False``, so gamma and beta
moved while the moving statistics stayed at 0 and 1 (``tfk_never_sm``); ``writes_file_sm``, a
``tf.Module`` whose signature writes OUT_DIR/written.txt. Keras 3 (``--keras3``): ``k3_conv``
and ``k3_dense``, fitted 1 step, saved as ``<name>.keras`` and exported (``<name>_export``).

Writes ``weights_tfk.npz`` / ``weights_k3.npz``: for each model, its first layer's kernel and
bias and its BN layer's moving mean and variance as saved (``<model>/kernel``...).
"""

import os
import sys

import numpy as np

CONV_INPUT = (8, 8, 1)
DENSE_INPUT = (4,)


def _train_data(shape, outputs):
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, *shape)).astype("float32"), rng.normal(size=(8, outputs)).astype("float32")


def _conv(keras, prefix):
    return keras.Sequential([keras.Input(CONV_INPUT, name="x"), keras.layers.Conv2D(2, 3, name="conv"),
                             keras.layers.BatchNormalization(name=f"{prefix}bn", epsilon=0.01),
                             keras.layers.Flatten(), keras.layers.Dense(3, name="head")])


def _dense(keras, prefix):
    return keras.Sequential([keras.Input(DENSE_INPUT, name="x"), keras.layers.Dense(5, name="hidden"),
                             keras.layers.BatchNormalization(name=f"{prefix}bn"),
                             keras.layers.Dense(2, name="head")])


def _fit_one_step(model, shape, outputs):
    model.compile("sgd", "mse")
    x, y = _train_data(shape, outputs)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def _record(weights, name, model, first, bn):
    kernel, bias = model.get_layer(first).get_weights()
    layer = model.get_layer(bn)
    weights.update({f"{name}/kernel": kernel, f"{name}/bias": bias,
                    f"{name}/moving_mean": np.asarray(layer.moving_mean),
                    f"{name}/moving_variance": np.asarray(layer.moving_variance),
                    f"{name}/gamma": np.asarray(layer.gamma), f"{name}/beta": np.asarray(layer.beta)})


def tf_keras_models(out):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tf_keras as keras  # pylint: disable=import-outside-toplevel
    weights = {}
    for name, build, first, shape, outputs in (("tfk_conv", _conv, "conv", CONV_INPUT, 3),
                                               ("tfk_dense", _dense, "hidden", DENSE_INPUT, 2)):
        model = build(keras, "")
        _fit_one_step(model, shape, outputs)
        model.save(os.path.join(out, f"{name}_sm"), save_format="tf")
        model.save(os.path.join(out, f"{name}.h5"))
        _record(weights, name, model, first, "bn")
    never = _dense(keras, "")
    optimizer = keras.optimizers.SGD(0.5)
    x, y = _train_data(DENSE_INPUT, 2)
    with tf.GradientTape() as tape:  # a custom loop that never runs BN in training mode
        loss = tf.reduce_mean((never(x, training=False) - y) ** 2)
    optimizer.apply_gradients(zip(tape.gradient(loss, never.trainable_variables), never.trainable_variables))
    never.save(os.path.join(out, "tfk_never_sm"), save_format="tf")
    _record(weights, "tfk_never", never, "hidden", "bn")
    _writes_file(tf, out)
    np.savez(os.path.join(out, "weights_tfk.npz"), **weights)


def _writes_file(tf, out):
    target = os.path.join(out, "written.txt")

    class Writes(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            tf.io.write_file(target, tf.strings.as_string(tf.reduce_sum(x)))
            return {"y": x * self.w}
    module = Writes()
    tf.saved_model.save(module, os.path.join(out, "writes_file_sm"), signatures={"serving_default": module.serve})


def keras3_models(out):
    import keras  # pylint: disable=import-outside-toplevel
    weights = {}
    for name, build, first, shape, outputs in (("k3_conv", _conv, "conv", CONV_INPUT, 3),
                                               ("k3_dense", _dense, "hidden", DENSE_INPUT, 2)):
        model = build(keras, "k3")
        _fit_one_step(model, shape, outputs)
        model.save(os.path.join(out, f"{name}.keras"))
        model.export(os.path.join(out, f"{name}_export"), verbose=False)
        _record(weights, name, model, first, "k3bn")
    np.savez(os.path.join(out, "weights_k3.npz"), **weights)


if __name__ == "__main__":
    if "--keras3" in sys.argv:
        keras3_models(sys.argv[1])
    else:
        tf_keras_models(sys.argv[1])
