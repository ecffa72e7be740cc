"""doctor on TF2 SavedModels and Keras files (``tests/tf2_suite.py``): every case reports exactly
its findings, every finding id the suite covers is raised on every format it can be expressed in
and not by the healthy twin, fix lines for the format, ``--signature``, a signature that is never
run, and bad input."""
# pylint: disable=redefined-outer-name
import os
import subprocess
import sys

import numpy as np
import pytest

from tf2_suite import (SUITE, WRITTEN, tf2_artefact, tf2_suite_folder,  # noqa: F401  pylint: disable=unused-import
                       tf2_values)
from tf1_repro.tools import doctor
from tf1_repro.tools.doctor import base

pytestmark = pytest.mark.slow  # each TF2 artefact is read in a child process (about 4 s)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def diagnosed(tf2_artefact):
    cache = {}

    def get(name, **kwargs):
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = doctor.diagnose(tf2_artefact(name), **kwargs)
        return cache[key]
    return get


def _ids(report):
    return {f["id"] for f in report["findings"]}


@pytest.mark.parametrize("name", sorted(n for n in SUITE if n != "module_unsafe"))
def test_each_case_reports_exactly_its_findings_and_its_twin_none_of_them(diagnosed, name):
    case = SUITE[name]
    report = diagnosed(name)
    assert report["format"] == case.format
    assert _ids(report) == case.expected_findings, case.about
    assert report["healthy"] == case.healthy and report["ran"]
    assert [layer["name"] for layer in report["bn_layers"]] == ["bn"]  # the Keras/object name
    if case.twin:
        assert not _ids(diagnosed(case.twin)) & case.expected_findings


@pytest.mark.parametrize("fid", sorted({f for c in SUITE.values() for f in c.expected_findings}))
def test_every_tf2_finding_id_is_registered_and_raised_on_every_format(fid):
    """The parallel of test_doctor_checks' registry test: per format, a case expected to raise
    ``fid`` with a healthy twin (the test above checks each)."""
    assert fid in base.REGISTRY
    formats = {c.format for c in SUITE.values() if fid in c.expected_findings and c.twin}
    assert formats == {"saved_model_tf2", "keras", "keras_h5"} if fid not in (
        "inference-batch-dependent", "updates-on-inference", "dropout-at-inference") else \
        formats == {"saved_model_tf2", "keras_h5"}  # Keras 3 .keras: training=False wins


def test_batch_statistics_and_writes_are_read_from_the_serving_function(diagnosed):
    report = diagnosed("tfk_bn_training")
    (layer,) = report["bn_layers"]
    assert layer["update_location"] == "serving-function"
    assert (layer["moving_mean"], layer["moving_variance"]) == ("bn/moving_mean", "bn/moving_variance")
    assert {w["variable"] for w in report["writes"]} == {"bn/moving_mean", "bn/moving_variance"}
    found = {f["id"]: f for f in report["findings"]}
    assert "writes bn/moving_mean, bn/moving_variance" in found["updates-on-inference"]["message"]
    assert "confirmed by running" in found["inference-batch-dependent"]["message"]
    for fid in ("inference-batch-dependent", "updates-on-inference"):  # the fix in this format
        assert found[fid]["fix"] == base.REGISTRY[fid].tf2_fix and "training=True" in found[fid]["fix"]
    assert not diagnosed("tfk_healthy")["writes"]


def test_values_are_the_models_own(diagnosed, tf2_values):
    for name, flavour in (("tfk_never_updated", "tfk"), ("k3_never_updated_keras", "k3"),
                          ("module_never_updated", "module")):
        values = tf2_values(flavour)
        assert np.all(values["never_updated/moving_mean"] == 0)
        assert np.all(values["never_updated/moving_variance"] == 1)
        assert np.any(values["never_updated/gamma"] != 1)  # trained while the statistics were not
        (layer,) = diagnosed(name)["bn_layers"]
        assert layer["moving_mean_range"] == [0.0, 0.0] and layer["moving_variance_range"] == [1.0, 1.0]
    (layer,) = diagnosed("tfk_healthy")["bn_layers"]
    mean = tf2_values("tfk")["healthy/moving_mean"]
    assert layer["moving_mean_range"] == pytest.approx([float(mean.min()), float(mean.max())])


def test_keras_config_momentum_and_dropout_removed_at_inference(diagnosed):
    report = diagnosed("tfk_healthy_h5")
    assert report["bn_layers"][0]["decay"] == 0.9  # the configured momentum
    by_name = {k["name"]: k for k in report["keras_layers"]}
    assert by_name["bn"]["epsilon"] == 0.01 and by_name["bn"]["moving_statistics_used"] is True
    assert by_name["drop"]["in_serving_function"] is False and not report["dropouts"]
    assert "Dropout drop (rate 0.5): not in the serving function (Keras removes it at inference)" \
        in doctor.format_report(report)


def test_an_unsafe_signature_never_runs_but_its_values_are_checked(diagnosed, tf2_suite_folder):
    report = diagnosed("module_unsafe")
    assert not os.path.exists(os.path.join(tf2_suite_folder, WRITTEN))
    assert _ids(report) == SUITE["module_unsafe"].expected_findings
    assert not report["ran"]
    assert any("WriteFile" in n and n.startswith("not loaded") for n in report["notes"])
    assert any(n.startswith("dynamic checks skipped") for n in report["notes"])


def test_signature_picks_the_function(diagnosed):
    report = diagnosed("module_healthy", signature="serve_training")
    assert report["signature"] == "serve_training"
    assert report["signatures"] == ["serve_training", "serving_default"]
    assert _ids(report) == {"inference-batch-dependent", "updates-on-inference"}
    assert not _ids(diagnosed("module_healthy"))
    # the signature's outputs by the keys the user wrote ({"y": ...}) and the tensor run
    (key, tensor), = report["signature_outputs"].items()
    assert key == "y" and report["outputs"] == [tensor]
    (in_key, in_tensor), = report["signature_inputs"].items()
    assert (f"  serve_training: inputs {in_key} ({in_tensor}) -> outputs y ({tensor})"
            in doctor.format_report(report).splitlines())


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tf1_repro", *args], capture_output=True, text=True,
                          env=env, check=False, timeout=300)


def _last_line(done):
    return [line for line in done.stderr.splitlines() + done.stdout.splitlines()
            if "tf1_repro" in line][-1]


def test_cli_unknown_signature_and_corrupt_file_exit_2_in_one_line(tf2_artefact, tmp_path):
    for tool in ("doctor", "find"):
        done = _cli(tool, tf2_artefact("module_healthy"), "--signature", "nope")
        assert done.returncode == 2
        assert _last_line(done).endswith("no signature 'nope'; it has serve_training, serving_default")
    done = _cli("doctor", tf2_artefact("tfk_healthy_h5"), "--signature", "nope")
    assert done.returncode == 2 and "a Keras file has one, inference" in _last_line(done)
    data = open(tf2_artefact("tfk_healthy_h5"), "rb").read()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    before = sorted(os.listdir(tmp_path))
    for tool in ("doctor", "find"):
        done = _cli(tool, str(cut))
        assert done.returncode == 2 and "not a readable HDF5 Keras file" in _last_line(done)
    assert sorted(os.listdir(tmp_path)) == before
