"""Deliberately different legacy BN and dropout builders, for the audit's tests.

Each BN builder is ``FUNC(inputs, training)`` (or, for the Python-bool ones,
called with True then False in one graph); each dropout builder is
``FUNC(x, keep_prob, training)``. They are written the way TF1 code in the
wild was, bugs included.
"""
# pylint: disable=missing-function-docstring
import weakref

import tensorflow.compat.v1 as tf
from tensorflow.python.training import moving_averages

import article_code
from tf1_repro.comparisons.implementations import tf_layers_batch_normalization


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


# ---- issue 9: BN builders as public TF1 code writes them (audit verdicts in tests/legacy/test_audit.py)

def _article_like(inputs, training, gamma_initializer):
    """The article's layer, with gamma drawn at random the way GAN/ResNet code does."""
    channels = inputs.shape[-1]
    with tf.variable_scope("bn"):
        gamma = tf.get_variable("gamma", channels, initializer=gamma_initializer)
        beta = tf.get_variable("beta", channels, initializer=tf.constant_initializer(0))
        batch_mean, batch_var = tf.nn.moments(inputs, list(range(len(inputs.shape) - 1)), name="moments")
        ema = tf.train.ExponentialMovingAverage(0.9, name="ema")

        def mean_var_with_update():
            with tf.control_dependencies([ema.apply([batch_mean, batch_var])]):
                return tf.identity(batch_mean), tf.identity(batch_var)
        mean, var = tf.cond(tf.equal(training, True), mean_var_with_update,
                            lambda: (ema.average(batch_mean), ema.average(batch_var)))
        return tf.nn.batch_normalization(inputs, mean, var, beta, gamma, 1e-5)


def gamma_random_normal(inputs, training):
    return _article_like(inputs, training, tf.random_normal_initializer(1.0, 0.02))


def gamma_truncated_normal(inputs, training):
    return _article_like(inputs, training, tf.truncated_normal_initializer(1.0, 0.02))


def gamma_glorot(inputs, training):
    """No initializer: tf.get_variable's default, glorot-uniform (gamma may be near 0 or negative)."""
    return _article_like(inputs, training, None)


def stats_1c_sonnet(inputs, training):
    """Sonnet v1 style: statistics shaped (1, C) (keep_dims moments), no gamma (scale=False),
    decay 0.999, eps 1e-3, moving variance from 1, updates in UPDATE_OPS."""
    channels = int(inputs.shape[-1])
    axes = list(range(len(inputs.shape) - 1))
    stat_shape = [1] * len(axes) + [channels]
    with tf.variable_scope("batch_norm"):
        beta = tf.get_variable("beta", stat_shape, initializer=tf.zeros_initializer())
        moving_mean = tf.get_variable("moving_mean", stat_shape, initializer=tf.zeros_initializer(),
                                      trainable=False)
        moving_var = tf.get_variable("moving_variance", stat_shape, initializer=tf.ones_initializer(),
                                     trainable=False)
        mean, var = tf.nn.moments(inputs, axes, keep_dims=True, name="moments")
        _updates_in_collection(training, [(moving_mean, mean), (moving_var, var)], 0.999,
                               tf.GraphKeys.UPDATE_OPS)
        use_mean, use_var = tf.cond(training, lambda: (tf.identity(mean), tf.identity(var)),
                                    lambda: (tf.identity(moving_mean), tf.identity(moving_var)))
        return tf.nn.batch_normalization(inputs, use_mean, use_var, beta, None, 1e-3)


def _updates_in_collection(training, pairs, decay, collection):
    """Sonnet v1's way: a cond builds the EMA updates only when training, and its outputs go
    into ``collection`` for the train op to run."""
    def build_update_ops():
        return [tf.identity(moving_averages.assign_moving_average(shadow, value, decay, zero_debias=False))
                for shadow, value in pairs]
    for op in tf.cond(training, build_update_ops, lambda: [tf.identity(shadow) for shadow, _ in pairs]):
        tf.add_to_collection(collection, op)


