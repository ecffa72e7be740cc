"""to-inference: BN folding exact for each BN kind and linear op, the article's training graph
frozen where tf.graph_util alone fails, every format verified, the doctor's suite converted."""

import json
import os
import warnings

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
import support

from model_suite import SUITE, suite_artefact  # noqa: F401  pylint: disable=unused-import
from tf1_repro import cli
from tf1_repro.tools import doctor, inference as inf
from tf1_repro.tools.inference import formats

RNG = np.random.default_rng(7)
EPS = 1e-3
C = 4


def _stats(channels):
    """gamma, beta, mean, var far from the identity (mean ~ N(0, 3^2), var in [0.5, 4])."""
    return (RNG.normal(1.0, 0.5, channels).astype(np.float32),
            RNG.normal(0.0, 1.0, channels).astype(np.float32),
            RNG.normal(0.0, 3.0, channels).astype(np.float32),
            RNG.uniform(0.5, 4.0, channels).astype(np.float32))


def _linear(kind, x, bias):
    """MatMul [N, 6] -> [N, C]; Conv2D / depthwise (multiplier 2) [N, 5, 5, 2] -> [N, 5, 5, C]."""
    if kind == "MatMul":
        w = RNG.normal(size=(6, C)).astype(np.float32)
        h = tf.matmul(x, tf.constant(w, name="kernel"))
    elif kind == "Conv2D":
        w = RNG.normal(size=(3, 3, 2, C)).astype(np.float32)
        h = tf.nn.conv2d(x, tf.constant(w, name="kernel"), [1, 1, 1, 1], "SAME")
    else:
        w = RNG.normal(size=(3, 3, 2, C // 2)).astype(np.float32)
        h = tf.nn.depthwise_conv2d(x, tf.constant(w, name="kernel"), [1, 1, 1, 1], "SAME")
    b = tf.constant(RNG.normal(size=C).astype(np.float32), name="b")
    if bias == "BiasAdd":
        h = tf.nn.bias_add(h, b)
    elif bias == "Add":
        h = h + b
    return h


def _bn(kind, h):
    gamma, beta, mean, var = (tf.constant(v) for v in _stats(C))
    if kind == "batch_normalization":  # the article's layer and non-fused tf.layers/Keras at prediction
        return tf.nn.batch_normalization(h, mean, var, beta, gamma, EPS)
    if kind == "hand_written":
        return (h - mean) / tf.sqrt(var + EPS) * gamma + beta
    if kind == "global_normalization":  # rewritten by _global_normalization below
        return tf.identity(h, name="global_bn")
    op = {"fused_v1": tf.raw_ops.FusedBatchNorm, "fused_v2": tf.raw_ops.FusedBatchNormV2,
          "fused_v3": tf.raw_ops.FusedBatchNormV3}[kind]
    return op(x=h, scale=gamma, offset=beta, mean=mean, variance=var, epsilon=EPS,
              is_training=False)[0]


def _global_normalization(graph_def):
    """The node global_bn becomes BatchNormWithGlobalNormalization (removed from GraphDef
    version 9 on, so TF 2.21 cannot build it; graphs written before still hold it): the
    GraphDef is marked producer 8, which TensorFlow still imports and runs."""
    gamma, beta, mean, var = _stats(C)
    out = tf.GraphDef()
    out.CopyFrom(graph_def)
    out.versions.producer = 8
    node = next(n for n in out.node if n.name == "global_bn")
    source = node.input[0]
    node.Clear()
    node.name, node.op = "global_bn", "BatchNormWithGlobalNormalization"
    for key, value in (("m", mean), ("v", var), ("beta", beta), ("gamma", gamma)):
        out.node.append(inf.make_const(f"global_bn/{key}", value))
    node.input.extend([source] + [f"global_bn/{k}" for k in ("m", "v", "beta", "gamma")])
    node.attr["T"].type = tf.float32.as_datatype_enum
    node.attr["variance_epsilon"].f = EPS
    node.attr["scale_after_normalization"].b = True
    return out


def _run(graph_def, x_value):
    with tf.Graph().as_default() as g:
        tf.import_graph_def(graph_def, name="")
        with tf.Session(graph=g) as sess:
            return sess.run("y:0", {"x:0": x_value})


def _bn_graph(bn_kind, linear, bias):
    shape = [None, 6] if linear == "MatMul" else [None, 5, 5, 2 if linear else C]
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, shape, name="x")
        out = _bn(bn_kind, _linear(linear, x, bias) if linear else x)
        tf.identity(out, name="y")
    graph_def = g.as_graph_def()
    if bn_kind == "global_normalization":
        graph_def = _global_normalization(graph_def)
    return graph_def, out.op.name, [8] + shape[1:]


KINDS_4D = ("batch_normalization", "hand_written", "fused_v1", "fused_v2", "fused_v3",
            "global_normalization")
CASES = [(k, lin, b) for lin in ("MatMul", "Conv2D", "DepthwiseConv2dNative")
         for k in (KINDS_4D if lin != "MatMul" else KINDS_4D[:2]) for b in ("none", "BiasAdd", "Add")]


@pytest.mark.parametrize("bn_kind,linear,bias", CASES)
def test_folding_is_exact(bn_kind, linear, bias):
    graph_def, bn_out, shape = _bn_graph(bn_kind, linear, bias)
    x_value = RNG.normal(size=shape).astype(np.float32)
    want = _run(graph_def, x_value)
    simple, _ = inf.simplify(graph_def, ["y"], keep=[bn_out])
    folded, result = inf.fold_batch_norm(simple, bn_out, stop=["x", "y"])
    folded = inf.prune(folded, ["y"])
    assert result == {"folded": True, "reason": None, "linear": result["linear"]}
    assert inf.nodes_by_name(folded)[result["linear"]].op == linear
    ops = inf.op_counts(folded)
    # x -> linear(x, W*s) -> BiasAdd(o) -> y: two Consts, nothing else
    assert ops == {"Placeholder": 1, "Const": 2, linear: 1, "BiasAdd": 1, "Identity": 1}, ops
    got = _run(folded, x_value)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.max(np.abs(want)))


