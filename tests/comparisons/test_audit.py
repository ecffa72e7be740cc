"""The BN audit: expected verdicts for a suite of deliberately different legacy builders."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import bn_builders as lb
from tf1_repro.comparisons import audit
import support

ROOT = support.ROOT
BUILDERS = os.path.join(ROOT, "tests", "bn_builders.py")

ARTICLE = {"decay": 0.9, "epsilon": 1e-5, "moving_mean_init": 0.0, "moving_variance_init": 0.0,
           "moving_variance_estimator": "biased", "zero_debias": False, "updates_on_training": True,
           "updates_need_update_ops": False, "updates_on_inference": False,
           "inference_batch_independent": True, "moving_stats_trainable": False,
           "update_location": "output", "statistics_used_at_prediction": True}
TF_LAYERS = dict(ARTICLE, decay=0.99, epsilon=1e-3, moving_variance_init=1.0, updates_on_training=False,
                 updates_need_update_ops=True, update_location="UPDATE_OPS")
NO_STATISTICS = dict(ARTICLE, decay=None, moving_mean_init=None, moving_variance_init=None,
                     moving_variance_estimator=None, zero_debias=None, updates_on_training=False,
                     moving_stats_trainable=None, update_location=None, inference_batch_independent=False,
                     statistics_used_at_prediction=False)
SEEDS = (0, 1, 2)

# builder, python_bool, input shape, expected values that differ from the article's, warning words,
# words some difference must contain
CASES = {
    "article": (lb.article, False, (8, 4), {}, [], []),
    "article-conv": (lb.article, False, (8, 2, 2, 4), {}, [], []),
    "gamma-random-normal": (lb.gamma_random_normal, False, (8, 4), {}, [], []),
    "gamma-truncated-normal": (lb.gamma_truncated_normal, False, (8, 4), {}, [], []),
    "gamma-glorot": (lb.gamma_glorot, False, (8, 4), {}, [], []),
    "class-style-python-bool": (lb.class_style, True, (8, 4), {}, [], []),
    # inference_batch_independent was None ("cannot be measured"); now measured: 30 prediction runs
    # of one batch from one loaded state, and each sample alone, differ (the race shows), so false.
    "ema-outside-cond": (lb.ema_outside_cond, False, (8, 4),
                         {"updates_on_inference": True, "inference_batch_independent": False},
                         ["races its own update", "drift with every batch"],
                         ["inference_batch_independent is false, measured", "race"]),
    "decay-0.5-eps-1e-3": (lb.decay_half_eps_1e3, False, (8, 4), {"decay": 0.5, "epsilon": 1e-3}, [], []),
    "zero-debiased": (lb.zero_debiased, False, (8, 4), {"zero_debias": True}, [], []),
    "update-ops-only": (lb.update_ops_only, False, (8, 4),
                        {"updates_on_training": False, "updates_need_update_ops": True,
                         "update_location": "UPDATE_OPS"}, ["UPDATE_OPS"], []),
    "bessel": (lb.bessel_corrected, False, (8, 4), {"moving_variance_estimator": "unbiased"}, [], []),
    "batch-stats-at-inference": (lb.batch_stats_at_inference, False, (8, 4),
                                 {"inference_batch_independent": False,
                                  "statistics_used_at_prediction": False},
                                 ["depends on its batch", "(bn/moving_mean, bn/moving_variance) are not "
                                  "used at prediction"], []),
    "trainable-stats": (lb.trainable_moving_stats, False, (8, 4), {"moving_stats_trainable": True},
                        ["trainable"], []),
    "python-bool-shared": (lb.python_bool_shared, True, (8, 4), {}, [], []),
    "python-bool-separate": (lb.python_bool_separate, True, (8, 4),
                             dict(TF_LAYERS, decay=0.9, epsilon=1e-5),
                             ["separate variables", "UPDATE_OPS"], []),
    "tf.layers-non-fused": (lb.tf_layers_non_fused, False, (8, 4), TF_LAYERS, ["UPDATE_OPS"], []),
    "tf.layers-fused": (lb.tf_layers_fused, False, (8, 2, 2, 4),
                        dict(TF_LAYERS, moving_variance_estimator="unbiased"), ["UPDATE_OPS"], []),
    "stats-1xC-sonnet": (lb.stats_1c_sonnet, False, (8, 4),
                         dict(TF_LAYERS, decay=0.999, epsilon=1e-3), ["UPDATE_OPS"], []),
    "stats-1x1x1xC-sonnet-conv": (lb.stats_1c_sonnet, False, (8, 2, 2, 4),
                                  dict(TF_LAYERS, decay=0.999, epsilon=1e-3), ["UPDATE_OPS"], []),
    "channels-first-inside-1xCx1x1": (lb.hand_nchw, False, (8, 2, 2, 4),
                                      dict(TF_LAYERS, decay=0.9, epsilon=1e-3), ["UPDATE_OPS"], []),
    "two-stage-assigner": (lb.two_stage_assigner, False, (8, 4),
                           {"updates_on_training": False, "update_location": "separate-op:bn/assigner"},
                           ["training also changes bn/batch_mean, bn/batch_variance, which prediction "
                            "does not read", "only when the separate op 'bn/assigner' runs",
                            "(update ops: bn/ema/AssignMovingAvg, bn/ema/AssignMovingAvg_1)"], []),
    "local-stats-at-prediction": (lb.local_stats_at_prediction, False, (8, 4),
                                  {"updates_on_training": False, "updates_need_update_ops": True,
                                   "update_location": "UPDATE_OPS", "inference_batch_independent": False,
                                   "statistics_used_at_prediction": False},
                                  ["(bn/moving_mean, bn/moving_variance) are not used at prediction",
                                   "UPDATE_OPS", "depends on its batch"], []),
    "batch-stats-only": (lb.batch_stats_only, False, (8, 4), NO_STATISTICS,
                         ["the layer keeps no moving statistics", "depends on its batch"], []),
    "custom-collection": (lb.custom_collection, False, (8, 4),
                          {"updates_on_training": False, "update_location": "collection:bn_updates"},
                          ["only when the ops in the collection 'bn_updates' run with the train op",
                           "(update ops: bn/cond/AssignMovingAvg, bn/cond/AssignMovingAvg_1)"], []),
    "renorm-like": (lb.renorm_like, False, (8, 4), {"moving_variance_init": 1.0}, [],
                    ["batch renormalisation"]),
    "tf.layers-renorm": (lb.tf_layers_renorm, False, (8, 4),
                         dict(TF_LAYERS, decay=0.9, epsilon=1e-5, moving_variance_estimator=None),
                         ["UPDATE_OPS"], ["batch renormalisation", "moving_variance_estimator could not "
                                                                    "be measured"]),
    "tf-keras-layer-in-graph": (lb.keras_layer_in_graph, False, (8, 4),
                                {"moving_variance_init": 1.0, "updates_on_training": False,
                                 "update_location": "separate-op:batch_normalization/cond_2/Merge,"
                                                    "batch_normalization/cond_3/Merge"},
                                ["the separate ops 'batch_normalization/cond_2/Merge', "
                                 "'batch_normalization/cond_3/Merge' run"], []),
    "tf.layers-training-left-false": (lb.tf_layers_training_left_false, False, (8, 4),
                                      dict(TF_LAYERS, decay=None, moving_variance_estimator=None,
                                           zero_debias=None, updates_need_update_ops=False,
                                           update_location=None),
                                      ["the moving statistics never update"],
                                      ["keeps moving statistics (batch_normalization/moving_mean, "
                                       "batch_normalization/moving_variance) and reads them at prediction, "
                                       "but nothing updates them", "(mean 0, variance 1)",
                                       "ignores its training input"]),
    "two-stage-class-python-bool": (lb.two_stage_class_python_bool, True, (8, 4),
                                    {"updates_on_training": False,
                                     "update_location": "separate-op:bn/assigner"},
                                    ["training also changes bn/batch_mean, bn/batch_variance, which "
                                     "prediction does not read",
                                     "only when the separate op 'bn/assigner' runs"], []),
    "two-stage-class-racy": (lb.two_stage_class_racy, True, (8, 4), {},
                             ["training races its own update of bn/batch_mean",
                              "training races its own update of bn/batch_variance"],
                             ["a training step writes bn/batch_mean and reads it (bn/batch_mean/read) "
                              "with no order", "measured with the read after the write"]),
}


@pytest.fixture(scope="module")
def reports():
    """Every case audited once per seed, in this one process (graph seed and probes both vary)."""
    done = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for case, (func, python_bool, shape, *_) in CASES.items():
            done[case] = [audit.audit(func, shape, python_bool, seed=seed) for seed in SEEDS]
    return done


@pytest.mark.slow  # the module's reports fixture: 30 builders x 3 seeds
@pytest.mark.parametrize("case", list(CASES))
def test_expected_verdicts_identical_across_seeds(case, reports):
    _, _, _, differs, warning_words, difference_words = CASES[case]
    first, *others = reports[case]
    for other in others:
        assert other == first
    report = first
    assert list(report) == list(audit.KEYS)
    expected = dict(ARTICLE, **differs)
    got = {k: report[k] for k in expected}
    for key in ("epsilon", "decay"):
        want = expected.pop(key)
        if want is None:
            assert got.pop(key) is None
        else:
            assert got.pop(key) == pytest.approx(want, rel=0.01 if key == "epsilon" else 0, abs=1e-4)
    assert got == expected
    assert 0 < report["epsilon_precision"] <= 1e-4  # relative; the estimate is well conditioned
    matches = not differs and not warning_words and not difference_words
    assert report["matches_article"] is matches
    assert bool(report["differences"]) is not matches
    for word in warning_words:
        assert any(word in w for w in report["warnings"]), (word, report["warnings"])
    if not warning_words:
        assert report["warnings"] == []
    for word in difference_words:
        assert any(word in d for d in report["differences"]), (word, report["differences"])


@pytest.mark.slow  # the module's reports fixture: 30 builders x 3 seeds
@pytest.mark.parametrize("case", list(CASES))
def test_every_unmeasured_verdict_says_why(case, reports):
    report = reports[case][0]
    for key in audit.KEYS[:-3]:
        if report[key] is None:
            assert any(key in d and ("cannot" in d or "could not" in d) for d in report["differences"]), key


@pytest.mark.slow  # the module's reports fixture: 30 builders x 3 seeds
def test_random_gamma_matches_the_article_whatever_its_draw(reports):
    """The three random initialisers give three different gammas per seed, and the same verdict:
    the article's (the old audit re-ran the initialisers per probe: epsilon 0.5x-5x, no match)."""
    for case in ("gamma-random-normal", "gamma-truncated-normal", "gamma-glorot", "class-style-python-bool"):
        assert [r["matches_article"] for r in reports[case]] == [True, True, True], case
        assert [r["epsilon"] for r in reports[case]] == [1e-5, 1e-5, 1e-5], case
    draws = []
    for seed in SEEDS:
        layer = audit._Layer(lb.gamma_glorot, (8, 4), False, seed)  # pylint: disable=protected-access
        draws.append(layer.initial["bn/gamma"])
        layer.sess.close()
    assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[1], draws[2])


