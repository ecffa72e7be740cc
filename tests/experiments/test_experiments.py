"""Every experiment at small sizes: its claims hold for the article's layer, and a
wrong layer makes a claim fail."""

import json
import math
import subprocess
import sys
import os

import pytest
import tensorflow.compat.v1 as tf

from tf1_repro import experiments
from tf1_repro.experiments import plots
from tf1_repro.experiments.core import Claim
import support

ROOT = support.ROOT

SMALL = {
    "ema-bias": {"steps": "20"},
    "batch-size": {"sizes": "1,4,16"},
    "train-vs-inference": {"steps": "60"},
    "dropout-scaling": {},
    "mc-dropout": {"passes": "64"},
    "variance-shift": {},
    "precise-bn": {"steps": "60", "train_size": "1024"},
}


def test_every_experiment_is_listed_with_the_fixed_names():
    assert experiments.NAMES == ["ema-bias", "batch-size", "train-vs-inference", "dropout-scaling",
                                 "mc-dropout", "variance-shift", "precise-bn"]
    assert [p.name for p in experiments.get("ema-bias").params] == ["decay", "steps", "mean", "std"]
    assert [p.name for p in experiments.get("batch-size").params] == ["sizes", "mean", "std"]
    assert [p.name for p in experiments.get("dropout-scaling").params] == ["keep_prob"]
    assert [p.name for p in experiments.get("mc-dropout").params] == ["keep_prob", "passes", "data"]
    assert [p.name for p in experiments.get("variance-shift").params] == ["keep_prob", "mean", "std",
                                                                          "data"]
    assert [p.name for p in experiments.get("train-vs-inference").params] == ["steps", "batch_size",
                                                                              "data"]
    assert [p.name for p in experiments.get("precise-bn").params] == ["steps", "batch_size",
                                                                      "train_size", "data"]


@pytest.mark.parametrize("name", list(SMALL))
def test_claims_hold_at_small_sizes(name):
    payload = experiments.run_experiment(name, SMALL[name], seed=3)
    assert set(payload) >= {"experiment", "params", "claims", "series"}
    json.dumps(payload)  # serialisable as is
    for claim in payload["claims"]:
        assert set(claim) >= {"id", "statement", "measured", "expected", "tolerance", "holds"}
        assert claim["holds"], claim
    text = experiments.format_result(payload)
    assert text.count("✓") == len(payload["claims"]) and "✗" not in text


def test_named_claims_exist():
    ids = {name: [c["id"] for c in experiments.run_experiment(name, SMALL[name])["claims"]]
           for name in ("batch-size", "dropout-scaling", "variance-shift")}
    assert {"single-sample-training-collapses", "batch-mean-noise"} <= set(ids["batch-size"])
    assert {"inverted-equals-tf-dropout", "inverted-expectation", "vanilla-expectation",
            "double-scaling-detected"} <= set(ids["dropout-scaling"])
    assert ids["variance-shift"] == ["moving-var-matches-train-variance", "shift-matches-closed-form"]


def test_holds_is_computed_from_the_numbers():
    assert Claim("a", "", measured=1.0, expected=1.04, tolerance=0.05).holds
    assert not Claim("a", "", measured=1.0, expected=1.06, tolerance=0.05).holds
    assert Claim("b", "", measured=3.0, expected=2.0, relation=">=").holds
    assert not Claim("b", "", measured=1.0, expected=2.0, relation=">=").holds
    assert Claim("c", "", measured=1.0, expected=2.0, relation="<=").holds
    assert not Claim("d", "", measured=math.nan, expected=0.0, tolerance=1.0).holds
    assert Claim("a", "", 1.0, 2.0, relation=">=").to_dict()["relation"] == ">="


def _wrong_bn(ema_outside_cond=False, zero_debias=False):
    """The article's layer with one bug, same variable names (the experiments find them by name):
    ema.apply outside the tf.cond (the EMA also updates at prediction), or zero-debiased shadows."""
    def build(inputs, training, name="bn", moving_decay=0.9, eps=1e-5):
        shape = inputs.shape
        with tf.variable_scope(name):
            gamma = tf.get_variable("gamma", shape[-1], initializer=tf.constant_initializer(1))
            beta = tf.get_variable("beat", shape[-1], initializer=tf.constant_initializer(0))
            batch_mean, batch_var = tf.nn.moments(inputs, list(range(len(shape) - 1)), name="moments")
            ema = tf.train.ExponentialMovingAverage(moving_decay, name="ema", zero_debias=zero_debias)
            outside = [ema.apply([batch_mean, batch_var])] if ema_outside_cond else []

            def update():
                inside = [] if ema_outside_cond else [ema.apply([batch_mean, batch_var])]
                with tf.control_dependencies(inside):
                    return tf.identity(batch_mean), tf.identity(batch_var)
            with tf.control_dependencies(outside):
                mean, var = tf.cond(tf.equal(training, True), update,
                                    lambda: (tf.identity(ema.average(batch_mean)),
                                             tf.identity(ema.average(batch_var))))
            return tf.nn.batch_normalization(inputs, mean, var, beta, gamma, eps)
    return build


