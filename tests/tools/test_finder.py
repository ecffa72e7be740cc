"""The structural finder on every legacy builder, on Keras and tf.layers inside TF1 graphs, on
graphs restored from a checkpoint's .meta and on frozen graphs (Const inputs)."""

import warnings

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from tensorflow.core.framework import graph_pb2

import bn_builders as lb
from tf1_repro.graph import artefacts
from tf1_repro.tools import finder
from tf1_repro.comparisons.implementations import tf_layers_batch_normalization

ARTICLE_NAMES = dict(gamma="bn/gamma", beta="bn/beat", moving_mean="bn/bn/moments/Squeeze/ema",
                     moving_variance="bn/bn/moments/Squeeze_1/ema")
PLAIN_NAMES = dict(gamma="bn/gamma", beta="bn/beta", moving_mean="bn/moving_mean",
                   moving_variance="bn/moving_variance")
TF_LAYERS = dict(gamma="batch_normalization/gamma", beta="batch_normalization/beta",
                 moving_mean="batch_normalization/moving_mean",
                 moving_variance="batch_normalization/moving_variance")
ARTICLE = dict(ARTICLE_NAMES, name="bn", kind="article", epsilon=1e-5, decay=0.9,
               update_location="output", updates_at_prediction=False, zero_debias=False,
               statistics_used_at_prediction=True, variance_estimator="biased", stat_shape=(4,),
               mode=("training", "Placeholder"))
PLAIN = dict(ARTICLE, **PLAIN_NAMES)

# builder -> the one layer's expected fields (python-bool builders are called with True, False)
CASES = {
    "article": ARTICLE,
    "gamma_random_normal": dict(ARTICLE, beta="bn/beta"),
    "gamma_truncated_normal": dict(ARTICLE, beta="bn/beta"),
    "gamma_glorot": dict(ARTICLE, beta="bn/beta"),
    "decay_half_eps_1e3": dict(ARTICLE, epsilon=1e-3, decay=0.5),
    "zero_debiased": dict(PLAIN, zero_debias=True),
    "bessel_corrected": dict(PLAIN, variance_estimator="unbiased"),
    "trainable_moving_stats": PLAIN,
    "ema_outside_cond": dict(ARTICLE, beta="bn/beta", kind="batch_normalization",
                             updates_at_prediction=True),
    "update_ops_only": dict(PLAIN, kind="batch_normalization", update_location="UPDATE_OPS"),
    "custom_collection": dict(PLAIN, kind="batch_normalization", update_location="collection:bn_updates"),
    "two_stage_assigner": dict(PLAIN, kind="batch_normalization", moving_mean="bn/bn/batch_mean/ema",
                               moving_variance="bn/bn/batch_variance/ema",
                               update_location="separate-op:bn/assigner", variance_estimator=None),
    "local_stats_at_prediction": dict(PLAIN, kind="batch_normalization", update_location="UPDATE_OPS",
                                      statistics_used_at_prediction=False),
    "batch_stats_at_inference": dict(PLAIN, kind="batch_normalization",
                                     statistics_used_at_prediction=False),
    "batch_stats_only": dict(PLAIN, kind="batch_normalization", moving_mean=None, moving_variance=None,
                             decay=None, update_location=None, updates_at_prediction=None,
                             zero_debias=None, statistics_used_at_prediction=False,
                             variance_estimator=None, stat_shape=None, mode=None),
    "stats_1c_sonnet": dict(name="batch_norm", kind="batch_normalization", gamma=None,
                            beta="batch_norm/beta", moving_mean="batch_norm/moving_mean",
                            moving_variance="batch_norm/moving_variance", epsilon=1e-3, decay=0.999,
                            update_location="UPDATE_OPS", stat_shape=(1, 4)),
    "renorm_like": dict(PLAIN, kind="batch_normalization"),
    "python_bool_shared": dict(PLAIN, kind="batch_normalization", mode=("training", "python_bool")),
    "class_style": dict(PLAIN, kind="batch_normalization", mode=("training", "python_bool")),
    "tf_layers_non_fused": dict(TF_LAYERS, name="batch_normalization", kind="batch_normalization",
                                epsilon=1e-3, decay=0.99, update_location="UPDATE_OPS",
                                variance_estimator="biased", statistics_used_at_prediction=True),
    "tf_layers_renorm": dict(TF_LAYERS, name="batch_normalization", kind="batch_normalization",
                             epsilon=1e-5, decay=0.9, update_location="UPDATE_OPS",
                             variance_estimator=None, statistics_used_at_prediction=True),
    "keras_layer_in_graph": dict(
        TF_LAYERS, name="batch_normalization", kind="batch_normalization", epsilon=1e-5, decay=0.9,
        update_location="separate-op:batch_normalization/cond_2/Merge,batch_normalization/cond_3/Merge",
        variance_estimator="biased", stat_shape=(4,), statistics_used_at_prediction=True),
    "tf_layers_fused": dict(TF_LAYERS, name="batch_normalization", kind="fused", epsilon=1e-3,
                            decay=0.99, update_location="UPDATE_OPS", variance_estimator="unbiased",
                            statistics_used_at_prediction=True),
}
PYTHON_BOOL = {"python_bool_shared", "python_bool_separate", "class_style"}


