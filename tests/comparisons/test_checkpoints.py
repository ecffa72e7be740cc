"""Checkpoint migration: article names <-> gamma/beta/moving_*, verified, and back again."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tf1_repro.comparisons import checkpoints
from tf1_repro.model import demo
import support

ROOT = support.ROOT


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    report = demo.run_demo(steps=20, batch_size=16, test_size=64, out_dir=str(out), log=lambda _: None)
    return str(out), report["checkpoint"]


def _values(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


@pytest.mark.parametrize("target", ["keras", "tf-layers"])
def test_article_to_standard_names_verified(trained, tmp_path, target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = checkpoints.convert(trained[0], str(tmp_path / "m.ckpt"), target)
    assert report["ok"] and report["max_difference"] <= 1e-5
    assert report["layers"] == ["bn_hidden", "bn_input"]
    src, dst = _values(trained[1]), _values(str(tmp_path / "m.ckpt"))
    assert np.array_equal(dst["bn_input/moving_variance"], src["bn_input/bn_input/moments/Squeeze_1/ema"])
    assert np.array_equal(dst["bn_input/beta/Adam"], src["bn_input/beat/Adam"])
    assert np.array_equal(dst["fc1/kernel"], src["fc1/kernel"])
    assert len(dst) == len(src)
    if target == "tf-layers":
        assert set(report["verification"]["bn_input"]) == {"tf.layers fused=False", "tf.layers fused=True"}


def test_round_trip_is_bitwise(trained, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        checkpoints.convert(trained[1], str(tmp_path / "std.ckpt"), "tf-layers")
        report = checkpoints.convert(str(tmp_path / "std.ckpt"), str(tmp_path / "back.ckpt"), "article")
    assert report["ok"]
    original, back = _values(trained[1]), _values(str(tmp_path / "back.ckpt"))
    assert original.keys() == back.keys()
    assert all(np.array_equal(original[k], back[k]) for k in original)


def test_refusals_write_nothing(trained, tmp_path):
    with pytest.raises(ValueError, match="--to must be one of keras, tf-layers, article, got 'onnx'"):
        checkpoints.convert(trained[0], str(tmp_path / "x.ckpt"), "onnx")
    with pytest.raises(ValueError, match="SRC must be a checkpoint prefix"):
        checkpoints.convert(str(tmp_path / "missing"), str(tmp_path / "x.ckpt"), "keras")
    with pytest.raises(ValueError, match="SRC must hold gamma/beta/moving_mean/moving_variance BN layers"):
        checkpoints.convert(trained[0], str(tmp_path / "x.ckpt"), "article")
    assert os.listdir(tmp_path) == []
    (tmp_path / "x.ckpt.index").write_text("")
    with pytest.raises(ValueError, match="DST must not exist yet"):
        checkpoints.convert(trained[0], str(tmp_path / "x.ckpt"), "keras")


def test_command_line(trained, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "convert-checkpoint", trained[0],
                           str(tmp_path / "k.ckpt"), "--to", "keras"], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "OK: max difference" in done.stdout and "bn_input/beat -> bn_input/beta" in done.stdout
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "convert-checkpoint", trained[0],
                           str(tmp_path / "k.ckpt"), "--to", "keras"], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2 and "DST must not exist yet" in done.stderr