@pytest.mark.parametrize("bn_kind", ["batch_normalization", "fused_v3", "global_normalization"])
def test_bn_without_linear_op_stays_one_multiply_add(bn_kind):
    graph_def, bn_out, shape = _bn_graph(bn_kind, None, "none")
    x_value = RNG.normal(size=shape).astype(np.float32)
    simple, _ = inf.simplify(graph_def, ["y"], keep=[bn_out])
    kept, result = inf.fold_batch_norm(simple, bn_out, stop=["x", "y"])
    kept = inf.prune(kept, ["y"])
    assert not result["folded"]
    assert result["reason"] == "no MatMul/Conv2D/DepthwiseConv2dNative before it (its input comes " \
                               "from Placeholder x)"
    assert inf.op_counts(kept) == {"Placeholder": 1, "Const": 2, "Mul": 1, "AddV2": 1, "Identity": 1}
    want = _run(graph_def, x_value)
    np.testing.assert_allclose(_run(kept, x_value), want, rtol=0, atol=1e-5 * np.max(np.abs(want)))


def test_shared_kernel_is_not_folded():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 6], name="x")
        w = tf.constant(RNG.normal(size=(6, C)).astype(np.float32), name="kernel")
        out = _bn("batch_normalization", tf.matmul(x, w))
        tf.identity(out + tf.matmul(x, w), name="y")
    simple, _ = inf.simplify(g.as_graph_def(), ["y"], keep=[out.op.name])
    _, result = inf.fold_batch_norm(simple, out.op.name, stop=["x", "y"])
    assert not result["folded"] and result["reason"] == "the kernel kernel is shared with another op"


def test_switch_with_constant_predicate_leaves_no_dead_branch():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        training = tf.placeholder(tf.bool, name="training")
        counter = tf.Variable(0.0, name="counter")

        def train():
            with tf.control_dependencies([tf.assign_add(counter, 1.0)]):
                return tf.identity(x * 2.0)
        tf.identity(tf.cond(training, train, lambda: x + 1.0), name="y")
    bound = inf.bind_placeholders(g.as_graph_def(), {"training": False})
    simple, totals = inf.simplify(bound, ["y"])
    assert totals["switches_resolved"] >= 1
    assert not [n for n in simple.node if n.op in ("Switch", "Merge", "AssignAdd", "VariableV2")]
    assert _run(simple, np.ones((2, 3), np.float32)).tolist() == [[2.0] * 3] * 2  # 1 + 1


# ---- the article's model, end to end -------------------------------------------------------

@pytest.fixture(scope="module")
def article_report(article_checkpoint, tmp_path_factory):
    prefix, names, _ = article_checkpoint
    out = tmp_path_factory.mktemp("article_out")
    return inf.to_inference(prefix, list(names), str(out / "served"), latency_runs=3), out


def test_tf_graph_util_alone_cannot_freeze_the_article_graph(article_checkpoint):
    _, _, frozen = article_checkpoint
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="AssignMovingAvg.*incompatible with expected float_ref"):
            tf.import_graph_def(frozen, name="")


def test_article_training_graph_converts_and_every_format_verifies(article_report,
                                                                    article_checkpoint):
    report, _ = article_report
    _, (logits, predictions), _ = article_checkpoint
    assert report["ok"]
    assert report["inputs"] == ["x:0"] and report["outputs"] == [logits, predictions]
    assert report["feeds"] == {"training:0": False, "keep_prob:0": 1.0}
    assert report["bn_layers"] == [{"name": "bn_conv", "kind": "article", "folded": True,
                                    "reason": None, "into": "conv1/Conv2D"}]
    assert report["dropouts_removed"] == ["dropout"]
    assert set(report["artefacts"]) == set(formats.FORMATS)
    for name, a in report["artefacts"].items():
        assert a["max_abs_diff"] <= 1e-4, name
        assert a["batch_independent"] and a["deterministic"], name
        assert os.path.exists(a["path"]) and a["bytes"] > 0
    for op in ("Switch", "Merge", "AssignSub", "RandomUniform", "Rsqrt", "VariableV2"):
        assert op in report["ops_before"] and op not in report["ops_after"], op
    assert report["training_ops_left"] == []
    for fmt in ("saved_model", "frozen"):
        diagnosis = doctor.diagnose(report["artefacts"][fmt]["path"])
        assert diagnosis["healthy"] and diagnosis["findings"] == [], (fmt, diagnosis["findings"])


