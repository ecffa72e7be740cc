"""Property-based: random ranks, shapes, scales, decays, eps and train/predict sequences.

bn_layer stays within float32 tolerance of the NumPy reference (outputs and shadows), a
prediction run never changes a variable, and dropout keeps its expectation.
"""

import numpy as np
import tensorflow.compat.v1 as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tf1_repro.layers import reference
from tf1_repro.layers.bn import bn_layer, bn_variables
from tf1_repro.layers.dropout import inverted_dropout, vanilla_dropout_train

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    rank = draw(st.integers(2, 4))
    channels = draw(st.integers(1, 6))
    inner = [draw(st.integers(1, 4)) for _ in range(rank - 2)]
    batch = draw(st.integers(2, 9))
    return {
        "shape": (batch, *inner, channels),
        "scale": draw(st.sampled_from([1e-3, 1e-2, 1.0, 1e2, 1e3])),
        "decay": draw(st.floats(0.01, 0.99)),
        "eps": draw(st.floats(1e-8, 1e-1)),
        "schedule": draw(st.lists(st.booleans(), min_size=1, max_size=8)),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


@SETTINGS
@given(cases())
def test_bn_layer_tracks_the_numpy_reference(case):
    shape, schedule = case["shape"], case["schedule"]
    rng = np.random.default_rng(case["seed"])
    offsets = rng.uniform(-3, 3, shape[-1])
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, (None,) + shape[1:])
        training = tf.placeholder(tf.bool)
        y = bn_layer(x, training, moving_decay=case["decay"], eps=case["eps"])
        v = bn_variables()
        variables = tf.global_variables()
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            ref = reference.ReferenceBN(shape[-1], case["decay"], case["eps"])
            for step, mode in enumerate(schedule):
                batch = (case["scale"] * (offsets + rng.standard_normal(shape))).astype(np.float32)
                before = sess.run(variables)
                out = sess.run(y, {x: batch, training: mode})
                expected = ref.step(batch, mode)
                # float32: relative 1e-4 of the output's own scale (x/sqrt(eps) when shadows are 0)
                np.testing.assert_allclose(out, expected, rtol=1e-4,
                                           atol=1e-4 * max(1.0, np.abs(expected).max()),
                                           err_msg=f"step {step}, training={mode}")
                mean, var = sess.run([v["moving_mean"], v["moving_variance"]])
                np.testing.assert_allclose(mean, ref.moving_mean, rtol=1e-4,
                                           atol=1e-5 * case["scale"] * 4)
                np.testing.assert_allclose(var, ref.moving_var, rtol=1e-4,
                                           atol=1e-5 * case["scale"] ** 2 * 16)
                if not mode:
                    after = sess.run(variables)
                    assert all(np.array_equal(a, b) for a, b in zip(before, after))


@settings(max_examples=20, deadline=None)
@given(keep=st.floats(0.05, 1.0), seed=st.integers(1, 2**31 - 1), shift=st.floats(-5, 5))
def test_dropout_keeps_its_expectation(keep, seed, shift):
    n = 100_000
    values = np.full(n, 1.0 + abs(shift), np.float32)
    with tf.Graph().as_default() as g:
        x = tf.constant(values)
        inverted = inverted_dropout(x, keep, seed=seed)
        vanilla = vanilla_dropout_train(x, keep, seed=seed)
        with tf.Session(graph=g) as sess:
            inv, van = sess.run([inverted, vanilla])
    # means of n Bernoulli(keep) draws scaled by v/keep (inverted) or v (vanilla): 6 standard errors
    v = values[0]
    se_inv = v * np.sqrt((1 - keep) / (keep * n))
    se_van = v * np.sqrt(keep * (1 - keep) / n)
    assert abs(inv.mean() - v) <= 6 * se_inv + 1e-6 * v
    assert abs(van.mean() - keep * v) <= 6 * se_van + 1e-6 * v
