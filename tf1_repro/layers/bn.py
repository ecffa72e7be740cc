"""The article's batch-normalisation layer, statement by statement.

``bn_layer`` checks its arguments (beside the layer: the checks build nothing)
and then runs the article's code unchanged but for ``self`` and the variable
names written as the module constants below.

Conventions (the article's, kept):

* Decay, not momentum: ``shadow <- decay * shadow + (1 - decay) * batch_value``
  with ``decay = moving_decay`` (0.9), i.e. PyTorch momentum ``1 - decay``.
* Shadows start at **zero** and are **not debiased**
  (``tf.train.ExponentialMovingAverage(zero_debias=False)`` on tensors), so
  after k constant batches of value m the moving mean is ``m * (1 - decay**k)``.
* Training normalises with the **biased** batch variance of ``tf.nn.moments``
  (divide by n, the number of values per channel) and the moving variance is
  the EMA of that same biased variance (no Bessel n/(n-1) correction, unlike the
  fused kernel).
* Prediction (``training`` False) normalises with the two shadows. In TF1
  control flow the batch moments are still computed at prediction time,
  because they are made outside the ``tf.cond``; they are simply not used.

Variables made at the top of a fresh graph with ``name='bn'``::

    bn/gamma                    shape [C], init 1, trainable
    bn/beat                     shape [C], init 0, trainable (the article's spelling)
    bn/bn/moments/Squeeze/ema   shape [C], init 0, the moving mean
    bn/bn/moments/Squeeze_1/ema shape [C], init 0, the moving (biased) variance

The shadows are in neither ``UPDATE_OPS`` nor ``MOVING_AVERAGE_VARIABLES``: the
update runs because it sits inside the true branch of the ``tf.cond``.

Reference: Ioffe & Szegedy, "Batch Normalization", ICML 2015, Algorithm 1 and 2.
"""

import tensorflow.compat.v1 as tf

from tf1_repro.layers import checks

GAMMA = "gamma"
BETA = "beat"  # sic: the article's spelling, and so the checkpoint key
MOMENTS = "moments"
EMA = "ema"
MOVING_MEAN_SUFFIX = f"{MOMENTS}/Squeeze/{EMA}"
MOVING_VAR_SUFFIX = f"{MOMENTS}/Squeeze_1/{EMA}"


def article_variable_names(name="bn", scope=""):
    """The four variable names ``bn_layer(name=name)`` makes (first use of the scope).

    Returns a dict with keys gamma, beta, moving_mean, moving_variance.
    """
    prefix = f"{scope}/{name}" if scope else name
    return {
        "gamma": f"{prefix}/{GAMMA}",
        "beta": f"{prefix}/{BETA}",
        "moving_mean": f"{prefix}/{prefix}/{MOVING_MEAN_SUFFIX}",
        "moving_variance": f"{prefix}/{prefix}/{MOVING_VAR_SUFFIX}",
    }


def bn_layer(inputs, training, name="bn", moving_decay=0.9, eps=1e-5):
    """Batch normalisation as in the article (see the module docstring).

    Args:
      inputs: float32 tensor of rank >= 2 whose last dimension C is known:
        [N, C] after a dense layer, [N, H, W, C] after a conv layer. Statistics
        are taken over every axis but the last.
      training: scalar tf.bool tensor (normally ``tf.placeholder(tf.bool,
        name="training")``) or a Python bool. True: normalise with the batch
        mean and biased batch variance and update the shadows; False: normalise
        with the shadows and change nothing.
      name: variable scope of the layer; must be unused unless the enclosing
        scope reuses variables.
      moving_decay: EMA decay in [0, 1] (0.9 = momentum 0.1).
      eps: added to the variance before the square root, > 0.

    Returns:
      ``gamma * (inputs - mean) / sqrt(var + eps) + beta``, same shape as inputs.

    Raises:
      TypeError / ValueError before anything is built, naming the argument.
    """
    where = "bn_layer"
    checks.check_bn_inputs(where, inputs)
    checks.check_training_tensor(where, training)
    checks.check_bn_settings(where, moving_decay, eps, name)
    checks.check_scope_is_new(where, name, (GAMMA, BETA))
    return _article_bn_layer(inputs, training, name, moving_decay, eps)


def _article_bn_layer(inputs, training, name, moving_decay, eps):
    """The article's body, unchanged but for ``self`` and the name constants."""
    # 获取输入维度并判断是否匹配卷积层(4)或者全连接层(2)
    shape = inputs.shape
    param_shape = shape[-1]
    with tf.variable_scope(name):
        # 声明BN中唯一需要学习的两个参数,y=gamma*x+beta
        gamma = tf.get_variable(GAMMA, param_shape, initializer=tf.constant_initializer(1))
        beta = tf.get_variable(BETA, param_shape, initializer=tf.constant_initializer(0))
        # 计算当前整个batch的均值与方差
        axes = list(range(len(shape) - 1))
        batch_mean, batch_var = tf.nn.moments(inputs, axes, name=MOMENTS)
        # 采用滑动平均更新均值与方差
        ema = tf.train.ExponentialMovingAverage(moving_decay, name=EMA)

        def mean_var_with_update():
            ema_apply_op = ema.apply([batch_mean, batch_var])
            with tf.control_dependencies([ema_apply_op]):
                return tf.identity(batch_mean), tf.identity(batch_var)

        # 训练时,更新均值与方差,测试时使用之前最后一次保存的均值与方差
        mean, var = tf.cond(tf.equal(training, True), mean_var_with_update,
                            lambda: (ema.average(batch_mean), ema.average(batch_var)))
        # 最后执行batch normalization
        return tf.nn.batch_normalization(inputs, mean, var, beta, gamma, eps)


def make_article_variables(channels):
    """The layer's four variables with the article's names, made in the current variable scope.

    For builders beside the article's layer (``fast_bn_layer``, the export's
    ``inference_bn``) that must restore the same checkpoints: gamma (1), beat (0)
    and the two shadows (0, not trainable) named as ``ExponentialMovingAverage``
    names them. Returns (gamma, beta, moving_mean, moving_variance).
    """
    scope = tf.get_variable_scope().name
    gamma = tf.get_variable(GAMMA, channels, initializer=tf.constant_initializer(1))
    beta = tf.get_variable(BETA, channels, initializer=tf.constant_initializer(0))
    mean, var = (tf.get_variable(f"{scope}/{suffix}", channels, trainable=False,
                                 initializer=tf.zeros_initializer())
                 for suffix in (MOVING_MEAN_SUFFIX, MOVING_VAR_SUFFIX))
    return gamma, beta, mean, var


def bn_variables(name="bn", graph=None):
    """The layer's four variables in a graph, found by name, as a dict (see
    ``article_variable_names``); raises ``ValueError`` naming what is missing."""
    graph = graph or tf.get_default_graph()
    by_name = {v.op.name: v for v in graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)}
    wanted = article_variable_names(name)
    missing = [full for full in wanted.values() if full not in by_name]
    if missing:
        raise ValueError(
            f"bn_variables: name must be a bn_layer built in this graph, got name={name!r} "
            f"and no variable {missing[0]}")
    return {key: by_name[full] for key, full in wanted.items()}
