"""Built-in synthetic data (nothing is downloaded), with known population moments.

``Blobs``: a mixture of ``classes`` Gaussians in ``features`` dimensions, equally
likely, then shifted and scaled per feature so raw features are far from
N(0, 1) and batch normalisation has something to do::

    x_j = offset_j + scale_j * (centre[c, j] + noise),  noise ~ N(0, noise_std**2)

so the population mean and variance of feature j are exactly
``offset_j + scale_j * mean_c(centre[c, j])`` and
``scale_j**2 * (noise_std**2 + var_c(centre[c, j]))`` (variance of the mixture).

``Digits``: scikit-learn's bundled handwritten digits (``load_digits``: 1,797 8x8
images, pixel values 0..16, 10 classes; shipped inside scikit-learn, nothing is
downloaded), split once per seed into a stratified training part and a
held-out part. Training batches are drawn with replacement from the training
part, so its per-pixel mean and biased variance are the "population" moments
the moving averages estimate; ``held_out`` returns (the start of) the held-out part.

``Stripes``: small single-channel images, class 0 horizontal and class 1
vertical stripes, plus noise: the conv model's data.

Batches are pure functions of (seed, step), so a run can be replayed or resumed.
"""

import numpy as np


class Blobs:
    name = "blobs"

    def __init__(self, features=8, classes=3, noise_std=0.8, seed=0):
        rng = np.random.default_rng(seed)
        self.features = features
        self.classes = classes
        self.noise_std = noise_std
        self.centres = rng.normal(0.0, 1.5, size=(classes, features))
        self.offset = rng.uniform(-6.0, 6.0, size=features)
        self.scale = rng.uniform(0.5, 4.0, size=features)
        self.input_shape = (features,)

    @property
    def population_mean(self):
        return self.offset + self.scale * self.centres.mean(axis=0)

    @property
    def population_var(self):
        return self.scale ** 2 * (self.noise_std ** 2 + self.centres.var(axis=0))

    def sample(self, n, rng):
        """n samples (float32 [n, features]) and labels (int64 [n]) from ``rng``."""
        labels = rng.integers(0, self.classes, size=n)
        noise = rng.normal(0.0, self.noise_std, size=(n, self.features))
        x = self.offset + self.scale * (self.centres[labels] + noise)
        return x.astype(np.float32), labels.astype(np.int64)


class Stripes:
    def __init__(self, size=8, noise_std=0.6, offset=3.0, contrast=2.0):
        self.size = size
        self.noise_std = noise_std
        self.offset = offset
        self.contrast = contrast
        self.classes = 2
        self.input_shape = (size, size, 1)

    def sample(self, n, rng):
        """n images (float32 [n, size, size, 1]) and labels (int64 [n])."""
        labels = rng.integers(0, 2, size=n)
        phase = rng.integers(0, 2, size=n)
        line = (np.arange(self.size)[None, :] + phase[:, None]) % 2  # [n, size]
        horizontal = np.repeat(line[:, :, None], self.size, axis=2)
        images = np.where(labels[:, None, None] == 0, horizontal, horizontal.transpose(0, 2, 1))
        images = self.offset + self.contrast * images
        images = images + rng.normal(0.0, self.noise_std, size=images.shape)
        return images[..., None].astype(np.float32), labels.astype(np.int64)


class Digits:
    name = "digits"

    def __init__(self, seed=0, test_fraction=0.3, image=False):
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"Digits: test_fraction must be in (0, 1), got {test_fraction!r}")
        from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
        bunch = load_digits()
        x = bunch.data.astype(np.float32)  # [1797, 64], values 0..16
        y = bunch.target.astype(np.int64)
        rng = np.random.default_rng([seed, 1797])
        test = np.zeros(len(y), dtype=bool)
        for c in range(10):  # stratified: the same fraction of every class is held out
            members = np.flatnonzero(y == c)
            test[rng.choice(members, int(round(test_fraction * len(members))), replace=False)] = True
        self.features = x.shape[1]
        self.classes = 10
        self.image = image
        self.input_shape = (8, 8, 1) if image else (self.features,)
        self.x_train, self.y_train = x[~test], y[~test]
        self.x_test, self.y_test = x[test], y[test]

    def _shape(self, x):
        return x.reshape((-1,) + self.input_shape)

    @property
    def population_mean(self):
        """Per-pixel mean of the training part (what every training batch is drawn from)."""
        return self.x_train.astype(np.float64).mean(axis=0)

    @property
    def population_var(self):
        """Per-pixel biased variance of the training part (three border pixels are always 0)."""
        return self.x_train.astype(np.float64).var(axis=0)

    @property
    def population_kurtosis(self):
        """Per-pixel E[(x-mean)^4] / var^2 over the training part (1 where the variance is 0).

        Sets the noise of batch variances: Var(biased batch var) ~ (kurtosis - 1) var^2 / n
        (2 var^2 / n for Gaussian data); rarely-inked pixels have very heavy tails.
        """
        x = self.x_train.astype(np.float64)
        centred = x - x.mean(axis=0)
        var = (centred ** 2).mean(axis=0)
        fourth = (centred ** 4).mean(axis=0)
        return np.where(var > 0, fourth / np.where(var > 0, var, 1.0) ** 2, 1.0)

    def sample(self, n, rng):
        """n training images drawn with replacement (float32) and their labels (int64)."""
        idx = rng.integers(0, len(self.x_train), size=n)
        return self._shape(self.x_train[idx]), self.y_train[idx]

    def test_set(self, n=None):
        """The first n held-out images and labels (all of them when n is None or larger)."""
        n = len(self.x_test) if n is None else min(n, len(self.x_test))
        return self._shape(self.x_test[:n]), self.y_test[:n]


def batch_rng(seed, step):
    """The generator for batch ``step`` of a run seeded ``seed`` (pure function of both)."""
    return np.random.default_rng([seed, step])


def train_batch(dataset, batch_size, seed, step):
    """Training batch number ``step``: the same whatever ran before it."""
    return dataset.sample(batch_size, batch_rng(seed, step))


def held_out(dataset, n, seed):
    """A fixed held-out set, disjoint in stream from every training batch.

    For ``Digits`` the first n of its held-out images (at most all 539 of them).
    """
    if hasattr(dataset, "test_set"):
        return dataset.test_set(n)
    return dataset.sample(n, np.random.default_rng([seed, 2**31 - 1, 17]))


DATASETS = {"dense": Blobs, "conv": Stripes}
NAMES = ("blobs", "digits")  # what --data and --set data= accept


def make(name, seed=0):
    """The dense model's data: ``"blobs"`` (synthetic, known population) or ``"digits"`` (real)."""
    if name == "blobs":
        return Blobs(seed=seed)
    if name == "digits":
        return Digits(seed=seed)
    raise ValueError(f"data: name must be one of {', '.join(NAMES)}, got {name!r}")
