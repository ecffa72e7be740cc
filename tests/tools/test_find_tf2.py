"""find on TF2 SavedModels and Keras files: names users know, the Keras config's momentum and
epsilon, a dropout Keras removed at inference, the serving function's writes, --signature."""
# pylint: disable=redefined-outer-name
import numpy as np
import pytest

from tf2_suite import tf2_artefact, tf2_suite_folder, tf2_values  # noqa: F401  pylint: disable=unused-import
from tf1_repro.graph import artefacts
from tf1_repro.tools import find_report, tf2_findings

pytestmark = pytest.mark.slow  # each TF2 artefact is read in a child process (about 4 s)


def _find(path, signature=None):
    art, found = find_report.read(path, signature=signature)
    return art, found, find_report.format_find(art, found), find_report.payload(art, found)


@pytest.mark.parametrize("name, flavour, config", [("tfk_healthy", "tfk", True),
                                                   ("k3_healthy_keras", "k3", True),
                                                   ("k3_healthy", "k3", False)])
def test_bn_named_by_keras_layer_with_config_and_removed_dropout(tf2_artefact, tf2_values, name,
                                                                  flavour, config):
    art, found, text, payload = _find(tf2_artefact(name))
    (layer,) = found.bn_layers
    assert layer.name == "bn" and (layer.gamma, layer.moving_mean, layer.moving_variance) == (
        "bn/gamma", "bn/moving_mean", "bn/moving_variance")
    assert np.array_equal(art.read(layer.moving_mean), tf2_values(flavour)["healthy/moving_mean"])
    assert layer.epsilon == pytest.approx(0.01) and layer.statistics_used_at_prediction is True
    assert not found.dropouts and payload["format"] == art.format
    if not config:  # a Keras 3 export holds no Keras config
        assert payload["keras_layers"] is None and layer.decay is None
        return
    assert layer.decay == 0.9  # the configured momentum, as decay
    by_name = {k["name"]: k for k in payload["keras_layers"]}
    assert (by_name["bn"]["momentum"], by_name["bn"]["epsilon"]) == (0.9, 0.01)
    assert by_name["bn"]["moving_statistics_used"] is True
    assert by_name["drop"]["in_serving_function"] is False
    assert f"Dropout drop (rate 0.5): {tf2_findings.REMOVED}" in text
    assert "BN bn [" in text and "decay=0.9" in text


def test_a_dropout_kept_in_the_serving_function_and_bn_in_training_mode(tf2_artefact):
    _, found, text, payload = _find(tf2_artefact("tfk_dropout_training"))
    (drop,) = found.dropouts
    assert drop.name == "drop" and drop.keep_prob["value"] == 0.5
    assert "Dropout drop (rate 0.5): in the serving function as drop" in text
    _, found, text, payload = _find(tf2_artefact("tfk_bn_training"))
    (layer,) = found.bn_layers
    assert layer.statistics_used_at_prediction is False
    assert layer.update_location == "serving-function" and layer.updates_at_prediction
    assert "the serving function uses the moving statistics: NO (batch statistics)" in text
    assert sorted(w["variable"] for w in payload["writes"]) == ["bn/moving_mean", "bn/moving_variance"]


def test_signature_and_the_list_of_signatures(tf2_artefact):
    art, found, text, payload = _find(tf2_artefact("module_healthy"), signature="serve_training")
    assert payload["signature"] == "serve_training"
    # the outputs by the keys the user wrote ({"y": ...}), the frozen graph's tensor beside them
    assert list(art.outputs) == ["y"] and list(art.inputs) == ["x"]
    assert (payload["signature_inputs"], payload["signature_outputs"]) == (art.inputs, art.outputs)
    assert (f"  serve_training: inputs x ({art.inputs['x']}) -> outputs y ({art.outputs['y']})"
            in text.splitlines())
    assert payload["signatures"] == ["serve_training", "serving_default"]
    assert "signatures: serve_training, serving_default (read: serve_training)" in text
    assert found.bn_layers[0].statistics_used_at_prediction is False
    with pytest.raises(artefacts.ArtefactError, match="it has serve_training, serving_default"):
        find_report.read(tf2_artefact("module_healthy"), signature="nope")


BATCH_STATISTICS_MODULE = '''
import sys, tensorflow as tf
class BN(tf.Module):  # no gamma, no beta: the serving function reads no variable of it
    def __init__(self):
        super().__init__(name="bn")
        self.moving_mean = tf.Variable(tf.zeros([2]), trainable=False, name="moving_mean")
        self.moving_variance = tf.Variable(tf.ones([2]), trainable=False, name="moving_variance")
    def __call__(self, h):
        mean, var = tf.nn.moments(h, [0])
        self.moving_mean.assign(0.9 * self.moving_mean + 0.1 * mean)
        self.moving_variance.assign(0.9 * self.moving_variance + 0.1 * var)
        return tf.nn.batch_normalization(h, mean, var, None, None, 1e-3)
class Inner(tf.Module):
    def __init__(self):
        super().__init__(name="inner")
        self.kernel = tf.Variable(tf.random.stateless_normal([4, 2], [1, 2]), name="kernel")
        self.bn = BN()
class Net(tf.Module):
    def __init__(self):
        super().__init__()
        self.model = Inner()
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"predictions": self.model.bn(tf.matmul(x, self.model.kernel))}
net = Net()
tf.saved_model.save(net, sys.argv[1], signatures={"serving_default": net.serve})
'''


def test_a_layer_reading_no_variable_is_named_by_the_statistics_it_writes(tmp_path):
    """A hand-written tf.Module BN without gamma and beta, in training mode: its ops lie under
    the frozen function's scope (StatefulPartitionedCall); the moving statistics its moments
    are written to name it by their object paths (model/bn), and the writes are its updates."""
    import os  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    done = subprocess.run([sys.executable, "-c", BATCH_STATISTICS_MODULE, str(tmp_path / "sm")],
                          capture_output=True, text=True, env=env, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    art, found, text, _ = _find(str(tmp_path / "sm"))
    written = sorted(w["variable"] for w in art.writes)
    assert written == ["model/bn/moving_mean", "model/bn/moving_variance"]
    assert all(op.startswith("StatefulPartitionedCall/") for op in found.bn_layers[0].bn_ops)
    (layer,) = found.bn_layers
    assert layer.name == "model/bn" and (layer.gamma, layer.beta) == (None, None)
    by_path = {path: const for const, path in art.variable_paths.items()}
    assert (layer.moving_mean, layer.moving_variance) == (by_path[written[0]], by_path[written[1]])
    assert layer.update_location == "serving-function" and layer.updates_at_prediction
    assert "  BN model/bn [batch_normalization]" in text and "StatefulPartitionedCall [" not in text
