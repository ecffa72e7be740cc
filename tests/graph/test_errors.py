"""The one-line forms of errors (``tf1_repro.graph.errors``) on TensorFlow's real runtime errors."""

import pytest

from tf1_repro.graph import errors
from tests.conftest import tf


def _run_error(build, feed_names):
    """The OpError of running ``build()``'s output with only ``feed_names`` fed (ones)."""
    with tf.Graph().as_default() as graph:
        out = build()
        feeds = {graph.get_tensor_by_name(f"{n}:0"): [1.0] for n in feed_names}
        with tf.Session(graph=graph) as sess, pytest.raises(tf.errors.OpError) as err:
            sess.run(out, feeds)
    return err.value


def _two_placeholders():
    images = tf.placeholder(tf.float32, [None], name="images")
    ids = tf.placeholder(tf.int32, [None], name="ids")
    return images + tf.cast(ids, tf.float32)


def test_the_cause_not_the_graph_execution_wrapper():
    err = _run_error(_two_placeholders, ["images"])
    assert err.message.startswith("Graph execution error:")  # what TensorFlow says first
    wanted = "You must feed a value for placeholder tensor 'ids' with dtype int32"
    assert wanted in err.message
    for line in (errors.run_error_line(err), errors.one_line(err), errors.cause_line(err)):
        assert line.startswith(wanted), line
        assert "Graph execution error" not in line and "Node:" not in line
    assert errors.exception_line(err).startswith(f"InvalidArgumentError: {wanted}")


def test_a_runtime_cause_after_the_detected_at_node_trace():
    def reshape():
        x = tf.placeholder(tf.float32, [None], name="x")
        return tf.reshape(x, [3, 5])
    err = _run_error(reshape, ["x"])
    assert "Detected at node" in err.message and "Node: 'Reshape'" in err.message
    assert errors.run_error_line(err) == ("Input to reshape is a tensor with 1 values, but the "
                                          "requested shape has 15")


def test_names_of_our_restore_ops_are_left_out():
    def restore_named():
        own = tf.placeholder(tf.float32, [None], name="tf1_repro_restore/Placeholder_7")
        return own * 2.0
    err = _run_error(restore_named, [])
    assert "tf1_repro_restore/Placeholder_7" in err.message
    line = errors.run_error_line(err)
    assert "tf1_repro_restore" not in line
    assert line.startswith("You must feed a value for placeholder tensor with dtype float")
    assert line.endswith("(1 name(s) of tf1_repro's own restore ops left out)"), line
    listed = "fed ['images', " + ", ".join(f"'tf1_repro_restore/Placeholder_{i}'" for i in range(534)) + "]"
    assert errors.without_own_names(listed) == (
        "fed ['images'] (534 name(s) of tf1_repro's own restore ops left out)")


def test_long_lines_are_capped_with_a_count():
    text = "x" * 1000
    line = errors.capped(text, 300)
    assert len(line) <= 300 and line.endswith(f" ... (+{1000 - line.index(' ...')} characters)")
    assert errors.capped("short", 300) == "short"
    assert len(errors.run_error_line(ValueError("y" * 5000))) <= 300
    assert errors.short_list(["a", "b", "c"], shown=2) == "'a', 'b' and 1 more"
    assert errors.short_list([]) == "none"
