"""Every tool on the call of a shared BN layer that matters (``tf1_repro.tools.calls``), on the two
real models of the issues "Real-model defects" #20.3/#20.4 and "Right on real models" #19.7:

* TF-Slim inception_v2 with a training tower (``is_training=True``) and an evaluation tower
  (``reuse=True``, ``is_training=False``) on one placeholder: the evaluation tower serves;
* a tf-keras MobileNetV2 built on its own ``Input`` and called on the user's ``images`` with a
  ``training`` placeholder, the updates of that call wired into the train op: the call on
  ``images`` matters, the one on the model's own ``Input`` is unused.

Plus a small Keras model called twice whose train op misses the used call's updates (the true
positive of ``update-ops-not-in-train-op``) and its healthy twin. Expected values are measured:
the recalibrated statistics are compared with moments computed here from the used call's BN
inputs, run in a session on the same data."""

import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from real_models import real_model  # noqa: F401  pylint: disable=unused-import
from tf1_repro.graph.errors import InputError
from tf1_repro.tools import calls, finder
from tf1_repro.tools.doctor import diagnose
from tf1_repro.tools.inference import to_inference
from tf1_repro.tools.migrate import migrate
from tf1_repro.tools.recalibrate import recalibrate

TWO_TOWERS = "slim_inception_v2_two_towers"
KERAS_TWICE = "keras_mobilenet_v2_on_a_tensor"
pytestmark = pytest.mark.filterwarnings("ignore")


def _import(prefix):
    graph = tf.Graph()
    with graph.as_default():
        tf.train.import_meta_graph(prefix + ".meta", clear_devices=True)
    return graph


def _images(n, seed):
    return np.random.default_rng(seed).normal(size=(n, 32, 32, 3)).astype(np.float32)


# ---- the finder's per-call records and the shared rule


def test_keras_twice_layers_take_the_trained_call_and_its_mode_input(real_model):  # pylint: disable=redefined-outer-name
    """Both calls are switched (a tie in CALL_RANK); the train op runs only the call on
    ``images``: it is the layer's input/output, its mode input is ``training`` (not the first
    call's ``keras_learning_phase``), its updates are where the layer's live, and the tools'
    rule leaves the call on ``input_1`` out as unused."""
    prefix, _ = real_model(KERAS_TWICE)
    found = finder.find(_import(prefix))
    assert len(found.bn_layers) == 52
    for layer in found.bn_layers:
        assert [m["trained"] for m in layer.call_modes] == [False, True]
        assert layer.input == layer.call_sites[1][0]
        assert layer.input.startswith("mobilenetv2_0.35_32/")
        assert layer.mode.name == "training" and layer.update_location == "collection:train_op"
        unused, used = (m["update_ops"] for m in layer.call_modes)
        assert used and all(op.startswith("mobilenetv2_0.35_32/") for op in used)
        assert unused and not any(op.startswith("mobilenetv2_0.35_32/") for op in unused)
        roles = calls.layer_calls(layer)
        assert (roles.prediction, roles.training, roles.unused) == ((1,), (1,), (0,))
    assert found.prediction_feeds()["training:0"] is False


def test_two_towers_roles(real_model):  # pylint: disable=redefined-outer-name
    """The evaluation tower's call serves prediction, the training tower's is the trained one."""
    prefix, _ = real_model(TWO_TOWERS)
    found = finder.find(_import(prefix))
    for layer in found.bn_layers:
        roles = calls.layer_calls(layer)
        assert (roles.prediction, roles.training, roles.unused) == ((1,), (0,), ())
        assert calls.trained_update_ops(layer) == layer.call_modes[0]["update_ops"]


# ---- doctor


def test_doctor_two_towers_runs_the_evaluation_tower(real_model):  # pylint: disable=redefined-outer-name
    """The training tower's logits (dropout on, batch statistics) are not the prediction output:
    the evaluation tower's are, with a note; no dropout-at-inference. ``--outputs`` naming the
    training tower's logits runs them instead, and then the dropout is found."""
    prefix, info = real_model(TWO_TOWERS)
    report = diagnose(prefix)
    assert report["ran"] and report["healthy"], report["findings"]
    assert report["outputs"] and all(o.startswith("InceptionV2_1/") for o in report["outputs"])
    assert not any(f["id"] == "dropout-at-inference" for f in report["findings"])
    assert any(n.startswith("several calls share the BN layers: ran InceptionV2_1/")
               and info["train_output"] in n for n in report["notes"])
    forced = diagnose(prefix, outputs=[info["train_output"]])
    assert forced["outputs"] == [info["train_output"]]
    assert [f["id"] for f in forced["findings"]] == ["dropout-at-inference"]


