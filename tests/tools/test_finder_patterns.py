"""The finder's registered patterns and analysis units, one small graph each."""

import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tf1_repro.tools import finder
from tf1_repro.tools.finder import (decay, dropout, estimator, grouping, layer_mode, parameters,
                                    patterns, updates)
from tf1_repro.tools.finder.context import GraphContext

BN_NAMES = ["fused", "global_normalization", "nn_batch_normalization", "centred", "gamma_first"]
DROPOUT_NAMES = ["keras", "stateless", "tf2_select", "tf1_floor", "hand-written"]


def _stats(c=3):
    g = tf.get_variable("gamma", [c])
    b = tf.get_variable("beta", [c], initializer=tf.zeros_initializer())
    m = tf.get_variable("moving_mean", [c], trainable=False)
    v = tf.get_variable("moving_variance", [c], trainable=False, initializer=tf.ones_initializer())
    return g, b, m, v


def _claims(ctx, op):
    """Names of every BN pattern whose match accepts ``op``."""
    return [p.name for p in patterns.BN_PATTERNS if op.type in p.root_ops and p.match(ctx, op)]


def _bn_graph(form):
    """A graph holding one BN of ``form``; returns (graph, the op the pattern starts from)."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 4, 4, 3], name="x")
        g, b, m, v = _stats()
        if form == "fused":
            y = tf.nn.fused_batch_norm(x, g, b, m, v, epsilon=1e-3, is_training=False)[0]
            return graph, y.op
        if form == "nn_batch_normalization":
            y = tf.nn.batch_normalization(x, m, v, b, g, 1e-3)
        elif form == "nn_batch_normalization_center_false":
            y = tf.nn.batch_normalization(x, m, v, None, g, 1e-3)
        elif form == "nn_batch_normalization_scale_false":
            y = tf.nn.batch_normalization(x, m, v, b, None, 1e-3)
        elif form == "centred":
            y = (x - m) / tf.sqrt(v + 1e-3) * g + b
        elif form == "centred_rsqrt":
            y = (x - m) * tf.rsqrt(v + 1e-3) * g + b
        elif form == "centred_pow":
            y = (x - m) * tf.pow(v + 1e-3, -0.5) * g + b
        elif form == "gamma_first":
            y = g * (x - m) / tf.sqrt(v + 1e-3) + b
        else:
            raise ValueError(form)
    roots = [op for op in graph.get_operations() if op.type in ("Rsqrt", "Sqrt", "Pow")]
    assert len(roots) == 1 and y is not None
    return graph, roots[0]


@pytest.mark.parametrize("form,pattern", [
    ("fused", "fused"),
    ("nn_batch_normalization", "nn_batch_normalization"),
    ("nn_batch_normalization_center_false", "nn_batch_normalization"),
    ("nn_batch_normalization_scale_false", "nn_batch_normalization"),
    ("centred", "centred"),
    ("centred_rsqrt", "centred"),
    ("centred_pow", "centred"),
    ("gamma_first", "gamma_first"),
])
def test_each_bn_pattern_claims_its_form_alone(form, pattern):
    graph, op = _bn_graph(form)
    ctx = GraphContext(graph)
    assert _claims(ctx, op) == [pattern]
    norm = patterns.match_bn(ctx, op)
    assert norm.pattern == pattern and norm.x.name == "x:0" and norm.eps == pytest.approx(1e-3)
    assert [s.op.name for s in norm.mean] == ["moving_mean"]
    assert [s.op.name for s in norm.var] == ["moving_variance"]
    if "scale_false" not in form:
        assert [s.op.name for s in norm.scale] == ["gamma"]
    if "center_false" not in form:
        assert [s.op.name for s in norm.offset] == ["beta"]


def test_global_normalization_pattern():
    graph_def = tf.GraphDef()
    g = tf.Graph()
    with g.as_default():
        tf.placeholder(tf.float32, [None, 2, 2, 3], name="x")
        for name in ("m", "v", "beta", "gamma"):
            tf.constant(np.ones(3, np.float32), name=name)
    graph_def.node.extend(g.as_graph_def().node)
    node = graph_def.node.add(name="bn", op="BatchNormWithGlobalNormalization",
                              input=["x", "m", "v", "beta", "gamma"])
    node.attr["T"].type = tf.float32.as_datatype_enum
    node.attr["variance_epsilon"].f = 1e-4
    node.attr["scale_after_normalization"].b = False
    ctx = GraphContext(finder.as_graph(graph_def))
    op = ctx.op("bn")
    assert _claims(ctx, op) == ["global_normalization"]
    norm = patterns.match_bn(ctx, op)
    assert norm.scale == () and [s.op.name for s in norm.offset] == ["beta"]  # no scale_after_...


def test_a_root_without_a_centred_input_is_no_bn():
    graph = tf.Graph()
    with graph.as_default():
        v = tf.placeholder(tf.float32, [3], name="v")
        tf.identity(tf.sqrt(v + 1e-3) * 2.0)  # a root, but nothing is normalised
        tf.sqrt(v + 2.0)  # epsilon out of (0, 1)
    ctx = GraphContext(graph)
    assert all(_claims(ctx, op) == [] for op in graph.get_operations())


def _dropout_graph(form):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        kp = tf.placeholder(tf.float32, [], name="keep_prob")
        if form == "keras":
            training = tf.placeholder(tf.bool, [], name="keras_learning_phase")
            tf.cond(training, lambda: tf.nn.dropout(x, rate=0.5), lambda: tf.identity(x))
        elif form == "stateless":
            tf.nn.experimental.stateless_dropout(x, rate=0.5, seed=[1, 2])
        elif form == "tf2_select":
            tf.nn.dropout(x, rate=0.5)
        elif form == "tf1_floor":
            with tf.name_scope("dropout"):
                (x / kp) * tf.floor(kp + tf.random_uniform(tf.shape(x)))
        elif form == "hand-written":
            x * tf.floor(kp + tf.random_uniform(tf.shape(x)))
        else:
            raise ValueError(form)
    return graph


@pytest.mark.parametrize("form,kind", [("keras", "keras"), ("stateless", "tf.nn.dropout"),
                                       ("tf2_select", "tf.nn.dropout"),
                                       ("tf1_floor", "tf.nn.dropout"),
                                       ("hand-written", "hand-written")])
def test_each_dropout_pattern_claims_its_form_alone(form, kind):
    ctx = GraphContext(_dropout_graph(form))
    (rand,) = [op for op in ctx.ops if op.type in finder.RANDOM_OPS]
    match = dropout.mask_application(ctx, rand)
    assert (match.pattern, match.kind) == (form, kind)
    mask_region = {rand.name} | {o.name for o in ctx.ops if o is not match.apply_op and
                                 rand.name in ctx.ancestors(o) and o.type in dropout.MASK_OPS}
    claims = [p.name for p in patterns.DROPOUT_PATTERNS if match.apply_op.type in p.root_ops and
              p.match(ctx, rand, match.apply_op, mask_region)]
    assert claims == [form]
    (found,) = finder.find(ctx.graph).dropouts
    assert found.kind == kind and found.input == "x:0"


def test_the_registry_lists_every_pattern_module():
    folder = os.path.dirname(patterns.__file__)
    modules = sorted(f[:-3] for f in os.listdir(folder)
                     if f.endswith(".py") and not f.startswith("_"))
    assert sorted(patterns.BN_PATTERN_MODULES + patterns.DROPOUT_PATTERN_MODULES) == modules
    assert [p.name for p in patterns.BN_PATTERNS] == BN_NAMES
    assert [p.name for p in patterns.DROPOUT_PATTERNS] == DROPOUT_NAMES
    for p in patterns.BN_PATTERNS + patterns.DROPOUT_PATTERNS:
        assert p.rule and p.root_ops, p.name  # every pattern states its rule
    with pytest.raises(ValueError, match="registered twice"):
        patterns.register_bn_pattern("fused", ())(lambda ctx, op: None)


def _ema_graph(**ema):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        mean, variance = tf.nn.moments(x, [0])
        step = tf.train.get_or_create_global_step()
        m = tf.get_variable("moving_mean", [3], trainable=False)
        v = tf.get_variable("moving_variance", [3], trainable=False)
        if ema.get("num_updates"):
            avg = tf.train.ExponentialMovingAverage(0.99, num_updates=step)
            with tf.control_dependencies([avg.apply([m])]):
                pass
            tf.identity(avg.average(m))
        from tensorflow.python.training import moving_averages  # pylint: disable=import-outside-toplevel
        moving_averages.assign_moving_average(m, mean, 0.9, zero_debias=ema.get("debias", False))
        moving_averages.assign_moving_average(v, variance, 0.9, zero_debias=False)
    return graph


def test_decay_reading_of_an_ema_update_and_zero_debias():
    ctx = GraphContext(_ema_graph(debias=True))
    (write_m,) = updates.writes_of(ctx, "moving_mean")
    (write_v,) = updates.writes_of(ctx, "moving_variance")
    reading = decay.read_decay(ctx, write_m, "moving_mean")
    assert reading.decay == pytest.approx(0.9) and reading.debiased
    assert decay.read_decay(ctx, write_v, "moving_variance").debiased is False
    summary = decay.summarise(ctx, (("moving_mean", write_m), ("moving_variance", write_v)))
    assert summary.decay == pytest.approx(0.9) and summary.zero_debias is True
    assert estimator.variance_estimator(ctx, summary.readings, "moving_variance") == "biased"


def test_schedule_cap_is_read_from_an_ema_with_num_updates():
    graph = tf.Graph()
    with graph.as_default():
        step = tf.train.get_or_create_global_step()
        w = tf.get_variable("w", [3])
        tf.train.ExponentialMovingAverage(0.997, num_updates=step).apply([w])
    ctx = GraphContext(graph)
    (write,) = updates.writes_of(ctx, "w/ExponentialMovingAverage")  # the initializer left out
    assert decay.update_schedule_cap(write) == pytest.approx(0.997)
    assert decay.read_decay(ctx, write, "w/ExponentialMovingAverage").cap == pytest.approx(0.997)
    summary = decay.summarise(ctx, (("w/ExponentialMovingAverage", write),))
    assert summary.decay is None and summary.decay_cap == pytest.approx(0.997)
    plain = _ema_graph()
    assert all(decay.update_schedule_cap(op) is None for op in plain.get_operations())


def test_bessel_corrected_variance_is_unbiased():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        _, variance = tf.nn.moments(x, [0])
        n = tf.cast(tf.shape(x)[0], tf.float32)
        value = variance * n / (n - 1.0)
    assert estimator.estimator_of(GraphContext(graph), value) == "unbiased"


def test_grouping_joins_a_conds_two_branches_into_one_layer_with_one_call():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 4, 4, 3], name="x")
        training = tf.placeholder(tf.bool, [], name="training")
        g, b, m, v = _stats()
        tf.cond(training, lambda: tf.nn.fused_batch_norm(x, g, b, epsilon=1e-3)[0],
                lambda: tf.nn.fused_batch_norm(x, g, b, m, v, epsilon=1e-3, is_training=False)[0])
    ctx = GraphContext(graph)
    norms = [n for n in (patterns.match_bn(ctx, op) for op in ctx.ops) if n]
    (group,) = grouping.group(ctx, norms)
    assert len(group.norms) == 2 and len(grouping.call_sites(ctx, group.norms)) == 1
    assert grouping.call_output(ctx, group.norms).op.type == "Merge"
    params = parameters.read_parameters(ctx, group)
    assert (params.gamma, params.beta, params.moving_mean, params.moving_variance) == \
        ("gamma", "beta", "moving_mean", "moving_variance")
    mode = layer_mode.layer_mode(ctx, group.norms)
    assert (mode.mode.name, mode.used, mode.batch_only) == ("training", True, False)


def test_update_location_in_update_ops_and_separate_op():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        tf.layers.batch_normalization(x, training=True, name="bn")
        v = tf.get_variable("other", [3], trainable=False)
        assigner = tf.group(tf.assign(v, tf.zeros([3])), name="assigner")
    ctx = GraphContext(graph)
    norms = [n for n in (patterns.match_bn(ctx, op) for op in ctx.ops) if n]
    writes = updates.stat_writes(ctx, ["bn/moving_mean", "bn/moving_variance"])
    place = updates.locate(ctx, writes, norms, norms[0].y, None)
    assert place.location == "UPDATE_OPS" and place.notes == ()
    other = updates.stat_writes(ctx, ["other"])
    assert updates.locate(ctx, other, norms, norms[0].y, None).location == \
        f"separate-op:{assigner.name}"


def test_switch_path_is_memoised_with_the_same_answers():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        training = tf.placeholder(tf.bool, [], name="training")
        out = tf.cond(training, lambda: x * 2.0, lambda: x + 1.0)
    ctx = GraphContext(graph)
    branch = out.op.inputs[1]  # a Merge's inputs: the false branch's, then the true branch's
    first = ctx.switch_path(branch)
    assert [(p.op.name, port) for p, port in first] == [("cond/pred_id", 1)]
    assert [port for _, port in ctx.switch_path(out.op.inputs[0])] == [0]
    assert ctx.switch_path(branch) is first and ctx.switch_path(out) == []
