"""``find`` and ``doctor`` give the same report for the same saved model in every process: every
model of the saved-model suite read in fresh processes with different hash seeds (set and
dict-of-id orders differ between them), run concurrently, JSON compared byte for byte."""

import json

import pytest

import support
from model_suite import SUITE, suite_artefact  # noqa: F401  pylint: disable=unused-import

PROCESSES = 3

_SCRIPT = """
import json, sys, warnings
from tf1_repro import runtime
runtime.use_tf1_behavior()
from tf1_repro.tools import find_report
from tf1_repro.tools.doctor import diagnose
warnings.simplefilter("ignore")
reports = {}
for name, path in sorted(json.loads(sys.argv[1]).items()):
    try:
        art, found = find_report.read(path)
        reports[name + "/find"] = find_report.payload(art, found)
    except Exception as err:  # a checkpoint without .meta: find refuses it, the same every time
        reports[name + "/find"] = type(err).__name__ + ": " + str(err)
    reports[name + "/doctor"] = diagnose(path)
print(json.dumps(reports, sort_keys=True, default=str))
"""


@pytest.mark.slow  # 3 processes, each reading every suite model with find and doctor
def test_find_and_doctor_give_identical_json_in_fresh_processes(suite_artefact):  # pylint: disable=redefined-outer-name
    paths = {name: suite_artefact(name) for name in SUITE}
    outputs = support.outputs_of_fresh_processes(_SCRIPT, [json.dumps(paths)], PROCESSES)
    reports = [json.loads(out) for out in outputs]
    assert set(reports[0]) == {f"{name}/{tool}" for name in SUITE for tool in ("find", "doctor")}
    assert all(isinstance(reports[0][f"{name}/doctor"], dict) for name in SUITE)
    for key in sorted(reports[0]):
        assert [r[key] for r in reports[1:]] == [reports[0][key]] * (PROCESSES - 1), key
    assert outputs[1:] == [outputs[0]] * (PROCESSES - 1)
