"""Keras files: ``.keras`` (Keras 3) and ``.h5`` (tf-keras) checked statically, loaded in a
child process, their inference function frozen; Lambda layers and foreign classes refused."""

import json
import os
import shutil
import zipfile

import h5py
import numpy as np
import pytest

from tf1_repro.graph import artefacts
from tf2_model_files import tf2_models  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.slow  # each TF2 load is a child process (about 6 s)


@pytest.mark.parametrize("name, prefix, fmt, bn", [("tfk.h5", "tfk", "keras_h5", "bn"),
                                                   ("k3.keras", "k3", "keras", "bn3")])
def test_frozen_inference_statistics_equal_the_models(tf2_models, name, prefix, fmt, bn):
    folder, expected = tf2_models
    before = sorted(os.listdir(folder))
    art = artefacts.load(os.path.join(folder, name))
    assert sorted(os.listdir(folder)) == before
    assert art.format == fmt and art.graph_def is not None
    for stat in ("moving_mean", "moving_variance"):
        (const,) = [c for c, p in art.variable_paths.items() if p.endswith(stat)]
        assert art.variable_paths[const] == f"{bn}/{stat}"
        assert np.array_equal(art.read(const), expected[f"{prefix}/{stat}"])
    (config,) = art.bn_configs
    assert config["name"] == bn and config["momentum"] == 0.9
    assert config["epsilon"] == (0.01 if fmt == "keras_h5" else 0.001)
    assert set(art.inputs) and set(art.outputs) == {"output_0"}


def test_a_lambda_layer_is_refused_in_one_line(tf2_models):
    folder, _ = tf2_models
    path = os.path.join(folder, "lambda.keras")
    with pytest.raises(artefacts.ArtefactError) as err:
        artefacts.load(path)
    line = str(err.value)
    assert line.startswith(f"{path}: layer 'double' is a Lambda") and "\n" not in line
    assert "save weights" in line


def _rewrite_h5_config(source, target, edit):
    shutil.copy(source, target)
    with h5py.File(target, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config)


def test_h5_lambda_and_custom_classes_are_refused_before_loading(tf2_models, tmp_path):
    folder, _ = tf2_models
    lam, custom = str(tmp_path / "lambda.h5"), str(tmp_path / "custom.h5")

    def to_lambda(config):
        config["config"]["layers"][2]["class_name"] = "Lambda"

    def to_custom(config):
        config["config"]["layers"][2]["class_name"] = "MyBatchNorm"
    _rewrite_h5_config(os.path.join(folder, "tfk.h5"), lam, to_lambda)
    _rewrite_h5_config(os.path.join(folder, "tfk.h5"), custom, to_custom)
    with pytest.raises(artefacts.ArtefactError, match=r"layer 'bn' is a Lambda"):
        artefacts.load(lam)
    with pytest.raises(artefacts.ArtefactError) as err:  # found by the child, before load_model
        artefacts.load(custom)
    assert str(err.value).startswith(f"{custom}: layer 'bn' has class MyBatchNorm, not one of Keras's")


def test_a_keras3_class_from_another_module_is_refused(tf2_models, tmp_path):
    folder, _ = tf2_models
    target = tmp_path / "custom.keras"
    with zipfile.ZipFile(os.path.join(folder, "k3.keras")) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "config.json":
                config = json.loads(data)
                config["config"]["layers"][2].update(module="my_package.layers", registered_name="my>BN")
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(artefacts.ArtefactError, match=r"layer 'bn3' has class BatchNormalization from "
                                                      r"my_package.layers, not one of Keras's"):
        artefacts.load(str(target))
