"""Loading the four artefact formats read-only, restoring without the user's own ops, and one-line
errors for what cannot be read."""

import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model_suite import SUITE, suite_artefact  # noqa: F401  pylint: disable=unused-import
from tf1_repro.graph import artefacts


@pytest.mark.parametrize("name", ["tf_layers_wired", "article", "fused_frozen_training_false",
                                  "saved_model_keep_prob_default", "unwired_no_meta"])
def test_each_format_is_recognised(name, suite_artefact):  # noqa: F811
    art = artefacts.load(suite_artefact(name))
    assert art.format == SUITE[name].format
    assert (art.graph_def is None) == (name == "unwired_no_meta")


def test_open_restores_every_variable_from_the_checkpoint(suite_artefact):  # noqa: F811
    art = artefacts.load(suite_artefact("tf_layers_wired"))
    graph, sess = art.open()
    with sess:
        variables = [op for op in graph.get_operations() if op.type == "VariableV2"]
        assert variables
        for op in variables:
            assert np.array_equal(sess.run(op.outputs[0]), art.read(op.name)), op.name


def test_saved_model_is_restored_without_running_its_main_op(tmp_path):
    sentinel = tmp_path / "main_op_ran.txt"
    export_dir = str(tmp_path / "sm")
    with tf.Graph().as_default() as graph, tf.Session(graph=graph) as sess:
        x = tf.placeholder(tf.float32, [None, 2], name="x")
        w = tf.get_variable("w", [2, 2], initializer=tf.constant_initializer(3.0))
        y = tf.matmul(x, w, name="y")
        sess.run(tf.global_variables_initializer())
        builder = tf.saved_model.builder.SavedModelBuilder(export_dir)
        signature = tf.saved_model.predict_signature_def({"x": x}, {"y": y})
        main_op = tf.io.write_file(str(sentinel), "ran")
        builder.add_meta_graph_and_variables(sess, ["serve"], {"serving_default": signature},
                                             main_op=main_op)
        builder.save()
    art = artefacts.load(export_dir)
    graph, sess = art.open()
    with sess:
        assert sess.run(graph.get_tensor_by_name("w:0")).tolist() == [[3.0, 3.0], [3.0, 3.0]]
    assert not sentinel.exists()
    assert art.signatures["serving_default"].outputs["y"].name == "y:0"


def test_unreadable_inputs_raise_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    garbage = tmp_path / "frozen.pb"
    garbage.write_bytes(b"\x00not a graph")
    cases = {
        str(tmp_path / "nope"): "no such file or checkpoint prefix",
        str(tmp_path / "empty"): "a directory with no checkpoint (.index) and no saved_model.pb",
        str(garbage): "not a GraphDef",
    }
    for path, message in cases.items():
        with pytest.raises(artefacts.ArtefactError) as err:
            artefacts.load(path)
        assert str(err.value).startswith(f"{path}: {message}")
        assert "\n" not in str(err.value)
    with pytest.raises(TypeError, match="artefacts.load: path must be a str or os.PathLike, got int"):
        artefacts.load(3)


def test_a_truncated_checkpoint_is_named(tmp_path, suite_artefact):  # noqa: F811
    source = suite_artefact("tf_layers_wired")
    directory = os.path.dirname(source) if not os.path.isdir(source) else source
    copy = tmp_path / "ckpt"
    copy.mkdir()
    for name in os.listdir(directory):
        data = (open(os.path.join(directory, name), "rb").read())
        if name.endswith(".index"):
            data = data[: len(data) // 2]
        (copy / name).write_bytes(data)
    with pytest.raises(artefacts.ArtefactError, match="unreadable checkpoint"):
        artefacts.load(str(copy))
