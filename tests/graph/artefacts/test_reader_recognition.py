"""Each format reader recognises its own format, by content, and not the others'."""

import os
import shutil

import pytest

from model_suite import suite_artefact  # noqa: F401  pylint: disable=unused-import
from tf1_repro.graph import artefacts

pytestmark = pytest.mark.slow  # each TF2 load is a child process (about 6 s)
from tf1_repro.graph.artefacts.readers import READERS, keras, keras_h5, saved_model_tf2
from tf2_model_files import tf2_models  # noqa: F401  pylint: disable=unused-import

NEW = {"saved_model_tf2": saved_model_tf2, "keras": keras, "keras_h5": keras_h5}


def _first(path):
    return next(r.FORMAT for r in READERS if r.recognise(path))


def test_every_reader_declares_its_format_and_rule():
    assert artefacts.FORMATS == ("saved_model_tf2", "saved_model", "checkpoint", "meta_graph",
                                 "keras", "keras_h5", "frozen_graph")
    for reader in READERS:
        assert "Recognised" in reader.__doc__ and callable(reader.recognise) and callable(reader.read)


def test_each_file_goes_to_its_reader_and_no_new_reader_takes_another(
        tf2_models, suite_artefact):  # noqa: F811
    folder, _ = tf2_models
    samples = {
        os.path.join(folder, "tfk_saved_model"): "saved_model_tf2",
        os.path.join(folder, "tfk_saved_model", "saved_model.pb"): "saved_model_tf2",
        os.path.join(folder, "k3_export"): "saved_model_tf2",
        os.path.join(folder, "k3.keras"): "keras",
        os.path.join(folder, "tfk.h5"): "keras_h5",
        suite_artefact("saved_model_keep_prob_default"): "saved_model",
        suite_artefact("keras_sequential_saved_model"): "saved_model",
        suite_artefact("tf_layers_wired"): "checkpoint",
        suite_artefact("article"): "meta_graph",
        suite_artefact("fused_frozen_training_false"): "frozen_graph",
    }
    for path, fmt in samples.items():
        assert _first(path) == fmt, path
        for name, reader in NEW.items():
            assert reader.recognise(path) == (name == fmt), (name, path)


def test_content_not_the_name_decides(tf2_models, tmp_path):
    folder, _ = tf2_models
    renamed_keras = tmp_path / "model.bin"
    shutil.copy(os.path.join(folder, "k3.keras"), renamed_keras)
    renamed_h5 = tmp_path / "model.weights"
    shutil.copy(os.path.join(folder, "tfk.h5"), renamed_h5)
    assert _first(str(renamed_keras)) == "keras"
    assert _first(str(renamed_h5)) == "keras_h5"
    assert not keras.recognise(str(renamed_h5)) and not keras_h5.recognise(str(renamed_keras))