def _build(name, shape=(None, 4)):
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        x = tf.placeholder(tf.float32, shape, name="x")
        func = getattr(lb, name)
        if name in PYTHON_BOOL:
            func(x, True)
            func(x, False)
        else:
            func(x, tf.placeholder(tf.bool, [], name="training"))
    return graph


def _check(layer, expected):
    for key, value in expected.items():
        got = getattr(layer, key)
        if key == "mode":
            got = None if got is None else (got.role, got.op)
        if key in ("epsilon", "decay") and value is not None:
            assert got == pytest.approx(value, rel=1e-6), (key, got)
        else:
            assert got == value, (key, got, value)


@pytest.mark.parametrize("name", list(CASES))
def test_every_legacy_builder(name):
    shape = (None, 2, 2, 4) if name == "tf_layers_fused" else (None, 4)
    found = finder.find(_build(name, shape))
    assert len(found.bn_layers) == 1, finder.describe(found)
    layer = found.bn_layers[0]
    _check(layer, CASES[name])
    assert layer.input == "x:0"
    if layer.mode is not None and layer.mode.op == "Placeholder":
        assert found.prediction_feeds() == {"training:0": False}


def test_update_ops_are_named_exactly():
    layer = finder.find(_build("article")).bn_layers[0]
    assert layer.update_ops == ["bn/cond/ema/AssignMovingAvg", "bn/cond/ema/AssignMovingAvg_1"]
    assert layer.output == "bn/batchnorm/add_1:0"
    assert layer.bn_ops == ["bn/batchnorm/Rsqrt"]


def test_python_bools_with_separate_variables_are_two_layers():
    """tf.layers called twice without reuse: the training layer's statistics are updated but
    never read; the prediction layer's are read but never updated."""
    train, predict = finder.find(_build("python_bool_separate")).bn_layers
    assert (train.name, predict.name) == ("batch_normalization", "batch_normalization_1")
    assert train.statistics_used_at_prediction is False and train.update_location == "UPDATE_OPS"
    assert "updated in training but never read" in train.notes[0]
    assert predict.moving_mean == "batch_normalization_1/moving_mean"
    assert predict.update_ops == [] and predict.update_location is None


def _keras_graph(fused_input):
    import tf_keras  # pylint: disable=import-outside-toplevel
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 4, 4, 3] if fused_input else [None, 3], name="images")
        training = tf.placeholder(tf.bool, [], name="is_train")
        h = tf_keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-4)(x, training=training)
        tf_keras.layers.Dropout(0.25)(h, training=training)
    return graph


