"""fast_bn_layer: same names, same semantics as bn_layer within float32 rounding, checkpoints
exchange both ways."""

import re

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import assert_same_values
from tf1_repro.layers.bn import bn_layer, bn_variables
from tf1_repro.layers.fast_bn import fast_bn_layer

SCHEDULE = [False] + [True] * 8 + [False, True, False, False, True]


def _run(layer, shape, batches, checkpoint_in=None, checkpoint_out=None):
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, (None,) + shape[1:])
        training = tf.placeholder(tf.bool, name="training")
        y = layer(x, training)
        v = bn_variables()
        grads = tf.gradients(y, [x, v["gamma"], v["beta"]], grad_ys=0.3 + 0.1 * x)
        saver = tf.train.Saver()
        with tf.Session(graph=g) as sess:
            if checkpoint_in:
                saver.restore(sess, checkpoint_in)
            else:
                sess.run(tf.global_variables_initializer())
            trace = []
            for batch, mode in zip(batches, SCHEDULE):
                out = sess.run(y, {x: batch, training: mode})
                trace.append((out, *sess.run([v["moving_mean"], v["moving_variance"]])))
            grad_values = sess.run(grads, {x: batches[0], training: True})
            if checkpoint_out:
                saver.save(sess, checkpoint_out)
    return trace, grad_values


@pytest.mark.parametrize("shape", [(16, 5), (8, 4, 4, 3), (6, 3, 7)], ids=["rank2", "rank4", "rank3"])
def test_matches_bn_layer_over_a_training_run(shape, rng):
    batches = [(3.0 + 2.0 * rng.standard_normal(shape)).astype(np.float32) for _ in SCHEDULE]
    article, article_grads = _run(bn_layer, shape, batches)
    fast, fast_grads = _run(fast_bn_layer, shape, batches)
    for step, (a, f) in enumerate(zip(article, fast)):
        for what, p, q in zip(("output", "moving mean", "moving variance"), a, f):
            np.testing.assert_allclose(q, p, atol=1e-5, rtol=1e-5, err_msg=f"{what}, step {step}")
    # gradients to the input and to gamma/beta agree to float32 summation order
    for p, q in zip(article_grads, fast_grads):
        np.testing.assert_allclose(q, p, rtol=1e-4, atol=1e-4)


def test_same_variables_and_checkpoints_exchange_both_ways(tmp_path, rng):
    shape = (8, 4)
    batches = [(1.0 + rng.standard_normal(shape)).astype(np.float32) for _ in SCHEDULE]
    names = {}
    for layer in (bn_layer, fast_bn_layer):
        with tf.Graph().as_default():
            layer(tf.placeholder(tf.float32, [None, 4]), tf.placeholder(tf.bool))
            names[layer.__name__] = [(v.op.name, v.shape.as_list(), v in tf.trainable_variables())
                                     for v in tf.global_variables()]
    assert names["bn_layer"] == names["fast_bn_layer"]
    _run(bn_layer, shape, batches, checkpoint_out=str(tmp_path / "article.ckpt"))
    _run(fast_bn_layer, shape, batches, checkpoint_out=str(tmp_path / "fast.ckpt"))
    from_article, _ = _run(fast_bn_layer, shape, batches, checkpoint_in=str(tmp_path / "article.ckpt"))
    from_fast, _ = _run(bn_layer, shape, batches, checkpoint_in=str(tmp_path / "fast.ckpt"))
    for a, f in zip(from_article, from_fast):
        for p, q in zip(a, f):
            np.testing.assert_allclose(p, q, atol=1e-5, rtol=1e-5)


def test_prediction_changes_no_variable_and_first_prediction_divides_by_sqrt_eps(graph, sess, variable_values):
    x = tf.placeholder(tf.float32, [None, 2])
    training = tf.placeholder(tf.bool)
    y = fast_bn_layer(x, training)
    sess.run(tf.global_variables_initializer())
    before = variable_values(sess)
    batch = np.array([[0.5, -2.0], [1.0, 3.0]], np.float32)
    # shadows are 0 and epsilon stays exactly 1e-5 (tf.nn.fused_batch_norm would raise it to 1.001e-5)
    np.testing.assert_allclose(sess.run(y, {x: batch, training: False}), batch / np.sqrt(1e-5), rtol=1e-6)
    assert_same_values(before, variable_values(sess))


def test_python_bool_and_single_sample(graph, sess):
    x = tf.placeholder(tf.float32, [None, 3])
    y = fast_bn_layer(x, True)
    beta = bn_variables()["beta"]
    sess.run(tf.global_variables_initializer())
    sess.run(beta.assign([0.5, -1.0, 2.0]))
    out = sess.run(y, {x: np.array([[4.0, -3.0, 10.0]], np.float32)})
    np.testing.assert_allclose(out[0], [0.5, -1.0, 2.0], atol=10 / np.sqrt(1e-5) * 2 ** -22)
    # n = 1: the kernel's Bessel correction must not turn the moving variance into NaN
    assert np.isfinite(sess.run(bn_variables()["moving_variance"])).all()


def test_the_same_checks_as_bn_layer(graph):
    with pytest.raises(ValueError, match=re.escape("fast_bn_layer: inputs must have rank >= 2")):
        fast_bn_layer(tf.placeholder(tf.float32, [5]), True)
    with pytest.raises(TypeError, match=re.escape("fast_bn_layer: inputs must be float32")):
        fast_bn_layer(tf.placeholder(tf.float16, [None, 3]), True)
    fast_bn_layer(tf.placeholder(tf.float32, [None, 3]), True)
    with pytest.raises(ValueError, match="name must be unused"):
        fast_bn_layer(tf.placeholder(tf.float32, [None, 3]), True)
