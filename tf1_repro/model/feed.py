"""The one place feeds are made and checked before ``session.run``.

The article's graph takes whatever is fed: keep_prob=0 gives all zeros,
keep_prob=1.5 shrinks every output, training=1 fails deep inside TensorFlow,
and a NaN in a training batch poisons the moving averages for good. ``make_feed``
refuses all of these with one specific message before anything runs, so
nothing in the graph's variables changes.
"""

import warnings

import numpy as np

from tf1_repro.layers import checks


class SingleSampleTrainingWarning(UserWarning):
    """A batch of one in training mode: its batch variance is 0, so every
    ``bn_layer`` outputs beta (the article's own point)."""


def _where(step):
    return "feed" if step is None else f"feed (step {step})"


def check_inputs(x, placeholder, step=None, check_finite=True):
    """``x`` as a float32 array whose shape fits ``placeholder``; optionally all finite."""
    where = _where(step)
    try:
        array = np.asarray(x)
    except (TypeError, ValueError) as err:  # ragged lists and the like
        raise TypeError(f"{where}: x must be a numeric array, got {checks.describe(x)} ({err})") from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.floating)
                                   or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(
            f"{where}: x must be a real-valued numeric array (float or int, fed as float32), "
            f"got dtype {array.dtype}")
    expected = placeholder.shape
    if expected.ndims is not None:
        dims = expected.as_list()
        fits = array.ndim == len(dims) and all(d is None or d == a for d, a in zip(dims, array.shape))
        if not fits:
            wanted = "[" + ", ".join("N" if d is None else str(d) for d in dims) + "]"
            raise ValueError(f"{where}: x must have shape {wanted}, got shape {list(array.shape)}")
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"{where}: x must hold at least one sample, got shape {list(array.shape)}")
    array = array.astype(np.float32, copy=False)
    if check_finite and not np.isfinite(array).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(
            f"{where}: x must be finite (a NaN or inf in a training batch poisons the moving "
            f"averages), got {array[index]} at index {index} (sample {index[0]}); "
            f"pass check_finite=False to skip this check")
    return array


def check_labels(y, batch_size, num_classes=None, step=None):
    """``y`` as an int64 vector of length ``batch_size`` with values in [0, num_classes)."""
    where = _where(step)
    labels = np.asarray(y)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{where}: y must be integer class labels, got dtype {labels.dtype}")
    if labels.shape != (batch_size,):
        raise ValueError(
            f"{where}: y must have shape [{batch_size}] (one label per sample of x), "
            f"got shape {list(labels.shape)}")
    if num_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(f"{where}: y must be in [0, {num_classes}), got label {int(bad)}")
    return labels.astype(np.int64, copy=False)


def make_feed(model, x, *, training, keep_prob, y=None, step=None, check_finite=True):
    """The feed_dict for one ``session.run`` of an article-style model.

    Args:
      model: anything with placeholders ``x``, ``training``, ``keep_prob`` (and
        ``y`` when labels are fed), e.g. ``tf1_repro.model.ArticleModel``.
      x: the batch, shaped like ``model.x``.
      training: bool, no default on purpose: True trains on batch statistics and
        updates the moving averages; False predicts with them.
      keep_prob: 1 - dropout rate, in (0, 1]; 1.0 at prediction time.
      y: integer labels, when the fetched ops need them.
      step: the training step, named in error messages.
      check_finite: refuse NaN/inf in x (one pass over the batch; turn off for speed).

    Returns:
      dict placeholder -> value.

    Warns:
      SingleSampleTrainingWarning when training on a batch of one.
    """
    where = _where(step)
    training = checks.check_training_value(where, training)
    keep_prob = checks.check_keep_prob(where, keep_prob)
    array = check_inputs(x, model.x, step=step, check_finite=check_finite)
    if training and array.shape[0] == 1:
        warnings.warn(
            f"{where}: a batch of 1 in training mode has batch variance 0, so every bn_layer "
            f"outputs its beta whatever the sample (the article's point); predict with "
            f"training=False", SingleSampleTrainingWarning, stacklevel=2)
    feed = {model.x: array, model.training: training, model.keep_prob: keep_prob}
    if getattr(model, "dropout_seed", None) is not None and step is not None:
        feed[model.dropout_seed] = [model.config["seed"], step]  # the mask: a function of (seed, step)
    if y is not None:
        feed[model.y] = check_labels(y, array.shape[0], getattr(model, "num_classes", None), step)
    return feed