def test_frozen_artefact_holds_no_training_op(article_report):
    report, _ = article_report
    graph_def = tf.GraphDef()
    with open(report["artefacts"]["frozen"]["path"], "rb") as f:
        graph_def.ParseFromString(f.read())
    assert inf.training_only_ops(graph_def) == []
    assert [n.name for n in graph_def.node if n.op == "Placeholder"] == ["x"]
    assert not [n for n in graph_def.node if n.op in inf.FORBIDDEN_OPS]


def test_report_has_the_issue_keys(article_report):
    report, _ = article_report
    assert {"inputs", "outputs", "bn_layers", "dropouts_removed", "ops_before", "ops_after",
            "artefacts", "latency_ms"} <= set(report)
    for a in report["artefacts"].values():
        assert {"path", "max_abs_diff", "batch_independent", "deterministic"} <= set(a)
    assert set(report["latency_ms"]) == set(inf.VARIANTS)
    assert all(set(t) == {"1", "64"} and min(t.values()) > 0 for t in report["latency_ms"].values())
    json.dumps(report)


def test_no_fold_keeps_the_bn_as_multiply_add(article_checkpoint, tmp_path):
    prefix, names, _ = article_checkpoint
    report = inf.to_inference(prefix, list(names), str(tmp_path), formats=["frozen"],
                              fold=False, latency_runs=0)
    assert report["ok"] and report["bn_layers"][0]["folded"] is False
    assert report["bn_layers"][0]["reason"] == "--no-fold"
    # bn_conv as x*s+o (one Mul, one AddV2) + the logits' bias add (AddV2)
    assert report["ops_after"]["Mul"] == 1 and report["ops_after"]["AddV2"] == 1 + 1


# ---- the doctor's suite ----------------------------------------------------------------------

# Broken cases whose artefacts cannot match the original, and how each shows.
EXPECTED_FAILURES = {
    "ema_outside_cond": "update_ops_dropped",      # prediction itself moved the shadows
    "fused_frozen_training_true": "batch_dependent",  # BN normalises with batch statistics
    "saved_model_keep_prob_const": "dropout_kept",  # keep_prob is a Const 0.5
    "nan_variance": "not_finite",
    "negative_variance": "not_finite",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, c in SUITE.items() if c.outputs])
def test_doctor_suite_through_to_inference(name, suite_artefact, tmp_path):  # noqa: F811
    case = SUITE[name]
    report = inf.to_inference(suite_artefact(name), list(case.outputs), str(tmp_path),
                              latency_runs=0)
    assert set(report["artefacts"]) == set(formats.FORMATS)
    how = EXPECTED_FAILURES.get(name)
    assert report["ok"] is (how is None), (name, report["artefacts"])
    if how is None:
        assert report["training_ops_left"] == []
        assert all(b["folded"] or b["reason"] for b in report["bn_layers"])
        for fmt in ("saved_model", "frozen"):  # the doctor reads these two formats
            diagnosis = doctor.diagnose(report["artefacts"][fmt]["path"])
            assert diagnosis["healthy"] and diagnosis["findings"] == [], (fmt, diagnosis["findings"])
    elif how == "update_ops_dropped":
        assert report["update_ops_dropped"] == ["bn/ema/AssignMovingAvg", "bn/ema/AssignMovingAvg_1"]
    elif how == "batch_dependent":
        assert not any(a["batch_independent"] for a in report["artefacts"].values())
        assert report["bn_layers"][0]["folded"] is False
    elif how == "dropout_kept":
        assert report["dropouts_kept"] and not any(a["deterministic"] for a in
                                                   report["artefacts"].values())
    else:
        assert report["original_finite"] is False


# ---- the command line ----------------------------------------------------------------------

