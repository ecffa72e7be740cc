"""The legacy artefact suite is what it says: each case's defect is measured in its files."""

import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model_suite import SUITE, suite_artefact  # noqa: F401  pylint: disable=unused-import

TF_LAYERS = "block1/batch_normalization/"


def _checkpoint(path):
    prefix = path[:-len(".meta")] if path.endswith(".meta") else path
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _graph_def(path):
    graph_def = tf.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    return graph_def


def test_every_case_is_consistent():
    for case in SUITE.values():
        assert case.format in ("checkpoint", "meta_graph", "saved_model", "frozen_graph"), case.name
        assert case.healthy == (case.twin is None), case.name
        if case.twin:
            assert SUITE[case.twin].healthy, case.name


@pytest.mark.parametrize("name,prefix", [("tf_layers_unwired", TF_LAYERS), ("keras_bn_wired", "bn/"),
                                         ("unwired_no_meta", TF_LAYERS)])
def test_unwired_statistics_stay_at_their_initial_values_while_gamma_moves(suite_artefact, name,
                                                                          prefix):
    values = _checkpoint(suite_artefact(name))
    assert np.all(values[prefix + "moving_mean"] == 0.0)
    assert np.all(values[prefix + "moving_variance"] == 1.0)
    assert not np.allclose(values[prefix + "gamma"], 1.0)
    assert values["global_step"] == 20


@pytest.mark.parametrize("name,prefix", [("tf_layers_wired", TF_LAYERS),
                                         ("keras_bn_layer_updates", "bn/"),
                                         ("wired_no_meta", TF_LAYERS)])
def test_wired_statistics_moved(suite_artefact, name, prefix):
    values = _checkpoint(suite_artefact(name))
    assert np.all(values[prefix + "moving_mean"] != 0.0)
    assert np.all(values[prefix + "moving_variance"] != 1.0)


def test_meta_presence(suite_artefact):
    assert not os.path.exists(suite_artefact("unwired_no_meta") + ".meta")
    assert os.path.exists(suite_artefact("tf_layers_unwired") + ".meta")
    assert suite_artefact("article").endswith(".meta")


def test_edited_variances(suite_artefact):
    assert np.isnan(_checkpoint(suite_artefact("nan_variance"))[TF_LAYERS + "moving_variance"][0])
    assert _checkpoint(suite_artefact("negative_variance"))[TF_LAYERS + "moving_variance"][0] == -0.5


def test_article_after_five_steps(suite_artefact):
    values = _checkpoint(suite_artefact("article"))
    assert values["global_step"] == 5
    assert np.all(values["bn/bn/moments/Squeeze/ema"] != 0.0)


@pytest.mark.parametrize("name,is_training", [("fused_frozen_training_true", True),
                                              ("fused_frozen_training_false", False)])
def test_frozen_fused_is_training_attribute(suite_artefact, name, is_training):
    nodes = [n for n in _graph_def(suite_artefact(name)).node if n.op.startswith("FusedBatchNorm")]
    assert len(nodes) == 1
    assert nodes[0].attr["is_training"].b is is_training


def test_saved_model_keep_prob(suite_artefact):
    def keep_prob_node(name):
        with tf.Graph().as_default() as g, tf.Session(graph=g) as sess:
            tf.saved_model.loader.load(sess, ["serve"], suite_artefact(name))
            return g.get_operation_by_name("keep_prob")
    const = keep_prob_node("saved_model_keep_prob_const")
    assert const.type == "Const" and const.get_attr("value").float_val == [0.5]
    assert keep_prob_node("saved_model_keep_prob_default").type == "PlaceholderWithDefault"
