"""The NumPy reference against closed forms (so it can serve as an oracle)."""

import numpy as np

from tf1_repro.layers import reference


def test_batch_moments_are_biased_and_per_channel():
    x = np.array([[[1.0, 10.0]], [[3.0, 30.0]]])  # [2, 1, 2]
    mean, var = reference.batch_moments(x)
    np.testing.assert_allclose(mean, [2.0, 20.0])
    np.testing.assert_allclose(var, [((1 - 2) ** 2 + (3 - 2) ** 2) / 2, ((10 - 20) ** 2 + (30 - 20) ** 2) / 2])


def test_zero_initialised_ema_of_a_constant():
    shadows = reference.ema_recurrence([5.0] * 4, decay=0.9)
    np.testing.assert_allclose(shadows, [5 * (1 - 0.9), 5 * (1 - 0.9 ** 2), 5 * (1 - 0.9 ** 3),
                                         5 * (1 - 0.9 ** 4)])
    assert reference.zero_init_ema_of_constant(5.0, 0.9, 4) == 5 * (1 - 0.9 ** 4)


def test_reference_bn_updates_only_in_training():
    bn = reference.ReferenceBN(1, moving_decay=0.5, eps=0.0)
    out = bn.step(np.array([[1.0], [3.0]]), training=True)
    np.testing.assert_allclose(out, [[-1.0], [1.0]])
    assert bn.moving_mean[0] == 0.5 * 0 + 0.5 * 2.0 and bn.moving_var[0] == 0.5 * 0 + 0.5 * 1.0
    out = bn.step(np.array([[2.0]]), training=False)
    np.testing.assert_allclose(out, [[(2.0 - 1.0) / np.sqrt(0.5)]])
    assert bn.moving_mean[0] == 1.0


def test_dropout_conventions_align_in_expectation():
    rng = np.random.default_rng(0)
    x = np.ones(400_000)
    mask = reference.dropout_mask(x.shape, 0.8, rng)
    # 5 standard errors of a Bernoulli(0.8) mean over 400k draws
    tol = 5 * np.sqrt(0.8 * 0.2 / x.size)
    assert abs(reference.inverted_dropout(x, mask, 0.8).mean() - 1.0) <= tol / 0.8
    assert abs(reference.vanilla_dropout_train(x, mask).mean()
               - reference.vanilla_dropout_predict(x, 0.8).mean()) <= tol
