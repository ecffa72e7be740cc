"""tf1_repro.bn_layer: names, bitwise equality with the article's code, NumPy
reference, the EMA recurrence, and refused inputs."""

import re

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import article_code
from conftest import assert_same_values
from tf1_repro.layers import reference
from tf1_repro.layers.bn import article_variable_names, bn_layer, bn_variables

ARTICLE_NAMES = ["bn/gamma", "bn/beat", "bn/bn/moments/Squeeze/ema", "bn/bn/moments/Squeeze_1/ema"]

# training (True) / prediction (False) schedule fed to every implementation
SCHEDULE = [True, True, False, True, True, True, False, True, False, False]


def _batches(rng, shape, count, mean=3.0, std=2.0):
    return [(mean + std * rng.standard_normal(shape)).astype(np.float32) for _ in range(count)]


def _run_schedule(build, shape, batches, schedule=SCHEDULE):
    """Build a layer in a fresh graph, feed the schedule; outputs and shadows after each step."""
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None] + list(shape[1:]), name="x")
        training = tf.placeholder(tf.bool, name="training")
        y = build(x, training)
        names = article_variable_names()
        shadows = [g.get_tensor_by_name(names[k] + ":0") for k in ("moving_mean", "moving_variance")]
        with tf.Session(graph=g) as s:
            s.run(tf.global_variables_initializer())
            outputs, states = [], []
            for batch, mode in zip(batches, schedule):
                outputs.append(s.run(y, {x: batch, training: mode}))
                states.append(s.run(shadows))
    return outputs, states


def test_variables_are_the_articles_names_and_start_at_one_zero_zero_zero(graph, sess):
    x = tf.placeholder(tf.float32, [None, 3])
    bn_layer(x, tf.placeholder(tf.bool, name="training"))
    assert [v.op.name for v in tf.global_variables()] == ARTICLE_NAMES
    assert [v.op.name for v in tf.trainable_variables()] == ["bn/gamma", "bn/beat"]
    assert tf.get_collection(tf.GraphKeys.UPDATE_OPS) == []
    assert tf.get_collection(tf.GraphKeys.MOVING_AVERAGE_VARIABLES) == []
    assert list(article_variable_names().values()) == ARTICLE_NAMES
    sess.run(tf.global_variables_initializer())
    values = sess.run(tf.global_variables())
    assert [v.tolist() for v in values] == [[1.0] * 3, [0.0] * 3, [0.0] * 3, [0.0] * 3]
    assert {k: v.op.name for k, v in bn_variables().items()} == dict(
        zip(["gamma", "beta", "moving_mean", "moving_variance"], ARTICLE_NAMES))


def test_names_inside_an_outer_scope():
    with tf.Graph().as_default():
        with tf.variable_scope("model"):
            bn_layer(tf.placeholder(tf.float32, [None, 2]), True, name="bn1")
        assert [v.op.name for v in tf.global_variables()] == list(
            article_variable_names("bn1", scope="model").values())
        assert article_variable_names("bn1", scope="model")["moving_mean"] == \
            "model/bn1/model/bn1/moments/Squeeze/ema"


@pytest.mark.parametrize("shape", [(16, 5), (8, 4, 4, 3)], ids=["rank2-dense", "rank4-conv"])
def test_bitwise_equal_to_the_articles_code(shape, rng):
    batches = _batches(rng, shape, len(SCHEDULE))
    ours = _run_schedule(lambda x, t: bn_layer(x, t), shape, batches)
    article = _run_schedule(lambda x, t: article_code.bn_layer(None, x, t), shape, batches)
    for step, (a, b) in enumerate(zip(ours[0], article[0])):
        assert np.array_equal(a, b), f"output differs at step {step}"
    for step, (a, b) in enumerate(zip(ours[1], article[1])):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), f"shadows differ at step {step}"


@pytest.mark.parametrize("shape", [(32, 6), (4, 5, 5, 3), (10, 7, 4)],
                         ids=["rank2", "rank4", "rank3"])
