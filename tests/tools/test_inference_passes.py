"""to-inference's serving passes, one test each (a small GraphDef in, the change and its record
out), and the pipeline that runs them (declared order, node counts recorded, fixpoints, the import
check after each pass)."""

import dataclasses
import json
import types

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tf1_repro import cli
from tf1_repro.graph.graphdef import make_const, nodes_by_name, prune, with_nodes
from tf1_repro.tools import inference as inf
from tf1_repro.tools.inference import passes, pipeline
from tf1_repro.tools.inference.context import PassContext
from tf1_repro.tools.inference.convert import SIMPLIFY
from tf1_repro.tools.inference.pipeline import PassError, Repeat


def _one(name, graph_def, ctx):
    """(GraphDef, PassRecord) of the pass ``name`` run alone through the pipeline."""
    out, records = pipeline.run((name,), graph_def, ctx)
    assert [r.name for r in records] == [name]
    return out, records[0]


def _run(graph_def, feeds, fetch="y:0"):
    with tf.Graph().as_default() as g:
        tf.import_graph_def(graph_def, name="")
        with tf.Session(graph=g) as sess:
            return sess.run(fetch, feeds)


def test_every_pass_is_registered_with_its_targets():
    assert set(passes.REGISTRY) == set(passes.PASS_MODULES)
    assert passes.get("resolve_switches").targets == ("Switch", "RefSwitch", "Merge", "RefMerge")
    assert passes.get("defaults_to_identity").targets == ("PlaceholderWithDefault",)
    assert all(p.summary for p in passes.REGISTRY.values())
    with pytest.raises(ValueError, match="serving pass must be one of .*, got 'nope'"):
        passes.get("nope")


def test_prune_removes_what_the_outputs_do_not_need():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None], name="x")
        tf.negative(x, name="y")
        tf.exp(x, name="unused")
    out, rec = _one("prune", g.as_graph_def(), PassContext(outputs=("y:0",)))
    assert [n.name for n in out.node] == ["x", "y"]
    assert (rec.ops_before, rec.ops_after, rec.changed) == (3, 2, ("unused",))


def test_bind_placeholders_makes_a_mode_placeholder_a_const():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None], name="x")
        training = tf.placeholder(tf.bool, [], name="training")
        tf.where(training, x, -x, name="y")
    out, rec = _one("bind_placeholders", g.as_graph_def(), PassContext(feeds={"training": False}))
    node = nodes_by_name(out)["training"]
    assert node.op == "Const" and not tf.make_ndarray(node.attr["value"].tensor)
    assert rec.changed == ("training",) and rec.ops_before == rec.ops_after == 4
    assert _run(out, {"x:0": [1.0, 2.0]}).tolist() == [-1.0, -2.0]


def test_dropouts_to_identity_replaces_the_dropout_output():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None], name="x")
        mask = tf.constant([0.0, 2.0], name="mask")
        tf.identity(tf.multiply(x, mask, name="drop"), name="y")
    ctx = PassContext(dropouts=(("drop", "x:0"),), outputs=("y:0",))
    out, rec = _one("dropouts_to_identity", g.as_graph_def(), ctx)
    drop = nodes_by_name(out)["drop"]
    assert drop.op == "Identity" and list(drop.input) == ["x:0"]
    assert rec.changed == ("drop",)
    assert _run(out, {"x:0": [3.0, 4.0]}).tolist() == [3.0, 4.0]


def test_fold_constants_evaluates_a_constant_subgraph():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None], name="x")
        c = tf.add(tf.constant(2.0, name="a"), tf.constant(3.0, name="b"), name="c")
        tf.multiply(x, c, name="y")
    ctx = PassContext(outputs=("y:0",))
    out, rec = _one("fold_constants", g.as_graph_def(), ctx)
    node = nodes_by_name(out)["c"]
    assert node.op == "Const" and float(tf.make_ndarray(node.attr["value"].tensor)) == 5.0
    assert rec.changed == ("c",) and rec.ops_before == rec.ops_after == 5
    assert ctx.state.dropped_controls == []


def _switch_graph(pred):
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None], name="x")
        p = tf.constant(pred, name="p")
        switch = tf.raw_ops.Switch(data=x, pred=p, name="switch")
        f = tf.multiply(switch.output_false, 2.0, name="f")
        t = tf.add(switch.output_true, 1.0, name="t")
        tf.identity(tf.raw_ops.Merge(inputs=[f, t], name="merge").output, name="y")
    return g.as_graph_def()


