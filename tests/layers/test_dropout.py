"""Dropout: the article's quoted source vs tf.nn.dropout bit for bit, both
conventions' statistics, and keep_prob=1.0."""

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tf1_repro.layers import reference
from tf1_repro.layers.dropout import (dropout_mask, inverted_dropout, keep_prob_placeholder,
                               source_formula_dropout, vanilla_dropout, vanilla_dropout_predict,
                               vanilla_dropout_train)

N = 200_000  # elements per statistical check


def _sigmas(std_of_mean, count=5):
    """Tolerance: `count` standard errors (a wrong convention is off by >> this)."""
    return count * std_of_mean


@pytest.mark.parametrize("keep", [1.0, 0.9, 0.8, 0.75, 0.5])
def test_source_formula_is_bitwise_equal_to_tf_nn_dropout(graph, sess, rng, keep):
    x = tf.constant(rng.standard_normal((64, 257)).astype(np.float32))
    keep_prob = keep_prob_placeholder()
    ours = source_formula_dropout(x, keep_prob, seed=7)
    tfs = inverted_dropout(x, keep_prob, seed=7)
    for _ in range(3):  # successive runs advance both generators alike
        a, b = sess.run([ours, tfs], {keep_prob: keep})
        assert np.array_equal(a, b)


def test_where_one_minus_one_minus_k_is_not_k_the_values_differ_by_rounding(graph, sess, rng):
    """Documented limit: tf.nn.dropout divides by 1 - (1 - k), the article's source by k;
    in float32 these differ for some k < 0.5 (0.4 here), never for k >= 0.5."""
    keep = 0.4
    assert np.float32(1) - (np.float32(1) - np.float32(keep)) != np.float32(keep)
    x = tf.constant(rng.standard_normal((256, 1024)).astype(np.float32))
    keep_prob = keep_prob_placeholder()
    a, b = sess.run([source_formula_dropout(x, keep_prob, seed=3),
                     inverted_dropout(x, keep_prob, seed=3)], {keep_prob: keep})
    assert np.array_equal(a == 0, b == 0)  # the same mask
    assert (a != b).any()  # but not bitwise equal
    np.testing.assert_allclose(a, b, rtol=2 * np.finfo(np.float32).eps)  # one rounding apart


def test_keep_prob_one_returns_the_input(graph, sess, rng):
    data = rng.standard_normal((8, 5)).astype(np.float32)
    x = tf.placeholder(tf.float32, [None, 5])
    keep_prob = keep_prob_placeholder()
    outs = [inverted_dropout(x, keep_prob), source_formula_dropout(x, keep_prob),
            vanilla_dropout(x, keep_prob, tf.constant(True)),
            vanilla_dropout(x, keep_prob, tf.constant(False))]
    for out in sess.run(outs, {x: data, keep_prob: 1.0}):
        assert np.array_equal(out, data)


@pytest.mark.parametrize("keep", [0.8, 0.5])
def test_kept_fraction_and_inverted_expectation(graph, sess, keep):
    ones = tf.ones([N])
    out = sess.run(inverted_dropout(ones, keep, seed=11))
    kept = (out != 0).mean()
    # a Bernoulli(keep) mean over N draws: standard error sqrt(keep (1 - keep) / N)
    assert abs(kept - keep) <= _sigmas(np.sqrt(keep * (1 - keep) / N))
    assert set(np.unique(out)) == {0.0, np.float32(1.0) / np.float32(keep)}
    # E[mask / keep] = 1: standard error sqrt((1 - keep) / (keep N))
    assert abs(out.mean() - 1.0) <= _sigmas(np.sqrt((1 - keep) / (keep * N)))


@pytest.mark.parametrize("keep", [0.8, 0.5])
def test_vanilla_expectation_matches_its_prediction_side(graph, sess, keep):
    ones = tf.ones([N])
    train, predict = sess.run([vanilla_dropout_train(ones, keep, seed=5),
                               vanilla_dropout_predict(ones, keep)])
    assert set(np.unique(train)) == {0.0, 1.0}  # no rescaling in training
    # E[mask] = keep, which the prediction side multiplies in
    assert np.all(predict == np.float32(keep))
    assert abs(train.mean() - predict[0]) <= _sigmas(np.sqrt(keep * (1 - keep) / N))


def test_vanilla_dropout_switches_on_training(graph, sess, rng):
    data = rng.standard_normal((4, 1000)).astype(np.float32)
    x = tf.constant(data)
    training = tf.placeholder(tf.bool)
    y = vanilla_dropout(x, 0.8, training, seed=2)
    train = sess.run(y, {training: True})
    assert np.all((train == 0) | (train == data))
    assert np.array_equal(sess.run(y, {training: False}), data * np.float32(0.8))


def test_tf_matches_the_numpy_reference_given_its_mask(graph, sess, rng):
    data = rng.standard_normal((32, 64)).astype(np.float32)
    x = tf.constant(data)
    mask_t = dropout_mask(x, 0.8, seed=9)
    out_t = x * mask_t / 0.8
    mask, out = sess.run([mask_t, out_t])
    np.testing.assert_allclose(out, reference.inverted_dropout(data, mask, 0.8), rtol=1e-6)
    np.testing.assert_allclose(data * mask, reference.vanilla_dropout_train(data, mask), rtol=0)
    np.testing.assert_allclose(reference.vanilla_dropout_predict(data, 0.8), data * 0.8)


def test_mixing_conventions_shrinks_outputs_by_keep_prob(graph, sess):
    """tf.nn.dropout in training plus the vanilla test-time factor: outputs * keep_prob."""
    keep = 0.8
    train_mean = sess.run(tf.reduce_mean(inverted_dropout(tf.ones([N]), keep, seed=4)))
    wrong_prediction = sess.run(vanilla_dropout_predict(tf.ones([1]), keep))[0]
    assert abs(wrong_prediction / train_mean - keep) <= _sigmas(np.sqrt((1 - keep) / (keep * N)))
