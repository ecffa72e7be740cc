"""The BN implementations legacy TF1 code uses, built uniformly for side-by-side runs.

Each ``Implementation`` builds, in the current default graph, an output from
``(x, training)`` and says which ops must run with a training step (its
update ops) and where its moving statistics live. ``settings`` records its
conventions, from which ``causes`` derives why it differs from the article.

TensorFlow >= 2.16 ships Keras 3, which has no ``tf.compat.v1.layers``; the
legacy layers come from the ``tf-keras`` package directly (the same function
``tf.compat.v1.layers.batch_normalization`` is when ``TF_USE_LEGACY_KERAS=1``),
so callers need no environment variable.
"""

import dataclasses
from typing import Callable, List

import tensorflow.compat.v1 as tf

from tf1_repro.layers import article
from tf1_repro.layers.bn import bn_layer, bn_variables

ARTICLE_SETTINGS = {"decay": 0.9, "epsilon": 1e-5, "moving_mean_init": 0.0,
                    "moving_variance_init": 0.0, "moving_variance_estimator": "biased",
                    "zero_debias": False}


@dataclasses.dataclass
class Built:
    output: tf.Tensor
    updates: List[tf.Operation]
    moving_mean: tf.Variable
    moving_variance: tf.Variable


@dataclasses.dataclass
class Implementation:
    name: str
    settings: dict
    build: Callable  # build(x, training) -> Built
    cannot_match: str = ""  # what no setting can change, if anything


def tf_layers_batch_normalization():
    """``tf.compat.v1.layers.batch_normalization`` from tf-keras (works under Keras 3)."""
    from tf_keras.src.legacy_tf_layers import normalization  # pylint: disable=import-outside-toplevel
    return normalization.batch_normalization


def keras_batch_normalization_class():
    import tf_keras  # pylint: disable=import-outside-toplevel
    return tf_keras.layers.BatchNormalization


def _article_named(layer):
    """A builder for a layer that makes the article's variables under the name 'bn'."""
    def build(x, training):
        out = layer(x, training)
        v = bn_variables("bn")
        return Built(out, [], v["moving_mean"], v["moving_variance"])
    return build


def _tf_layers(fused, s):
    def build(x, training):
        with tf.variable_scope("tf_layers"):
            out = tf_layers_batch_normalization()(
                x, training=training, momentum=s["decay"], epsilon=s["epsilon"], fused=fused,
                moving_variance_initializer=tf.constant_initializer(s["moving_variance_init"]))
        by_name = {v.op.name: v for v in tf.global_variables()}
        return Built(out, tf.get_collection(tf.GraphKeys.UPDATE_OPS),
                     by_name["tf_layers/batch_normalization/moving_mean"],
                     by_name["tf_layers/batch_normalization/moving_variance"])
    return build


def _keras(fused, s):
    def build(x, training):
        layer = keras_batch_normalization_class()(
            momentum=s["decay"], epsilon=s["epsilon"], fused=fused,
            moving_variance_initializer=tf.constant_initializer(s["moving_variance_init"]))
        out = layer(x, training=training)
        return Built(out, list(layer.updates), layer.moving_mean, layer.moving_variance)
    return build


def _fused_direct(s):
    """``tf.nn.fused_batch_norm`` with its running-average update (``exponential_avg_factor``)."""
    def build(x, training):
        channels = x.shape[-1]
        with tf.variable_scope("fused_direct"):
            gamma = tf.get_variable("gamma", channels, initializer=tf.ones_initializer())
            beta = tf.get_variable("beta", channels, initializer=tf.zeros_initializer())
            mean = tf.get_variable("moving_mean", channels, initializer=tf.zeros_initializer(),
                                   trainable=False)
            var = tf.get_variable("moving_variance", channels, trainable=False,
                                  initializer=tf.constant_initializer(s["moving_variance_init"]))

            def train():
                y, new_mean, new_var = tf.nn.fused_batch_norm(
                    x, gamma, beta, mean=mean, variance=var, epsilon=s["epsilon"],
                    is_training=True, exponential_avg_factor=1.0 - s["decay"])
                with tf.control_dependencies([mean.assign(new_mean), var.assign(new_var)]):
                    return tf.identity(y)

            def infer():
                y, _, _ = tf.nn.fused_batch_norm(x, gamma, beta, mean=mean, variance=var,
                                                 epsilon=s["epsilon"], is_training=False)
                return y
            out = tf.cond(tf.equal(training, True), train, infer)
        return Built(out, [], mean, var)
    return build


def implementations(matched):
    """The comparison's implementations, with their default settings or matched to the article.

    Defaults: tf.layers and Keras use momentum (= decay) 0.99, epsilon 1e-3 and a
    moving variance starting at 1; the fused kernel stores a Bessel-corrected
    (unbiased) moving variance. Matched: every setting that can be set is set to
    the article's; the fused kernel's estimator cannot be.
    """
    def settings(**overrides):
        s = dict(ARTICLE_SETTINGS)
        if not matched:
            s.update(decay=0.99, epsilon=1e-3, moving_variance_init=1.0)
        s.update(overrides)
        return s

    bessel = "the fused kernel's moving variance is Bessel-corrected (n/(n-1)), no option changes it"
    unbiased = {"moving_variance_estimator": "unbiased"}
    direct = settings(**unbiased) if matched else dict(ARTICLE_SETTINGS, epsilon=1e-3,
                                                       moving_variance_init=1.0, **unbiased)
    return [
        Implementation("article (verbatim)", dict(ARTICLE_SETTINGS),
                       _article_named(lambda x, t: article.bn_layer(None, x, t))),
        Implementation("tf1_repro.bn_layer", dict(ARTICLE_SETTINGS), _article_named(bn_layer)),
        Implementation("tf.layers fused=False", settings(), _tf_layers(False, settings())),
        Implementation("tf.layers fused=True", settings(**unbiased), _tf_layers(True, settings()),
                       bessel),
        Implementation("keras BN" + (" fused=False" if matched else " (defaults: fused)"),
                       settings() if matched else settings(**unbiased),
                       _keras(False if matched else None, settings()),
                       "" if matched else bessel),
        Implementation("tf.nn.fused_batch_norm", direct, _fused_direct(direct), bessel),
    ]


def causes(settings, reference=None):
    """One line per setting that differs from the article's, with its consequence."""
    ref = reference or ARTICLE_SETTINGS
    lines = []
    if settings["moving_variance_init"] != ref["moving_variance_init"]:
        lines.append(f"moving variance starts at {settings['moving_variance_init']:g} (article "
                     f"{ref['moving_variance_init']:g}): early predictions normalise differently")
    if settings["decay"] != ref["decay"]:
        lines.append(f"momentum {settings['decay']:g} is a decay (shadow <- m*shadow + (1-m)*batch), "
                     f"article {ref['decay']:g}: moving averages forget "
                     f"{'more slowly' if settings['decay'] > ref['decay'] else 'faster'}")
    if settings["moving_variance_estimator"] != ref["moving_variance_estimator"]:
        lines.append(f"moving variance is the {settings['moving_variance_estimator']} (Bessel-"
                     f"corrected n/(n-1)) batch variance, article {ref['moving_variance_estimator']}: "
                     f"larger by n/(n-1), so prediction outputs shrink slightly")
    if settings["zero_debias"] != ref["zero_debias"]:
        lines.append("zero-debiased shadows (article: not debiased): early moving averages differ")
    if settings["epsilon"] != ref["epsilon"]:
        lines.append(f"epsilon {settings['epsilon']:g} (article {ref['epsilon']:g}): every output "
                     f"differs, most for low-variance channels")
    return lines