def test_resolve_switches_keeps_the_live_branch_only():
    out, rec = _one("resolve_switches", _switch_graph(True), PassContext())
    by_name = nodes_by_name(out)
    assert rec.changed == ("switch",)
    assert by_name["switch"].op == "Identity" and by_name["merge"].op == "Identity"
    assert "f" not in by_name and "t" in by_name  # the false branch was dead
    assert _run(out, {"x:0": [1.0]}).tolist() == [2.0]  # 1 + 1
    unchanged, rec = _one("resolve_switches", out, PassContext())
    assert rec.changed == () and unchanged is out


def test_defaults_to_identity_only_for_non_inputs():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None], name="x")
        rate = tf.placeholder_with_default(0.5, [], name="rate")
        tf.multiply(x, rate, name="y")
    out, rec = _one("defaults_to_identity", g.as_graph_def(), PassContext(inputs=("x:0",)))
    assert nodes_by_name(out)["rate"].op == "Identity" and rec.changed == ("rate",)
    kept, rec = _one("defaults_to_identity", g.as_graph_def(), PassContext(inputs=("x:0", "rate:0")))
    assert nodes_by_name(kept)["rate"].op == "PlaceholderWithDefault" and rec.changed == ()


def test_strip_control_inputs_tells_the_sources_and_waits_for_switches():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None], name="x")
        update = tf.no_op(name="update")
        with tf.control_dependencies([update]):
            tf.identity(x, name="y")
    ctx = PassContext()
    out, rec = _one("strip_control_inputs", g.as_graph_def(), ctx)
    assert list(nodes_by_name(out)["y"].input) == ["x"]
    assert rec.changed == ("y",) and ctx.state.dropped_controls == ["update"]
    with_switch = _switch_graph(True)
    with_switch.node.extend([tf.NodeDef(name="late", op="NoOp", input=["^x"])])
    _, rec = _one("strip_control_inputs", with_switch, PassContext())
    assert rec.changed == ()


def test_freeze_variables_makes_the_variables_consts():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 2], name="x")
        w = tf.get_variable("w", initializer=np.full((2, 1), 3.0, np.float32), use_resource=False)
        tf.matmul(x, w, name="y")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            graph_def = prune(g.as_graph_def(), ["y"])
            out, rec = _one("freeze_variables", graph_def, PassContext(outputs=("y:0",), session=sess))
    assert rec.changed == ("w",)
    assert not [n for n in out.node if n.op == "VariableV2"]
    assert _run(out, {"x:0": [[1.0, 1.0]]}).tolist() == [[6.0]]


def test_remove_identities_bypasses_all_but_the_protected():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None], name="x")
        tf.negative(tf.identity(tf.identity(x, name="i1"), name="i2"), name="y")
    out, rec = _one("remove_identities", g.as_graph_def(), PassContext(protected=("x", "y", "i1")))
    assert list(nodes_by_name(out)["y"].input) == ["i1"]
    assert rec.changed == ("i2",) and rec.ops_before == rec.ops_after == 4


def test_fold_batch_norms_folds_the_affine_chain_into_the_matmul():
    rng = np.random.default_rng(3)
    kernel, scale, offset = (rng.normal(size=(3, 2)).astype(np.float32),
                             rng.normal(size=2).astype(np.float32), rng.normal(size=2).astype(np.float32))
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        h = tf.matmul(x, tf.constant(kernel, name="kernel"), name="h")
        bn = tf.add(tf.multiply(h, tf.constant(scale), name="bn/mul"), tf.constant(offset), name="bn")
        tf.identity(bn, name="y")
    layer = types.SimpleNamespace(name="bn", kind="test", output="bn:0", channel_axis=-1)
    ctx = PassContext(outputs=("y:0",), protected=("x", "y"), bn_layers=(layer,))
    out, rec = _one("fold_batch_norms", g.as_graph_def(), ctx)
    assert rec.changed == ("bn",) and rec.ops_after < rec.ops_before
    assert nodes_by_name(out)["bn"].op == "BiasAdd"
    assert ctx.state.bn_report == [{"name": "bn", "kind": "test", "folded": True, "reason": None,
                                    "into": "h"}]
    value = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(out, {"x:0": value}), _run(g.as_graph_def(), {"x:0": value}),
                               rtol=1e-5, atol=1e-5)
    kept_ctx = dataclasses.replace(ctx, fold=False, state=type(ctx.state)())
    kept, _ = _one("fold_batch_norms", g.as_graph_def(), kept_ctx)
    assert nodes_by_name(kept)["bn"].op == "AddV2" and kept_ctx.state.bn_report[0]["reason"] == "--no-fold"


