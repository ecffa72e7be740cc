"""to-inference on TF2 SavedModels and Keras files, and ``--fix-training-mode``: models built by
``inference_tf2_models.py`` in child processes once per session (healthy ones, and ones with
``training=True`` baked into BatchNormalization and Dropout); every expectation is the model
computed by NumPy from its stored weights, beside the assert."""

import json
import os

import numpy as np
import pytest

from shared_build import keras_models

from model_suite import suite_artefact  # noqa: F401  pylint: disable=unused-import
from tf1_repro import cli
from tf1_repro.tools import inference as inf
from tf1_repro.tools.inference import formats

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """``(folder, stats)``: the models and their weights (``NAME/gamma``...)."""
    return keras_models(tmp_path_factory, "inference_tf2_models",
                        os.path.join(HERE, "inference_tf2_models.py"),
                        ("stats_tfk.npz", "stats_k3.npz"))

def _batch(n=5, seed=3):
    return np.random.default_rng(seed).normal(size=(n, 8, 8, 1)).astype(np.float32) * 2 + 1


def numpy_functional(stats, name, x):
    """Conv2D(2, 3) -> BN with its moving statistics -> (dropout off) -> Flatten -> Dense."""
    s = {k.split("/", 1)[1]: v.astype(np.float64) for k, v in stats.items() if k.startswith(name + "/")}
    windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), (3, 3), axis=(1, 2))
    h = np.einsum("nhwcij,ijco->nhwo", windows, s["conv_kernel"]) + s["conv_bias"]
    h = s["gamma"] * (h - s["moving_mean"]) / np.sqrt(s["moving_variance"] + s["epsilon"]) + s["beta"]
    return h.reshape(len(x), -1) @ s["kernel"] + s["bias"]


def numpy_moments(stats, x):
    s = {k.split("/", 1)[1]: v.astype(np.float64) for k, v in stats.items() if k.startswith("moments/")}
    h = x.astype(np.float64) @ s["w"]
    h = s["gamma"] * (h - s["moving_mean"]) / np.sqrt(s["moving_variance"] + 1e-3) + s["beta"]
    return np.maximum(h, 0.0)


def _tflite_rows(report, x):
    """The written TFLite model on ``x``, as a batch and one row at a time."""
    runner = formats.open_tflite(report["artefacts"]["tflite"]["path"], report["inputs"], report["outputs"])
    batch = runner.run({report["inputs"][0]: x})[0]
    rows = np.concatenate([runner.run({report["inputs"][0]: x[i:i + 1]})[0] for i in range(len(x))])
    return batch, rows


def _run(path, out, **options):
    return inf.to_inference(path, [], str(out), latency_runs=0, **options)


@pytest.mark.parametrize("name,stat", [("tfk_ok_sm", "tfk_ok"), ("tfk_ok.h5", "tfk_ok"),
                                       ("k3_ok.keras", "k3_ok")])
def test_healthy_models_give_four_verified_artefacts(models, tmp_path, name, stat):
    folder, stats = models
    report = _run(os.path.join(folder, name), tmp_path / "out")
    assert report["ok"], report["artefacts"]
    assert set(report["artefacts"]) == set(formats.FORMATS)
    assert all(a["within_tolerance"] and a["batch_independent"] for a in report["artefacts"].values())
    assert sorted(os.listdir(tmp_path / "out")) == sorted(formats.FILE_NAMES.values())
    assert report["format"] == {"sm": "saved_model_tf2", "h5": "keras_h5"}.get(name[-2:], "keras")
    assert [b["folded"] for b in report["bn_layers"]] == [True]  # BN folded into the conv
    x = _batch()
    got, _ = _tflite_rows(report, x)
    np.testing.assert_allclose(got, numpy_functional(stats, stat, x), rtol=1e-4, atol=1e-4)


def test_saved_model_served_under_the_signature_keys(models, tmp_path):
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    folder, _ = models
    report = _run(os.path.join(folder, "tfk_ok_sm"), tmp_path / "out", formats=["saved_model"])
    with tf.Graph().as_default(), tf.Session() as sess:
        meta = tf.saved_model.loader.load(sess, ["serve"], report["artefacts"]["saved_model"]["path"])
    signature = meta.signature_def["serving_default"]
    assert list(signature.inputs) == ["image"] and list(signature.outputs) == ["head"]


