"""scikit-learn's bundled handwritten digits as the models' real data."""

import numpy as np
import pytest

from tf1_repro.model import data


def test_split_is_stratified_disjoint_and_fixed_per_seed():
    d = data.Digits(seed=0)
    assert d.x_train.shape == (1258, 64) and d.x_test.shape == (539, 64)  # 1797 = 1258 + 539
    # 30% of each class held out: round(0.3 * class size) per class
    counts = np.bincount(np.concatenate([d.y_train, d.y_test]), minlength=10)
    assert np.array_equal(np.bincount(d.y_test, minlength=10), np.round(0.3 * counts).astype(int))
    train_rows = {row.tobytes() for row in d.x_train}
    overlap = sum(row.tobytes() in train_rows for row in d.x_test)
    assert overlap <= 2  # load_digits has a couple of duplicate images, nothing more
    again = data.Digits(seed=0)
    assert np.array_equal(again.x_test, d.x_test) and not np.array_equal(data.Digits(seed=1).x_test, d.x_test)


def test_batches_come_from_the_training_part_and_held_out_from_the_test_part():
    d = data.make("digits", seed=0)
    x, y = data.train_batch(d, 32, seed=0, step=5)
    assert x.dtype == np.float32 and x.shape == (32, 64) and y.dtype == np.int64
    train_rows = {row.tobytes(): label for row, label in zip(d.x_train, d.y_train)}
    assert all(train_rows[row.tobytes()] == label for row, label in zip(x, y))
    x_test, y_test = data.held_out(d, 1024, seed=0)  # asks for more than there is: all 539
    assert np.array_equal(x_test, d.x_test) and np.array_equal(y_test, d.y_test)
    images, _ = data.Digits(image=True).test_set(4)
    assert images.shape == (4, 8, 8, 1) and images.max() <= 16.0


def test_population_moments_are_the_training_part_moments():
    d = data.Digits(seed=0)
    x = d.x_train.astype(np.float64)
    assert np.allclose(d.population_mean, x.mean(0)) and np.allclose(d.population_var, x.var(0))
    assert (d.population_var == 0).sum() == 3  # three border pixels are never inked
    pixel = int(np.argmax(d.population_var))
    centred = x[:, pixel] - x[:, pixel].mean()
    assert d.population_kurtosis[pixel] == pytest.approx((centred ** 4).mean() / (centred ** 2).mean() ** 2)


def test_unknown_data_name_is_refused():
    with pytest.raises(ValueError) as err:
        data.make("mnist")
    assert str(err.value) == "data: name must be one of blobs, digits, got 'mnist'"
