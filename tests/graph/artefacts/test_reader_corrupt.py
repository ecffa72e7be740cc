"""Corrupt TF2 SavedModels and Keras files: one line, nothing written, the user's files intact."""

import os
import shutil

import pytest

from tf1_repro.graph import artefacts
from tf2_model_files import tf2_models  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.slow  # each TF2 load is a child process (about 6 s)


def _truncated(source, target):
    data = open(source, "rb").read()
    with open(target, "wb") as f:
        f.write(data[: len(data) // 2])


def _snapshot(folder):
    return {os.path.join(d, f): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in files}


def test_corrupt_inputs_raise_one_line_and_write_nothing(tf2_models, tmp_path):
    folder, _ = tf2_models
    _truncated(os.path.join(folder, "k3.keras"), tmp_path / "cut.keras")
    _truncated(os.path.join(folder, "tfk.h5"), tmp_path / "cut.h5")
    garbage = tmp_path / "garbage_sm"
    garbage.mkdir()
    (garbage / "saved_model.pb").write_bytes(b"\x00\xffnot a saved model")
    cut_sm = tmp_path / "cut_sm"
    shutil.copytree(os.path.join(folder, "tfk_saved_model"), cut_sm)
    _truncated(os.path.join(folder, "tfk_saved_model", "saved_model.pb"), cut_sm / "saved_model.pb")
    no_vars = tmp_path / "no_variables"
    shutil.copytree(os.path.join(folder, "tfk_saved_model"), no_vars)
    shutil.rmtree(no_vars / "variables")
    cut_vars = tmp_path / "cut_variables"
    shutil.copytree(os.path.join(folder, "tfk_saved_model"), cut_vars)
    data = next(f for f in os.listdir(cut_vars / "variables") if f.startswith("variables.data"))
    _truncated(cut_vars / "variables" / data, cut_vars / "variables" / data)
    shutil.copy(os.path.join(folder, "weights_only.h5"), tmp_path / "weights_only.h5")
    cases = {
        tmp_path / "cut.keras": "not a readable .keras zip (BadZipFile",
        tmp_path / "cut.h5": "not a readable HDF5 Keras file (",
        garbage: "not a SavedModel (",
        cut_sm: "not a SavedModel (",
        no_vars: "a TF2 SavedModel without its variables/ folder (18 variables in its object graph)",
        cut_vars: "the SavedModel cannot be loaded (",
        tmp_path / "weights_only.h5": "an HDF5 file with no model_config (weights only?)",
    }
    before = _snapshot(tmp_path)
    for path, message in cases.items():
        with pytest.raises(artefacts.ArtefactError) as err:
            artefacts.load(str(path))
        line = str(err.value)
        assert "\n" not in line and message in line, line
        assert line.split(": ")[0] in (str(path), str(path / "saved_model.pb")), line
    assert _snapshot(tmp_path) == before
