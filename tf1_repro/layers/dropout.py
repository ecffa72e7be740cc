"""Dropout through a ``keep_prob`` placeholder, in the article's two conventions.

``keep_prob = 1 - dropout rate``. With a mask ``m`` whose entries are 1 with
probability ``keep_prob`` (else 0):

* **Inverted** (the article's second way, what ``tf.nn.dropout`` does):
  training ``x * m / keep_prob``, prediction ``x`` (feed keep_prob=1.0).
  ``E[training output] = x``.
* **Vanilla** (the article's first way): training ``x * m``, prediction
  ``x * keep_prob``. ``E[training output] = keep_prob * x``.

Both align the expectation of training with prediction. Mixing them, e.g. the
vanilla test-time factor on top of ``tf.nn.dropout``, shrinks outputs by
keep_prob.

``source_formula_dropout`` is the TensorFlow 1.x source the article quotes
(``floor(keep_prob + uniform)`` mask, ``div(x, keep_prob) * binary_tensor``);
with the same op seed it draws the same mask as ``inverted_dropout`` and is
bitwise equal to it whenever ``1 - (1 - keep_prob) == keep_prob`` in float32
(today's ``tf.nn.dropout`` divides by ``1 - rate``): always for
keep_prob >= 0.5; for some smaller values (0.1, 0.2, 0.4) kept values differ
by one rounding of the divisor.
"""

import tensorflow.compat.v1 as tf

KEEP_PROB = "keep_prob"


def keep_prob_placeholder(name=KEEP_PROB):
    """The article's ``tf.placeholder(tf.float32, name="keep_prob")`` (scalar, unknown shape)."""
    return tf.placeholder(tf.float32, name=name)


def inverted_dropout(x, keep_prob, seed=None, name=None):
    """The article's ``x = tf.nn.dropout(x, self.keep_prob)`` (v1 signature).

    Kept units are divided by keep_prob in training; feed keep_prob=1.0 to predict.
    """
    return tf.nn.dropout(x, keep_prob, seed=seed, name=name)


def source_formula_dropout(x, keep_prob, seed=None, name=None):
    """The TF 1.x ``tf.nn.dropout`` source quoted by the article, op for op."""
    with tf.name_scope(name, "source_formula_dropout", [x]):
        x = tf.convert_to_tensor(x, name="x")
        keep_prob = tf.convert_to_tensor(keep_prob, dtype=x.dtype, name="keep_prob")
        # uniform [keep_prob, 1.0 + keep_prob)
        random_tensor = keep_prob
        random_tensor += tf.random_uniform(tf.shape(x), seed=seed, dtype=x.dtype)
        # 0. if [keep_prob, 1.0) and 1. if [1.0, 1.0 + keep_prob)
        binary_tensor = tf.floor(random_tensor)
        ret = tf.div(x, keep_prob) * binary_tensor
        ret.set_shape(x.get_shape())
        return ret


def dropout_mask(x, keep_prob, seed=None, name=None):
    """A 0/1 float mask shaped like x, 1 with probability keep_prob (the article's binary_tensor)."""
    with tf.name_scope(name, "dropout_mask", [x]):
        x = tf.convert_to_tensor(x, name="x")
        keep_prob = tf.convert_to_tensor(keep_prob, dtype=x.dtype, name="keep_prob")
        return tf.floor(keep_prob + tf.random_uniform(tf.shape(x), seed=seed, dtype=x.dtype))


def vanilla_dropout_train(x, keep_prob, seed=None, name=None):
    """The article's first way, training side: ``x * mask`` with no rescaling."""
    with tf.name_scope(name, "vanilla_dropout_train", [x]):
        return x * dropout_mask(x, keep_prob, seed=seed)


def vanilla_dropout_predict(x, keep_prob, name=None):
    """The article's first way, prediction side: ``x * keep_prob`` (feed the training keep_prob)."""
    with tf.name_scope(name, "vanilla_dropout_predict", [x]):
        return x * tf.cast(keep_prob, x.dtype)


def vanilla_dropout(x, keep_prob, training, seed=None, name=None):
    """The article's first way in one op: ``tf.cond(training, x * mask, x * keep_prob)``.

    Here keep_prob keeps its training value at prediction time; ``training``
    (a scalar tf.bool tensor) selects the side.
    """
    with tf.name_scope(name, "vanilla_dropout", [x]):
        return tf.cond(tf.equal(training, True),
                       lambda: vanilla_dropout_train(x, keep_prob, seed=seed),
                       lambda: vanilla_dropout_predict(x, keep_prob))
