"""recalibrate on TF2 SavedModels, .keras and .h5 files, through the CLI, on real files.

The models (``recalibrate_tf2_models.py``) are built once per session in two child processes.
Expected statistics are NumPy float64 moments of each BN input, computed here from the data and
the model's own first-layer weights (saved by the child as the model holds them): the moving
mean is the per-channel mean, the moving variance M2/n (Keras 3 and non-fused tf-keras layers,
which average biased batch variances) or M2/(n-1) for tf-keras's fused kernel (Conv2D -> BN, whose
EMA averages Bessel-corrected batch variances; the README's recalibrate section). The new
statistics are read from the written files with TensorFlow's checkpoint reader or h5py, not
through the code under test.
"""

import hashlib
import io
import json
import os
import zipfile

import h5py
import numpy as np
import pytest

from shared_build import keras_models
import tensorflow.compat.v1 as tf

from tf1_repro import cli

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = 96


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """``(folder, {model/weight: array})``: see ``recalibrate_tf2_models.py``."""
    return keras_models(tmp_path_factory, "recal_tf2_models",
                        os.path.join(HERE, "recalibrate_tf2_models.py"),
                        ("weights_tfk.npz", "weights_k3.npz"))

@pytest.fixture(scope="session")
def data(models):
    """{"conv"|"dense": float32 samples}, far from the training data (the statistics must move)."""
    rng = np.random.default_rng(7)
    return {"conv": (rng.normal(size=(SAMPLES, 8, 8, 1)) * 1.7 + 0.6).astype("float32"),
            "dense": (rng.normal(size=(SAMPLES, 4)) * 2.0 - 0.8).astype("float32")}