@pytest.mark.parametrize("fused", [True, False])
def test_keras_layers_in_a_tf1_graph(fused):
    found = finder.find(_keras_graph(fused))
    (layer,), (drop,) = found.bn_layers, found.dropouts
    assert (layer.kind, layer.name) == ("fused" if fused else "batch_normalization", "batch_normalization")
    assert layer.epsilon == pytest.approx(1e-4) and layer.decay == pytest.approx(0.9)
    assert layer.variance_estimator == ("unbiased" if fused else "biased")
    # a Keras layer's updates never reach UPDATE_OPS: only the layer's own update ops run them
    assert layer.update_location.startswith("separate-op:batch_normalization/")
    assert (layer.mode.name, layer.mode.op) == ("is_train", "Placeholder")
    assert drop.keep_prob == {"param": "rate", "source": "const", "name": drop.keep_prob["name"],
                              "value": pytest.approx(0.25)}
    assert drop.convention == "inverted" and drop.mode.name == "is_train"
    assert found.prediction_feeds() == {"is_train:0": False}


def test_keras_learning_phase_is_a_mode_input():
    import tf_keras  # pylint: disable=import-outside-toplevel
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        tf_keras.layers.BatchNormalization()(x)
    found = finder.find(graph)
    mode = found.bn_layers[0].mode
    assert (mode.name, mode.op, mode.default) == ("keras_learning_phase", "PlaceholderWithDefault", False)
    assert found.prediction_feeds() == {"keras_learning_phase:0": False}


def _freeze(graph, outputs):
    """tf.graph_util alone (it cannot freeze the article's graph: its EMA assign sits inside the
    output's tf.cond)."""
    with graph.as_default(), tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        return tf.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), outputs)


@pytest.mark.parametrize("name", ["update_ops_only", "tf_layers_fused", "stats_1c_sonnet"])
def test_frozen_graphs_keep_their_layers_with_const_statistics(name):
    shape = (None, 2, 2, 4) if name == "tf_layers_fused" else (None, 4)
    graph = _build(name, shape)
    live = finder.find(graph).bn_layers[0]
    frozen = finder.find(_freeze(graph, [live.output.split(":")[0]])).bn_layers[0]
    for key in ("gamma", "beta", "moving_mean", "moving_variance"):
        if getattr(live, key) is None:
            assert getattr(frozen, key) is None
            continue
        # convert_variables_to_constants names the Const after the variable (its read op)
        assert getattr(frozen, key) in (getattr(live, key), getattr(live, key) + "/read"), key
    assert frozen.epsilon == pytest.approx(live.epsilon)
    assert frozen.statistics_used_at_prediction is True
    assert frozen.update_ops == []


def test_frozen_fused_layer_fixed_in_training_mode():
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        x = tf.placeholder(tf.float32, [None, 2, 2, 3], name="x")
        h = tf_layers_batch_normalization()(x, training=tf.constant(True), fused=True)
        tf.identity(h, name="out")
    layer = finder.find(_freeze(graph, ["out"])).bn_layers[0]
    assert (layer.mode.op, layer.mode.default) == ("attr:is_training", True)
    assert layer.statistics_used_at_prediction is False


def test_graph_restored_from_a_meta_file_matches_the_live_graph(tmp_path):
    graph = _build("tf_layers_non_fused")
    with graph.as_default(), tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        prefix = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"), global_step=3)
    live = finder.find(graph).to_dict()
    restored = artefacts.load(prefix + ".meta").find().to_dict()
    assert restored == live
    assert artefacts.load(str(tmp_path)).find().to_dict() == live


