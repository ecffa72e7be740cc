"""Shared graph helpers: the ancestor walk, --feed parsing, and the refusal to run file/Python
ops that every tool running a user's graph applies (to-inference, recalibrate, migrate)."""

import os
import warnings

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tf1_repro import cli
from tf1_repro.graph import feeds as user_feeds, safety, walk
from tf1_repro.comparisons.implementations import tf_layers_batch_normalization


def test_parse_feed_values_and_errors():
    assert user_feeds.parse_feed("training=false") == ("training", False)
    assert user_feeds.parse_feed(" keep_prob = 1.0") == ("keep_prob", 1.0)
    assert user_feeds.parse_feed("phase=0") == ("phase", 0)
    name, value = user_feeds.parse_feed("mask=[1, 0]")
    assert name == "mask" and value.tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"^--feed must be NAME=VALUE \(e.g. training=false\), got 'training'$"):
        user_feeds.parse_feed("training")
    with pytest.raises(ValueError, match=r"^--feed training: VALUE must be true, false, a number or a "
                                         r"JSON list, got 'no'$"):
        user_feeds.parse_feed("training=no")


def test_ancestors_follow_control_inputs_only_when_asked():
    with tf.Graph().as_default():
        a = tf.constant(1.0, name="a")
        b = tf.constant(2.0, name="b")
        with tf.control_dependencies([b]):
            c = tf.identity(a, name="c")
        assert {op.name for op in walk.ancestors([c.op])} == {"a", "b", "c"}
        assert {op.name for op in walk.ancestors([c.op], control=False)} == {"a", "c"}


@pytest.fixture(scope="module")
def booby_trapped(tmp_path_factory):
    """A trained-looking BN model whose BN input waits on a WriteFile: running it writes a file."""
    root = tmp_path_factory.mktemp("trap")
    sentinel = root / "written_by_the_graph.txt"
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        training = tf.placeholder_with_default(False, [], name="training")
        with tf.control_dependencies([tf.io.write_file(str(sentinel), "ran")]):
            h = tf.identity(x)
        h = tf_layers_batch_normalization()(h, training=training)
        tf.identity(tf.layers.dense(h, 2), name="logits")
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(root / "ckpt" / "model.ckpt"))
    assert not sentinel.exists()
    np.savez(root / "data.npz", x=np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32))
    return root, prefix, sentinel


@pytest.mark.parametrize("args", [
    ["to-inference", "{prefix}", "--outputs", "logits", "--out", "{root}/serve", "--formats", "frozen",
     "--latency-runs", "0"],
    ["recalibrate", "{prefix}", "--data", "{root}/data.npz", "--out", "{root}/recal"],
    ["migrate", "{prefix}", "--to", "keras3", "--out", "{root}/k3"],
], ids=["to-inference", "recalibrate", "migrate"])
def test_tools_refuse_to_run_file_ops(booby_trapped, args, capsys):
    root, prefix, sentinel = booby_trapped
    argv = [a.format(prefix=prefix, root=root) for a in args]
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "holds WriteFile" in err and "refusing to run it" in err and "\n" not in err
    assert not sentinel.exists()
    assert not os.path.exists(argv[argv.index("--out") + 1])


def test_unsafe_to_run_looks_only_at_what_the_fetches_need():
    with tf.Graph().as_default() as graph:
        x = tf.placeholder(tf.float32, [2], name="x")
        y = tf.identity(x * 2, name="y")
        tf.io.write_file("/nonexistent/never", "x", name="writer")
        with tf.control_dependencies([graph.get_operation_by_name("writer")]):
            z = tf.identity(x, name="z")
    assert safety.unsafe_to_run(graph, [y]) is None
    assert safety.unsafe_to_run(graph, ["z:0"]) == ("WriteFile", "writer")
    assert safety.refusal(("WriteFile", "writer"), "z:0").startswith(
        "the graph that computes z:0 holds WriteFile (node writer)")
