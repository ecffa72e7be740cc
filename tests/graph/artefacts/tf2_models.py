"""Tiny TF2 SavedModels and Keras files for the reader tests, made in a child process (the tests
run with TF1 behaviour): ``python tf2_models.py OUT_DIR``. Writes the models under OUT_DIR and
``expected.npz`` (each model's BN moving statistics after two steps of ``fit``).

tf-keras (``TF_USE_LEGACY_KERAS=1``) for ``tfk_saved_model`` and ``tfk.h5``; Keras 3 in a second
run (``--keras3``) for ``k3.keras``, ``k3_export`` and ``lambda.keras``; plain ``tf.Module``s for
the unsafe SavedModels (``py_function``, ``write_file`` to OUT_DIR/written.txt).
"""

import os
import sys

import numpy as np


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 8, 8, 1)).astype("float32") + 2.0, rng.normal(size=(8, 3)).astype("float32")


def tf_keras_models(out):
    import tf_keras as keras  # pylint: disable=import-outside-toplevel
    model = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="conv"),
                              keras.layers.BatchNormalization(name="bn", momentum=0.9, epsilon=0.01),
                              keras.layers.Dropout(0.5, name="drop"), keras.layers.Flatten(),
                              keras.layers.Dense(3, name="head")])
    model.compile("sgd", "mse")
    x, y = _data()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps
    model.save(os.path.join(out, "tfk_saved_model"), save_format="tf")
    model.save(os.path.join(out, "tfk.h5"))
    model.save_weights(os.path.join(out, "weights_only.h5"))
    bn = model.get_layer("bn")
    return {"tfk/moving_mean": bn.moving_mean.numpy(), "tfk/moving_variance": bn.moving_variance.numpy()}


def keras3_models(out):
    import keras  # pylint: disable=import-outside-toplevel
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="conv"),
                              keras.layers.BatchNormalization(name="bn3", momentum=0.9),
                              keras.layers.Dropout(0.5, name="drop"), keras.layers.Flatten(),
                              keras.layers.Dense(3, name="head")])
    model.compile("sgd", "mse")
    x, y = _data()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(os.path.join(out, "k3.keras"))
    model.export(os.path.join(out, "k3_export"), verbose=False)
    with_lambda = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2, name="double"),
                                    keras.layers.Dense(2)])
    with_lambda.save(os.path.join(out, "lambda.keras"))
    bn = model.get_layer("bn3")
    return {"k3/moving_mean": bn.moving_mean.numpy(), "k3/moving_variance": bn.moving_variance.numpy()}


def unsafe_saved_models(out):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    target = os.path.join(out, "written.txt")

    class Writes(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def serve(self, x):
            tf.io.write_file(target, tf.strings.as_string(tf.reduce_sum(x)))
            return {"y": x * self.w}

    class CallsPython(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def serve(self, x):
            y = tf.py_function(lambda t: t * 3.0, [x], tf.float32)
            return {"y": y * self.w}

    for name, cls in (("writes_file", Writes), ("py_function", CallsPython)):
        module = cls()
        tf.saved_model.save(module, os.path.join(out, name), signatures={"serving_default": module.serve})
    return {}


def main(out, keras3):
    expected = keras3_models(out) if keras3 else {**tf_keras_models(out), **unsafe_saved_models(out)}
    np.savez(os.path.join(out, "expected_k3.npz" if keras3 else "expected_tfk.npz"), **expected)


if __name__ == "__main__":
    main(sys.argv[1], "--keras3" in sys.argv)