def test_batch_norm_with_global_normalization_from_an_old_graph_def():
    """The op was removed from new graphs (GraphDef version 9) but old GraphDefs still hold it."""
    graph_def = graph_pb2.GraphDef()
    graph_def.versions.producer = 8
    with tf.Graph().as_default() as g:
        tf.placeholder(tf.float32, [None, 2, 2, 3], name="x")
        for name in ("m", "v", "beta", "gamma"):
            tf.constant(np.ones(3, np.float32), name=name)
    graph_def.node.extend(g.as_graph_def().node)
    node = graph_def.node.add(name="bn", op="BatchNormWithGlobalNormalization",
                              input=["x", "m", "v", "beta", "gamma"])
    node.attr["T"].type = tf.float32.as_datatype_enum
    node.attr["variance_epsilon"].f = 1e-4
    node.attr["scale_after_normalization"].b = True
    (layer,) = finder.find(graph_def).bn_layers
    assert (layer.kind, layer.gamma, layer.moving_variance) == ("global_normalization", "gamma", "v")
    assert layer.epsilon == pytest.approx(1e-4) and layer.output == "bn:0"


def test_hand_written_layer_and_dropout():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        g = tf.get_variable("g", [3])
        b = tf.get_variable("b", [3], initializer=tf.zeros_initializer())
        m = tf.get_variable("mm", [3], trainable=False)
        v = tf.get_variable("mv", [3], trainable=False)
        y = (x - m) / tf.sqrt(v + 1e-3) * g + b
        kp = tf.placeholder_with_default(1.0, [], name="kp")
        out = y / kp * tf.floor(kp + tf.random_uniform(tf.shape(y)))
    found = finder.find(graph)
    (layer,), (drop,) = found.bn_layers, found.dropouts
    assert (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance) == ("g", "b", "mm", "mv")
    assert layer.epsilon == pytest.approx(1e-3) and layer.output == y.name
    assert drop.output == out.name and drop.input == y.name and drop.convention == "inverted"
    assert drop.keep_prob == {"param": "keep_prob", "source": "placeholder_with_default",
                              "name": "kp", "value": None}
    assert found.prediction_feeds() == {"kp:0": 1.0}


@pytest.mark.parametrize("builder,convention,param,source", [
    ("dropout_inverted", "inverted", "keep_prob", "placeholder"),
    ("dropout_vanilla", "vanilla", "keep_prob", "placeholder"),
    ("dropout_double_scaled", "inverted", "keep_prob", "placeholder"),
])
def test_dropout_builders(builder, convention, param, source):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        getattr(lb, builder)(x, tf.placeholder(tf.float32, [], name="keep_prob"),
                             tf.placeholder(tf.bool, [], name="training"))
    (drop,) = finder.find(graph).dropouts
    assert (drop.convention, drop.keep_prob["param"], drop.keep_prob["source"],
            drop.keep_prob["name"]) == (convention, param, source, "keep_prob")
    assert drop.input == "x:0"


def test_dropout_with_a_const_keep_prob():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        tf.nn.dropout(x, keep_prob=0.5)
    (drop,) = finder.find(graph).dropouts
    assert drop.keep_prob["source"] == "const" and drop.convention == "inverted"
    assert finder.find(graph).prediction_feeds() == {}


def test_nothing_is_found_in_a_graph_without_layers():
    graph = tf.Graph()
    with graph.as_default():
        tf.nn.relu(tf.placeholder(tf.float32, [None, 4]))
    found = finder.find(graph)
    assert (found.bn_layers, found.dropouts, found.mode_inputs) == ([], [], [])


def test_a_bad_graph_argument_is_refused():
    with pytest.raises(TypeError, match=r"finder.find: graph must be a tf.Graph, GraphDef or "
                                        r"MetaGraphDef, got int"):
        finder.find(42)


def test_finding_runs_nothing_and_changes_no_variable():
    graph = _build("article")
    with graph.as_default(), tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        variables = tf.global_variables()
        before = sess.run(variables)
        count = len(graph.get_operations())
        finder.find(graph)
        assert len(graph.get_operations()) == count
        for a, b in zip(before, sess.run(variables)):
            assert np.array_equal(a, b)


