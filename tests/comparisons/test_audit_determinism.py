"""The audit gives the same report for the same builder in every process: every builder of the
suite audited in fresh processes with different hash seeds (set and dict-of-id orders differ
between them) and under concurrent load (thread timings differ), JSON compared byte for byte."""

import inspect
import json
import os

import pytest

import bn_builders as lb
import support
import test_audit

ROOT = support.ROOT
PROCESSES = 3

_SCRIPT = """
import json, sys, warnings
sys.path[:0] = [{tests!r}, {comparisons!r}]
from tf1_repro import runtime
runtime.use_tf1_behavior()
import test_audit
from tf1_repro.comparisons import audit
warnings.simplefilter("ignore")
reports = {{case: audit.audit(func, shape, python_bool)
            for case, (func, python_bool, shape, *_) in test_audit.CASES.items()}}
print(json.dumps(reports, sort_keys=True))
"""


def _bn_builders():
    """Every BN builder ``FUNC(inputs, training)`` in bn_builders.py (not the two broken ones)."""
    return {name for name, func in vars(lb).items()
            if inspect.isfunction(func) and func.__module__ == lb.__name__ and not name.startswith("_")
            and list(inspect.signature(func).parameters)[:2] == ["inputs", "training"]
            and name not in ("raises", "returns_none")}


def test_the_cases_cover_every_builder():
    covered = {func.__name__ for func, *_ in test_audit.CASES.values()}
    assert _bn_builders() - covered == set()


@pytest.mark.slow  # 3 processes, each auditing every builder once
def test_every_builder_gives_identical_json_in_fresh_processes():
    script = _SCRIPT.format(tests=os.path.join(ROOT, "tests"),
                            comparisons=os.path.join(ROOT, "tests", "comparisons"))
    outputs = support.outputs_of_fresh_processes(script, (), PROCESSES, timeout=600)
    reports = [json.loads(out) for out in outputs]
    assert set(reports[0]) == set(test_audit.CASES)
    for case in test_audit.CASES:
        assert [r[case] for r in reports[1:]] == [reports[0][case]] * (PROCESSES - 1), case
    assert outputs[1:] == [outputs[0]] * (PROCESSES - 1)
