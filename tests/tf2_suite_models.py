"""Builds the TF2 suite's models (``tf2_suite.py``) in a child process with TF2 behaviour:
``python tf2_suite_models.py OUT_DIR GROUP`` with GROUP one of ``tfk`` (tf-keras, run with
``TF_USE_LEGACY_KERAS=1``: SavedModel ``save_format="tf"`` and ``.h5``), ``k3`` (Keras 3:
``.keras`` and ``model.export``) or ``module`` (``tf.Module`` with hand-written BN, saved by
``tf.saved_model.save``). Writes ``OUT_DIR/GROUP.npz``: each model's BN statistics and gamma,
keyed ``MODEL/NAME``, for the tests to compare with.

Every model: x[N, 8, 8, 1] -> conv 3x3 (2 filters) -> BN -> Dropout(0.5) -> flatten -> dense (3),
fitted 2 steps on inputs from N(3, 2^2) (so the moving statistics move far from 0 and 1).
Variants (model names): ``healthy``; ``bn_training`` (BN called with ``training=True``: baked
into the serving function); ``dropout_training`` (Dropout called with ``training=True``);
``never_updated`` (a custom loop that calls the model with ``training=False``, so only the
gradients apply: gamma and beta move, the moving statistics stay 0 and 1); ``bad_variance``
(the healthy model with its moving variance assigned ``[nan, -0.5]``); for ``tf.Module`` also
``unsafe`` (``bad_variance`` whose serving function writes ``OUT_DIR/written.txt`` with
``tf.io.write_file``: no tool may run it).
"""

import os
import sys

import numpy as np

MODELS = ("healthy", "bn_training", "dropout_training", "never_updated", "bad_variance")


def _data():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(8, 8, 8, 1)) * 2.0 + 3.0).astype("float32")
    return x, rng.normal(size=(8, 3)).astype("float32")


def _keras_model(keras, variant):
    inputs = keras.Input((8, 8, 1), name="x")
    h = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    bn = keras.layers.BatchNormalization(name="bn", momentum=0.9, epsilon=0.01)
    h = bn(h, training=True) if variant == "bn_training" else bn(h)
    drop = keras.layers.Dropout(0.5, name="drop")
    h = drop(h, training=True) if variant == "dropout_training" else drop(h)
    h = keras.layers.Flatten(name="flat")(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(h), name="net")


def _fit(keras, model, variant):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    x, y = _data()
    if variant == "never_updated":  # the bug: the loop calls the model in inference mode
        variables = model.trainable_variables
        for i in range(2):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x[4 * i:4 * i + 4], training=False) - y[4 * i:4 * i + 4]))
            grads = tape.gradient(loss, variables)
            for var, grad in zip(variables, grads):
                var.assign_sub(0.01 * grad)
        return
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps
    if variant == "bad_variance":
        bn = model.get_layer("bn")
        bn.moving_variance.assign(np.array([np.nan, -0.5], np.float32))


def _record(model, name, out):
    bn = model.get_layer("bn")
    for attr in ("gamma", "beta", "moving_mean", "moving_variance"):
        out[f"{name}/{attr}"] = np.asarray(getattr(bn, attr).numpy())


def keras_models(folder, legacy):
    if legacy:
        import tf_keras as keras  # pylint: disable=import-outside-toplevel
    else:
        import keras  # pylint: disable=import-outside-toplevel
    keras.utils.set_random_seed(1)
    out = {}
    for variant in MODELS:
        model = _keras_model(keras, variant)
        _fit(keras, model, variant)
        _record(model, variant, out)
        x, _ = _data()
        out[f"{variant}/inference"] = np.asarray(model(x[:4], training=False))
        if legacy:
            model.save(os.path.join(folder, f"tfk_{variant}"), save_format="tf")
            model.save(os.path.join(folder, f"tfk_{variant}.h5"))
        else:
            model.save(os.path.join(folder, f"k3_{variant}.keras"))
            model.export(os.path.join(folder, f"k3_{variant}"), verbose=False)
    return out


def module_models(folder):
    """``tf.Module``s with hand-written BN (tf.Variables, ``tf.nn.batch_normalization``)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    class BN(tf.Module):
        def __init__(self):
            super().__init__(name="bn")
            self.gamma = tf.Variable(tf.ones([2]), name="gamma")
            self.beta = tf.Variable(tf.zeros([2]), name="beta")
            self.moving_mean = tf.Variable(tf.zeros([2]), trainable=False, name="moving_mean")
            self.moving_variance = tf.Variable(tf.ones([2]), trainable=False, name="moving_variance")

        def __call__(self, h, training, update=True):
            if training:
                mean, var = tf.nn.moments(h, [0, 1, 2])
                if update:
                    self.moving_mean.assign(0.9 * self.moving_mean + 0.1 * mean)
                    self.moving_variance.assign(0.9 * self.moving_variance + 0.1 * var)
            else:
                mean, var = self.moving_mean, self.moving_variance
            return tf.nn.batch_normalization(h, mean, var, self.beta, self.gamma, 0.001)

    class Net(tf.Module):
        def __init__(self, variant):
            super().__init__(name="net")
            self.variant = variant
            self.kernel = tf.Variable(tf.random.stateless_normal([3, 3, 1, 2], [1, 2]) * 0.3,
                                      name="kernel")
            self.bn = BN()
            self.dense = tf.Variable(tf.random.stateless_normal([72, 3], [3, 4]) * 0.1, name="dense")

        def forward(self, x, training, update=True, drop=None):
            h = self.bn(tf.nn.conv2d(x, self.kernel, 1, "VALID"), training, update)
            if training if drop is None else drop:
                h = tf.nn.dropout(h, 0.5)
            return tf.matmul(tf.reshape(h, [-1, 72]), self.dense)

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x")])
        def serve(self, x):
            if self.variant == "unsafe":  # must never run: doctor asserts the file is not there
                tf.io.write_file(os.path.join(folder, "written.txt"), tf.strings.as_string(x[0, 0, 0, 0]))
            return {"y": self.forward(x, self.variant == "bn_training",
                                      drop=self.variant == "dropout_training")}

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x")])
        def serve_training(self, x):
            return {"y": self.forward(x, True, drop=False)}

    x, y = _data()
    out = {}
    for variant in MODELS + ("unsafe",):
        net = Net(variant)
        for i in range(2):
            with tf.GradientTape() as tape:
                pred = net.forward(x[4 * i:4 * i + 4], True, update=variant != "never_updated",
                                   drop=False)
                loss = tf.reduce_mean(tf.square(pred - y[4 * i:4 * i + 4]))
            variables = [net.kernel, net.dense, net.bn.gamma, net.bn.beta]
            for var, grad in zip(variables, tape.gradient(loss, variables)):
                var.assign_sub(0.1 * grad)
        if variant in ("bad_variance", "unsafe"):
            net.bn.moving_variance.assign(np.array([np.nan, -0.5], np.float32))
        for attr in ("gamma", "beta", "moving_mean", "moving_variance"):
            out[f"{variant}/{attr}"] = getattr(net.bn, attr).numpy()
        out[f"{variant}/inference"] = net.forward(x[:4], False, drop=False).numpy()
        tf.saved_model.save(net, os.path.join(folder, f"module_{variant}"),
                            signatures={"serving_default": net.serve,
                                        "serve_training": net.serve_training})
    return out


def main(folder, group):
    os.makedirs(folder, exist_ok=True)
    if group == "module":
        out = module_models(folder)
    else:
        out = keras_models(folder, legacy=group == "tfk")
    np.savez(os.path.join(folder, f"{group}.npz"), **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
