"""Export for serving: SavedModel and frozen GraphDef take only x and predict as the session did."""

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tf1_repro.model import data
from tf1_repro.comparisons import export
from tf1_repro.model import training
from tf1_repro.model import ArticleModel
import support


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    dataset = data.Blobs()
    x_test, _ = data.held_out(dataset, 32, seed=0)
    with tf.Graph().as_default() as g:
        model = ArticleModel(dataset.input_shape, dataset.classes)
        with tf.Session(graph=g) as sess:
            sess.run(model.init_op)
            training.train(sess, model, dataset, 25, 32, 0.8, seed=0)
            expected = model.logits_for(sess, x_test, training=False, keep_prob=1.0)
            model.saver.save(sess, str(ckpt / "model.ckpt"), global_step=model.global_step)
            model.save_config(str(ckpt))
    out = tmp_path_factory.mktemp("export")
    result = export.export(str(ckpt), str(out))
    result["checkpoint_dir"] = str(ckpt)
    return result, x_test, expected


def test_saved_model_single_samples_equal_the_batch_in_session(trained):
    result, x_test, expected = trained
    with tf.Graph().as_default() as g:
        with tf.Session(graph=g) as sess:
            meta = tf.saved_model.loader.load(sess, [tf.saved_model.tag_constants.SERVING],
                                              result["saved_model"])
            signature = meta.signature_def["serving_default"]
            assert set(signature.inputs) == {"x"}
            x = g.get_tensor_by_name(signature.inputs["x"].name)
            logits = g.get_tensor_by_name(signature.outputs["logits"].name)
            single = np.concatenate([sess.run(logits, {x: x_test[i:i + 1]}) for i in range(len(x_test))])
    np.testing.assert_allclose(single, expected, atol=1e-5)


def test_frozen_graph_takes_only_x(trained):
    result, x_test, expected = trained
    graph = export.load_frozen(result["frozen_graph"])
    assert not [op for op in graph.get_operations() if op.type in ("VariableV2", "VarHandleOp", "Assign")]
    placeholders = [op.name for op in graph.get_operations() if op.type == "Placeholder"]
    assert placeholders == ["x"]
    with tf.Session(graph=graph) as sess:
        single = np.concatenate([sess.run(export.LOGITS, {export.INPUT: x_test[i:i + 1]})
                                 for i in range(len(x_test))])
    np.testing.assert_allclose(single, expected, atol=1e-5)


def test_the_training_graph_itself_cannot_be_frozen():
    """Why export rebuilds the prediction path: the EMA update inside tf.cond survives freezing."""
    with tf.Graph().as_default() as g:
        model = ArticleModel((4,), 2)
        with tf.Session(graph=g) as sess:
            sess.run(model.init_op)
            frozen = tf.graph_util.convert_variables_to_constants(sess, g.as_graph_def(),
                                                                  [model.logits.op.name])
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="AssignMovingAvg.*incompatible with expected float_ref"):
            tf.import_graph_def(frozen, name="")


def test_command_line(trained, tmp_path):
    import os
    import subprocess
    import sys
    root = support.ROOT
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "export", "--checkpoint",
                           trained[0]["checkpoint_dir"], "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=root, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "frozen_graph.pb").exists() and (tmp_path / "saved_model" / "saved_model.pb").exists()
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "export", "--checkpoint", str(tmp_path / "none"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=root, timeout=300)
    assert done.returncode == 2 and "--checkpoint must be a directory holding a checkpoint" in done.stderr
    assert not (tmp_path / "o").exists()