def test_find_command_prints_the_layers_and_writes_json(tmp_path):
    import json  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel

    import support  # pylint: disable=import-outside-toplevel
    graph = _build("article")
    with graph.as_default(), tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        tf.train.Saver().save(sess, str(tmp_path / "ckpt" / "model.ckpt"))
    out = tmp_path / "layers.json"
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "find", str(tmp_path / "ckpt"),
                           "--json", str(out)], capture_output=True, text=True, cwd=support.ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "BN bn [article] eps=1e-05 decay=0.9 mode=training (Placeholder) updates=output" in done.stdout
    assert "prediction feeds: training:0=False" in done.stdout
    payload = json.loads(out.read_text())
    assert payload["format"] == "checkpoint" and payload["prediction_feeds"] == {"training:0": False}
    assert payload["bn_layers"][0]["moving_mean"] == "bn/bn/moments/Squeeze/ema"
    missing = subprocess.run([sys.executable, "-m", "tf1_repro", "find", str(tmp_path / "nope")],
                             capture_output=True, text=True, cwd=support.ROOT, timeout=300)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == (f"python -m tf1_repro find: {tmp_path / 'nope'}: no such file "
                                      f"or checkpoint prefix")


def test_channels_first_fused_layer_reports_its_channel_axis():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 3, 2, 2], name="x")
        scale, offset = tf.constant(np.ones(3, np.float32)), tf.constant(np.zeros(3, np.float32))
        tf.nn.fused_batch_norm(x, scale, offset, mean=tf.constant(np.zeros(3, np.float32)),
                               variance=tf.constant(np.ones(3, np.float32)), is_training=False,
                               data_format="NCHW")
    (layer,) = finder.find(graph).bn_layers
    assert layer.channel_axis == 1 and layer.statistics_used_at_prediction is True
    assert finder.find(_build("article")).bn_layers[0].channel_axis == -1


def test_a_layer_shared_by_two_towers_keeps_one_call_consistent():
    """Siamese / multi-tower code reuses one BN's variables: one layer, its input and output from
    the same call, every call listed."""
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        training = tf.placeholder(tf.bool, [], name="training")
        for name in ("a", "b"):
            x = tf.placeholder(tf.float32, [None, 3], name=name)
            with tf.variable_scope("tower", reuse=tf.AUTO_REUSE):
                tf_layers_batch_normalization()(x, training=training, name="bn")
    (layer,) = finder.find(graph).bn_layers
    assert (layer.input, layer.output) == ("a:0", "tower/bn/batchnorm/add_1:0")
    assert layer.call_sites == [["a:0", "tower/bn/batchnorm/add_1:0"],
                                ["b:0", "tower_1/bn/batchnorm/add_1:0"]]
    assert "shared by 2 calls" in layer.notes[0]


def test_channels_first_keras_layer_reports_axis_1():
    import tf_keras  # pylint: disable=import-outside-toplevel
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 4, 5], name="x")
        tf_keras.layers.BatchNormalization(axis=1)(x, training=tf.placeholder(tf.bool, [], name="t"))
    (layer,) = finder.find(graph).bn_layers
    assert (layer.channel_axis, layer.stat_shape) == (1, (4,))


def test_tf_layers_center_false_is_found():
    """Without beta, tf.nn.batch_normalization adds ``-mean * inv`` instead of ``beta - mean * inv``."""
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        x = tf.placeholder(tf.float32, [None, 6], name="x")
        tf_layers_batch_normalization()(x, training=tf.placeholder(tf.bool, [], name="training"),
                                        center=False, momentum=0.5, name="bn")
    (layer,) = finder.find(graph).bn_layers
    assert (layer.gamma, layer.beta, layer.moving_mean) == ("bn/gamma", None, "bn/moving_mean")
    assert layer.epsilon == pytest.approx(1e-3) and layer.decay == pytest.approx(0.5)
    assert layer.output == "bn/batchnorm/add_1:0"