def two_stage_assigner(inputs, training):
    """Training writes the batch moments into plain variables; prediction reads an EMA of those
    variables that only the separate op ``bn/assigner`` advances (run it after each train step)."""
    channels = inputs.shape[-1]
    with tf.variable_scope("bn"):
        gamma, beta, mean, var = _affine(inputs)
        batch_mean = tf.get_variable("batch_mean", channels, initializer=tf.zeros_initializer(),
                                     trainable=False)
        batch_var = tf.get_variable("batch_variance", channels, initializer=tf.zeros_initializer(),
                                    trainable=False)
        ema = tf.train.ExponentialMovingAverage(0.9, name="ema")
        tf.group(ema.apply([batch_mean, batch_var]), name="assigner")

        def train():
            with tf.control_dependencies([tf.assign(batch_mean, mean), tf.assign(batch_var, var)]):
                return tf.identity(mean), tf.identity(var)
        m, v = tf.cond(training, train,
                       lambda: (tf.identity(ema.average(batch_mean)), tf.identity(ema.average(batch_var))))
        return tf.nn.batch_normalization(inputs, m, v, beta, gamma, 1e-5)


def local_stats_at_prediction(inputs, training):
    """Sonnet's test_local_stats=True: moving statistics kept (UPDATE_OPS) but prediction
    normalises with the batch's own statistics."""
    with tf.variable_scope("bn"):
        gamma, beta, mean, var = _affine(inputs)
        moving_mean, moving_var = _shadows(inputs)
        _updates_in_collection(training, [(moving_mean, mean), (moving_var, var)], 0.9,
                               tf.GraphKeys.UPDATE_OPS)
        m, v = tf.cond(training, lambda: (tf.identity(mean), tf.identity(var)),
                       lambda: (tf.identity(mean), tf.identity(var)))
        return tf.nn.batch_normalization(inputs, m, v, beta, gamma, 1e-5)


def batch_stats_only(inputs, training):
    """No moving statistics at all: every batch, in training and prediction, uses its own."""
    with tf.variable_scope("bn"):
        gamma, beta, mean, var = _affine(inputs)
        return tf.nn.batch_normalization(inputs, mean, var, beta, gamma, 1e-5)


def custom_collection(inputs, training):
    """The updates go into a collection of the author's ('bn_updates'), which a train op must run."""
    with tf.variable_scope("bn"):
        gamma, beta, mean, var = _affine(inputs)
        moving_mean, moving_var = _shadows(inputs)
        _updates_in_collection(training, [(moving_mean, mean), (moving_var, var)], 0.9, "bn_updates")
        m, v = tf.cond(training, lambda: (tf.identity(mean), tf.identity(var)),
                       lambda: (tf.identity(moving_mean), tf.identity(moving_var)))
        return tf.nn.batch_normalization(inputs, m, v, beta, gamma, 1e-5)


def renorm_like(inputs, training, r_max=3.0, d_max=5.0):
    """Batch renormalisation (Ioffe 2017): training output x_hat * r + d with r, d from the moving
    statistics (stop_gradient, clipped); moving variance from 1; updates with the output."""
    with tf.variable_scope("bn"):
        gamma, beta, mean, var = _affine(inputs)
        moving_mean, moving_var = _shadows(inputs, var_init=1.0)
        eps = 1e-5

        def train():
            std, moving_std = tf.sqrt(var + eps), tf.sqrt(moving_var + eps)
            r = tf.stop_gradient(tf.clip_by_value(std / moving_std, 1 / r_max, r_max))
            d = tf.stop_gradient(tf.clip_by_value((mean - moving_mean) / moving_std, -d_max, d_max))
            with tf.control_dependencies([
                    moving_averages.assign_moving_average(moving_mean, mean, 0.9, zero_debias=False),
                    moving_averages.assign_moving_average(moving_var, var, 0.9, zero_debias=False)]):
                return ((inputs - mean) / std * r + d) * gamma + beta

        def predict():
            return tf.nn.batch_normalization(inputs, moving_mean, moving_var, beta, gamma, eps)
        return tf.cond(training, train, predict)