def test_matches_numpy_reference_in_both_modes(shape, rng):
    schedule = [True] * 12 + SCHEDULE
    batches = _batches(rng, shape, len(schedule))
    outputs, states = _run_schedule(lambda x, t: bn_layer(x, t), shape, batches, schedule)
    ref = reference.ReferenceBN(shape[-1])
    for step, (batch, mode) in enumerate(zip(batches, schedule)):
        expected = ref.step(batch, mode)
        np.testing.assert_allclose(outputs[step], expected, rtol=1e-5, atol=1e-5,
                                   err_msg=f"step {step}, training={mode}")
        np.testing.assert_allclose(states[step][0], ref.moving_mean, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(states[step][1], ref.moving_var, rtol=1e-6, atol=1e-6)


def test_shadows_follow_the_zero_initialised_recurrence_without_debiasing(graph, sess):
    x = tf.placeholder(tf.float32, [None, 2])
    y = bn_layer(x, True, moving_decay=0.9)
    shadows = [bn_variables()["moving_mean"], bn_variables()["moving_variance"]]
    sess.run(tf.global_variables_initializer())
    # a batch with mean [2, -4] and biased variance [1, 9]
    batch = np.array([[1.0, -7.0], [3.0, -1.0]], np.float32)
    for _ in range(3):
        sess.run(y, {x: batch})
    mean, var = sess.run(shadows)
    # three steps from zero: m * (1 - 0.9**3) = m * 0.271, no division by (1 - 0.9**3)
    np.testing.assert_allclose(mean, [2.0 * (1 - 0.9 ** 3), -4.0 * (1 - 0.9 ** 3)], rtol=1e-6)
    np.testing.assert_allclose(var, [1.0 * (1 - 0.9 ** 3), 9.0 * (1 - 0.9 ** 3)], rtol=1e-6)
    # one more step with another batch: 0.9 * shadow + 0.1 * batch value
    sess.run(y, {x: np.array([[0.0, 0.0], [0.0, 4.0]], np.float32)})
    mean2, var2 = sess.run(shadows)
    np.testing.assert_allclose(mean2, [0.9 * mean[0] + 0.1 * 0.0, 0.9 * mean[1] + 0.1 * 2.0], rtol=1e-6)
    np.testing.assert_allclose(var2, [0.9 * var[0] + 0.1 * 0.0, 0.9 * var[1] + 0.1 * 4.0], rtol=1e-6)


def test_a_prediction_run_changes_no_variable(graph, sess, rng, variable_values):
    x = tf.placeholder(tf.float32, [None, 4])
    training = tf.placeholder(tf.bool)
    y = bn_layer(x, training)
    sess.run(tf.global_variables_initializer())
    for batch in _batches(rng, (8, 4), 3):
        sess.run(y, {x: batch, training: True})
    before = variable_values(sess)
    for batch in _batches(rng, (8, 4), 3):
        sess.run(y, {x: batch, training: False})
    assert_same_values(before, variable_values(sess))


def test_first_prediction_before_training_divides_by_sqrt_eps(graph, sess):
    x = tf.placeholder(tf.float32, [None, 2])
    y = bn_layer(x, tf.constant(False), eps=1e-5)
    sess.run(tf.global_variables_initializer())
    batch = np.array([[0.5, -2.0], [1.0, 3.0]], np.float32)
    # shadows are still 0: gamma * (x - 0) / sqrt(0 + eps) + beta = x / sqrt(1e-5)
    np.testing.assert_allclose(sess.run(y, {x: batch}), batch / np.sqrt(1e-5), rtol=1e-6)


def test_one_sample_in_training_mode_outputs_beta(graph, sess):
    x = tf.placeholder(tf.float32, [None, 3])
    y = bn_layer(x, True)
    beta = bn_variables()["beta"]
    sess.run(tf.global_variables_initializer())
    sess.run(beta.assign([0.5, -1.0, 2.0]))
    out = sess.run(y, {x: np.array([[4.0, -3.0, 100.0]], np.float32)})
    # variance 0: gamma * 0 / sqrt(eps) + beta, up to rounding of beta - a + a with a = x / sqrt(eps)
    np.testing.assert_allclose(out[0], [0.5, -1.0, 2.0], atol=100.0 / np.sqrt(1e-5) * 2 ** -23)


def test_python_bool_training(graph, sess):
    x = tf.placeholder(tf.float32, [None, 2])
    y = bn_layer(x, True)
    sess.run(tf.global_variables_initializer())
    out = sess.run(y, {x: np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)})
    # mean [2, 4], variance [1, 4]: (x - mean) / sqrt(var + 1e-5)
    np.testing.assert_allclose(out, [[-1 / np.sqrt(1 + 1e-5), -2 / np.sqrt(4 + 1e-5)],
                                     [1 / np.sqrt(1 + 1e-5), 2 / np.sqrt(4 + 1e-5)]], rtol=1e-6)


def test_a_reusing_scope_is_refused_because_the_shadows_cannot_be_shared(graph):
    x = tf.placeholder(tf.float32, [None, 2])
    with tf.variable_scope("shared"):
        bn_layer(x, True, name="bn")
    names = [v.op.name for v in tf.global_variables()]
    with tf.variable_scope("shared", reuse=True):
        with pytest.raises(ValueError, match=re.escape(
                "bn_layer: the enclosing variable scope must not reuse variables, got "
                "tf.variable_scope('shared', reuse=True); the article's layer cannot share")):
            bn_layer(x, False, name="bn")
    with tf.variable_scope("shared", reuse=tf.AUTO_REUSE):
        with pytest.raises(ValueError, match="variable shared/bn/gamma already exists"):
            bn_layer(x, False, name="bn")
    assert [v.op.name for v in tf.global_variables()] == names


def test_the_articles_own_code_fails_under_reuse_true():
    """Why the check above exists: the verbatim code breaks inside ema.apply."""
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 2])
        with tf.variable_scope("shared"):
            article_code.bn_layer(None, x, True)
        with tf.variable_scope("shared", reuse=True):
            with pytest.raises(ValueError, match="does not exist, or was not created with tf.get_variable"):
                article_code.bn_layer(None, x, False)


