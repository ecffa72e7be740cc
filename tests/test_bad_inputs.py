"""The bad-input battery: every misuse gets one specific message (API) or exit 2 and one line
(command line), and no variable or checkpoint changes. README.md lists this table."""

import hashlib
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import assert_same_values
from tf1_repro.model import data
from tf1_repro.layers.bn import bn_layer
from tf1_repro.model.feed import SingleSampleTrainingWarning
from tf1_repro.model import ArticleModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEEP = "keep_prob must be in (0, 1] (keep_prob = 1 - dropout rate; 1.0 turns dropout off), got "

# name -> (keyword arguments of train_step / feed that break it, error type, exact message)
API_FEEDS = {
    "keep_prob 0": ({"keep_prob": 0.0}, ValueError,
                    "feed (step 3): " + KEEP + "0.0 (tf.nn.dropout would silently output all zeros)"),
    "keep_prob negative": ({"keep_prob": -0.5}, ValueError, "feed (step 3): " + KEEP + "-0.5"),
    "keep_prob > 1": ({"keep_prob": 1.5}, ValueError, "feed (step 3): " + KEEP +
                      "1.5 (tf.nn.dropout would silently shrink every output)"),
    "keep_prob NaN": ({"keep_prob": math.nan}, ValueError, "feed (step 3): " + KEEP + "nan"),
    "NaN in a batch": ({"nan_at": (5, 2)}, ValueError,
                       "feed (step 3): x must be finite (a NaN or inf in a training batch poisons the "
                       "moving averages), got nan at index (5, 2) (sample 5); pass check_finite=False "
                       "to skip this check"),
    "inf in a batch": ({"inf_at": (0, 7)}, ValueError,
                       "feed (step 3): x must be finite (a NaN or inf in a training batch poisons the "
                       "moving averages), got inf at index (0, 7) (sample 0); pass check_finite=False "
                       "to skip this check"),
}
TRAINING = ("feed: training must be a bool (True to train on batch statistics, False to predict "
            "with the moving averages), got ")
API_TRAINING = {"training as a string": ("True", TRAINING + "str 'True'"),
                "training as an int": (1, TRAINING + "int 1"),
                "training as an array": (np.array([True, False]), TRAINING + "a bool array of shape (2,)")}
LAYER = {
    "inputs of rank 1": (tf.float32, [5], ValueError, "bn_layer: inputs must have rank >= 2"),
    "unknown channel dimension": (tf.float32, [None, None], ValueError,
                                  "bn_layer: inputs must have a known last (channel) dimension"),
    "integer inputs": (tf.int32, [None, 3], TypeError, "bn_layer: inputs must be float32 (gamma and "
                       "beat are made by tf.get_variable with its default dtype float32, which only "
                       "float32 inputs can be normalised with), got int32"),
    "float16 inputs": (tf.float16, [None, 3], TypeError, "bn_layer: inputs must be float32"),
}


@pytest.fixture
def trained_model(graph):
    dataset = data.Blobs()
    model = ArticleModel(dataset.input_shape, dataset.classes)
    sess = tf.Session(graph=graph)
    sess.run(model.init_op)
    for step in range(3):
        model.train_step(sess, *data.train_batch(dataset, 16, 0, step), keep_prob=0.8, step=step)
    yield dataset, model, sess
    sess.close()


@pytest.mark.parametrize("case", list(API_FEEDS))
def test_api_feed_refusals_change_no_variable(case, trained_model, variable_values):
    dataset, model, sess = trained_model
    change, error, message = API_FEEDS[case]
    x, y = data.train_batch(dataset, 16, 0, 3)
    x = x.copy()
    if "nan_at" in change:
        x[change["nan_at"]] = np.nan
    if "inf_at" in change:
        x[change["inf_at"]] = np.inf
    before = variable_values(sess)
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        model.train_step(sess, x, y, keep_prob=change.get("keep_prob", 0.8), step=3)
    assert_same_values(before, variable_values(sess))  # moving averages not poisoned


@pytest.mark.parametrize("case", list(API_TRAINING))
def test_api_training_must_be_a_bool(case, trained_model):
    dataset, model, _ = trained_model
    value, message = API_TRAINING[case]
    with pytest.raises(TypeError, match="^" + re.escape(message) + "$"):
        model.feed(data.train_batch(dataset, 4, 0, 0)[0], training=value, keep_prob=1.0)


@pytest.mark.parametrize("case", list(LAYER))
def test_api_layer_inputs(case, graph):
    dtype, shape, error, message = LAYER[case]
    with pytest.raises(error, match="^" + re.escape(message)):
        bn_layer(tf.placeholder(dtype, shape), True)
    assert tf.global_variables() == []


def test_api_batch_of_one_in_training_warns(trained_model):
    dataset, model, sess = trained_model
    x, y = data.train_batch(dataset, 1, 0, 0)
    with pytest.warns(SingleSampleTrainingWarning, match="batch variance 0"):
        model.train_step(sess, x, y, keep_prob=0.8)


def _tree_hash(directory):
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(directory)):
        for name in sorted(files):
            digest.update(name.encode())
            with open(os.path.join(root, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "train", "--steps", "20", "--out",
                           str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


# name -> (arguments; CKPT stands for a trained checkpoint directory, EMPTY for an empty one), message
CLI = {
    "--keep-prob 0": (["demo", "--keep-prob", "0"], "output all zeros"),
    "--keep-prob -1": (["demo", "--keep-prob", "-1"], KEEP + "-1.0"),
    "--keep-prob 1.5": (["train", "--keep-prob", "1.5", "--out", "CKPT"], "shrink every output"),
    "--keep-prob nan": (["train", "--keep-prob", "nan", "--out", "CKPT"], KEEP + "nan"),
    "unknown experiment": (["experiment", "nonsense"], "NAME must be one of ema-bias"),
    "unknown --set key": (["experiment", "ema-bias", "--set", "momentum=0.1"],
                          "--set key must be one of decay, steps, mean, std, got 'momentum'"),
    "bad --set value": (["experiment", "ema-bias", "--set", "decay=1.5"], "--set decay: must be in (0, 1)"),
    "missing checkpoint dir": (["predict", "--checkpoint", "MISSING"],
                               "--checkpoint must be a directory holding checkpoints"),
    "checkpoint dir without model.json": (["predict", "--checkpoint", "EMPTY"],
                                          "directory must hold model.json"),
    "export of a missing checkpoint": (["export", "--checkpoint", "MISSING", "--out", "EMPTY"],
                                       "--checkpoint must be a directory holding a checkpoint"),
    "resume with another seed": (["train", "--seed", "5", "--out", "CKPT", "--steps", "30"],
                                 "--seed must match the run being resumed"),
}


@pytest.mark.parametrize("case", list(CLI))
def test_command_line_refusals(case, checkpoint_dir, tmp_path):
    args, message = CLI[case]
    paths = {"CKPT": str(checkpoint_dir), "MISSING": str(tmp_path / "missing"), "EMPTY": str(tmp_path)}
    before = _tree_hash(checkpoint_dir)
    done = subprocess.run([sys.executable, "-m", "tf1_repro", *[paths.get(a, a) for a in args]],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in done.stderr
    assert _tree_hash(checkpoint_dir) == before  # no checkpoint changed
    assert os.listdir(tmp_path) == []


def test_command_line_batch_of_one_warns_and_trains(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "train", "--batch-size", "1", "--steps", "3",
                           "--out", str(tmp_path), "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0
    assert done.stderr.strip().splitlines() == [
        "warning: --batch-size 1: every batch has variance 0, so each bn_layer outputs its beta in "
        "training (the article's point); the model will not learn much"]
