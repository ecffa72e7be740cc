"""Deliberately different legacy BN and dropout builders, for the audit's tests.

Each BN builder is ``FUNC(inputs, training)`` (or, for the Python-bool ones,
called with True then False in one graph); each dropout builder is
``FUNC(x, keep_prob, training)``. They are written the way TF1 code in the
wild was, bugs included.
"""
# pylint: disable=missing-function-docstring
import tensorflow.compat.v1 as tf
from tensorflow.python.training import moving_averages

import article_code
from tf1_repro.legacy.implementations import tf_layers_batch_normalization


def article(inputs, training):
    return article_code.bn_layer(None, inputs, training)


def _affine(inputs):
    channels = inputs.shape[-1]
    gamma = tf.get_variable("gamma", channels, initializer=tf.constant_initializer(1))
    beta = tf.get_variable("beta", channels, initializer=tf.constant_initializer(0))
    mean, var = tf.nn.moments(inputs, list(range(len(inputs.shape) - 1)), name="moments")
    return gamma, beta, mean, var


def _shadows(inputs, trainable=False, var_init=0.0):
    channels = inputs.shape[-1]
    moving_mean = tf.get_variable("moving_mean", channels, initializer=tf.zeros_initializer(),
                                  trainable=trainable)
    moving_var = tf.get_variable("moving_variance", channels, trainable=trainable,
                                 initializer=tf.constant_initializer(var_init))
    return moving_mean, moving_var


def ema_outside_cond(inputs, training):
    """The common bug: ema.apply built outside tf.cond runs on every step, prediction too."""
    with tf.variable_scope("bn"):
        gamma, beta, mean, var = _affine(inputs)
        ema = tf.train.ExponentialMovingAverage(0.9, name="ema")
        with tf.control_dependencies([ema.apply([mean, var])]):
            m, v = tf.cond(tf.equal(training, True),
                           lambda: (tf.identity(mean), tf.identity(var)),
                           lambda: (tf.identity(ema.average(mean)), tf.identity(ema.average(var))))
        return tf.nn.batch_normalization(inputs, m, v, beta, gamma, 1e-5)


def decay_half_eps_1e3(inputs, training):
    return article_code.bn_layer(None, inputs, training, moving_decay=0.5, eps=1e-3)


def _assign_builder(inputs, training, zero_debias=False, bessel=False, update_ops_only=False,
                    trainable=False, batch_stats_at_inference=False, decay=0.9, eps=1e-5):
    with tf.variable_scope("bn"):
        gamma, beta, mean, var = _affine(inputs)
        moving_mean, moving_var = _shadows(inputs, trainable=trainable)
        if bessel:
            n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
            var_for_ema = var * n / (n - 1)
        else:
            var_for_ema = var

        def updates():
            return [moving_averages.assign_moving_average(moving_mean, mean, decay, zero_debias=zero_debias),
                    moving_averages.assign_moving_average(moving_var, var_for_ema, decay,
                                                          zero_debias=zero_debias)]
        if update_ops_only:
            for op in updates():
                tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, op)

            def train():
                return tf.identity(mean), tf.identity(var)
        else:
            def train():
                with tf.control_dependencies(updates()):
                    return tf.identity(mean), tf.identity(var)
        if batch_stats_at_inference:
            m, v = tf.cond(tf.equal(training, True), train, lambda: (tf.identity(mean), tf.identity(var)))
        else:
            m, v = tf.cond(tf.equal(training, True), train,
                           lambda: (tf.identity(moving_mean), tf.identity(moving_var)))
        return tf.nn.batch_normalization(inputs, m, v, beta, gamma, eps)


def zero_debiased(inputs, training):
    return _assign_builder(inputs, training, zero_debias=True)


def update_ops_only(inputs, training):
    return _assign_builder(inputs, training, update_ops_only=True)


def bessel_corrected(inputs, training):
    return _assign_builder(inputs, training, bessel=True)


def batch_stats_at_inference(inputs, training):
    return _assign_builder(inputs, training, batch_stats_at_inference=True)


def trainable_moving_stats(inputs, training):
    return _assign_builder(inputs, training, trainable=True)


def python_bool_shared(inputs, training):
    """Called twice (True, then False): shares variables through AUTO_REUSE."""
    with tf.variable_scope("bn", reuse=tf.AUTO_REUSE):
        gamma, beta, mean, var = _affine(inputs)
        moving_mean, moving_var = _shadows(inputs)
        if training:
            with tf.control_dependencies([
                    moving_averages.assign_moving_average(moving_mean, mean, 0.9, zero_debias=False),
                    moving_averages.assign_moving_average(moving_var, var, 0.9, zero_debias=False)]):
                return tf.nn.batch_normalization(inputs, tf.identity(mean), tf.identity(var),
                                                 beta, gamma, 1e-5)
        return tf.nn.batch_normalization(inputs, moving_mean, moving_var, beta, gamma, 1e-5)


def python_bool_separate(inputs, training):
    """The bug: each call opens a new scope, so prediction gets its own untrained statistics."""
    return tf_layers_batch_normalization()(inputs, training=training, momentum=0.9, epsilon=1e-5)


def tf_layers_non_fused(inputs, training):
    return tf_layers_batch_normalization()(inputs, training=training, fused=False)


def tf_layers_fused(inputs, training):
    return tf_layers_batch_normalization()(inputs, training=training, fused=True)


def raises(inputs, training):
    raise RuntimeError("this builder is broken")


def returns_none(inputs, training):
    return None


# ---- dropout builders: FUNC(x, keep_prob, training)

def dropout_inverted(x, keep_prob, training):
    return tf.nn.dropout(x, keep_prob)


def dropout_vanilla(x, keep_prob, training):
    mask = tf.floor(keep_prob + tf.random_uniform(tf.shape(x)))
    return tf.cond(training, lambda: x * mask, lambda: x * keep_prob)


def dropout_double_scaled(x, keep_prob, training):
    """tf.nn.dropout in training and the vanilla x*keep_prob at prediction: the mixed-up way."""
    return tf.cond(training, lambda: tf.nn.dropout(x, keep_prob), lambda: x * keep_prob)


def dropout_unscaled(x, keep_prob, training):
    """Dropout forgotten: nothing is dropped."""
    return tf.identity(x)