def _tree_hash(path):
    digest = hashlib.sha256()
    paths = [path] if os.path.isfile(path) else sorted(
        os.path.join(d, n) for d, _, names in os.walk(path) for n in names)
    for p in paths:
        digest.update(os.path.relpath(p, path).encode())
        with open(p, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def _cli(capsys, *argv):
    code = cli.main(["recalibrate", "--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _bn_input(kind, x, kernel, bias):
    """The BN layer's input in float64 NumPy: a valid 3x3 convolution (stride 1) or a Dense."""
    x, kernel, bias = (np.asarray(a, np.float64) for a in (x, kernel, bias))
    if kind == "conv":
        windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # n h w c i j
        return np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias
    return x @ kernel + bias


def _expected(kind, x, weights, model, ddof):
    h = _bn_input(kind, x, weights[f"{model}/kernel"], weights[f"{model}/bias"])
    flat = h.reshape(-1, h.shape[-1])
    mean = flat.mean(0)
    return mean, ((flat - mean) ** 2).sum(0) / (len(flat) - ddof)


def _h5_datasets(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj[()]))
                 if isinstance(obj, h5py.Dataset) else None)
    return out


def _read_saved_model(source, out, report, old_mean):
    """(new mean, new variance, {other key: (source, written)}, old values) from the variables/
    checkpoints; the replaced keys are the report's, the mean's the one that held ``old_mean``."""
    src = tf.train.load_checkpoint(os.path.join(source, "variables", "variables"))
    new = tf.train.load_checkpoint(os.path.join(out, "variables", "variables"))
    keys = report["written"]["replaced"]
    assert len(keys) == 2
    assert set(new.get_variable_to_shape_map()) == set(src.get_variable_to_shape_map())
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" in new.get_variable_to_shape_map()
    mean_key = next(k for k in keys if src.get_tensor(k).tobytes() == np.asarray(old_mean).tobytes())
    var_key = next(k for k in keys if k != mean_key)
    others = {k: (src.get_tensor(k), new.get_tensor(k)) for k in src.get_variable_to_shape_map()
              if k not in keys}
    return (new.get_tensor(mean_key), new.get_tensor(var_key), others,
            (src.get_tensor(mean_key), src.get_tensor(var_key)))


def _read_h5(source, written, mean_path, var_path):
    with h5py.File(source, "r") as a, h5py.File(written, "r") as b:
        src, new = _h5_datasets(a), _h5_datasets(b)
    assert set(src) == set(new)
    others = {k: (src[k], new[k]) for k in src if k not in (mean_path, var_path)}
    return new[mean_path], new[var_path], others, (src[mean_path], src[var_path])


def _read_keras(source, written):
    with zipfile.ZipFile(source) as a, zipfile.ZipFile(written) as b:
        assert [i.filename for i in a.infolist()] == [i.filename for i in b.infolist()]
        for name in ("config.json", "metadata.json"):
            assert a.read(name) == b.read(name)
        with h5py.File(io.BytesIO(a.read("model.weights.h5")), "r") as f:
            src = _h5_datasets(f)
        with h5py.File(io.BytesIO(b.read("model.weights.h5")), "r") as f:
            new = _h5_datasets(f)
    assert set(src) == set(new)
    # Keras 3: a BN layer's vars are gamma, beta, moving_mean, moving_variance
    mean_path, var_path = "layers/batch_normalization/vars/2", "layers/batch_normalization/vars/3"
    others = {k: (src[k], new[k]) for k in src if k not in (mean_path, var_path)}
    return new[mean_path], new[var_path], others, (src[mean_path], src[var_path])


# (artefact, model, kind, ddof, data key, how the result is read)
CASES = [
    ("tfk_conv_sm", "tfk_conv", "conv", 1, "x", "saved_model"),
    ("tfk_conv.h5", "tfk_conv", "conv", 1, "input_0:0", "h5"),
    ("tfk_dense_sm", "tfk_dense", "dense", 0, "x", "saved_model"),
    ("tfk_dense.h5", "tfk_dense", "dense", 0, "x", "h5"),
    ("k3_conv.keras", "k3_conv", "conv", 0, "x", "keras"),
    ("k3_dense.keras", "k3_dense", "dense", 0, "x", "keras"),
    ("k3_conv_export", "k3_conv", "conv", 0, "x", "saved_model"),
    ("k3_dense_export", "k3_dense", "dense", 0, "x:0", "saved_model"),
]


@pytest.mark.parametrize("artefact,model,kind,ddof,key,read", CASES, ids=[c[0] for c in CASES])
def test_recalibrated_to_numpy_moments(capsys, tmp_path, models, data, artefact, model, kind, ddof, key,
                                       read):
    folder, weights = models
    source = os.path.join(folder, artefact)
    npz = tmp_path / "data.npz"
    np.savez(npz, **{key: data[kind]})
    before = _tree_hash(source)
    out = tmp_path / "out"
    code, text, err = _cli(capsys, source, "--data", str(npz), "--out", str(out), "--json",
                           str(tmp_path / "r.json"))
    assert code == 0, err
    assert _tree_hash(source) == before  # the source untouched
    assert sorted(os.listdir(folder)) == sorted(os.listdir(os.path.dirname(source)))
    with open(tmp_path / "r.json", encoding="utf-8") as f:
        report = json.load(f)
    assert report["checks_ok"] and report["samples"] == SAMPLES
    assert report["layers"][0]["variance_stored"] == ("unbiased M2/(n-1)" if ddof else "biased M2/n")
    if read == "saved_model":
        new_mean, new_var, others, old = _read_saved_model(source, str(out), report,
                                                            weights[f"{model}/moving_mean"])
        assert os.path.isfile(out / "saved_model.pb")
        with open(os.path.join(source, "saved_model.pb"), "rb") as a, open(out / "saved_model.pb", "rb") as b:
            assert a.read() == b.read()  # same signatures, same variable names
    elif read == "h5":
        new_mean, new_var, others, old = _read_h5(
            source, str(out / artefact), "model_weights/bn/bn/moving_mean:0", "model_weights/bn/bn/moving_variance:0")
    else:
        new_mean, new_var, others, old = _read_keras(source, str(out / artefact))
    assert sorted(os.listdir(out)) == (sorted(os.listdir(source)) if read == "saved_model" else [artefact])
    # the replaced values were the BN layer's statistics, as the model held them
    np.testing.assert_array_equal(old[0], weights[f"{model}/moving_mean"])
    np.testing.assert_array_equal(old[1], weights[f"{model}/moving_variance"])
    mean, var = _expected(kind, data[kind], weights, model, ddof)
    np.testing.assert_allclose(new_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_var, var, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(new_var - weights[f"{model}/moving_variance"])) > 0.1  # it moved
    for name, (a, b) in others.items():  # every other weight (optimizer's too) bit for bit
        assert np.asarray(a).dtype == np.asarray(b).dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes(), name
    reloaded = report["written"]["reloaded"]
    assert reloaded["statistics_equal"] == 2 and reloaded["output_max_error"] <= reloaded["output_tolerance"]
    assert "read back: 2 statistics equal the new values" in text


def test_never_updated_statistics_recalibrated_and_doctor_clean(capsys, tmp_path, models, data):
    from tf1_repro.tools.doctor import diagnose  # pylint: disable=import-outside-toplevel
    folder, weights = models
    source = os.path.join(folder, "tfk_never_sm")
    np.testing.assert_array_equal(weights["tfk_never/moving_mean"], 0)
    np.testing.assert_array_equal(weights["tfk_never/moving_variance"], 1)
    assert np.any(weights["tfk_never/gamma"] != 1)
    found = [f["id"] for f in diagnose(source, run=False)["findings"]]
    assert "stats-never-updated" in found
    npz = tmp_path / "data.npz"
    np.savez(npz, x=data["dense"])
    out = tmp_path / "never_fixed"
    code, _, err = _cli(capsys, source, "--data", str(npz), "--out", str(out), "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    with open(tmp_path / "r.json", encoding="utf-8") as f:
        report = json.load(f)
    new_mean, new_var, _, _ = _read_saved_model(source, str(out), report, weights["tfk_never/moving_mean"])
    mean, var = _expected("dense", data["dense"], weights, "tfk_never", 0)
    np.testing.assert_allclose(new_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_var, var, rtol=1e-5, atol=1e-6)
    assert "stats-never-updated" not in [f["id"] for f in diagnose(str(out), run=False)["findings"]]


def _corrupt(tmp_path, models):
    """Truncated copies: a .keras, an .h5 and a SavedModel's saved_model.pb."""
    import shutil  # pylint: disable=import-outside-toplevel
    folder, _ = models
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("k3_dense.keras", "tfk_dense.h5"):
        with open(os.path.join(folder, name), "rb") as f:
            (bad / name).write_bytes(f.read()[:300])
    shutil.copytree(os.path.join(folder, "tfk_dense_sm"), bad / "sm")
    pb = bad / "sm" / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:200])
    return bad