def _cli(capsys, *argv):
    code = cli.main(["to-inference", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_runs_and_writes_json(article_checkpoint, tmp_path, capsys):
    prefix, (logits, _), _ = article_checkpoint
    code, out, err = _cli(capsys, prefix, "--outputs", logits, "--out", str(tmp_path / "o"),
                          "--formats", "frozen,onnx", "--latency-runs", "0",
                          "--json", str(tmp_path / "r.json"))
    assert code == 0, out
    # off a terminal: plain progress lines on stderr, one per stage (reference run, 2 written,
    # 2 verified, moved: 6), the last one "6/6 stage (100%) ... done in"
    lines = err.splitlines()
    assert len(lines) == 6 and all(line.startswith("to-inference: ") for line in lines), err
    assert lines[-1].startswith("to-inference: 6/6 stage (100%)") and "done in" in lines[-1]
    assert "BN bn_conv (article): folded into conv1/Conv2D" in out
    assert "verified: every artefact matches the original" in out
    assert set(json.loads((tmp_path / "r.json").read_text())["artefacts"]) == {"frozen", "onnx"}


def test_cli_bad_inputs_one_line_exit_2(article_checkpoint, tmp_path, capsys):
    prefix, (logits, _), _ = article_checkpoint
    out = tmp_path / "o"
    code, _, err = _cli(capsys, prefix, "--outputs", "logitz", "--out", str(out))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("python -m tf1_repro to-inference: error: --outputs: no tensor 'logitz:0' "
                          "in the graph; likely outputs: ")
    assert logits in err
    code, _, err = _cli(capsys, str(tmp_path / "none.ckpt"), "--outputs", logits, "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "no such file or checkpoint prefix" in err
    code, _, err = _cli(capsys, prefix, "--outputs", logits, "--out", str(out), "--feed", "training")
    assert code == 2 and "--feed must be NAME=VALUE" in err
    code, _, err = _cli(capsys, prefix, "--outputs", logits, "--out", str(out), "--formats", "jpeg")
    assert code == 2 and "--formats must be a comma-separated subset" in err
    assert not out.exists()


def test_cli_names_an_ambiguous_placeholder(tmp_path, capsys):
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        flip = tf.placeholder(tf.bool, name="flip")
        w = tf.Variable(np.ones((3, 2), np.float32), name="w")
        tf.identity(tf.matmul(tf.where(flip, -x, x), w), name="y")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, str(tmp_path / "m.ckpt"))
    code, _, err = _cli(capsys, str(tmp_path / "m.ckpt"), "--outputs", "y", "--out",
                        str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1
    assert "cannot tell what placeholder(s) flip (bool, any shape) switch" in err
    code, out, _ = _cli(capsys, str(tmp_path / "m.ckpt"), "--outputs", "y", "--out",
                        str(tmp_path / "o"), "--feed", "flip=false", "--formats", "frozen",
                        "--latency-runs", "0")
    assert code == 0 and "prediction feeds bound: flip:0=False" in out


def test_cli_names_an_op_a_format_cannot_take(tmp_path, capsys):
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 3, 3], name="x")
        w = tf.Variable(np.eye(3, dtype=np.float32), name="w")
        tf.identity(tf.linalg.det(tf.matmul(x, w)), name="y")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, str(tmp_path / "m.ckpt"))
    code, _, err = _cli(capsys, str(tmp_path / "m.ckpt"), "--outputs", "y", "--out",
                        str(tmp_path / "o"), "--formats", "frozen,tflite", "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert err == ("python -m tf1_repro to-inference: error: tflite: op MatrixDeterminant is not a "
                   "TFLite builtin op\n")
    assert not (tmp_path / "o").exists()


# ---- mode switches of other kinds: tf.layers fused on a placeholder, rate, Keras learning phase

def _fused_with_rate():
    from tf1_repro.comparisons.implementations import tf_layers_batch_normalization
    x = tf.placeholder(tf.float32, [None, 4, 4, 2], name="x")
    training = tf.placeholder(tf.bool, name="training")
    rate = tf.placeholder(tf.float32, name="rate")
    h = tf.nn.conv2d(x, tf.Variable(RNG.normal(size=(3, 3, 2, C)).astype(np.float32)),
                     [1, 1, 1, 1], "SAME")
    h = tf_layers_batch_normalization()(h, training=training, fused=True)
    out = tf.identity(tf.reduce_mean(tf.nn.dropout(tf.nn.relu(h), rate=rate), [1, 2]), name="y")
    return out, {training: True, rate: 0.3}


def _keras_learning_phase():
    import tf_keras  # pylint: disable=import-outside-toplevel
    x = tf.placeholder(tf.float32, [None, 4, 4, 2], name="x")
    h = tf_keras.layers.BatchNormalization()(tf_keras.layers.Conv2D(C, 3, padding="same")(x))
    h = tf_keras.layers.Dropout(0.5)(tf_keras.layers.ReLU()(h))
    out = tf.identity(tf_keras.layers.GlobalAveragePooling2D()(h), name="y")
    return out, {tf_keras.backend.learning_phase(): 1}


@pytest.mark.parametrize("build,feeds", [
    (_fused_with_rate, {"training:0": False, "rate:0": 0.0}),
    (_keras_learning_phase, {"keras_learning_phase:0": False}),
])
def test_mode_switches_are_bound_and_the_fused_bn_folds(build, feeds, tmp_path):
    with tf.Graph().as_default() as g:
        out, train_feeds = build()
        x = g.get_tensor_by_name("x:0")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            batch = RNG.normal(3.0, 2.0, (8, 4, 4, 2)).astype(np.float32)
            sess.run([out] + tf.get_collection(tf.GraphKeys.UPDATE_OPS), {x: batch, **train_feeds})
            tf.train.Saver().save(sess, str(tmp_path / "m.ckpt"))
    report = inf.to_inference(str(tmp_path / "m.ckpt"), ["y"], str(tmp_path / "o"),
                              formats=["frozen", "onnx"], latency_runs=0)
    assert report["ok"] and report["feeds"] == feeds
    assert [(b["kind"], b["folded"]) for b in report["bn_layers"]] == [("fused", True)]
    assert report["dropouts_removed"] == ["dropout"] and report["dropouts_kept"] == []
    assert report["training_ops_left"] == []
    assert report["ops_after"] == {"Placeholder": 1, "Const": 3, "Conv2D": 1, "BiasAdd": 1,
                                   "Relu": 1, "Mean": 1, "Identity": 1}


