"""The TF2 models the reader tests read, made once per session in two child processes.

API: ``from tf2_model_files import tf2_models`` (a pytest fixture) in a test module."""

import os
import subprocess
import sys

import numpy as np
import pytest

from shared_build import built_once, shared_folder

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graph", "artefacts")


@pytest.fixture(scope="session")
def tf2_models(tmp_path_factory):
    """``(folder, expected arrays)``: see ``tf2_models.py``."""
    out = os.path.join(shared_folder(tmp_path_factory, "shared"), "tf2_models")
    built_once(out, _build)
    expected = {}
    for name in ("expected_tfk.npz", "expected_k3.npz"):
        with np.load(os.path.join(out, name)) as f:
            expected.update(dict(f))
    return out, expected


def _build(out):
    """The models in two child processes (tf-keras, then Keras 3)."""
    base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="-1")
    base.pop("TF_USE_LEGACY_KERAS", None)
    for extra, env in (([], dict(base, TF_USE_LEGACY_KERAS="1")), (["--keras3"], base)):
        done = subprocess.run([sys.executable, os.path.join(HERE, "tf2_models.py"), out, *extra],
                              capture_output=True, text=True, env=env, check=False, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
