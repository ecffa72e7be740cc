"""The BN audit: expected verdicts for a suite of deliberately different legacy builders."""

import json
import os
import subprocess
import sys
import warnings

import pytest

import legacy_builders as lb
from tf1_repro.legacy import audit
import support

ROOT = support.ROOT
BUILDERS = os.path.join(ROOT, "tests", "legacy_builders.py")

ARTICLE = {"decay": 0.9, "epsilon": 1e-5, "moving_mean_init": 0.0, "moving_variance_init": 0.0,
           "moving_variance_estimator": "biased", "zero_debias": False, "updates_on_training": True,
           "updates_need_update_ops": False, "updates_on_inference": False,
           "inference_batch_independent": True, "moving_stats_trainable": False}
TF_LAYERS = dict(ARTICLE, decay=0.99, epsilon=1e-3, moving_variance_init=1.0, updates_on_training=False,
                 updates_need_update_ops=True)

# builder, python_bool, input shape, expected values that differ from the article's, warning words
CASES = {
    "article": (lb.article, False, (8, 4), {}, []),
    "article-conv": (lb.article, False, (8, 2, 2, 4), {}, []),
    "ema-outside-cond": (lb.ema_outside_cond, False, (8, 4),
                         {"updates_on_inference": True, "inference_batch_independent": False},
                         ["drift with every batch", "depends on its batch"]),
    "decay-0.5-eps-1e-3": (lb.decay_half_eps_1e3, False, (8, 4), {"decay": 0.5, "epsilon": 1e-3}, []),
    "zero-debiased": (lb.zero_debiased, False, (8, 4), {"zero_debias": True}, []),
    "update-ops-only": (lb.update_ops_only, False, (8, 4),
                        {"updates_on_training": False, "updates_need_update_ops": True},
                        ["UPDATE_OPS"]),
    "bessel": (lb.bessel_corrected, False, (8, 4), {"moving_variance_estimator": "unbiased"}, []),
    "batch-stats-at-inference": (lb.batch_stats_at_inference, False, (8, 4),
                                 {"inference_batch_independent": False}, ["depends on its batch"]),
    "trainable-stats": (lb.trainable_moving_stats, False, (8, 4), {"moving_stats_trainable": True},
                        ["trainable"]),
    "python-bool-shared": (lb.python_bool_shared, True, (8, 4), {}, []),
    "python-bool-separate": (lb.python_bool_separate, True, (8, 4),
                             dict(TF_LAYERS, decay=0.9, epsilon=1e-5),
                             ["separate variables", "UPDATE_OPS"]),
    "tf.layers-non-fused": (lb.tf_layers_non_fused, False, (8, 4), TF_LAYERS, ["UPDATE_OPS"]),
    "tf.layers-fused": (lb.tf_layers_fused, False, (8, 2, 2, 4),
                        dict(TF_LAYERS, moving_variance_estimator="unbiased"), ["UPDATE_OPS"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_expected_verdicts(case):
    func, python_bool, shape, differs, warning_words = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = audit.audit(func, shape, python_bool)
    assert list(report) == list(audit.KEYS)
    expected = dict(ARTICLE, **differs)
    got = {k: report[k] for k in expected}
    assert got["epsilon"] == pytest.approx(expected.pop("epsilon"), rel=0.02)
    assert got["decay"] == pytest.approx(expected.pop("decay"), abs=1e-4)
    got.pop("epsilon")
    got.pop("decay")
    assert got == expected
    matches = not differs and not warning_words
    assert report["matches_article"] is matches
    assert bool(report["differences"]) is not matches
    for word in warning_words:
        assert any(word in w for w in report["warnings"]), (word, report["warnings"])
    if not warning_words:
        assert report["warnings"] == []


def test_differences_name_the_consequence():
    report = audit.audit(lb.decay_half_eps_1e3, (8, 4))
    assert report["differences"] == [
        "momentum 0.5 is a decay (shadow <- m*shadow + (1-m)*batch), article 0.9: moving averages "
        "forget faster",
        "epsilon 0.001 (article 1e-05): every output differs, most for low-variance channels"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tf1_repro", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_command_line_audit_writes_the_exact_keys(tmp_path):
    out = tmp_path / "audit.json"
    done = _cli("audit", f"{BUILDERS}:tf_layers_fused", "--input-shape", "8,2,2,4", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "differs from the article's layer" in done.stdout
    report = json.loads(out.read_text())
    assert list(report) == list(audit.KEYS)
    assert report["moving_variance_estimator"] == "unbiased" and report["decay"] == 0.99


@pytest.mark.parametrize("spec,message", [
    ("tests/nope.py:f", "audit: no file 'tests/nope.py'"),
    ("tests/legacy_builders.py", "audit: builder must be PATH.py:FUNC"),
    ("tests/legacy_builders.py:missing", "has no function 'missing'"),
    ("tests/legacy_builders.py:raises", "FUNC(inputs, training) raised RuntimeError: this builder is broken"),
    ("tests/legacy_builders.py:returns_none", "must return the layer's output"),
])
def test_builders_that_cannot_be_built_exit_2_with_one_line(spec, message):
    done = _cli("audit", spec)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_a_file_that_fails_to_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import not_a_module_anywhere\n")
    done = _cli("audit", f"{bad}:f")
    assert done.returncode == 2
    assert f"importing {bad} failed: ModuleNotFoundError" in done.stderr
