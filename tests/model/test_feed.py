"""The feed helper: every refused value gets one message, before session.run."""

import math
import re

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import assert_same_values
from tf1_repro.model.feed import SingleSampleTrainingWarning, make_feed
from tf1_repro.model import ArticleModel

KEEP = "feed: keep_prob must be in (0, 1] (keep_prob = 1 - dropout rate; 1.0 turns dropout off), got "
TRAINING = ("feed: training must be a bool (True to train on batch statistics, False to predict "
            "with the moving averages), got ")


@pytest.fixture
def model(graph):
    return ArticleModel((4,), 3, seed=0)


def _x(n=5):
    return np.arange(n * 4, dtype=np.float64).reshape(n, 4)


def test_a_good_feed(model):
    feed = make_feed(model, _x(), training=True, keep_prob=0.8, y=[0, 1, 2, 0, 1])
    assert feed[model.training] is True and feed[model.keep_prob] == 0.8
    assert feed[model.x].dtype == np.float32 and feed[model.y].dtype == np.int64


@pytest.mark.parametrize("keep_prob,error,message", [
    (0.0, ValueError, KEEP + "0.0 (tf.nn.dropout would silently output all zeros)"),
    (-0.2, ValueError, KEEP + "-0.2"),
    (1.5, ValueError, KEEP + "1.5 (tf.nn.dropout would silently shrink every output)"),
    (math.nan, ValueError, KEEP + "nan"),
    ("0.8", TypeError, "feed: keep_prob must be a number in (0, 1] (keep_prob = 1 - dropout rate; "
                       "1.0 turns dropout off), got str '0.8'"),
    (True, TypeError, "feed: keep_prob must be a number in (0, 1] (keep_prob = 1 - dropout rate; "
                      "1.0 turns dropout off), got bool True"),
])
def test_keep_prob_outside_zero_one_is_refused(model, keep_prob, error, message):
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        make_feed(model, _x(), training=True, keep_prob=keep_prob)


@pytest.mark.parametrize("training,received", [
    ("True", "str 'True'"), (1, "int 1"), (np.array([True]), "a bool array of shape (1,)"),
    (None, "NoneType None"),
])
def test_training_must_be_a_bool(model, training, received):
    with pytest.raises(TypeError, match="^" + re.escape(TRAINING + received) + "$"):
        make_feed(model, _x(), training=training, keep_prob=1.0)


def test_numpy_bools_are_bools(model):
    assert make_feed(model, _x(), training=np.bool_(False), keep_prob=np.float32(1.0))[
        model.training] is False


@pytest.mark.parametrize("x,error,message", [
    (np.zeros((5, 3)), ValueError, "feed: x must have shape [N, 4], got shape [5, 3]"),
    (np.zeros(4), ValueError, "feed: x must have shape [N, 4], got shape [4]"),
    (np.zeros((0, 4)), ValueError, "feed: x must hold at least one sample, got shape [0, 4]"),
    (np.array([["a"] * 4]), TypeError,
     "feed: x must be a real-valued numeric array (float or int, fed as float32), got dtype <U1"),
])
def test_bad_batches(model, x, error, message):
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        make_feed(model, x, training=False, keep_prob=1.0)


def test_nan_is_reported_with_step_and_sample(model):
    x = _x()
    x[3, 2] = np.nan
    message = ("feed (step 12): x must be finite (a NaN or inf in a training batch poisons the "
               "moving averages), got nan at index (3, 2) (sample 3); pass check_finite=False to "
               "skip this check")
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        make_feed(model, x, training=True, keep_prob=0.8, step=12)
    make_feed(model, x, training=True, keep_prob=0.8, check_finite=False)  # the opt-out


def test_labels_are_checked(model):
    with pytest.raises(ValueError, match=re.escape("feed: y must have shape [5] (one label per "
                                                   "sample of x), got shape [4]")):
        make_feed(model, _x(), training=True, keep_prob=0.8, y=[0, 1, 2, 0])
    with pytest.raises(ValueError, match=re.escape("feed: y must be in [0, 3), got label 3")):
        make_feed(model, _x(), training=True, keep_prob=0.8, y=[0, 1, 2, 3, 0])
    with pytest.raises(TypeError, match=re.escape("feed: y must be integer class labels, got dtype float64")):
        make_feed(model, _x(), training=True, keep_prob=0.8, y=[0.0, 1, 2, 0, 1])


def test_one_sample_in_training_mode_warns(model):
    with pytest.warns(SingleSampleTrainingWarning, match="batch variance 0, so every bn_layer outputs its beta"):
        make_feed(model, _x(1), training=True, keep_prob=1.0)


def test_a_refused_train_step_changes_nothing(graph, model, variable_values):
    with tf.Session(graph=graph) as sess:
        sess.run(model.init_op)
        before = variable_values(sess)
        with pytest.raises(ValueError, match="keep_prob must be in"):
            model.train_step(sess, _x(), [0, 1, 2, 0, 1], keep_prob=0.0)
        assert_same_values(before, variable_values(sess))
