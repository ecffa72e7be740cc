"""The TF2 suite: TF2 SavedModels and Keras files made by code, each with the findings ``doctor``
must report, like ``model_suite.py`` for TF1 artefacts.

API (for any test that needs TF2 models)::

    from tf2_suite import SUITE, tf2_artefact   # tf2_artefact: a pytest fixture

    def test_x(tf2_artefact):
        path = tf2_artefact("tfk_bn_training")     # the three builds run once per session
        case = SUITE["tfk_bn_training"]
        case.format             # "saved_model_tf2" | "keras" | "keras_h5"
        case.flavour            # "tfk" (tf-keras) | "k3" (Keras 3) | "module" (tf.Module)
        case.variant            # healthy | bn_training | dropout_training | never_updated | bad_variance
        case.expected_findings  # frozenset of doctor finding ids
        case.healthy            # no expected finding is an error
        case.twin               # the healthy model of the same flavour and format (None for it)
        case.keras_config       # whether find/doctor can read the Keras config (JSON only)

    tf2_values(flavour)         # fixture: {"VARIANT/gamma" ... "VARIANT/moving_variance",
                                #  "VARIANT/inference": model(x[:4], training=False)} as built

The models (``tf2_suite_models.py``, built in three child processes with TF2 behaviour, about
6 s each): x[N, 8, 8, 1] -> conv 3x3 (2 filters) -> BN ``bn`` (momentum 0.9, epsilon 0.01 for
Keras; hand-written with ``tf.nn.batch_normalization``, epsilon 0.001, for ``tf.Module``) ->
Dropout(0.5) ``drop`` -> flatten -> dense ``head`` (3), fitted 2 steps on inputs from
N(3, 2^2). Each variant is saved in every format of its flavour: tf-keras as a SavedModel
(``save_format="tf"``, with ``keras_metadata.pb``) and ``.h5``; Keras 3 as ``.keras`` and
``model.export`` (no Keras config); ``tf.Module`` by ``tf.saved_model.save`` with signatures
``serving_default`` and ``serve_training`` (BN with the batch's statistics, writing the moving
ones).

Keras 3 honours ``model(x, training=False)`` over a layer called with ``training=True`` in a
functional model (the outer flag is passed to every layer), so its ``.keras`` files of the
``bn_training`` and ``dropout_training`` variants serve in inference mode and are healthy; their
``model.export`` (which calls ``model(x)``) keeps the baked-in flag and is not.
"""

import dataclasses
import os
import subprocess
import sys
from typing import FrozenSet, Optional

import numpy as np
import pytest

from shared_build import built_once, shared_folder

HERE = os.path.dirname(os.path.abspath(__file__))
BUILDER = os.path.join(HERE, "tf2_suite_models.py")
GROUPS = ("tfk", "k3", "module")

IBD, UOI, DAI = "inference-batch-dependent", "updates-on-inference", "dropout-at-inference"
SNU, SNF, VNP = "stats-never-updated", "stats-not-finite", "variance-not-positive"
VARIANTS = {"healthy": (), "bn_training": (IBD, UOI), "dropout_training": (DAI,),
            "never_updated": (SNU,), "bad_variance": (SNF, VNP)}
# (flavour, file name pattern, format, Keras config readable)
FORMATS = (("tfk", "tfk_{}", "saved_model_tf2", True), ("tfk", "tfk_{}.h5", "keras_h5", True),
           ("k3", "k3_{}", "saved_model_tf2", False), ("k3", "k3_{}.keras", "keras", True),
           ("module", "module_{}", "saved_model_tf2", False))
ABOUT = {"healthy": "fitted 2 steps", "bn_training": "BN called with training=True",
         "dropout_training": "Dropout called with training=True",
         "never_updated": "a custom loop calling the model with training=False: gamma and beta "
                          "trained, moving statistics still 0 and 1",
         "bad_variance": "moving variance assigned [nan, -0.5]"}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    file: str
    flavour: str
    variant: str
    format: str
    expected_findings: FrozenSet[str]
    healthy: bool
    twin: Optional[str]
    keras_config: bool
    about: str


def _case(flavour, pattern, fmt, config, variant):
    expected = VARIANTS[variant]
    if fmt == "keras" and variant in ("bn_training", "dropout_training"):
        expected = ()  # Keras 3: model(x, training=False) overrides the baked-in flag
    name = pattern.format(variant).replace(".", "_")
    twin = None if variant == "healthy" else pattern.format("healthy").replace(".", "_")
    return Case(name, pattern.format(variant), flavour, variant, fmt, frozenset(expected),
                not expected, twin, config, f"{flavour} {fmt}: {ABOUT[variant]}")


SUITE = {c.name: c for c in (_case(*f, v) for f in FORMATS for v in VARIANTS)}
# bad_variance whose signature writes OUT/written.txt (tf.io.write_file): never loaded nor run;
# the checks on values read variables/ by name
SUITE["module_unsafe"] = Case("module_unsafe", "module_unsafe", "module", "unsafe",
                              "saved_model_tf2", frozenset((SNF, VNP)), False, "module_healthy",
                              False, "module bad_variance whose serving function writes a file")
WRITTEN = "written.txt"  # what module_unsafe would write in the suite's folder


def build(folder):
    """Build every group into ``folder`` (three child processes, TF2 behaviour)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore",
               CUDA_VISIBLE_DEVICES="-1")
    env.pop("TF_USE_LEGACY_KERAS", None)
    for group in GROUPS:
        extra = {"TF_USE_LEGACY_KERAS": "1"} if group == "tfk" else {}
        done = subprocess.run([sys.executable, BUILDER, folder, group], capture_output=True,
                              text=True, env=dict(env, **extra), check=False, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="session")
def tf2_suite_folder(tmp_path_factory):
    folder = os.path.join(shared_folder(tmp_path_factory, "shared"), "tf2_suite")
    built_once(folder, build)
    return folder


@pytest.fixture(scope="session")
def tf2_artefact(tf2_suite_folder):
    """``tf2_artefact(name) -> path`` of SUITE[name]."""
    def get(name):
        return os.path.join(tf2_suite_folder, SUITE[name].file)
    return get


@pytest.fixture(scope="session")
def tf2_values(tf2_suite_folder):
    """``tf2_values(flavour) -> {key: array}`` written by the builder (see the docstring)."""
    def get(flavour):
        with np.load(os.path.join(tf2_suite_folder, f"{flavour}.npz")) as f:
            return dict(f)
    return get


if __name__ == "__main__":
    build(sys.argv[1])
    for case in SUITE.values():
        print(f"{case.name:32s} {sorted(case.expected_findings)}")
