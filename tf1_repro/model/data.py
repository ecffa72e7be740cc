"""Built-in synthetic data (nothing is downloaded), with known population moments.

``Blobs``: a mixture of ``classes`` Gaussians in ``features`` dimensions, equally
likely, then shifted and scaled per feature so raw features are far from
N(0, 1) and batch normalisation has something to do::

    x_j = offset_j + scale_j * (centre[c, j] + noise),  noise ~ N(0, noise_std**2)

so the population mean and variance of feature j are exactly
``offset_j + scale_j * mean_c(centre[c, j])`` and
``scale_j**2 * (noise_std**2 + var_c(centre[c, j]))`` (variance of the mixture).

``Stripes``: small single-channel images, class 0 horizontal and class 1
vertical stripes, plus noise: the conv model's data.

Batches are pure functions of (seed, step), so a run can be replayed or resumed.
"""

import numpy as np


class Blobs:
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


def batch_rng(seed, step):
    """The generator for batch ``step`` of a run seeded ``seed`` (pure function of both)."""
    return np.random.default_rng([seed, step])


def train_batch(dataset, batch_size, seed, step):
    """Training batch number ``step``: the same whatever ran before it."""
    return dataset.sample(batch_size, batch_rng(seed, step))


def held_out(dataset, n, seed):
    """A fixed held-out set, disjoint in stream from every training batch."""
    return dataset.sample(n, np.random.default_rng([seed, 2**31 - 1, 17]))


DATASETS = {"dense": Blobs, "conv": Stripes}