def test_prediction_and_training_paths_agree_on_epsilon():
    """Two measurements of epsilon, on the prediction path (statistics loaded) and on the training
    path (batches of ±delta), agree within their stated precisions."""
    layer = audit._Layer(lb.decay_half_eps_1e3, (8, 4), False, 0)  # pylint: disable=protected-access
    try:
        states = audit._State(layer, 4)  # pylint: disable=protected-access
        states.base = states.with_values(layer.initial, **{"bn/gamma": 1.0, "bn/beat": 0.0})
        mean, var = "bn/bn/moments/Squeeze/ema", "bn/bn/moments/Squeeze_1/ema"  # the EMA shadows
        on_prediction = audit._epsilon_prediction(layer, states, mean, var)  # pylint: disable=protected-access
        on_training = audit._epsilon_training(layer, states, (8, 4))  # pylint: disable=protected-access
    finally:
        layer.sess.close()
    assert on_prediction[0] == pytest.approx(1e-3, rel=on_prediction[1] + 1e-3)  # 3 significant digits
    assert on_training[0] == pytest.approx(on_prediction[0], rel=on_prediction[1] + on_training[1] + 1e-3)


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
    assert report["update_location"] == "UPDATE_OPS" and report["statistics_used_at_prediction"] is True


@pytest.mark.parametrize("spec,message", [
    ("tests/nope.py:f", "audit: no file 'tests/nope.py'"),
    ("tests/bn_builders.py", "audit: builder must be PATH.py:FUNC"),
    ("tests/bn_builders.py:missing", "has no function 'missing'"),
    ("tests/bn_builders.py:raises", "FUNC(inputs, training) raised RuntimeError: this builder is broken"),
    ("tests/bn_builders.py:returns_none", "must return the layer's output"),
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
