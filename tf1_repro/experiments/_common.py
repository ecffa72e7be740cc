"""Graph-building helpers the experiments share."""

import contextlib
import warnings

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.model import training
from tf1_repro.layers.bn import bn_variables
from tf1_repro.model.feed import SingleSampleTrainingWarning
from tf1_repro.model import ArticleModel

EPS = 1e-5


def placeholders(channels, name="x"):
    """x [None, channels] (float32) and the article's ``training`` placeholder."""
    return (tf.placeholder(tf.float32, [None, channels], name=name),
            tf.placeholder(tf.bool, name="training"))


def standalone_layers(bn, x, is_training, decays, eps=EPS, prefix="bn"):
    """One BN layer on x per decay, named prefix, prefix_1, ... in the current default graph.

    Returns [(name, output, {gamma, beta, moving_mean, moving_variance})]; the
    builder must make the article's variable names (``bn_variables`` finds them).
    """
    layers = []
    for i, decay in enumerate(decays):
        name = prefix if i == 0 else f"{prefix}_{i}"
        out = bn(x, is_training, name, decay, eps)
        layers.append((name, out, bn_variables(name)))
    return layers


@contextlib.contextmanager
def trained_model(dataset, steps, batch_size, keep_prob, seed, bn, sample=None, **model_kw):
    """A fresh graph and session with an ArticleModel trained for ``steps`` steps."""
    with tf.Graph().as_default() as graph:
        model = ArticleModel(dataset.input_shape, dataset.classes, seed=seed, bn=bn, **model_kw)
        with tf.Session(graph=graph) as sess:
            sess.run(model.init_op)
            training.train(sess, model, dataset, steps, batch_size, keep_prob, seed, sample=sample)
            yield graph, sess, model


def logits_in_chunks(sess, model, x, chunk, is_training, keep_prob=1.0):
    """Logits of x predicted ``chunk`` samples per run (batch statistics see only the chunk)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingleSampleTrainingWarning)
        return np.concatenate([model.logits_for(sess, x[i:i + chunk], training=is_training,
                                                keep_prob=keep_prob)
                               for i in range(0, len(x), chunk)])

