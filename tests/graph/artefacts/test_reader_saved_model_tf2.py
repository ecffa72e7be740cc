"""TF2 SavedModels: the serving signature frozen in a child process, its Consts mapped to the
object graph's variables; unsafe signatures never loaded."""

import os

import numpy as np
import pytest

from tf1_repro.graph import artefacts
from tf2_model_files import tf2_models  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.slow  # each TF2 load is a child process (about 6 s)


def _bn_const(art, stat):
    consts = [c for c, path in art.variable_paths.items() if path.endswith(stat)]
    assert len(consts) == 1, art.variable_paths
    return consts[0]


def test_tf_keras_saved_model_frozen_statistics_equal_the_models(tf2_models):
    folder, expected = tf2_models
    art = artefacts.load(os.path.join(folder, "tfk_saved_model"))
    assert art.format == "saved_model_tf2" and art.signature == "serving_default"
    assert art.signature_names == ["serving_default"]
    assert art.meta_graph is None and art.checkpoint is None and not art.notes
    for stat in ("moving_mean", "moving_variance"):
        const = _bn_const(art, stat)
        assert art.variable_paths[const] == f"bn/{stat}"
        assert art.checkpoint_keys[const].endswith(f"/{stat}/.ATTRIBUTES/VARIABLE_VALUE")
        assert np.array_equal(art.read(const), expected[f"tfk/{stat}"])
    assert not np.allclose(expected["tfk/moving_mean"], 0.0)  # fit moved them
    ops = {n.op for n in art.graph_def.node}
    assert "FusedBatchNormV3" in ops
    assert not ops & {"VarHandleOp", "ReadVariableOp", "StatefulPartitionedCall"}
    names = {n.name for n in art.graph_def.node}
    assert {t.split(":")[0] for t in list(art.inputs.values()) + list(art.outputs.values())} <= names


def test_the_frozen_graph_opens_and_runs(tf2_models):
    folder, _ = tf2_models
    art = artefacts.load(os.path.join(folder, "tfk_saved_model"))
    graph, sess = art.open()
    with sess:
        (name,) = art.inputs.values()
        (out,) = art.outputs.values()
        y = sess.run(out, {name: np.ones((2, 8, 8, 1), np.float32)})
    assert y.shape == (2, 3) and np.isfinite(y).all()
    assert graph.get_tensor_by_name(out) is not None


def test_keras3_export_maps_to_keras_paths(tf2_models):
    folder, expected = tf2_models
    art = artefacts.load(os.path.join(folder, "k3_export"))
    assert art.format == "saved_model_tf2" and set(art.signature_names) == {"serve", "serving_default"}
    for stat in ("moving_mean", "moving_variance"):
        const = _bn_const(art, stat)
        assert "bn3" in art.variable_paths[const]
        assert np.array_equal(art.read(const), expected[f"k3/{stat}"])


def test_another_signature_and_a_missing_one(tf2_models):
    folder, _ = tf2_models
    assert artefacts.load(os.path.join(folder, "k3_export"), signature="serve").signature == "serve"
    with pytest.raises(artefacts.ArtefactError, match="no signature 'nope'; it has serve, serving_default"):
        artefacts.load(os.path.join(folder, "k3_export"), signature="nope")


@pytest.mark.parametrize("name, op", [("writes_file", "WriteFile"), ("py_function", "EagerPyFunc")])
def test_an_unsafe_signature_is_read_statically_never_run(tf2_models, name, op):
    folder, _ = tf2_models
    before = sorted(os.listdir(folder))
    art = artefacts.load(os.path.join(folder, name))
    assert not os.path.exists(os.path.join(folder, "written.txt"))
    assert sorted(os.listdir(folder)) == before
    assert art.format == "saved_model_tf2" and art.variable_paths == {}
    assert len(art.notes) == 1 and op in art.notes[0] and art.notes[0].startswith("not loaded")
    assert art.graph_def is not None and art.graph_def.library.function


def test_the_finder_names_layers_and_statistics_by_variable_path(tf2_models):
    """Each variable's Const carries its variable's path, so find names the BN layer ``bn`` (the
    Keras layer) with ``bn/gamma`` ... ``bn/moving_variance``, never ``unknown_3``."""
    folder, _ = tf2_models
    art = artefacts.load(os.path.join(folder, "tfk_saved_model"))
    assert set(art.variable_paths) == set(art.variable_paths.values())  # renamed to their paths
    (layer,) = art.find().bn_layers
    assert layer.name == "bn"
    assert (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance) == (
        "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance")
