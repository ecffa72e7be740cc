"""The ``--fix-training-mode`` passes, one small TF1 GraphDef each: ``bn_training_to_inference``
(fused BN with is_training true; ``tf.nn.moments`` feeding ``tf.nn.batch_normalization``) and
``remove_dropout``; expectations computed by NumPy."""

import types

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph.graphdef import nodes_by_name
from tf1_repro.tools.inference import pipeline
from tf1_repro.tools.inference.context import PassContext
from tf1_repro.tools.inference.training_mode import BNFix, DropoutFix, batch_moments_edges

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 2, 2, 3)).astype(np.float32) * 3 + 1
GAMMA, BETA = np.float32([0.5, 1.0, 2.0]), np.float32([0.1, -0.2, 0.3])
MEAN, VAR = np.float32([1.0, 0.5, -1.0]), np.float32([4.0, 2.0, 0.5])
EPS = 1e-3


def _numpy_bn(x):
    return GAMMA * (x - MEAN) / np.sqrt(VAR + np.float32(EPS)) + BETA


def _run(graph_def, x):
    with tf.Graph().as_default() as g:
        tf.import_graph_def(graph_def, name="")
        with tf.Session(graph=g) as sess:
            return sess.run("y:0", {"x:0": x})


def _one(name, graph_def, ctx):
    out, records = pipeline.run((name,), graph_def, ctx)
    return out, records[0]


def _fused_graph(is_training):
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 2, 2, 3], name="x")
        y, _, _ = tf.nn.fused_batch_norm(x, tf.constant(GAMMA), tf.constant(BETA),
                                         mean=tf.constant(MEAN, name="bn/moving_mean"),
                                         variance=tf.constant(VAR, name="bn/moving_variance"),
                                         epsilon=EPS, is_training=is_training, name="bn")
        tf.identity(y, name="y")
    return g.as_graph_def()


def test_fused_bn_in_training_mode_normalises_with_its_moving_statistics():
    graph_def = _fused_graph(True)
    fused = next(n.name for n in graph_def.node if n.op.startswith("FusedBatchNorm"))
    assert not np.allclose(_run(graph_def, X), _numpy_bn(X), atol=1e-3)  # batch statistics
    fix = BNFix("bn", fused=fused, moving_mean=MEAN, moving_variance=VAR, mean_source="bn/moving_mean",
                variance_source="bn/moving_variance")
    ctx = PassContext(outputs=("y:0",), bn_fixes=(fix,))
    out, record = _one("bn_training_to_inference", graph_def, ctx)
    assert record.changed == (fused,) and not nodes_by_name(out)[fused].attr["is_training"].b
    np.testing.assert_allclose(_run(out, X), _numpy_bn(X), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_run(out, X[:1]), _numpy_bn(X[:1]), rtol=1e-5, atol=1e-5)
    assert ctx.state.fixed == [{"layer": "bn", "what": f"fused BN {fused}: is_training true -> false, "
                                "normalises with its moving statistics (bn/moving_mean, "
                                "bn/moving_variance)"}]


def test_a_bn_in_inference_mode_is_left_alone():
    graph_def = _fused_graph(False)
    fused = next(n.name for n in graph_def.node if n.op.startswith("FusedBatchNorm"))
    ctx = PassContext(outputs=("y:0",), bn_fixes=(BNFix("bn", fused=fused, moving_mean=MEAN * 0,
                                                        moving_variance=VAR),))
    out, record = _one("bn_training_to_inference", graph_def, ctx)
    assert record.changed == () and ctx.state.fixed == [] and out == graph_def


def _moments_graph():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 2, 2, 3], name="x")
        mean, variance = tf.nn.moments(x, [0, 1, 2])
        y = tf.nn.batch_normalization(x, mean, variance, tf.constant(BETA), tf.constant(GAMMA), EPS)
        tf.identity(y, name="y")
    graph_def = g.as_graph_def()
    rsqrt = next(n.name for n in graph_def.node if n.op == "Rsqrt")
    return graph_def, types.SimpleNamespace(bn_ops=[rsqrt], input="x:0")


def test_moments_bn_reads_the_moving_statistics_instead():
    graph_def, bn = _moments_graph()
    variance_edge, mean_edge = batch_moments_edges(graph_def, bn)
    by_name = nodes_by_name(graph_def)
    assert by_name[variance_edge[0]].input[variance_edge[1]].startswith("moments/Squeeze_1")
    assert by_name[mean_edge[0]].input[mean_edge[1]].startswith("moments/Squeeze")
    fix = BNFix("batchnorm", variance_edge=variance_edge, mean_edge=mean_edge, moving_mean=MEAN,
                moving_variance=VAR, mean_source="m", variance_source="v",
                writes=({"variable": "m", "node": "update_m"},))
    ctx = PassContext(outputs=("y:0",), bn_fixes=(fix,))
    out, record = _one("bn_training_to_inference", graph_def, ctx)
    assert sorted(record.changed) == sorted({variance_edge[0], mean_edge[0]})
    np.testing.assert_allclose(_run(out, X), _numpy_bn(X), rtol=1e-5, atol=1e-5)
    assert ctx.state.fixed[0]["what"] == ("normalised with the moments of its input -> with its "
                                          "moving statistics (m, v); writes removed: m (update_m)")


def test_a_bn_without_statistics_is_reported_not_fixed():
    graph_def, bn = _moments_graph()
    variance_edge, mean_edge = batch_moments_edges(graph_def, bn)
    ctx = PassContext(outputs=("y:0",), bn_fixes=(BNFix("batchnorm", variance_edge=variance_edge,
                                                        mean_edge=mean_edge, missing="gone"),))
    out, _ = _one("bn_training_to_inference", graph_def, ctx)
    assert out == graph_def and ctx.state.fixed == []
    assert ctx.state.not_fixed == [{"layer": "batchnorm", "why": "BN in training mode left as it is: gone"}]


def test_remove_dropout_makes_a_dropout_on_at_inference_the_identity():
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 2, 2, 3], name="x")
        dropped = tf.nn.dropout(x, rate=0.5)
        tf.identity(dropped, name="y")
    graph_def = g.as_graph_def()
    random_op = next(n.name for n in graph_def.node if n.op == "RandomUniform")
    assert (_run(graph_def, X) == 0).any()
    fix = DropoutFix("drop", dropped.op.name, "x:0", (random_op,), "rate 0.5")
    ctx = PassContext(outputs=("y:0",), dropout_fixes=(fix,))
    out, record = _one("remove_dropout", graph_def, ctx)
    assert record.changed == (dropped.op.name,)
    np.testing.assert_array_equal(_run(out, X), X)
    assert ctx.state.fixed == [{"layer": "drop", "what": "dropout (rate 0.5) on at inference -> "
                                                         "removed (the identity of x:0)"}]
    again, record = _one("remove_dropout", pipeline.run(("prune",), out, ctx)[0], ctx)
    assert record.changed == ()  # its random op is gone: nothing left to remove