def test_outputs_named_by_signature_key_or_tensor(models, tmp_path, capsys):
    """--outputs takes the signature's output key (head), SIGNATURE:KEY or the frozen graph's
    tensor; the report names the key first; an unknown name is refused with the keys."""
    from tf1_repro.graph import artefacts  # pylint: disable=import-outside-toplevel
    path = os.path.join(models[0], "tfk_ok_sm")
    art = artefacts.load(path)
    assert list(art.outputs) == ["head"] and list(art.inputs) == ["image"]
    tensor, in_tensor = art.outputs["head"], art.inputs["image"]
    for i, name in enumerate(("head", "serving_default:head", tensor)):
        code = cli.main(["to-inference", path, "--outputs", name, "--out", str(tmp_path / str(i)),
                         "--formats", "saved_model", "--latency-runs", "0", "--quiet",
                         "--json", str(tmp_path / f"{i}.json")])
        out = capsys.readouterr().out
        assert code == 0, out
        assert out.splitlines()[0] == (f"to-inference {path}: inputs image ({in_tensor}) -> "
                                       f"outputs head ({tensor})")
        with open(tmp_path / f"{i}.json", encoding="utf-8") as f:
            report = json.load(f)
        assert report["outputs"] == [tensor] and report["output_keys"] == {tensor: "head"}
    code = cli.main(["to-inference", path, "--outputs", "predictions", "--out",
                     str(tmp_path / "no"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        "python -m tf1_repro to-inference: error: --outputs: 'predictions' is neither an output "
        "key of the serving_default signature nor a tensor of its frozen graph; its outputs: "
        f"head ({tensor})\n")
    assert not os.path.exists(tmp_path / "no")


BROKEN = [("tfk_train_sm", "tfk_train", ["bn", "model_1/drop/dropout"], "fused BN"),
          ("tfk_train.h5", "tfk_train", ["bn", "model_1/drop/dropout"], "fused BN"),
          ("k3_train_export", "k3_train", ["bn", "functional_1_1/drop_1/stateless_dropout"],
           "moments of its input"),
          ("moments_sm", None, ["batchnorm"], "moments of its input")]


@pytest.mark.parametrize("name,stat,layers,how", BROKEN)
def test_fix_training_mode(models, tmp_path, name, stat, layers, how):
    folder, stats = models
    report = _run(os.path.join(folder, name), tmp_path / "out", fix_training_mode=True)
    assert report["ok"], (report["fixed"], report["not_fixed"], report["fix_checks"])
    assert [e["layer"] for e in report["fixed"]] == layers
    bn = report["fixed"][0]["what"]
    assert how in bn and "moving_mean" in bn and "writes removed" in bn
    assert all("removed" in e["what"] for e in report["fixed"][1:])
    assert report["not_fixed"] == [] and report["training_ops_left"] == []
    assert set(report["artefacts"]) == set(formats.FORMATS)  # TFLite converted
    assert all(a["batch_independent"] and a["within_tolerance"] for a in report["artefacts"].values())
    assert all(c["ok"] for c in report["fix_checks"]["bn_numpy"])
    keras = report["fix_checks"]["keras"]
    assert (keras["ok"] and keras["max_abs_diff"] < 1e-4) if name.endswith(".h5") else "skipped" in keras
    if stat is None:
        x = np.random.default_rng(4).normal(size=(5, 4)).astype(np.float32)
        want = numpy_moments(stats, x)
    else:
        x = _batch()
        want = numpy_functional(stats, stat, x)
    batch, rows = _tflite_rows(report, x)
    np.testing.assert_allclose(batch, want, rtol=1e-4, atol=1e-4)  # Keras training=False in NumPy
    np.testing.assert_allclose(rows, batch, rtol=1e-5, atol=1e-5)  # independent of the batch
    json.dumps(report)


def test_fix_on_a_keras3_file_has_nothing_to_fix(models, tmp_path):
    """Keras 3 passes the call's training=False to every layer: the function the reader freezes
    is already in inference mode."""
    folder, stats = models
    report = _run(os.path.join(folder, "k3_train.keras"), tmp_path / "out", fix_training_mode=True)
    assert report["ok"] and report["fixed"] == [] and report["fix_checks"] is None
    assert "nothing to fix" in inf.format_report(report)
    x = _batch()
    np.testing.assert_allclose(_tflite_rows(report, x)[0], numpy_functional(stats, "k3_train", x),
                               rtol=1e-4, atol=1e-4)


def test_without_the_flag_a_training_mode_model_points_to_it(models, tmp_path, capsys):
    folder, _ = models
    path = os.path.join(folder, "moments_sm")
    code = cli.main(["to-inference", path, "--out", str(tmp_path / "o"), "--latency-runs", "0",
                     "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: the original depends on its batch (sample 0 moves by " in out
    assert f"doctor {path}" in out and "--fix-training-mode" in out
    report = _run(os.path.join(folder, "tfk_train_sm"), tmp_path / "o2")  # BN + dropout: random
    assert not report["ok"] and "--fix-training-mode" in report["training_mode_hint"]
    assert "dropout is on at inference" in report["training_mode_hint"]


def test_tf1_frozen_training_graph(suite_artefact, tmp_path):  # noqa: F811
    """Issue 'Real-model defects' item 5: no more 'DIFFERS max |diff| 0'."""
    path = suite_artefact("fused_frozen_training_true")
    report = inf.to_inference(path, ["logits:0"], str(tmp_path / "a"), latency_runs=0,
                              formats=["frozen"])
    text = inf.format_report(report)
    assert not report["ok"] and report["original_batch_dependent"]
    assert report["original_batch_shift"] > 1e-3
    assert "the original depends on its batch (sample 0 moves by" in text
    assert "doctor" in text and "--fix-training-mode" in text
    assert "an artefact differs from the original" not in text
    fixed = inf.to_inference(path, ["logits:0"], str(tmp_path / "b"), latency_runs=0,
                             formats=["frozen", "tflite"], fix_training_mode=True)
    assert fixed["ok"] and [e["layer"] for e in fixed["fixed"]] == ["block1/batch_normalization"]
    assert "is_training true -> false" in fixed["fixed"][0]["what"]
    assert fixed["artefacts"]["tflite"]["batch_independent"]


@pytest.mark.parametrize("name", ["k3_ok.keras", "tfk_ok.h5", "tfk_ok_sm"])
def test_corrupt_file_exit_2_nothing_written(models, tmp_path, capsys, name):
    folder, _ = models
    source = os.path.join(folder, name)
    if os.path.isdir(source):
        broken = tmp_path / "broken_sm"
        broken.mkdir()
        data = open(os.path.join(source, "saved_model.pb"), "rb").read()
        (broken / "saved_model.pb").write_bytes(data[:len(data) // 2])
    else:
        broken = tmp_path / f"broken{os.path.splitext(name)[1]}"
        data = open(source, "rb").read()
        broken.write_bytes(data[:len(data) // 2])
    before = sorted(os.listdir(tmp_path))
    code = cli.main(["to-inference", str(broken), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert sorted(os.listdir(tmp_path)) == before  # no --out, nothing beside the file


def test_signature_picks_what_is_served(models, tmp_path, capsys):
    folder, stats = models
    path = os.path.join(folder, "k3_train_export")
    report = inf.to_inference(path, [], str(tmp_path / "o"), latency_runs=0, formats=["tflite"],
                              signature="serve", fix_training_mode=True)
    assert report["signature"] == "serve" and report["signatures"] == ["serve", "serving_default"]
    assert report["ok"] and [e["layer"] for e in report["fixed"]][0] == "bn"
    x = _batch()
    np.testing.assert_allclose(_tflite_rows(report, x)[0], numpy_functional(stats, "k3_train", x),
                               rtol=1e-4, atol=1e-4)
    code = cli.main(["to-inference", path, "--signature", "nope", "--out", str(tmp_path / "p"),
                     "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "no signature 'nope'; it has serve, serving_default" in err
    assert not os.path.exists(tmp_path / "p")