def test_data_file_rows_are_the_check_inputs(article_checkpoint, tmp_path):
    prefix, names, _ = article_checkpoint
    rows = RNG.normal(3.0, 2.0, (5, 4, 4, 2)).astype(np.float32)  # tiled to 16
    report = inf.to_inference(prefix, list(names), str(tmp_path), formats=["tflite"],
                              data={"x": rows}, latency_runs=0)
    assert report["ok"] and report["artefacts"]["tflite"]["max_abs_diff"] <= 1e-4
    with pytest.raises(inf.InferenceError, match=r"--data: no array named x \(has y\)"):
        inf.to_inference(prefix, list(names), str(tmp_path / "o"), data={"y": rows})


def test_cli_exit_1_when_an_artefact_differs(suite_artefact, tmp_path, capsys):  # noqa: F811
    code, out, _ = _cli(capsys, suite_artefact("ema_outside_cond"), "--outputs", "logits:0",
                        "--out", str(tmp_path / "o"), "--formats", "frozen", "--latency-runs", "0")
    assert code == 1
    assert "! update ops that ran at prediction were dropped: bn/ema/AssignMovingAvg, " \
           "bn/ema/AssignMovingAvg_1" in out
    assert out.rstrip().endswith("FAILED: an artefact differs from the original (exit 1)")


def test_missing_converter_package_is_a_one_line_hint(article_checkpoint, tmp_path, monkeypatch,
                                                      capsys):
    prefix, (logits, _), _ = article_checkpoint
    monkeypatch.setitem(__import__("sys").modules, "tf2onnx", None)  # as if not installed
    code, out, err = _cli(capsys, prefix, "--outputs", logits, "--out", str(tmp_path / "o"),
                          "--formats", "frozen,onnx", "--latency-runs", "0", "--quiet")
    assert code == 0
    assert err == formats.INSTALL_HINT["onnx"] + "\n"
    assert f"    onnx         skipped  ({formats.INSTALL_HINT['onnx']})" in out
    assert sorted(os.listdir(tmp_path / "o")) == ["frozen_graph.pb"]


def test_quiet_shows_no_progress(article_checkpoint, tmp_path, capsys):
    prefix, (logits, _), _ = article_checkpoint
    code, out, err = _cli(capsys, prefix, "--outputs", logits, "--out", str(tmp_path / "o"),
                          "--formats", "frozen", "--latency-runs", "2", "--quiet")
    assert code == 0 and err == "", err
    assert "verified: every artefact matches the original" in out


def test_help_names_frozen_graphs_and_quiet():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.choices)  # pylint: disable=protected-access
    text = " ".join(commands.choices["to-inference"].format_help().split())
    assert "a SavedModel directory or a frozen graph (.pb/.pbtxt)" in text
    assert "--quiet" in text and "--quiet" in commands.choices["bench-inference"].format_help()


# ---- failures of one format, bad input, vanilla dropout, channels-first BN ---------------------

@pytest.fixture(scope="module")
def sequence_checkpoint(tmp_path_factory):
    """x [None, 7, 4] -> dense -> tf.layers BN -> conv1d -> BN -> mean -> dense: with the batch
    fixed to 1 at conversion, the dense layer's reshape bakes it in and the interpreter cannot
    resize to batch 16 (XNNPack fails to reshape); with a dynamic batch it runs."""
    from tf_keras.src.legacy_tf_layers import convolutional, core  # pylint: disable=import-outside-toplevel
    from tf1_repro.comparisons.implementations import tf_layers_batch_normalization
    folder = tmp_path_factory.mktemp("sequence")
    with tf.Graph().as_default() as g, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.layers deprecation
        x = tf.placeholder(tf.float32, [None, 7, 4], name="x")
        training = tf.placeholder(tf.bool, name="training")
        bn = tf_layers_batch_normalization()
        h = bn(core.dense(x, 6), training=training)
        h = bn(convolutional.conv1d(h, 5, 3, padding="same"), training=training)
        tf.identity(core.dense(tf.reduce_mean(h, axis=1), 3), name="y")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, str(folder / "m.ckpt"))
    return str(folder / "m.ckpt")


def test_a_sequence_model_converts_to_tflite_with_a_dynamic_batch(sequence_checkpoint, tmp_path):
    report = inf.to_inference(sequence_checkpoint, ["y"], str(tmp_path / "o"),
                              formats=["frozen", "tflite"], latency_runs=0)
    tflite = report["artefacts"]["tflite"]
    assert tflite["error"] is None and tflite["max_abs_diff"] <= 1e-4, tflite
    assert tflite["batch_independent"] and report["ok"]


def test_an_artefact_that_cannot_run_is_reported_and_not_written(sequence_checkpoint, tmp_path,
                                                                   capsys, monkeypatch):
    # the converter's fallback (batch fixed to 1) gives a model the interpreter cannot resize
    monkeypatch.setattr(formats, "TFLITE_BATCHES", (1,))
    out = tmp_path / "o"
    report = inf.to_inference(sequence_checkpoint, ["y"], str(out), formats=["frozen", "tflite"],
                              latency_runs=0)
    tflite = report["artefacts"]["tflite"]
    assert tflite["error"].startswith("cannot run: RuntimeError: XNNPack delegate failed to "
                                      "reshape"), tflite
    assert "\n" not in tflite["error"] and tflite["path"] is None
    assert report["artefacts"]["frozen"]["error"] is None
    assert report["artefacts"]["frozen"]["max_abs_diff"] <= 1e-4
    assert not report["ok"]
    assert sorted(os.listdir(out)) == ["frozen_graph.pb"]  # verified in the scratch folder first
    code, text, _ = _cli(capsys, sequence_checkpoint, "--outputs", "y", "--out", str(tmp_path / "c"),
                         "--formats", "tflite,frozen", "--latency-runs", "3", "--quiet")
    assert code == 1
    assert "    tflite       FAILED   cannot run: RuntimeError: XNNPack delegate failed" in text
    assert text.rstrip().endswith("FAILED: tflite could not be verified and was not written "
                                  "(exit 1)")
    assert sorted(os.listdir(tmp_path / "c")) == ["frozen_graph.pb"]


