"""The dropout audit on inverted, vanilla, double-scaled and unscaled builders."""

import json
import os
import subprocess
import sys

import pytest

import bn_builders as lb
from tf1_repro.comparisons import audit_dropout
import support

ROOT = support.ROOT
KEYS = ["convention", "keep_fraction", "inference", "aligned", "aligned_feed", "matches_article"]

# builder: convention, kept fraction, per feed (deterministic, ratio), aligned feed, matches
CASES = {
    "inverted": (lb.dropout_inverted, "inverted", 0.8, {"keep_prob=1.0": (True, 1.0),
                                                         "training=False": (False, 1.0)},
                 "keep_prob=1.0", True),
    "vanilla": (lb.dropout_vanilla, "vanilla", 0.8, {"keep_prob=1.0": (True, 1 / 0.8),
                                                       "training=False": (True, 1.0)},
                "training=False", False),
    "double-scaled": (lb.dropout_double_scaled, "inverted", 0.8, {"keep_prob=1.0": (True, 1.0),
                                                                   "training=False": (True, 0.8)},
                      "keep_prob=1.0", False),
    "unscaled": (lb.dropout_unscaled, "none", 1.0, {"keep_prob=1.0": (True, 1.0),
                                                      "training=False": (True, 1.0)},
                 "keep_prob=1.0", False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_expected_verdicts(case):
    func, convention, kept, feeds, aligned_feed, matches = CASES[case]
    report = audit_dropout.audit_dropout(func, keep_prob=0.8)
    assert list(report) == KEYS
    assert report["convention"] == convention
    # kept fraction over 40 x 64 x 256 Bernoulli(0.8) draws: standard error 0.0016; 5 of them
    assert report["keep_fraction"] == pytest.approx(kept, abs=0.008)
    for feed, (deterministic, ratio) in feeds.items():
        assert report["inference"][feed]["deterministic"] is deterministic
        # ratio of means over ~650k training outputs: relative standard error < 0.001; a random
        # prediction (dropout still on) is one run of 64 x 256 outputs x*b/0.8, b ~ Bernoulli(0.8),
        # x ~ U[0.5, 1.5] fixed: relative std sqrt(0.8*0.2/0.64 * E[x^2]) = sqrt(0.25 * 13/12)
        # = 0.52 per output, / sqrt(16384) = 0.0041; 5 of them is 0.02
        tolerance = 0.01 if deterministic else 0.02
        assert report["inference"][feed]["ratio"] == pytest.approx(ratio, abs=tolerance)
    assert report["aligned"] is True and report["aligned_feed"] == aligned_feed
    assert report["matches_article"] is matches


def test_double_scaling_is_explained():
    report = audit_dropout.audit_dropout(lb.dropout_double_scaled, keep_prob=0.8)
    assert any(n.startswith("double scaling") for n in audit_dropout.notes(report, 0.8))


def test_command_line(tmp_path):
    out = tmp_path / "d.json"
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "audit-dropout",
                           "tests/bn_builders.py:dropout_inverted", "--keep-prob", "0.5",
                           "--json", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "matches the article's" in done.stdout
    report = json.loads(out.read_text())
    assert list(report) == KEYS and report["keep_fraction"] == pytest.approx(0.5, abs=0.01)
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "audit-dropout",
                           "tests/bn_builders.py:dropout_inverted", "--keep-prob", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2 and "keep_prob must be in (0, 1]" in done.stderr
