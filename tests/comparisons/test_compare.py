"""The side-by-side comparison: who equals the article, and why the others differ."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tf1_repro.comparisons import compare
import support


@pytest.fixture(scope="module")
def result():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return compare.compare(train_steps=8, infer_batches=2)


def _rows(result, pass_name):
    return {r["impl"]: r for r in result["passes"][pass_name]}


def test_default_pass(result):
    rows = _rows(result, "default")
    assert list(rows) == ["article (verbatim)", "tf1_repro.bn_layer", "tf.layers fused=False",
                          "tf.layers fused=True", "keras BN (defaults: fused)", "tf.nn.fused_batch_norm"]
    assert all(v == 0.0 for v in rows["tf1_repro.bn_layer"]["max_abs_diff"].values())
    for name in ("tf.layers fused=False", "tf.layers fused=True", "keras BN (defaults: fused)"):
        assert rows[name]["max_abs_diff"]["moving variance"] > 0.1
        assert any("momentum 0.99" in c for c in rows[name]["causes"])
        assert any("starts at 1" in c for c in rows[name]["causes"])
        assert any("epsilon 0.001" in c for c in rows[name]["causes"])
    assert any("Bessel" in c for c in rows["tf.layers fused=True"]["causes"])
    assert not any("Bessel" in c for c in rows["tf.layers fused=False"]["causes"])


def test_matched_pass_agrees_where_possible_and_explains_where_not(result):
    rows = _rows(result, "matched")
    assert rows["tf1_repro.bn_layer"]["verdict"] == "bitwise equal"
    for name in ("NumPy reference (float64)", "tf.layers fused=False", "keras BN fused=False"):
        assert rows[name]["verdict"] in ("bitwise equal", "equal within float32 rounding (<= 1e-5 relative)")
    n = np.prod(compare.SHAPE[:-1])
    for name in ("tf.layers fused=True", "tf.nn.fused_batch_norm"):
        assert rows[name]["verdict"].startswith("cannot match: the fused kernel's moving variance")
        # the only difference left: the fused EMA averages n/(n-1) x the article's batch variances
        assert rows[name]["moving_variance_ratio"] == pytest.approx(n / (n - 1), rel=1e-5)
        assert rows[name]["max_abs_diff"]["moving mean"] < 1e-5
        assert rows[name]["max_abs_diff"]["training outputs"] < 1e-5


def test_command_line_json(tmp_path):
    out = tmp_path / "c.json"
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "compare", "--train-steps", "5",
                           "--json", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=support.ROOT)
    assert done.returncode == 0, done.stderr
    assert "Pass 2: settings matched" in done.stdout and "Causes:" in done.stdout
    assert set(json.loads(out.read_text())["passes"]) == {"default", "matched"}