def test_bad_data_and_out_are_one_line_exit_2_before_any_work(article_checkpoint, tmp_path, capsys):
    prefix, (logits, _), _ = article_checkpoint  # x: (?, 4, 4, 2)
    out = tmp_path / "o"
    cases = {
        "wrong_shape": ({"x": np.zeros((5, 4, 4, 3), np.float32)},
                        "--data: array x must have shape (?, 4, 4, 2) to feed input x:0, got "
                        "(5, 4, 4, 3)"),
        "wrong_rank": ({"x": np.zeros((5, 32), np.float32)},
                       "--data: array x must have shape (?, 4, 4, 2) to feed input x:0, got (5, 32)"),
        "no_rows": ({"x": np.zeros((0, 4, 4, 2), np.float32)},
                    "--data: array x must have at least one row (shape (N, ...) with N >= 1), got "
                    "shape (0, 4, 4, 2)"),
        "text": ({"x": np.array(["a", "b"])}, "--data: array x must be numeric or bool, got dtype <U1"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        code, _, err = _cli(capsys, prefix, "--outputs", logits, "--out", str(out), "--data",
                            str(tmp_path / f"{name}.npz"))
        assert (code, err) == (2, f"python -m tf1_repro to-inference: error: {message}\n"), name
    taken = tmp_path / "taken"
    taken.write_text("mine")
    code, _, err = _cli(capsys, prefix, "--outputs", logits, "--out", str(taken))
    assert (code, err) == (2, f"python -m tf1_repro to-inference: error: --out must be a directory "
                              f"(new or without the artefacts' names), got '{taken}': an existing "
                              f"file\n")
    assert taken.read_text() == "mine" and not out.exists()


def _vanilla_checkpoint(folder):
    from tf1_repro.layers.dropout import vanilla_dropout  # pylint: disable=import-outside-toplevel
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 6], name="x")
        training = tf.placeholder(tf.bool, name="training")
        keep_prob = tf.placeholder(tf.float32, name="keep_prob")
        w = tf.Variable(RNG.normal(size=(6, 3)).astype(np.float32), name="w")
        h = vanilla_dropout(tf.nn.relu(x), keep_prob, training, seed=1)
        y = tf.identity(tf.matmul(h, w), name="y")
        value = RNG.normal(size=(16, 6)).astype(np.float32)
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, str(folder / "m.ckpt"))
            want = {k: sess.run(y, {x: value, training: False, keep_prob: k}) for k in (0.8, 1.0)}
    return str(folder / "m.ckpt"), value, want


def test_vanilla_dropout_keep_prob_must_be_fed_and_is_served(tmp_path, capsys):
    prefix, value, want = _vanilla_checkpoint(tmp_path)
    code, _, err = _cli(capsys, prefix, "--outputs", "y", "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1
    assert err == ("python -m tf1_repro to-inference: error: --feed: placeholder keep_prob drives "
                   "the vanilla dropout vanilla_dropout/cond/vanilla_dropout_train (training "
                   "multiplies by the 0/1 mask, prediction by keep_prob), so keep_prob=1.0 would "
                   "serve outputs 1/keep_prob too large; pass its training value with --feed "
                   "keep_prob=VALUE (e.g. --feed keep_prob=0.8)\n")
    assert not (tmp_path / "o").exists()
    report = inf.to_inference(prefix, ["y"], str(tmp_path / "o"), feeds={"keep_prob": 0.8},
                              formats=["frozen"], latency_runs=0)
    assert report["ok"] and report["feeds"] == {"training:0": False, "keep_prob:0": 0.8}
    assert report["dropouts_scaled"] == [{"name": "vanilla_dropout/cond/vanilla_dropout_train",
                                          "keep_prob": 0.8}]
    assert report["dropouts_removed"] == [] and report["dropouts_kept"] == []
    got = formats.open_frozen(report["artefacts"]["frozen"]["path"], ["y:0"]).run({"x:0": value})[0]
    np.testing.assert_allclose(got, want[0.8], rtol=0, atol=1e-6 * np.max(np.abs(want[0.8])))
    # what keep_prob=1.0 served: 1/0.8 times the vanilla prediction
    np.testing.assert_allclose(want[1.0] * 0.8, want[0.8], rtol=1e-5, atol=1e-6)


def _channels_first(kind):
    """x [N, C, 3, 3] -> BN over axis 1 (fused NCHW, or hand-written with (1, C, 1, 1) statistics)."""
    x = tf.placeholder(tf.float32, [None, C, 3, 3], name="x")
    gamma, beta, mean, var = (tf.constant(v) for v in _stats(C))
    if kind == "fused":
        out = tf.raw_ops.FusedBatchNormV3(x=x * 2.0, scale=gamma, offset=beta, mean=mean,
                                          variance=var, epsilon=EPS, is_training=False,
                                          data_format="NCHW")[0]
    else:
        gamma, beta, mean, var = (tf.reshape(t, [1, C, 1, 1]) for t in (gamma, beta, mean, var))
        out = (x * 2.0 - mean) / tf.sqrt(var + EPS) * gamma + beta
    return tf.identity(out, name="y")


@pytest.mark.parametrize("kind", ["fused", "hand_written"])
def test_channels_first_bn_is_kept_for_its_true_reason(kind, tmp_path):
    with tf.Graph().as_default() as g:
        _channels_first(kind)
        with tf.Session(graph=g) as sess:
            frozen = tf.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["y"])
    path = tmp_path / "frozen.pb"
    path.write_bytes(frozen.SerializeToString())
    report = inf.to_inference(str(path), ["y"], str(tmp_path / "o"), formats=["frozen"],
                              latency_runs=0)
    assert [(b["folded"], b["reason"]) for b in report["bn_layers"]] == [(False, inf.CHANNELS_FIRST)]
    assert inf.CHANNELS_FIRST.startswith("channels-first layout (statistics along axis 1")
    assert report["ok"] and report["training_ops_left"] == []
    if kind == "fused":  # kept as it is: a prediction op, not a training-only one
        assert report["ops_after"]["FusedBatchNormV3"] == 1


