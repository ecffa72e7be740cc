"""The demo measures the article's points, and the command line around it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tf1_repro.model import demo
import support

ROOT = support.ROOT


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return demo.run_demo(steps=80, batch_size=32, test_size=256,
                         out_dir=str(tmp_path_factory.mktemp("demo")), log=lambda line: None)


def test_prediction_mode_is_batch_independent_and_accurate(report):
    assert report["test_accuracy"] > 0.8
    assert report["inference_single_vs_batch_max_diff"] <= 1e-5


def test_single_sample_training_mode_collapses_to_beta(report):
    c = report["collapse"]
    assert c["max_abs_bn_out_minus_beta"] <= 4 * c["rounding_scale"]
    assert c["distinct_predictions"] == 1
    assert c["logit_spread"] < 1e-3 * c["logit_spread_prediction_mode"]


def test_moving_statistics_approach_the_population(report):
    s = report["moving_stats"]
    # decay 0.9, batch 32: EMA noise sqrt(0.1 / 1.9 / 32) = 0.041 std for the mean; 5 of them
    assert s["mean_tolerance_std"] == pytest.approx(5 * np.sqrt(0.1 / 1.9 / 32))
    assert s["mean_gap_std"] <= s["mean_tolerance_std"]
    assert s["var_gap_rel"] <= s["var_tolerance_rel"] == pytest.approx(5 * np.sqrt(2 * 0.1 / 1.9 / 32))
    assert report["holds"]["moving_stats_match_population"]


def test_dropout_left_on_varies_and_checkpoint_reloads(report):
    assert report["dropout_on_inference_max_diff"] > 0.0
    assert report["dropout_off_inference_max_diff"] <= 1e-5
    assert report["reloaded_single_vs_batch_max_diff"] <= 1e-5
    assert os.path.exists(report["checkpoint"] + ".index")


def test_the_report_ticks_every_point(report):
    text = demo.format_report(report)
    assert all(report["holds"].values())
    assert text.count("✓") == len(report["holds"]) == 5 and "✗" not in text


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tf1_repro", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_command_line_demo_writes_json(tmp_path):
    done = _cli("demo", "--steps", "30", "--batch-size", "16", "--out", str(tmp_path / "ck"),
                "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    assert "Report (dense model" in done.stdout and "step    30/30" in done.stdout
    assert json.loads((tmp_path / "r.json").read_text())["steps"] == 30
    assert done.stderr.strip() == ""  # TensorFlow's start-up log is silenced


@pytest.mark.parametrize("args,message", [
    (["demo", "--keep-prob", "0"], "argument --keep-prob: keep_prob must be in (0, 1]"),
    (["demo", "--steps", "-3"], "argument --steps: must be a positive integer, got -3"),
    (["demo", "--batch-size", "1"], "argument --batch-size: must be >= 2 for training"),
    (["nonsense"], "argument COMMAND: invalid choice: 'nonsense'"),
])
def test_bad_arguments_exit_2_with_one_line(args, message):
    done = _cli(*args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def digits_report(tmp_path_factory):
    return demo.run_demo(steps=150, batch_size=64, data_name="digits",
                         out_dir=str(tmp_path_factory.mktemp("digits")), log=lambda line: None)


def test_digits_demo_holds_every_point_on_real_held_out_images(digits_report):
    r = digits_report
    assert (r["data"], r["features"], r["classes"], r["test_size"]) == ("digits", 64, 10, 539)
    assert all(r["holds"].values()), r["holds"]
    assert r["test_accuracy"] > 0.85  # 10 classes: chance is 0.1
    assert r["moving_stats"]["constant_features"] == 3  # the always-blank border pixels
    # the collapse: one sample with training=True predicts the same class for every digit
    assert r["collapse"]["distinct_predictions"] == 1 and r["collapse"]["accuracy"] < 0.5
    # the conv model on the 8x8 images: one image per run with training=True does not collapse, since
    # bn_conv's statistics come from its 64 positions (reported, not claimed)
    v = r["conv"]
    assert v["test_size"] == 539 and v["accuracy"] > 0.85
    assert v["single_training_distinct_predictions"] > 1 and v["single_training_max_logit_diff"] > 0
    text = demo.format_report(r)
    assert "dense model on handwritten digits, 64 pixels, 10 classes" in text and "✗" not in text
    assert "7. conv model on the 8x8 images" in text
