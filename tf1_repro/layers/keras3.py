"""The article's BN layer and its two dropout conventions as Keras 3 layers.

For the ``keras`` package TensorFlow 2.16+ installs (Keras 3), eager or under
``tf.function``; the maths uses ``keras.ops`` only. Import this module in a
process that keeps TF2 behaviour (not after ``disable_v2_behavior``); the
``tf1_repro.keras`` module re-exports it. Importing ``tf1_repro`` alone imports
neither Keras nor TensorFlow.

``ArticleBatchNormalization(momentum=0.9, epsilon=1e-5)`` is the article's
``bn_layer`` (``tf1_repro.layers.bn``) with its defaults:

* Keras momentum = the article's decay: ``shadow <- shadow - (1 - momentum) *
  (shadow - batch_value)``, i.e. ``momentum * shadow + (1 - momentum) * batch_value``,
  written as ``tf.train.ExponentialMovingAverage`` writes it, with ``1 - momentum``
  taken in float32 as it does (0.9 gives 0.10000002), so the float32 rounding is the same.
* Both shadows (``moving_mean``, ``moving_variance``) start at **0** and are
  not debiased (stock Keras starts the variance at 1).
* ``training=True``: normalise with the batch mean and the **biased** batch
  variance (divide by n, as ``tf.nn.moments``; the variance uses the mean
  with its gradient stopped, as ``tf.nn.moments`` does) and average that same
  biased variance into ``moving_variance``. ``training`` False or None:
  normalise with the shadows and change nothing.
* Output ``x * inv + (beta - mean * inv)`` with ``inv = gamma / sqrt(var + eps)``,
  the op order of ``tf.nn.batch_normalization``; statistics over every axis
  but the last; eps 1e-5.

Weights, in this order (the order stock ``BatchNormalization`` uses, so
``.weights.h5`` files line up): gamma (1), beta (0), moving_mean (0),
moving_variance (0); the last two are not trainable.

Dropout with ``keep_prob = 1 - rate`` and a mask ``m = floor(keep_prob + U[0, 1))``
(1 with probability keep_prob), as the TF 1.x ``tf.nn.dropout`` source the
article quotes:

* ``InvertedDropout``: training ``x / keep_prob * m``, prediction ``x``.
* ``VanillaDropout``: training ``x * m``, prediction ``x * keep_prob``.

All three are registered for serialization (package ``tf1_repro``): a ``.keras``
file that uses them reloads with ``keras.models.load_model`` once this module
is imported.
"""

import math
import numbers

import keras
import numpy as np
from keras import ops

PACKAGE = "tf1_repro"


def _check_training(where, training):
    """``training`` must be a Python/NumPy bool or None (None means prediction)."""
    if training is None:
        return False
    if isinstance(training, bool) or type(training).__name__ == "bool_":
        return bool(training)
    raise TypeError(f"{where}: training must be a Python bool or None (True: batch statistics "
                    f"and a shadow update; False/None: the shadows), got "
                    f"{type(training).__name__} {training!r}"[:200])


def _real(where, name, value, low, high, low_open, high_open):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise TypeError(f"{where}: {name} must be a real number, got "
                        f"{type(value).__name__} {value!r}")
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        allowed = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{where}: {name} must be in {allowed}, got {value!r}")
    return value


def check_settings(where, momentum=None, epsilon=None, keep_prob=None):
    """The layers' settings, checked in one place; returns them as floats (None stays None).

    momentum (the article's decay) in [0, 1]; epsilon finite and > 0; keep_prob in (0, 1].
    """
    return (None if momentum is None else _real(where, "momentum", momentum, 0.0, 1.0, False, False),
            None if epsilon is None else _real(where, "epsilon", epsilon, 0.0, math.inf, True, True),
            None if keep_prob is None else _real(where, "keep_prob", keep_prob, 0.0, 1.0, True, False))


@keras.saving.register_keras_serializable(package=PACKAGE)
class ArticleBatchNormalization(keras.layers.Layer):
    """The article's ``bn_layer`` as a Keras 3 layer (see the module docstring).

    Args:
      momentum: the article's ``moving_decay`` (0.9): weight of the old shadow.
      epsilon: added to the variance before the square root (1e-5).

    Only ``training`` selects the mode, as in the article: unlike stock Keras BN, setting
    ``layer.trainable = False`` freezes gamma and beta but does not switch to the shadows.
    """

    def __init__(self, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.momentum, self.epsilon, _ = check_settings(
            "ArticleBatchNormalization", momentum=momentum, epsilon=epsilon)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def __call__(self, *args, **kwargs):
        # checked here so the message is not wrapped in Keras's "Exception encountered when calling"
        _check_training(type(self).__name__, kwargs.get("training"))
        return super().__call__(*args, **kwargs)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"ArticleBatchNormalization: inputs must have rank >= 2 and a known last "
                f"(channel) dimension, got shape {tuple(input_shape)}")
        channels = (int(input_shape[-1]),)
        self.gamma = self.add_weight(shape=channels, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=channels, initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=channels, initializer="zeros",
                                           name="moving_mean", trainable=False)
        self.moving_variance = self.add_weight(shape=channels, initializer="zeros",
                                               name="moving_variance", trainable=False)

    def call(self, inputs, training=None):
        if _check_training("ArticleBatchNormalization", training):
            axes = list(range(len(inputs.shape) - 1))
            mean = ops.mean(inputs, axis=axes, keepdims=True)
            variance = ops.mean(ops.square(inputs - ops.stop_gradient(mean)), axis=axes,
                                keepdims=True)
            mean, variance = ops.squeeze(mean, axis=axes), ops.squeeze(variance, axis=axes)
            # ExponentialMovingAverage converts decay to float32 before taking 1 - decay.
            complement = float(np.float32(1.0) - np.float32(self.momentum))
            for shadow, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
                shadow.assign(shadow - (shadow - ops.stop_gradient(value)) * complement)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        inv = ops.rsqrt(variance + self.epsilon) * self.gamma
        return inputs * inv + (self.beta - mean * inv)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


class _ArticleDropout(keras.layers.Layer):
    """Shared by the two conventions: the keep_prob setting and the article's mask."""

    def __init__(self, keep_prob, seed=None, **kwargs):
        super().__init__(**kwargs)
        _, _, self.keep_prob = check_settings(type(self).__name__, keep_prob=keep_prob)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def __call__(self, *args, **kwargs):
        _check_training(type(self).__name__, kwargs.get("training"))
        return super().__call__(*args, **kwargs)

    def mask(self, inputs):
        """``floor(keep_prob + U[0, 1))``: 1 with probability keep_prob, else 0."""
        noise = keras.random.uniform(ops.shape(inputs), dtype=inputs.dtype,
                                     seed=self.seed_generator)
        return ops.floor(self.keep_prob + noise)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "keep_prob": self.keep_prob, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class InvertedDropout(_ArticleDropout):
    """The article's second way (``tf.nn.dropout``): training ``x / keep_prob * mask``,
    prediction ``x``."""

    def call(self, inputs, training=None):
        if _check_training(type(self).__name__, training) and self.keep_prob < 1.0:
            return inputs / self.keep_prob * self.mask(inputs)
        return inputs


@keras.saving.register_keras_serializable(package=PACKAGE)
class VanillaDropout(_ArticleDropout):
    """The article's first way: training ``x * mask``, prediction ``x * keep_prob``."""

    def call(self, inputs, training=None):
        if _check_training(type(self).__name__, training):
            return inputs * self.mask(inputs)
        return inputs * self.keep_prob


__all__ = ["ArticleBatchNormalization", "InvertedDropout", "VanillaDropout", "check_settings"]
