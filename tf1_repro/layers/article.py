"""The article's ``bn_layer``, verbatim (whitespace restored), for comparisons.

Source: ../shared/seed/000_4852be1293416d67.txt. Only the import is ours;
``self`` is kept (pass None). ``tf1_repro.layers.bn.bn_layer`` is the same code with
argument checks beside it. The test oracle ``tests/article_code.py`` is an
independent copy; a test keeps the two texts identical.
"""
# pylint: skip-file
import tensorflow.compat.v1 as tf


def bn_layer(self, inputs, training, name='bn', moving_decay=0.9, eps=1e-5):
    # 获取输入维度并判断是否匹配卷积层(4)或者全连接层(2)
    shape = inputs.shape
    param_shape = shape[-1]
    with tf.variable_scope(name):
        # 声明BN中唯一需要学习的两个参数,y=gamma*x+beta
        gamma = tf.get_variable('gamma', param_shape, initializer=tf.constant_initializer(1))
        beta = tf.get_variable('beat', param_shape, initializer=tf.constant_initializer(0))
        # 计算当前整个batch的均值与方差
        axes = list(range(len(shape)-1))
        batch_mean, batch_var = tf.nn.moments(inputs , axes, name='moments')
        # 采用滑动平均更新均值与方差
        ema = tf.train.ExponentialMovingAverage(moving_decay, name="ema")
        def mean_var_with_update():
            ema_apply_op = ema.apply([batch_mean, batch_var])
            with tf.control_dependencies([ema_apply_op]):
                return tf.identity(batch_mean), tf.identity(batch_var)
        # 训练时,更新均值与方差,测试时使用之前最后一次保存的均值与方差
        mean, var = tf.cond(tf.equal(training,True), mean_var_with_update, lambda:(ema.average(batch_mean), ema.average(batch_var)))
        # 最后执行batch normalization
        return tf.nn.batch_normalization(inputs ,mean, var, beta, gamma, eps)
