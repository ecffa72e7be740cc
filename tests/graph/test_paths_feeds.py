"""The shared ``--out`` check (``graph.paths.check_out_dir``), ``--data`` reader
(``graph.feeds.load_npz``) and unbound mode inputs (``graph.feeds.unbound_mode_inputs``): the
parameters that let each tool keep its own wording, on real files and a real graph."""

import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import bn_builders as lb
from tf1_repro.graph import feeds, paths
from tf1_repro.graph.errors import InputError
from tf1_repro.tools import finder


def _refusal(out, **kwargs):
    with pytest.raises(InputError) as info:
        paths.check_out_dir(out, "tool", **kwargs)
    return str(info.value)


def test_check_out_dir_default_wording(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert _refusal(str(a_file)) == f"tool: --out must be a directory, got {str(a_file)!r} (a file)"
    assert _refusal(str(tmp_path), source_dir=str(tmp_path)) == (
        f"tool: --out must not be the source's directory, got {str(tmp_path)!r} (the source is "
        f"never modified)")
    (tmp_path / "weights.npz").write_text("x")
    assert _refusal(str(tmp_path), taken=("weights.npz",)) == (
        f"tool: --out {str(tmp_path)!r} already holds weights.npz; pass --force to replace it")
    paths.check_out_dir(str(tmp_path), "tool", taken=("weights.npz",), force=True)
    paths.check_out_dir(str(tmp_path / "new" / "dir"), "tool", taken=("weights.npz",))
    assert _refusal("") == "tool: --out must name a directory, got ''"


def test_check_out_dir_own_wording_and_callable_taken(tmp_path):
    (tmp_path / "model.ckpt-3.index").write_text("x")
    wording = paths.OutWording(holds="{what} {out!r} already holds a checkpoint ({name})")

    def taken(folder):
        return sorted(f for f in os.listdir(folder) if f.endswith(".index"))
    assert _refusal(str(tmp_path), taken=taken, wording=wording) == (
        f"tool: --out {str(tmp_path)!r} already holds a checkpoint (model.ckpt-3.index)")
    # a folder that does not exist yet holds nothing: the callable is not asked
    paths.check_out_dir(str(tmp_path / "new"), "tool", taken=lambda folder: 1 / 0)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_check_out_dir_order_of_writable_and_taken(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "weights.npz").write_text("x")
    locked.chmod(0o500)
    try:
        assert "must be writable" in _refusal(str(locked), taken=("weights.npz",))
        assert "already holds weights.npz" in _refusal(str(locked), taken=("weights.npz",),
                                                       holds_before_writable=True)
        # writable=False skips the check (the tool fails when it writes)
        paths.check_out_dir(str(locked), "tool", taken=("weights.npz",), force=True,
                            writable=False)
    finally:
        locked.chmod(0o700)


def test_load_npz_messages(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.arange(3))
    assert list(feeds.load_npz(str(good), "tool")) == ["x"]
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(InputError, match=r"^tool: --data .*bad\.npz: not a readable \.npz file "
                                         r"\(\w+Error: "):
        feeds.load_npz(str(bad), "tool")
    with pytest.raises(InputError) as info:
        feeds.load_npz(str(bad), "tool", unreadable="{where}: {what} must be a .npz, got {path!r} "
                                                    "({error_type}: {first_line:.20})")
    message = str(info.value)
    assert message.startswith(f"tool: --data must be a .npz, got {str(bad)!r} (")
    assert len(message.split(": ", 2)[-1]) <= 21  # the first line cut at 20 characters, then ")"
    empty = tmp_path / "empty.npz"
    np.savez(empty)
    with pytest.raises(InputError, match=r"must hold at least one array, got .* \(empty\)$"):
        feeds.load_npz(str(empty), "tool")


def test_unbound_mode_inputs_is_the_finders_vanilla_keep_prob(graph):
    x = tf.placeholder(tf.float32, [None, 4], name="x")
    training = tf.placeholder(tf.bool, [], name="training")
    keep_prob = tf.placeholder(tf.float32, [], name="keep_prob")
    lb.dropout_vanilla(x, keep_prob, training)
    found = finder.find(graph)
    unbound = feeds.unbound_mode_inputs(found)
    assert [m.name for m in found.unbound_mode_inputs()] == ["keep_prob"]
    assert list(unbound) == ["keep_prob"]
    assert unbound["keep_prob"].startswith("vanilla dropout ")
    assert "keep_prob:0" not in found.prediction_feeds()