def test_fused_bn_is_training_only_when_it_normalises_with_batch_statistics():
    def graph_def(is_training):
        with tf.Graph().as_default() as g:
            x = tf.placeholder(tf.float32, [None, 3, 3, C], name="x")
            gamma, beta, mean, var = (tf.constant(v) for v in _stats(C))
            tf.raw_ops.FusedBatchNormV3(x=x, scale=gamma, offset=beta, mean=mean, variance=var,
                                        epsilon=EPS, is_training=is_training, name="bn")
        return g.as_graph_def()
    assert inf.training_only_ops(graph_def(False)) == []
    assert inf.training_only_ops(graph_def(True)) == ["FusedBatchNormV3 bn"]


def test_a_variant_that_cannot_run_while_timed_is_a_report_line(tmp_path):
    """TF2 control flow (If ops reading resource variables): the frozen graph cannot run. The
    frozen artefact fails, and the latency of the variants that cannot run is None with the
    reason, not a traceback; the report is not ok (exit 1)."""
    with tf.Graph().as_default() as g, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with support.tf2_control_flow():
            x = tf.placeholder(tf.float32, [None, C], name="x")
            training = tf.placeholder_with_default(False, [], name="training")
            tf.identity(tf.layers.batch_normalization(x, training=training, name="bn"), name="y")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / "m.ckpt"))
    report = inf.to_inference(prefix, ["y"], str(tmp_path / "o"), formats=["frozen"], latency_runs=1)
    reason = "cannot run: InvalidArgumentError: Return readvariableop -> ReadVariableOp:value:0 is not found."
    assert report["artefacts"]["frozen"]["error"] == reason and not report["ok"]
    assert report["latency_ms"]["frozen_unfolded"] is None and report["latency_ms"]["folded"] is None
    assert report["latency_errors"] == {"frozen_unfolded": reason, "folded": reason}
    assert set(report["latency_ms"]["original"]) == {"1", "64"}
    text = inf.format_report(report)
    assert f"    folded                   -         -  {reason}" in text.splitlines()
    assert text.splitlines()[-1] == "FAILED: frozen could not be verified and was not written (exit 1)"


def test_a_random_original_cannot_be_verified(tmp_path):
    """Dropout always on (a constant rate, pix2pix style): the original graph's output is random,
    so no artefact can be compared with it: "cannot verify", never "DIFFERS"."""
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, C], name="x")
        w = tf.Variable(RNG.normal(size=(C, 3)).astype(np.float32), name="w")
        tf.identity(tf.nn.dropout(tf.matmul(x, w), rate=0.5), name="y")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / "m.ckpt"))
    report = inf.to_inference(prefix, ["y"], str(tmp_path / "o"), formats=["frozen"], latency_runs=0)
    assert report["original_deterministic"] is False and not report["ok"]
    text = inf.format_report(report)
    assert "DIFFERS" not in text
    assert text.splitlines()[-1] == (
        "FAILED: cannot verify: the original graph's output is random (not deterministic): the same "
        f"batch run twice gives other values; a dropout is on at inference: see python -m tf1_repro "
        f"doctor {prefix}; to-inference --fix-training-mode serves it without dropout (exit 1)")
    fixed = inf.to_inference(prefix, ["y"], str(tmp_path / "f"), formats=["frozen"], latency_runs=0,
                             fix_training_mode=True)
    assert fixed["ok"] and fixed["fixed"][0]["what"].startswith("dropout (rate 0.5) on at inference")


# ---- relative differences (issue 19 item 7): outputs ~1e8, max |diff| beside its relative value

