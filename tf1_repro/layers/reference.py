"""NumPy reference for the article's BN and dropout, to test TensorFlow against.

Same conventions as ``tf1_repro.layers.bn``: decay (not momentum), zero-initialised
shadows without debiasing, biased batch variance (divide by n) both for
normalising in training and for the moving variance.
"""

import numpy as np


def batch_moments(x):
    """Mean and biased variance over every axis but the last (as ``tf.nn.moments``)."""
    x = np.asarray(x, dtype=np.float64)
    axes = tuple(range(x.ndim - 1))
    return x.mean(axis=axes), x.var(axis=axes)


def normalize(x, mean, var, gamma, beta, eps):
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` (``tf.nn.batch_normalization``)."""
    x = np.asarray(x, dtype=np.float64)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def ema_update(shadow, value, decay):
    """One step: ``shadow <- decay * shadow + (1 - decay) * value``."""
    return decay * np.asarray(shadow, dtype=np.float64) + (1.0 - decay) * np.asarray(value, np.float64)


def ema_recurrence(values, decay, init=0.0):
    """Shadows after each value of a sequence, starting from ``init`` (0: not debiased)."""
    shadow = np.asarray(init, dtype=np.float64)
    out = []
    for value in values:
        shadow = ema_update(shadow, value, decay)
        out.append(shadow)
    return out


def zero_init_ema_of_constant(value, decay, steps):
    """Closed form of the zero-initialised EMA of a constant: ``value * (1 - decay**steps)``."""
    return value * (1.0 - decay ** steps)


class ReferenceBN:
    """The article's layer in NumPy, carrying gamma, beta and both shadows.

    ``step(x, training)`` returns the layer's output and, when training, updates
    the shadows with the batch moments, as one ``session.run`` of ``bn_layer`` does.
    """

    def __init__(self, channels, moving_decay=0.9, eps=1e-5):
        self.decay = moving_decay
        self.eps = eps
        self.gamma = np.ones(channels)
        self.beta = np.zeros(channels)
        self.moving_mean = np.zeros(channels)
        self.moving_var = np.zeros(channels)

    def step(self, x, training):
        if training:
            mean, var = batch_moments(x)
            self.moving_mean = ema_update(self.moving_mean, mean, self.decay)
            self.moving_var = ema_update(self.moving_var, var, self.decay)
        else:
            mean, var = self.moving_mean, self.moving_var
        return normalize(x, mean, var, self.gamma, self.beta, self.eps)


def inverted_dropout(x, mask, keep_prob):
    """Training side of the inverted convention: ``x * mask / keep_prob``."""
    return np.asarray(x) * mask / keep_prob


def vanilla_dropout_train(x, mask):
    """Training side of the vanilla convention: ``x * mask``."""
    return np.asarray(x) * mask


def vanilla_dropout_predict(x, keep_prob):
    """Prediction side of the vanilla convention: ``x * keep_prob``."""
    return np.asarray(x) * keep_prob


def dropout_mask(shape, keep_prob, rng):
    """A 0/1 mask, 1 with probability keep_prob, from a ``np.random.Generator``."""
    return (rng.random(shape) < keep_prob).astype(np.float64)