def tf_layers_renorm(inputs, training):
    """tf.layers batch renormalisation (renorm=True) with the article's decay and epsilon; its moving
    variance is the square of an EMA of sqrt(batch var + eps) minus eps, not an EMA of the variance."""
    return tf_layers_batch_normalization()(inputs, training=training, renorm=True, momentum=0.9,
                                           epsilon=1e-5)


def keras_layer_in_graph(inputs, training):
    """tf-keras BatchNormalization called in a TF1 graph: its updates are in layer.updates only (not
    UPDATE_OPS), ops the train op must run itself."""
    from tf1_repro.comparisons.implementations import keras_batch_normalization_class  # pylint: disable=import-outside-toplevel
    return keras_batch_normalization_class()(momentum=0.9, epsilon=1e-5)(inputs, training=training)


class ClassStyleBatchNorm:
    """A class-style layer (variables in __init__, a Python-bool ``is_training`` in __call__), as
    model zoos wrote them; gamma from a random normal."""

    def __init__(self, channels, decay=0.9, eps=1e-5, name="bn"):
        self.decay, self.eps = decay, eps
        with tf.variable_scope(name):
            self.gamma = tf.get_variable("gamma", channels, initializer=tf.random_normal_initializer(1.0, 0.1))
            self.beta = tf.get_variable("beta", channels, initializer=tf.zeros_initializer())
            self.moving_mean = tf.get_variable("moving_mean", channels, trainable=False,
                                               initializer=tf.zeros_initializer())
            self.moving_var = tf.get_variable("moving_variance", channels, trainable=False,
                                              initializer=tf.zeros_initializer())

    def __call__(self, inputs, is_training):
        if is_training:
            mean, var = tf.nn.moments(inputs, list(range(len(inputs.shape) - 1)))
            with tf.control_dependencies([
                    moving_averages.assign_moving_average(self.moving_mean, mean, self.decay, zero_debias=False),
                    moving_averages.assign_moving_average(self.moving_var, var, self.decay, zero_debias=False)]):
                return tf.nn.batch_normalization(inputs, mean, var, self.beta, self.gamma, self.eps)
        return tf.nn.batch_normalization(inputs, self.moving_mean, self.moving_var, self.beta, self.gamma,
                                         self.eps)


def class_style(inputs, training):
    """Called twice (True, then False): one ClassStyleBatchNorm per graph, shared by both calls."""
    graph = tf.get_default_graph()
    if graph not in _CLASS_STYLE_LAYERS:
        _CLASS_STYLE_LAYERS[graph] = ClassStyleBatchNorm(inputs.shape[-1])
    return _CLASS_STYLE_LAYERS[graph](inputs, training)


_CLASS_STYLE_LAYERS = weakref.WeakKeyDictionary()


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


def hand_nchw(inputs, training):
    """Channels-first inside the layer: transpose to NCHW, statistics shaped (1, C, 1, 1), updates
    in UPDATE_OPS (decay 0.9, eps 1e-3, moving variance from 1)."""
    x = tf.transpose(inputs, [0, 3, 1, 2])
    channels = int(x.shape[1])
    shape = [1, channels, 1, 1]
    with tf.variable_scope("bn"):
        gamma = tf.get_variable("gamma", shape, initializer=tf.ones_initializer())
        beta = tf.get_variable("beta", shape, initializer=tf.zeros_initializer())
        moving_mean = tf.get_variable("moving_mean", shape, initializer=tf.zeros_initializer(),
                                      trainable=False)
        moving_var = tf.get_variable("moving_variance", shape, initializer=tf.ones_initializer(),
                                     trainable=False)
        mean, var = tf.nn.moments(x, [0, 2, 3], keep_dims=True)
        for op in (moving_averages.assign_moving_average(moving_mean, mean, 0.9, zero_debias=False),
                   moving_averages.assign_moving_average(moving_var, var, 0.9, zero_debias=False)):
            tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, op)
        m, v = tf.cond(training, lambda: (mean, var), lambda: (moving_mean, moving_var))
        return tf.transpose(tf.nn.batch_normalization(x, m, v, beta, gamma, 1e-3), [0, 2, 3, 1])


