"""The TF2 models the reader tests read, made once per test run in two child processes (``shared_build.keras_models``).

API: ``from tf2_model_files import tf2_models`` (a pytest fixture) in a test module."""

import os

import pytest

from shared_build import keras_models

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graph", "artefacts")


@pytest.fixture(scope="session")
def tf2_models(tmp_path_factory):
    """``(folder, expected arrays)``: see ``tf2_models.py``."""
    return keras_models(tmp_path_factory, "tf2_models", os.path.join(HERE, "tf2_models.py"),
                        ("expected_tfk.npz", "expected_k3.npz"))