def test_relative_difference_is_beside_the_absolute_one(tmp_path):
    """Logits around 1e8 (float32 spacing 8 there): a folded BN moves them by a few units, which
    reads alarming as max |diff| but is ~1e-7 of the outputs. max_rel_diff is max |diff| over
    max(1, max |original output|), the scale the tolerance uses, per batch size and output."""
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 6], name="x")
        w = (RNG.normal(size=(6, C)) * 1e8).astype(np.float32)
        gamma, beta, mean, var = (tf.constant(v) for v in _stats(C))
        h = tf.nn.batch_normalization(tf.matmul(x, tf.constant(w, name="kernel")), mean, var, beta,
                                      gamma, EPS)
        tf.identity(h, name="logits")
        path = str(tmp_path / "big.pb")
        with open(path, "wb") as f:
            f.write(g.as_graph_def().SerializeToString())
    report = inf.to_inference(path, ["logits"], str(tmp_path / "o"), formats=["frozen"],
                              latency_runs=0)
    assert report["ok"] and [b["folded"] for b in report["bn_layers"]] == [True]
    entry = report["artefacts"]["frozen"]
    # the same check batches (batch 1 and 16, seed 0), both graphs run here
    expected_abs, expected_rel = 0.0, 0.0
    runs = {}
    for which, pb in (("original", path), ("frozen", entry["path"])):
        graph_def = tf.GraphDef()
        with open(pb, "rb") as f:
            graph_def.ParseFromString(f.read())
        with tf.Graph().as_default() as graph:
            tf.import_graph_def(graph_def, name="")
            batches = inf.make_batches(graph, ["x:0"], None, (1, 16))
            with tf.Session(graph=graph) as sess:
                runs[which] = {n: sess.run("logits:0", b).astype(np.float64)
                               for n, b in batches.items()}
    for n, want in runs["original"].items():
        d = float(np.max(np.abs(runs["frozen"][n] - want)))
        expected_abs = max(expected_abs, d)
        expected_rel = max(expected_rel, d / max(1.0, float(np.max(np.abs(want)))))
    assert np.max(np.abs(runs["original"][16])) > 1e7  # outputs are large
    assert entry["max_abs_diff"] == pytest.approx(expected_abs)
    assert entry["max_abs_diff"] > 1.0  # alarming as an absolute number
    assert entry["max_rel_diff"] == pytest.approx(expected_rel)
    assert 0 < entry["max_rel_diff"] <= report["tolerance"]
    (line,) = [ln for ln in inf.format_report(report).splitlines() if ln.startswith("    frozen")]
    assert f"max |diff| {expected_abs:.3g} (rel {expected_rel:.1e})" in line
    assert json.loads(json.dumps(report))["artefacts"]["frozen"]["max_rel_diff"] == \
        entry["max_rel_diff"]


def test_outputs_the_same_for_every_check_input_are_named(tmp_path):
    """A softmax over equal logits (every column of the dense kernel the same: an untrained net's
    flat output) is 1/3 for every input, and one over logits scaled by 1e-7 is 1/3 within 1e-7:
    an artefact that gave 1/3 whatever its input would pass the comparison on both (tolerance
    1e-4 x max(1, 1/3) = 1e-4), which the report says (ok stays what the comparison found)."""
    with tf.Graph().as_default() as g, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        x = tf.placeholder(tf.float32, [None, C], name="x")
        training = tf.placeholder_with_default(False, [], name="training")
        h = tf.layers.batch_normalization(x, training=training, name="bn")
        kernel = tf.get_variable("kernel", [C, 3], initializer=tf.constant_initializer(0.5))
        varying = kernel * np.arange(1.0, 1.0 + 3 * C).reshape(C, 3).astype(np.float32)
        tf.nn.softmax(tf.matmul(h, kernel), name="flat")
        tf.nn.softmax(tf.matmul(h, 1e-7 * varying), name="nearly")
        tf.identity(tf.matmul(h, varying), name="varies")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / "m.ckpt"))
    outputs = ["flat", "nearly", "varies"]
    report = inf.to_inference(prefix, outputs, str(tmp_path / "o"), formats=["frozen"],
                              latency_runs=0)
    assert report["ok"] and report["constant_outputs"] == ["flat:0", "nearly:0"]
    assert report["check_inputs"] == "N(0, 1)"
    assert report["artefacts"]["frozen"]["max_abs_diff"] <= 1e-6
    assert ("  ! flat:0, nearly:0: one value (within the tolerance) for every check input, so "
            "comparing them shows little (an artefact that gave that value whatever its input "
            "would pass); verify with real inputs: --data FILE.npz") in \
        inf.format_report(report).splitlines()
    # rows of --data that differ: the same finding, and the advice is about those rows
    rows = np.random.default_rng(0).normal(size=(40, C)).astype(np.float32)
    given = inf.to_inference(prefix, outputs, str(tmp_path / "o2"), formats=["frozen"],
                             latency_runs=0, data={"x": rows})
    assert given["constant_outputs"] == ["flat:0", "nearly:0"] and given["check_inputs"] == "--data"
    assert inf.format_report(given).splitlines()[-2].endswith(
        "; these were the --data rows: try rows that should give other outputs")
    # one --data row, tiled into every check batch: the inputs are the same too, nothing is claimed
    one_row = inf.to_inference(prefix, outputs, str(tmp_path / "o1"), formats=["frozen"],
                               latency_runs=0, data={"x": rows[:1]})
    assert one_row["ok"] and one_row["constant_outputs"] == []