def test_refused_exit_2_one_line_nothing_written(capsys, tmp_path, models, data):
    folder, _ = models
    npz = tmp_path / "data.npz"
    np.savez(npz, x=data["dense"])
    bad = _corrupt(tmp_path, models)
    sm = os.path.join(folder, "tfk_dense_sm")
    cases = [
        ((sm,), folder + "/tfk_dense_sm", "must not be the source's directory"),
        ((os.path.join(folder, "tfk_dense.h5"),), folder, "must not be the source's directory"),
        ((sm,), os.path.join(sm, "inside"), "must not be inside the source SavedModel"),
        ((str(bad / "k3_dense.keras"),), str(tmp_path / "o1"), "not a readable .keras zip"),
        ((str(bad / "tfk_dense.h5"),), str(tmp_path / "o2"), "not a readable HDF5 Keras file"),
        ((str(bad / "sm"),), str(tmp_path / "o3"), "not a SavedModel"),
        ((sm, "--signature", "nope"), str(tmp_path / "o4"), "no signature 'nope'"),
        ((os.path.join(folder, "writes_file_sm"),), str(tmp_path / "o5"), "not frozen"),
    ]
    hashes = {name: _tree_hash(os.path.join(folder, name)) for name in os.listdir(folder)}
    for argv, out, message in cases:
        code, text, err = _cli(capsys, *argv, "--data", str(npz), "--out", out)
        assert code == 2, (argv, err)
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert text == ""
        if out.startswith(str(tmp_path)) or "inside" in out:
            assert not os.path.exists(out)
    assert not os.path.exists(os.path.join(folder, "written.txt"))  # the unsafe signature never ran
    assert {name: _tree_hash(os.path.join(folder, name)) for name in os.listdir(folder)} == hashes


def test_existing_out_refused_then_replaced_with_force(capsys, tmp_path, models, data):
    folder, _ = models
    npz = tmp_path / "data.npz"
    np.savez(npz, x=data["dense"])
    source = os.path.join(folder, "tfk_dense.h5")
    out = tmp_path / "out"
    out.mkdir()
    (out / "tfk_dense.h5").write_bytes(b"old")
    code, _, err = _cli(capsys, source, "--data", str(npz), "--out", str(out))
    assert code == 2 and "already holds tfk_dense.h5" in err
    assert (out / "tfk_dense.h5").read_bytes() == b"old"
    code, _, err = _cli(capsys, source, "--data", str(npz), "--out", str(out), "--force")
    assert code == 0, err
    with h5py.File(out / "tfk_dense.h5", "r") as f:
        assert f["model_weights/bn/bn/moving_mean:0"].shape == (5,)