def test_doctor_refuses_outputs_that_are_not_tensors(real_model):  # pylint: disable=redefined-outer-name
    prefix, _ = real_model(TWO_TOWERS)
    with pytest.raises(InputError, match="--outputs must name tensors of the graph, got 'nope:0'"):
        diagnose(prefix, outputs="nope")
    with pytest.raises(InputError, match="its op has no such output"):
        diagnose(prefix, outputs=["images:3"])


def test_doctor_keras_twice_judges_the_trained_call(real_model):  # pylint: disable=redefined-outer-name
    """The unused call's updates run with no train op, which is right: no
    update-ops-not-in-train-op; the layers' mode is the user's ``training``."""
    prefix, _ = real_model(KERAS_TWICE)
    report = diagnose(prefix)
    assert report["ran"] and report["healthy"], report["findings"]
    assert report["findings"] == []
    assert {layer["mode"]["name"] for layer in report["bn_layers"]} == {"training"}
    assert report["feeds"] == {"training:0": False}


def _keras_twice_small(tmp_path, wire):
    """A Conv2D -> BatchNormalization (fused: its update reads the normalisation op itself)
    tf-keras model on its own Input, called on ``x`` with a
    ``training`` placeholder; the train op wired to no update (``wire`` "none"), to the call's
    (``"used"``: ``model.get_updates_for(x)``) or to every call's (``"all"``: ``model.updates``).
    Trained 3 steps (its statistics move only when wired); with ``"all"`` saved untrained, since
    running the unused call's updates needs the model's own ``Input`` fed: the graph's structure is
    what the finder reads."""
    import os  # pylint: disable=import-outside-toplevel
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        inp = tf_keras.Input((4, 4, 2))
        h = tf_keras.layers.Conv2D(3, 1, name="fc")(inp)
        out = tf_keras.layers.BatchNormalization(name="bn")(h)
        model = tf_keras.Model(inp, out)
        x = tf.placeholder(tf.float32, [None, 4, 4, 2], name="x")
        training = tf.placeholder_with_default(False, [], name="training")
        y = tf.identity(model(x, training=training), name="y")
        loss = tf.reduce_mean(tf.square(y - 1.0))
        wired = {"none": [], "used": model.get_updates_for(x), "all": model.updates}[wire]
        assert wire == "none" or wired
        with tf.control_dependencies(wired):
            train = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(0 if wire == "all" else 3):
                sess.run(train, {x: rng.normal(size=(8, 4, 4, 2)) * 3 + 2, training: True})
            return tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))


@pytest.mark.parametrize("wire", ["none", "used", "all"])
def test_update_ops_missing_from_the_used_call_are_still_found(tmp_path, wire):
    """The true positive: the train op runs the call on ``x`` but not its updates ->
    update-ops-not-in-train-op on the layer, naming that call's update; wired, nothing. Wiring
    every call's updates (``model.updates``) does not make the unused call a trained one: the
    layer is still the call on ``x``, switched by ``training``."""
    prefix = _keras_twice_small(tmp_path, wire)
    report = diagnose(prefix, run=False)
    ids = [(f["id"], f["layer"]) for f in report["findings"]]
    (layer,) = finder.find(_import(prefix)).bn_layers
    assert [m["trained"] for m in layer.call_modes] == [False, True]
    assert layer.input == layer.call_sites[1][0] and layer.mode.name == "training"
    if wire != "none":
        assert ids == [], report["findings"]
    else:
        assert ("update-ops-not-in-train-op", "bn") in ids
        finding = next(f for f in report["findings"] if f["id"] == "update-ops-not-in-train-op")
        used = layer.call_modes[1]["update_ops"]
        assert used and f"(e.g. {sorted(used)[0]})" in finding["message"]


# ---- to-inference