# ---- refused inputs: one message naming the argument, the allowed values and the received one,
# and nothing added to the graph.

def _bad_calls():
    return {
        "rank0": (lambda: bn_layer(tf.placeholder(tf.float32, []), True), ValueError,
                  "bn_layer: inputs must have rank >= 2 ([batch, features] for dense layers, "
                  "[batch, height, width, channels] for conv layers), got rank 0 (shape ())"),
        "rank1": (lambda: bn_layer(tf.placeholder(tf.float32, [5]), True), ValueError,
                  "bn_layer: inputs must have rank >= 2 ([batch, features] for dense layers, "
                  "[batch, height, width, channels] for conv layers), got rank 1 (shape (5,))"),
        "unknown-rank": (lambda: bn_layer(tf.placeholder(tf.float32), True), ValueError,
                         "bn_layer: inputs must have rank >= 2 ([batch, features] for dense "
                         "layers, [batch, height, width, channels] for conv layers), got unknown "
                         "rank (shape <unknown>)"),
        "unknown-channels": (lambda: bn_layer(tf.placeholder(tf.float32, [None, None]), True),
                             ValueError,
                             "bn_layer: inputs must have a known last (channel) dimension, which "
                             "sets the shape of gamma and beat, got shape (?, ?)"),
        "int32": (lambda: bn_layer(tf.placeholder(tf.int32, [None, 3]), True), TypeError,
                  "bn_layer: inputs must be float32 (gamma and beat are made by tf.get_variable "
                  "with its default dtype float32, which only float32 inputs can be normalised "
                  "with), got int32"),
        "float16": (lambda: bn_layer(tf.placeholder(tf.float16, [None, 3]), True), TypeError,
                    "bn_layer: inputs must be float32 (gamma and beat are made by tf.get_variable "
                    "with its default dtype float32, which only float32 inputs can be normalised "
                    "with), got float16"),
        "numpy-inputs": (lambda: bn_layer(np.zeros((2, 3), np.float32), True), TypeError,
                         "bn_layer: inputs must be a tf.Tensor (e.g. a tf.placeholder), got a "
                         "float32 array of shape (2, 3)"),
        "training-float": (lambda: bn_layer(tf.placeholder(tf.float32, [None, 3]),
                                            tf.placeholder(tf.float32)), TypeError,
                           "bn_layer: training must be a Python bool or a scalar tf.bool tensor "
                           "(e.g. tf.placeholder(tf.bool, name='training')), got a float32 tensor "
                           "of shape <unknown>"),
        "training-str": (lambda: bn_layer(tf.placeholder(tf.float32, [None, 3]), "True"), TypeError,
                         "bn_layer: training must be a Python bool or a scalar tf.bool tensor "
                         "(e.g. tf.placeholder(tf.bool, name='training')), got str 'True'"),
        "decay": (lambda: bn_layer(tf.placeholder(tf.float32, [None, 3]), True, moving_decay=1.5),
                  ValueError,
                  "bn_layer: moving_decay must be in [0, 1] (shadow <- decay * shadow + "
                  "(1 - decay) * batch value), got 1.5"),
        "eps": (lambda: bn_layer(tf.placeholder(tf.float32, [None, 3]), True, eps=0.0), ValueError,
                "bn_layer: eps must be a finite number > 0 (it keeps 1/sqrt(var + eps) finite "
                "when a batch has variance 0), got 0.0"),
    }


@pytest.mark.parametrize("case", sorted(_bad_calls()))
def test_bad_input_is_refused_before_anything_is_built(case):
    with tf.Graph().as_default() as g:
        call, error, message = _bad_calls()[case]
        with pytest.raises(error, match="^" + re.escape(message) + "$"):
            call()
        # the placeholders made by the lambda are the only ops
        assert {op.type for op in g.get_operations()} <= {"Placeholder"}
        assert tf.global_variables() == []


def test_a_second_layer_with_a_used_name_is_refused_with_advice(graph, sess, variable_values):
    x = tf.placeholder(tf.float32, [None, 3])
    bn_layer(x, True)
    sess.run(tf.global_variables_initializer())
    before = variable_values(sess)
    ops_before = len(graph.get_operations())
    message = ("bn_layer: name must be unused in this graph's variable scope, got name='bn' whose "
               "variable bn/gamma already exists; pass another name (e.g. name='bn_2'); the "
               "article's layer cannot share its variables (its ExponentialMovingAverage makes new "
               "shadow variables at every build): build it once and feed training to switch "
               "between training and prediction")
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        bn_layer(x, True)
    assert len(graph.get_operations()) == ops_before
    assert_same_values(before, variable_values(sess))
    bn_layer(x, True, name="bn_2")  # the advice works


def test_the_packages_verbatim_copy_is_the_oracles_text():
    import inspect
    from tf1_repro.layers import article
    assert inspect.getsource(article.bn_layer) == inspect.getsource(article_code.bn_layer)