# ---- issue "Right on real models": the default training=False, and a DCGAN-2016 two-stage class

def tf_layers_training_left_false(inputs, training):
    """The common bug: tf.layers.batch_normalization called without ``training`` (default False):
    the moving statistics are kept and read, and never updated."""
    return tf_layers_batch_normalization()(inputs)


class TwoStageBatchNorm:
    """DCGAN-2016 style (one object per graph, a Python-bool ``train``): training assigns the batch
    moments into plain variables; prediction reads an EMA of those variables that only the grouped
    op ``self.assigner`` advances (a training loop runs it after each step)."""

    def __init__(self, decay=0.9, eps=1e-5, name="bn", racy=False):
        self.decay, self.eps, self.name, self.racy = decay, eps, name, racy
        self.assigner = None

    def __call__(self, x, train=True):
        channels = x.shape[-1]
        with tf.variable_scope(self.name, reuse=tf.AUTO_REUSE):
            self.gamma = tf.get_variable("gamma", channels, initializer=tf.random_normal_initializer(1.0, 0.02))
            self.beta = tf.get_variable("beta", channels, initializer=tf.zeros_initializer())
            self.batch_mean = tf.get_variable("batch_mean", channels, initializer=tf.zeros_initializer(),
                                              trainable=False)
            self.batch_var = tf.get_variable("batch_variance", channels,
                                             initializer=tf.zeros_initializer(), trainable=False)
            if train:
                mean, var = tf.nn.moments(x, list(range(len(x.shape) - 1)), name="moments")
                self.ema = tf.train.ExponentialMovingAverage(self.decay, name="ema")
                apply = self.ema.apply([self.batch_mean, self.batch_var])
                updates = [tf.assign(self.batch_mean, mean), tf.assign(self.batch_var, var)]
                if self.racy:  # the EMA beside the assigns it reads: nothing orders them
                    updates.append(apply)
                else:
                    self.assigner = tf.group(apply, name="assigner")
                with tf.control_dependencies(updates):
                    mean, var = tf.identity(mean), tf.identity(var)
            else:
                mean, var = self.ema.average(self.batch_mean), self.ema.average(self.batch_var)
            return tf.nn.batch_normalization(x, mean, var, self.beta, self.gamma, self.eps)


def two_stage_class_python_bool(inputs, training):
    """Called twice (True, then False): one TwoStageBatchNorm per graph serves both calls."""
    graph = tf.get_default_graph()
    if graph not in _TWO_STAGE_LAYERS:
        _TWO_STAGE_LAYERS[graph] = TwoStageBatchNorm()
    return _TWO_STAGE_LAYERS[graph](inputs, train=training)


def two_stage_class_racy(inputs, training):
    """The same class with the EMA apply in the training step's control dependencies, beside the
    assigns whose variables it reads (darkflow-style): in one run, whether the EMA takes this
    batch's moments or the previous batch's depends on thread timing."""
    graph = tf.get_default_graph()
    if graph not in _TWO_STAGE_RACY_LAYERS:
        _TWO_STAGE_RACY_LAYERS[graph] = TwoStageBatchNorm(racy=True)
    return _TWO_STAGE_RACY_LAYERS[graph](inputs, train=training)


_TWO_STAGE_LAYERS = weakref.WeakKeyDictionary()
_TWO_STAGE_RACY_LAYERS = weakref.WeakKeyDictionary()
