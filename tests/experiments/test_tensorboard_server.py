"""A real TensorBoard server over the experiments' event files, checked through its HTTP API:
every run listed, each scalar tag served with its number of points, histograms, and the
graph with the article's tf.cond (Switch/Merge) and EMA ops. Then the server is stopped."""

import json
import math
import urllib.parse
import urllib.request

import pytest
from google.protobuf import text_format
from tensorflow.core.framework import graph_pb2

from tf1_repro import experiments
from tf1_repro.experiments import tensorboard

pytestmark = pytest.mark.slow  # ~6 s: three small experiments, then the server's start

SMALL = {"train-vs-inference": {"steps": "40"}, "ema-bias": {"steps": "20"},
         "mc-dropout": {"passes": "16"}}


def _get(base, path, **query):
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as response:  # 127.0.0.1 only
        return response.read().decode()


def _expected_scalars(payload):
    """tag -> number of points, as tf1_repro.experiments.tensorboard writes them."""
    counts = {}
    for name, series in payload["series"].items():
        for label, values in series["lines"].items():
            finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
            counts[f"{name}/{label}".replace(" ", "_")] = len(finite)
    return counts


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("tensorboard")
    payloads = {name: experiments.run_experiment(name, overrides, logdir=str(logdir))
                for name, overrides in SMALL.items()}
    with tensorboard.serve(logdir, runs=SMALL) as base:
        runs = json.loads(_get(base, "/data/runs"))
        yield base, payloads, runs
    with pytest.raises(OSError):  # stopped: nothing listens on its port any more
        _get(base, "/data/runs")


def test_every_experiment_run_is_listed(server):
    _, _, runs = server
    assert sorted(runs) == sorted(SMALL)


def test_scalar_tags_are_served_with_every_point(server):
    base, payloads, _ = server
    tags = json.loads(_get(base, "/data/plugin/scalars/tags"))
    for name, payload in payloads.items():
        expected = _expected_scalars(payload)
        assert set(tags[name]) == set(expected), name
        for tag, count in expected.items():
            points = json.loads(_get(base, "/data/plugin/scalars/scalars", run=name, tag=tag))
            assert len(points) == count, (name, tag)
    # one point checked by value: train-vs-inference's accuracy at 1 sample per run, training=False
    rows = payloads["train-vs-inference"]["table"]["rows"]
    points = json.loads(_get(base, "/data/plugin/scalars/scalars", run="train-vs-inference",
                             tag="accuracy/training=False"))
    assert [p[1] for p in points] == [r[0] for r in rows]  # steps are the samples per run
    assert points[0][2] == pytest.approx(rows[0][2], abs=1e-6)


def test_histograms_of_the_mc_passes_are_served(server):
    base, _, _ = server
    tags = json.loads(_get(base, "/data/plugin/histograms/tags"))
    assert set(tags["mc-dropout"]) == {f"mc_logits/sample0_class{c}" for c in range(3)}


def test_graph_shows_the_article_cond_and_ema_ops(server):
    base, _, _ = server
    info = json.loads(_get(base, "/data/plugin/graphs/info"))
    assert all(info[name]["run_graph"] for name in SMALL)
    graph = text_format.Parse(_get(base, "/data/plugin/graphs/graph", run="train-vs-inference"),
                              graph_pb2.GraphDef())
    ops = {node.name: node.op for node in graph.node}
    for layer in ("bn_input", "bn_hidden"):
        assert ops[f"{layer}/cond/Merge"] == "Merge"  # tf.cond(training, mean_var_with_update, ...)
        assert ops[f"{layer}/cond/Switch"] == "Switch"
        assert ops[f"{layer}/cond/ema/AssignMovingAvg"] in ("AssignSub", "AssignSubVariableOp")
        for shadow in ("Squeeze", "Squeeze_1"):  # the EMA's shadow variables, the article's names
            assert ops[f"{layer}/{layer}/moments/{shadow}/ema"] in ("VariableV2", "VarHandleOp")