def test_to_inference_two_towers_reports_only_the_served_towers_dropout(real_model, tmp_path):  # pylint: disable=redefined-outer-name
    """Serving the evaluation tower's logits: the training tower's dropout is not on the path, so
    it is not reported as removed; the evaluation tower's (an identity at is_training=False) has no
    random op to remove. The frozen artefact verifies against the original."""
    prefix, info = real_model(TWO_TOWERS)
    found = finder.find(_import(prefix))
    training_tower = [d.name for d in found.dropouts if not d.name.startswith("InceptionV2_1/")]
    assert training_tower  # the training tower's dropout exists in the graph
    report = to_inference(prefix, [info["eval_output"]], str(tmp_path / "serve"),
                          formats=("frozen",), latency_runs=0)
    assert not set(report["dropouts_removed"]) & set(training_tower), report["dropouts_removed"]
    assert not {k["name"] for k in report["dropouts_kept"]} & set(training_tower)
    assert report["artefacts"]["frozen"]["within_tolerance"], report["artefacts"]["frozen"]


def test_to_inference_keras_twice_binds_the_used_calls_mode_input(real_model, tmp_path):  # pylint: disable=redefined-outer-name
    """Served from the call on ``images``: ``training`` is bound to False, the pruned-away
    ``keras_learning_phase`` is not bound (it used to raise), and the artefact verifies."""
    prefix, info = real_model(KERAS_TWICE)
    report = to_inference(prefix, [info["output"]], str(tmp_path / "serve"), formats=("frozen",),
                          latency_runs=0)
    assert report["ok"] and report["feeds"] == {"training:0": False}
    assert report["inputs"] == ["images:0"]
    frozen = report["artefacts"]["frozen"]
    assert frozen["error"] is None and frozen["within_tolerance"] and frozen["batch_independent"]


# ---- recalibrate


def _moments_of_used_calls(prefix, images):
    """{moving statistic: (mean, Bessel-corrected variance)} of each layer's used call's input,
    run here in prediction mode on ``images`` with the checkpoint at ``prefix``."""
    graph = _import(prefix)
    layers = finder.find(graph).bn_layers
    with graph.as_default(), tf.Session(graph=graph) as sess:
        tf.train.Saver().restore(sess, prefix)
        values = sess.run({layer.name: layer.input for layer in layers},
                          {"images:0": images, "training:0": False})
    out = {}
    for layer in layers:
        x = values[layer.name].astype(np.float64).reshape(-1, values[layer.name].shape[-1])
        out[layer.moving_mean] = x.mean(0)
        out[layer.moving_variance] = x.var(0, ddof=1)  # fused: M2 / (n - 1)
    return out


def test_recalibrate_keras_twice_uses_only_the_call_on_images(real_model, tmp_path):  # pylint: disable=redefined-outer-name
    """Data for ``images`` alone is enough (the model's own ``input_1`` is not asked for); every
    stored statistic equals the moments of the used call's BN input, computed here from the
    recalibrated checkpoint (so upstream layers use their new statistics, as recalibrate's
    passes did), to float32 precision."""
    prefix, _ = real_model(KERAS_TWICE)
    images = _images(16, 1)
    np.savez(tmp_path / "data.npz", images=images)
    report = recalibrate(prefix, str(tmp_path / "data.npz"), str(tmp_path / "out"))
    assert report["checks_ok"]
    assert [f["name"] for f in report["feeds"]] == ["training"]
    assert any(n.startswith("52 shared BN layer(s) recalibrated on their prediction calls only")
               for n in report["notes"])
    written = report["written"]["prefix"]
    expected = _moments_of_used_calls(written, images)
    reader = tf.train.load_checkpoint(written)
    worst = 0.0
    for name, want in expected.items():
        got = reader.get_tensor(name).astype(np.float64)
        scale = np.maximum(np.abs(want), 1e-3 if "variance" in name else 1.0)
        worst = max(worst, float(np.max(np.abs(got - want) / scale)))
    assert worst < 2e-5, worst  # float32 storage of the float64 moments, and float32 inputs


# ---- migrate


def test_migrate_two_towers_checks_the_evaluation_tower(real_model, tmp_path):  # pylint: disable=redefined-outer-name
    """Every layer is verified on the evaluation tower's call; the training tower's call (batch
    statistics) is named in a note, not compared."""
    prefix, _ = real_model(TWO_TOWERS)
    report = migrate(prefix, out=str(tmp_path / "k3"))
    assert report["ok"] and len(report["layers"]) == 68
    for layer in report["layers"]:
        assert len(layer["call_sites"]) == 1 and layer["call_sites"][0][0].startswith("InceptionV2_1/")
        assert layer["ok"] and layer["relative_diff"] <= 1e-5
        assert any("normalise with batch statistics (a training call) and are not checked" in n
                   for n in layer["notes"])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