def test_a_wrong_layer_fails_the_inference_claim():
    payload = experiments.run_experiment("train-vs-inference", SMALL["train-vs-inference"],
                                         bn=_wrong_bn(ema_outside_cond=True))
    claims = {c["id"]: c for c in payload["claims"]}
    assert not claims["inference-batch-independent"]["holds"]
    assert claims["inference-batch-independent"]["measured"] > 1e3 * claims["inference-batch-independent"]["tolerance"]


def test_zero_debiasing_fails_the_zero_init_claim():
    payload = experiments.run_experiment("ema-bias", SMALL["ema-bias"], bn=_wrong_bn(zero_debias=True))
    claims = {c["id"]: c["holds"] for c in payload["claims"]}
    assert not claims["zero-init-bias"] and not claims["ema-matches-recurrence"]


def test_tensorboard_events_hold_the_graph_and_scalars(tmp_path):
    payload = experiments.run_experiment("ema-bias", SMALL["ema-bias"], logdir=str(tmp_path))
    files = os.listdir(payload["logdir"])
    assert len(files) == 1 and files[0].startswith("events.out.tfevents")
    kinds, tags = set(), set()
    for event in tf.train.summary_iterator(os.path.join(payload["logdir"], files[0])):
        kinds.add(event.WhichOneof("what"))
        if event.HasField("summary"):
            tags.update(v.tag for v in event.summary.value)
    assert {"graph_def", "summary"} <= kinds
    assert "zero_init_bias/shadow_mean" in tags and "batch_mean" in tags
    graph_def = next(e.graph_def for e in tf.train.summary_iterator(
        os.path.join(payload["logdir"], files[0])) if e.WhichOneof("what") == "graph_def")
    ops = tf.GraphDef.FromString(graph_def)
    assert any(n.op == "Switch" for n in ops.node) and any("ema" in n.name for n in ops.node)


def test_a_rerun_replaces_its_tensorboard_run(tmp_path):
    first = experiments.run_experiment("dropout-scaling", SMALL["dropout-scaling"], logdir=str(tmp_path))
    second = experiments.run_experiment("dropout-scaling", SMALL["dropout-scaling"], logdir=str(tmp_path))
    assert first["logdir"] == second["logdir"]
    files = os.listdir(second["logdir"])
    assert len(files) == 1 and files[0].startswith("events.out.tfevents")
    scalars = {}
    for event in tf.train.summary_iterator(os.path.join(second["logdir"], files[0])):
        for v in event.summary.value:
            scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
    # dropout-scaling's measured ratios are scalars like every other experiment's series
    ratios = dict(scalars["expectation_ratio/mean_training_output_/_prediction_output"])
    claims = {c["id"]: c for c in second["claims"]}
    assert abs(ratios[0] - claims["inverted-expectation"]["measured"]) < 1e-6
    assert abs(ratios[1] - claims["vanilla-expectation"]["measured"]) < 1e-6
    assert abs(ratios[2] - 1 / claims["double-scaling-detected"]["measured"]) < 1e-5


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tf1_repro", "experiment", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_command_line_json_and_errors(tmp_path):
    out = tmp_path / "r.json"
    done = _cli("dropout-scaling", "--set", "keep_prob=0.5", "--seed", "2", "--json", str(out),
                "--plot", str(tmp_path / "plots"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("dropout-scaling (keep_prob=0.5; seed 2;")
    table_at = next(i for i, l in enumerate(lines) if l.strip().startswith("convention"))
    assert table_at < next(i for i, l in enumerate(lines) if "✓" in l)  # table first, then claims
    payload = json.loads(out.read_text())
    assert payload["experiment"] == "dropout-scaling" and payload["params"] == {"keep_prob": 0.5}
    for c in payload["claims"]:
        assert c["holds"] == (abs(c["measured"] - c["expected"]) <= c["tolerance"])
    for args, message in [
        (["nope"], "NAME must be one of ema-bias, batch-size"),
        (["ema-bias", "--set", "foo=1"], "--set key must be one of decay, steps, mean, std, got 'foo'"),
        (["ema-bias", "--set", "decay"], "argument --set: must be KEY=VALUE, got 'decay'"),
        (["mc-dropout", "--set", "keep_prob=0"], "keep_prob must be in (0, 1]"),
        ([], "give one NAME, --all or --list"),
    ]:
        done = _cli(*args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1


def test_list():
    done = _cli("--list")
    assert done.returncode == 0
    assert [l.split()[0] for l in done.stdout.splitlines() if not l.startswith(" ")] == experiments.NAMES


def test_plots_are_pngs_and_without_matplotlib_a_note(tmp_path, monkeypatch):
    payload = experiments.run_experiment("batch-size", SMALL["batch-size"], plot_dir=str(tmp_path))
    assert [os.path.basename(p) for p in payload["plots"]] == [
        "batch-size-claims.png", "batch-size-batch_mean_spread.png", "batch-size-batch_variance.png"]
    assert all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in payload["plots"])
    monkeypatch.setattr(plots, "available", lambda: False)
    notes = []
    assert plots.save(str(tmp_path / "none"), "x", payload and {}, log=notes.append) == []
    assert notes == [plots.INSTALL_HINT] and not (tmp_path / "none").exists()