def test_pipeline_runs_in_the_declared_order_and_records_node_counts():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None], name="x")
        rate = tf.placeholder_with_default(0.5, [], name="rate")
        tf.exp(x, name="unused")
        tf.multiply(tf.identity(x, name="i"), rate, name="y")
    ctx = PassContext(outputs=("y:0",), inputs=("x:0",), protected=("x", "y"))
    steps = ("prune", "defaults_to_identity", "remove_identities", "prune")
    out, records = pipeline.run(steps, g.as_graph_def(), ctx)
    assert [r.name for r in records] == list(steps)
    assert [(r.ops_before, r.ops_after) for r in records] == [(6, 5), (5, 5), (5, 5), (5, 3)]
    assert [r.changed for r in records] == [("unused",), ("rate",), ("i", "rate"), ("rate", "i")]
    assert records[0].as_dict() == {"name": "prune", "ops_before": 6, "ops_after": 5,
                                    "changed": ["unused"]}
    assert sorted(n.name for n in out.node) == ["rate/input", "x", "y"]


def test_pipeline_repeats_until_a_round_changes_nothing():
    graph_def = _switch_graph(False)
    out, records = pipeline.run(SIMPLIFY, graph_def, PassContext(outputs=("y:0",)))
    names = [r.name for r in records]
    assert names[0] == "prune" and names[1:4] == ["fold_constants", "resolve_switches", "prune"]
    assert len(names) % 3 == 1 and len(names) >= 7  # at least one round that changed, one that did not
    assert all(not r.changed for r in records[-3:]) and any(r.changed for r in records[-6:-3])
    assert not [n for n in out.node if n.op in ("Switch", "Merge")]
    assert _run(out, {"x:0": [1.0]}).tolist() == [2.0]  # 1 * 2
    assert pipeline.names(SIMPLIFY) == ["prune", "(fold_constants, resolve_switches, prune)*"]


def test_pipeline_fails_loudly_when_a_pass_breaks_the_graph():
    @passes.register("test_dangling_input")
    def _broken(graph_def, ctx):  # pylint: disable=unused-argument
        """Adds a node reading a node that does not exist."""
        bad = tf.NodeDef(name="bad", op="Identity", input=["missing:0"])
        bad.attr["T"].type = tf.float32.as_datatype_enum
        return inf.PassResult(with_nodes(graph_def, list(graph_def.node) + [bad]), ["bad"])
    try:
        graph_def = with_nodes(tf.GraphDef(), [make_const("c", np.float32(1.0))])
        with pytest.raises(PassError, match="serving pass test_dangling_input left a graph "
                                            "TensorFlow cannot import: .*missing"):
            pipeline.run(("prune", "test_dangling_input"), graph_def, PassContext(outputs=("c",)))
        with pytest.raises(ValueError, match="got 'nope'"):  # names checked before anything runs
            pipeline.run(("test_dangling_input", Repeat("nope")), graph_def, PassContext())
    finally:
        passes.REGISTRY.pop("test_dangling_input")


def test_to_inference_reports_and_prints_its_passes(tmp_path, capsys):
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        training = tf.placeholder_with_default(False, [], name="training")
        w = tf.Variable(np.ones((3, 2), np.float32), name="w")
        h = tf.matmul(x, w)
        tf.identity(tf.layers.batch_normalization(h, training=training), name="y")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, str(tmp_path / "m.ckpt"))
    code = cli.main(["to-inference", str(tmp_path / "m.ckpt"), "--outputs", "y", "--out",
                     str(tmp_path / "o"), "--formats", "frozen", "--latency-runs", "0", "--quiet",
                     "--verbose", "--json", str(tmp_path / "r.json")])
    out, _ = capsys.readouterr()
    assert code == 0
    with open(tmp_path / "r.json", encoding="utf-8") as f:
        report = json.load(f)
    runs = report["passes"]
    names = [p["name"] for p in runs]
    assert names[:4] == ["prune", "bind_placeholders", "dropouts_to_identity", "prune"]
    assert names[-3:] == ["fold_batch_norms", "remove_identities", "prune"]
    assert "freeze_variables" in names and names.count("fold_constants") >= 2
    assert all(a["ops_after"] == b["ops_before"] for a, b in zip(runs, runs[1:]))
    assert runs[-1]["ops_after"] == sum(report["ops_after"].values())
    assert set(runs[names.index("freeze_variables")]["changed"]) == {
        "w", "batch_normalization/gamma", "batch_normalization/beta",
        "batch_normalization/moving_mean", "batch_normalization/moving_variance"}
    assert runs[-3]["changed"] == ["batch_normalization/batchnorm/add_1"]
    lines = out.splitlines()
    at = lines.index(f"  passes ({len(runs)} runs):")
    assert lines[at + 1].split() == ["prune", str(runs[0]["ops_before"]), "->",
                                     str(runs[0]["ops_after"])] + lines[at + 1].split()[4:]
    assert [line.split()[0] for line in lines[at + 1:at + 1 + len(runs)]] == names