def test_gamma_before_the_division_slim_style():
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` with (1, 1, 1, C) variables and updates
    written as ``assign(s, s * d + v * (1 - d))`` in UPDATE_OPS."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 4, 4, 3], name="x")
        training = tf.placeholder(tf.bool, [], name="is_training_pl")
        with tf.variable_scope("conv1_bn"):
            shape = [1, 1, 1, 3]
            beta = tf.get_variable("beta", shape, initializer=tf.zeros_initializer())
            gamma = tf.get_variable("gamma", shape, initializer=tf.ones_initializer())
            mm = tf.get_variable("moving_mean", shape, initializer=tf.zeros_initializer(), trainable=False)
            mv = tf.get_variable("moving_var", shape, initializer=tf.ones_initializer(), trainable=False)
            mean, var = tf.nn.moments(x, [0, 1, 2], keep_dims=True)
            tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, tf.assign(mm, mm * 0.95 + mean * (1 - 0.95)))
            tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, tf.assign(mv, mv * 0.95 + var * (1 - 0.95)))
            m, v = tf.cond(training, lambda: (mean, var), lambda: (mm, mv))
            y = gamma * (x - m) / tf.sqrt(v + 1e-4) + beta
    (layer,) = finder.find(graph).bn_layers
    assert (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance) == (
        "conv1_bn/gamma", "conv1_bn/beta", "conv1_bn/moving_mean", "conv1_bn/moving_var")
    assert layer.decay == pytest.approx(0.95) and layer.epsilon == pytest.approx(1e-4)
    assert (layer.update_location, layer.stat_shape, layer.channel_axis) == ("UPDATE_OPS", (1, 1, 1, 3), -1)
    assert layer.output == y.name and layer.statistics_used_at_prediction is True


def test_vanilla_dropout_keep_prob_is_not_bound_to_one():
    """Prediction computes x * keep_prob: the training value must be fed, 1.0 would be wrong."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        lb.dropout_vanilla(x, tf.placeholder(tf.float32, [], name="dropout_keep"),
                           tf.placeholder(tf.bool, [], name="phase"))
    found = finder.find(graph)
    assert found.dropouts[0].scales_at_prediction is True
    assert found.prediction_feeds() == {"phase:0": False}
    assert [m.name for m in found.unbound_mode_inputs()] == ["dropout_keep"]
    inverted = tf.Graph()
    with inverted.as_default():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        lb.dropout_inverted(x, tf.placeholder(tf.float32, [], name="kp"), None)
    assert finder.find(inverted).prediction_feeds() == {"kp:0": 1.0}


def test_updates_riding_on_the_output_contrib_style():
    """``updates_collections=None``: ``out = tf.cond(training, force_updates(y), y)``."""
    from tensorflow.python.training import moving_averages  # pylint: disable=import-outside-toplevel
    graph = tf.Graph()
    with graph.as_default(), tf.variable_scope("d_bn1"):
        x = tf.placeholder(tf.float32, [None, 4, 4, 3], name="x")
        training = tf.placeholder(tf.bool, [], name="is_training")
        gamma = tf.get_variable("gamma", [3], initializer=tf.random_normal_initializer(1.0, 0.02))
        beta = tf.get_variable("beta", [3], initializer=tf.zeros_initializer())
        mm = tf.get_variable("moving_mean", [3], initializer=tf.zeros_initializer(), trainable=False)
        mv = tf.get_variable("moving_variance", [3], initializer=tf.ones_initializer(), trainable=False)
        y, m, v = tf.cond(training, lambda: tf.nn.fused_batch_norm(x, gamma, beta, epsilon=1e-5),
                          lambda: (tf.nn.fused_batch_norm(x, gamma, beta, mm, mv, epsilon=1e-5,
                                                          is_training=False)[0], mm, mv))

        def force():
            with tf.control_dependencies([
                    moving_averages.assign_moving_average(mm, m, 0.9, zero_debias=False),
                    moving_averages.assign_moving_average(mv, v, 0.9, zero_debias=False)]):
                return tf.identity(y)
        out = tf.cond(training, force, lambda: y)
    (layer,) = finder.find(graph).bn_layers
    assert (layer.output, layer.update_location) == (out.name, "output")
    assert layer.decay == pytest.approx(0.9) and layer.variance_estimator == "unbiased"


def test_restore_assigns_added_by_artefacts_are_not_updates(tmp_path):
    """``Artefact.open()`` restores through assign ops of its own; they are not BN updates."""
    graph = _build("tf_layers_renorm")
    with graph.as_default(), tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
    live = finder.find(graph).bn_layers[0]
    opened, sess = artefacts.load(str(tmp_path)).open()
    with sess:
        restored = finder.find(opened).bn_layers[0]
    assert (restored.gamma, restored.beta) == (live.gamma, live.beta) == (
        "batch_normalization/gamma", "batch_normalization/beta")
    assert restored.update_ops == live.update_ops


def test_pow_minus_half_and_a_decay_schedule():
    """``(var + eps) ** -0.5`` normalises like rsqrt; ``ExponentialMovingAverage(0.99,
    num_updates=step)`` decays by min(0.99, (1 + step) / (10 + step)): decay None, cap 0.99."""
    graph = tf.Graph()
    with graph.as_default(), tf.variable_scope("bn"):
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        training = tf.placeholder(tf.bool, [], name="training")
        step = tf.train.get_or_create_global_step()
        mean, var = tf.nn.moments(x, [0])
        ema = tf.train.ExponentialMovingAverage(0.99, num_updates=step)

        def train():
            with tf.control_dependencies([ema.apply([mean, var])]):
                return tf.identity(mean), tf.identity(var)
        m, v = tf.cond(training, train, lambda: (ema.average(mean), ema.average(var)))
        y = (x - m) * tf.pow(v + 1e-3, -0.5)
    (layer,) = finder.find(graph).bn_layers
    assert layer.output == y.name and layer.epsilon == pytest.approx(1e-3)
    assert (layer.decay, layer.decay_cap) == (None, pytest.approx(0.99))
    assert any("schedule" in note for note in layer.notes)


@pytest.fixture
def control_flow_v2():
    """TF2 control flow (If ops), as a TF 2.x script that only calls disable_eager_execution()
    builds it; restored afterwards (the test process otherwise runs control flow v1)."""
    import support  # pylint: disable=import-outside-toplevel
    with support.tf2_control_flow():
        yield


def test_tf2_control_flow_if_ops(control_flow_v2):  # pylint: disable=redefined-outer-name,unused-argument
    """Non-fused BN switched by an If is read through the branch functions; a fused BN inside the
    branch functions is not analysed, and a note says so instead of silence."""
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        training = tf.placeholder_with_default(False, [], name="training")
        x = tf.placeholder(tf.float32, [None, 6], name="x")
        tf_layers_batch_normalization()(x, training=training, name="bn")
        images = tf.placeholder(tf.float32, [None, 4, 4, 3], name="images")
        tf_layers_batch_normalization()(images, training=training, fused=True, name="bnf")
    assert any(op.type in ("If", "StatelessIf") for op in graph.get_operations())
    found = finder.find(graph)
    (layer,) = found.bn_layers
    assert (layer.name, layer.moving_mean, layer.statistics_used_at_prediction) == (
        "bn", "bn/moving_mean", True)
    assert (layer.mode.name, layer.update_location, layer.decay) == ("training", "UPDATE_OPS", None)
    assert any(n.startswith("TF2 control flow: the update runs inside") for n in layer.notes)
    assert any(n.startswith("TF2 control flow: If op bnf/cond holds FusedBatchNormV3")
               for n in found.notes)
    assert found.prediction_feeds() == {"training:0": False}
