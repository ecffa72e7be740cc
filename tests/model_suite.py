"""A suite of legacy TF1 artefacts made by code, each with the findings ``doctor`` must report.

API (for any test that needs saved legacy models)::

    from model_suite import SUITE, suite_artefact   # suite_artefact: a pytest fixture

    def test_x(suite_artefact):
        path = suite_artefact("tf_layers_unwired")       # built on first use, then cached
        case = SUITE["tf_layers_unwired"]
        case.format            # "checkpoint" | "meta_graph" | "saved_model" | "frozen_graph"
        case.expected_findings # frozenset of doctor finding ids (errors, warnings and infos)
        case.healthy           # True when no expected finding is an error
        case.twin              # name of the healthy twin of a broken case (None for healthy ones)
        case.contrast          # for a healthy case with a warning or info: a case like it without
                               # that finding (None otherwise)
        case.inputs            # {tensor name: shape with None for the batch}; {} without a graph
        case.outputs           # prediction tensor names, e.g. ("logits:0",); () without a graph
        case.feeds             # the mode inputs prediction binds (placeholders, with or without
                               # default), e.g. {"training:0": False, "keep_prob:0": 1.0}

``SUITE[name].build(out_dir) -> path`` makes the artefact in an empty directory
and returns the path to give ``doctor`` (a checkpoint prefix, a ``.meta`` file,
a SavedModel directory or a ``.pb`` file). ``suite_artefact`` builds each case
at most once per test run (``shared_build``: several test modules, and several
pytest-xdist workers, share the files).

Every model is a tiny net written the way TF1 code was: a ``tf.placeholder``
for x, a ``tf.placeholder(tf.bool, name="training")`` (or a
``placeholder_with_default`` in exported graphs), a dense layer
``x[N, 6] -> fc1 (8 units, no bias) -> BN -> relu`` or a conv layer
``x[N, 4, 4, 2] -> conv1 3x3 (4 filters) -> BN -> relu -> mean over H, W``,
optional ``tf.nn.dropout(h, keep_prob)``, then ``logits`` (3 classes);
trained with plain SGD on inputs drawn from N(3, 2^2), so the BN moving
statistics, once updated, are far from their initial values (mean 0, var 1 or 0).
The global step is saved with the weights.

The tf-keras case uses what ``tf.keras.layers.BatchNormalization`` is with
``TF_USE_LEGACY_KERAS=1`` on TF 2.21 (tf_keras' ``BatchNormalization``), called
in a TF1 graph: its updates are in ``layer.updates`` only, never in
``UPDATE_OPS``, so wiring ``UPDATE_OPS`` into the train op leaves the moving
statistics at 0 and 1 (checked on TF 2.21 / tf-keras 2.21).
"""

import dataclasses
import os
import warnings
from typing import Callable, Dict, FrozenSet, Optional, Tuple

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from tensorflow.python.training import moving_averages

from tf1_repro.layers import article
from tf1_repro.comparisons import export as demo_export
from tf1_repro.comparisons.implementations import (keras_batch_normalization_class,
                                              tf_layers_batch_normalization)
from tf1_repro.model import ArticleModel

from shared_build import built_once, shared_folder

FEATURES = 6
IMAGE = (4, 4, 2)
CLASSES = 3
BATCH = 16
LEARNING_RATE = 0.1
PREFIX = "model.ckpt"
NO_DEFAULT = "mode-placeholder-without-default"  # every training graph here has one


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[str], str]
    format: str
    expected_findings: FrozenSet[str]
    healthy: bool
    outputs: Tuple[str, ...]
    inputs: Dict[str, tuple]
    feeds: Dict[str, object]
    twin: Optional[str]
    about: str
    contrast: Optional[str] = None


# ---- the nets

def _dense(h, units, name):
    with tf.variable_scope(name):
        kernel = tf.get_variable("kernel", [h.shape[-1], units],
                                 initializer=tf.glorot_uniform_initializer(seed=1))
        return tf.matmul(h, kernel)


def _conv3x3(h, filters, name):
    with tf.variable_scope(name):
        kernel = tf.get_variable("kernel", [3, 3, h.shape[-1], filters],
                                 initializer=tf.glorot_uniform_initializer(seed=2))
        return tf.nn.conv2d(h, kernel, strides=[1, 1, 1, 1], padding="SAME")


def _net(input_shape, bn, training, keep_prob=None):
    """x -> fc1|conv1 -> bn(h, training) -> relu -> [mean over H, W] -> [dropout] -> logits."""
    x = tf.placeholder(tf.float32, (None,) + tuple(input_shape), name="x")
    conv = len(input_shape) == 3
    h = _conv3x3(x, 4, "conv1") if conv else _dense(x, 8, "fc1")
    h = tf.nn.relu(bn(h, training))
    if conv:
        h = tf.reduce_mean(h, axis=[1, 2])
    if keep_prob is not None:
        h = tf.nn.dropout(h, keep_prob=keep_prob, seed=3)
    with tf.variable_scope("out"):
        bias = tf.get_variable("bias", [CLASSES], initializer=tf.zeros_initializer())
    return x, tf.identity(_dense(h, CLASSES, "out") + bias, name="logits")


# ---- BN layers, BN(h, training) -> output, as legacy code wrote them

def _tf_layers(fused):
    def bn(h, training):
        with tf.variable_scope("block1"):
            return tf_layers_batch_normalization()(h, training=training, fused=fused)
    return bn


def _article_layer(h, training):
    return article.bn_layer(None, h, training)


def _ema_outside_cond(h, training):
    """The bug: ema.apply built outside tf.cond, so it runs at prediction too."""
    with tf.variable_scope("bn"):
        channels = h.shape[-1]
        gamma = tf.get_variable("gamma", channels, initializer=tf.ones_initializer())
        beta = tf.get_variable("beta", channels, initializer=tf.zeros_initializer())
        mean, var = tf.nn.moments(h, list(range(len(h.shape) - 1)), name="moments")
        ema = tf.train.ExponentialMovingAverage(0.9, name="ema")
        with tf.control_dependencies([ema.apply([mean, var])]):
            m, v = tf.cond(tf.equal(training, True),
                           lambda: (tf.identity(mean), tf.identity(var)),
                           lambda: (tf.identity(ema.average(mean)), tf.identity(ema.average(var))))
        return tf.nn.batch_normalization(h, m, v, beta, gamma, 1e-5)


def _hand_written(trainable=False, zero_debias=False, variance_init=1.0, scope="bn"):
    """Hand-written BN with assign_moving_average inside the cond's training branch."""
    def bn(h, training):
        with tf.variable_scope(scope):
            channels = h.shape[-1]
            gamma = tf.get_variable("gamma", channels, initializer=tf.ones_initializer())
            beta = tf.get_variable("beta", channels, initializer=tf.zeros_initializer())
            moving_mean = tf.get_variable("moving_mean", channels, trainable=trainable,
                                          initializer=tf.zeros_initializer())
            moving_var = tf.get_variable("moving_variance", channels, trainable=trainable,
                                         initializer=tf.constant_initializer(variance_init))
            mean, var = tf.nn.moments(h, list(range(len(h.shape) - 1)), name="moments")

            def train():
                with tf.control_dependencies([
                        moving_averages.assign_moving_average(moving_mean, mean, 0.9,
                                                              zero_debias=zero_debias),
                        moving_averages.assign_moving_average(moving_var, var, 0.9,
                                                              zero_debias=zero_debias)]):
                    return tf.identity(mean), tf.identity(var)
            m, v = tf.cond(tf.equal(training, True), train,
                           lambda: (tf.identity(moving_mean), tf.identity(moving_var)))
            return tf.nn.batch_normalization(h, m, v, beta, gamma, 1e-3)
    return bn


def _keras(wire_layer_updates):
    """tf-keras BN called in a TF1 graph; its updates reach the train op only if wired by hand."""
    def bn(h, training):
        layer = keras_batch_normalization_class()(momentum=0.9, name="bn")
        out = layer(h, training=training)
        if wire_layer_updates:
            for op in layer.updates:
                tf.add_to_collection("layer_updates", op)
        return out
    return bn


# ---- training and saving

def _batches(input_shape, steps, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        yield (rng.normal(3.0, 2.0, (BATCH,) + tuple(input_shape)).astype(np.float32),
               rng.integers(0, CLASSES, BATCH))


def _train(out_dir, input_shape, bn, *, steps=20, wire="UPDATE_OPS", keep_prob=None,
           training_default=False, edit=None, meta=True):
    """Build, train ``steps`` SGD steps (training True, keep_prob ``keep_prob``) and save.

    wire: "UPDATE_OPS" (control dependencies on the collection), "layer_updates"
    (on the keras layer's own updates) or None. edit(sess, variables_by_name)
    runs after training, before saving. Returns the checkpoint prefix.
    """
    with tf.Graph().as_default() as graph:
        if training_default:
            training = tf.placeholder_with_default(False, [], name="training")
        else:
            training = tf.placeholder(tf.bool, name="training")
        kp = tf.placeholder(tf.float32, name="keep_prob") if keep_prob is not None else None
        x, logits = _net(input_shape, bn, training, kp)
        labels = tf.placeholder(tf.int64, [None], name="labels")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                             logits=logits))
        global_step = tf.train.get_or_create_global_step()
        deps = tf.get_collection(tf.GraphKeys.UPDATE_OPS if wire == "UPDATE_OPS" else wire) \
            if wire else []
        with tf.control_dependencies(deps):
            train_op = tf.train.GradientDescentOptimizer(LEARNING_RATE).minimize(
                loss, global_step=global_step)
        tf.add_to_collection(tf.GraphKeys.TRAIN_OP, train_op)
        saver = tf.train.Saver()
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for xb, yb in _batches(input_shape, steps):
                feed = {x: xb, labels: yb, training: True}
                if kp is not None:
                    feed[kp] = keep_prob
                sess.run(train_op, feed)
            if edit:
                edit(sess, {v.op.name: v for v in tf.global_variables()})
            return saver.save(sess, os.path.join(out_dir, PREFIX), global_step=global_step,
                              write_meta_graph=meta)


def _restore_serving(prefix, input_shape, bn, training, keep_prob):
    """A serving graph (no train op) with the checkpoint restored: (graph, sess, x, logits)."""
    graph = tf.Graph()
    with graph.as_default():
        x, logits = _net(input_shape, bn, training(), keep_prob() if keep_prob else None)
        sess = tf.Session(graph=graph)
        tf.train.Saver(tf.global_variables()).restore(sess, prefix)
    return graph, sess, x, logits


def _freeze(prefix, path, input_shape, bn, training):
    """Export with training fixed to a Python bool, frozen to constants (legacy export scripts)."""
    graph, sess, _, _ = _restore_serving(prefix, input_shape, bn, lambda: training, None)
    with sess:
        frozen = tf.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), ["logits"])
    with open(path, "wb") as f:
        f.write(frozen.SerializeToString())
    return path


def _saved_model(prefix, path, input_shape, bn, keep_prob):
    """SavedModel (serve tag, x -> logits) with training defaulting to False."""
    graph, sess, x, logits = _restore_serving(
        prefix, input_shape, bn, lambda: tf.placeholder_with_default(False, [], name="training"),
        keep_prob)
    with sess, graph.as_default():
        builder = tf.saved_model.builder.SavedModelBuilder(path)
        signature = tf.saved_model.signature_def_utils.predict_signature_def(
            inputs={"x": x}, outputs={"logits": logits})
        builder.add_meta_graph_and_variables(sess, [tf.saved_model.tag_constants.SERVING],
                                             signature_def_map={"serving_default": signature})
        builder.save()
    return path


# ---- the builders, build(out_dir) -> path

def _set_first(variable_name, value):
    def edit(sess, variables):
        var = variables[variable_name]
        current = sess.run(var)
        current.flat[0] = value
        var.load(current, sess)
    return edit


def _dead_first_channel(sess, variables):
    """Channel 0 dead, as recalibration leaves it: fc1's first unit zeroed (BN's input there is
    identically 0) and that channel's moving mean and variance set to what its data give: 0, 0."""
    for name, column in (("fc1/kernel", True), ("block1/batch_normalization/moving_mean", False),
                         ("block1/batch_normalization/moving_variance", False)):
        value = sess.run(variables[name])
        if column:
            value[:, 0] = 0.0
        else:
            value[0] = 0.0
        variables[name].load(value, sess)


def _build_tf_layers(wire, meta=True, edit=None):
    def build(out_dir):
        return _train(out_dir, (FEATURES,), _tf_layers(False), wire=wire, edit=edit, meta=meta)
    return build


def _build_article(out_dir):
    prefix = _train(out_dir, (FEATURES,), _article_layer, steps=5, keep_prob=0.8)
    return prefix + ".meta"


def _build_ema_outside_cond(out_dir):
    return _train(out_dir, (FEATURES,), _ema_outside_cond, steps=40)


def _build_keras(wire):
    def build(out_dir):
        return _train(out_dir, (FEATURES,), _keras(wire == "layer_updates"), wire=wire)
    return build


def _build_hand_written(steps=20, **options):
    def build(out_dir):
        return _train(out_dir, (FEATURES,), _hand_written(**options), steps=steps)
    return build


def _build_frozen_fused(training):
    def build(out_dir):
        prefix = _train(out_dir, IMAGE, _tf_layers(True))
        return _freeze(prefix, os.path.join(out_dir, "frozen.pb"), IMAGE, _tf_layers(True),
                       training)
    return build


def _build_saved_model(keep_prob):
    def build(out_dir):
        prefix = _train(out_dir, (FEATURES,), _tf_layers(False), keep_prob=0.8)
        return _saved_model(prefix, os.path.join(out_dir, "saved_model"), (FEATURES,),
                            _tf_layers(False), keep_prob)
    return build


def _build_simple_save(keep_prob_default, training_default, keep_prob_in_signature):
    """``tf.saved_model.simple_save`` of the tf.layers net with keep_prob and training
    ``placeholder_with_default``s: x (and keep_prob when ``keep_prob_in_signature``) are the
    signature's inputs, the rest stay at their defaults for every serving client."""
    def build(out_dir):
        prefix = _train(out_dir, (FEATURES,), _tf_layers(False), keep_prob=0.8)
        graph, sess, x, logits = _restore_serving(
            prefix, (FEATURES,), _tf_layers(False),
            lambda: tf.placeholder_with_default(training_default, [], name="training"),
            lambda: tf.placeholder_with_default(keep_prob_default, [], name="keep_prob"))
        path = os.path.join(out_dir, "saved_model")
        with sess, graph.as_default():
            inputs = {"x": x}
            if keep_prob_in_signature:
                inputs["keep_prob"] = graph.get_tensor_by_name("keep_prob:0")
            tf.saved_model.simple_save(sess, path, inputs, {"logits": logits})
        return path
    return build


def _build_keras_sequential(out_dir):
    """A tf-keras Sequential (Dense, BN, ReLU, Dropout 0.5, Dense) fitted by ``model.fit`` in a TF1
    graph, exported as a SavedModel: Keras' learning phase switches BN and dropout."""
    import tf_keras as keras  # pylint: disable=import-outside-toplevel
    with tf.Graph().as_default() as graph:
        model = keras.Sequential([keras.layers.Dense(8, input_shape=(FEATURES,), name="hidden"),
                                  keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(),
                                  keras.layers.Dropout(0.5, name="dropout"),
                                  keras.layers.Dense(CLASSES, name="logits")])
        model.compile("sgd", "sparse_categorical_crossentropy")
        xb, yb = next(_batches((FEATURES,), 1))
        model.fit(np.concatenate([xb] * 4), np.concatenate([yb] * 4), epochs=2, verbose=0)
        sess = tf.keras.backend.get_session()
        path = os.path.join(out_dir, "saved_model")
        builder = tf.saved_model.builder.SavedModelBuilder(path)
        signature = tf.saved_model.signature_def_utils.predict_signature_def(
            inputs={"x": model.inputs[0]}, outputs={"y": model.outputs[0]})
        with graph.as_default():
            builder.add_meta_graph_and_variables(sess, [tf.saved_model.tag_constants.SERVING],
                                                 signature_def_map={"serving_default": signature})
        builder.save()
    return path


def _build_demo_checkpoint(out_dir):
    """The project's ArticleModel (dense, width 8, the article's bn_layer and keep_prob dropout),
    40 Adam steps; returns the checkpoint directory (with model.json)."""
    ckpt = os.path.join(out_dir, "ckpt")
    os.makedirs(ckpt)
    with tf.Graph().as_default() as graph:
        model = ArticleModel((FEATURES,), CLASSES, width=8)
        with tf.Session(graph=graph) as sess:
            sess.run(model.init_op)
            for xb, yb in _batches((FEATURES,), 40):
                model.train_step(sess, xb, yb, keep_prob=0.8)
            model.saver.save(sess, os.path.join(ckpt, PREFIX), global_step=model.global_step)
            model.save_config(ckpt)
    return ckpt


def _build_demo_frozen(out_dir):
    """The demo checkpoint exported by ``export.export`` (to-inference: BN folded, dropout gone)."""
    ckpt = _build_demo_checkpoint(out_dir)
    return demo_export.export(ckpt, os.path.join(out_dir, "export"))["frozen_graph"]


# ---- the suite

TRAINING_FEEDS = {"training:0": False}
_DENSE_IN = {"x:0": (None, FEATURES)}
_IMAGE_IN = {"x:0": (None,) + IMAGE}
_LOGITS = ("logits:0",)


def _case(name, build, fmt, expected, healthy, about, twin=None, inputs=None, outputs=_LOGITS,
          feeds=None, contrast=None):
    return Case(name, build, fmt, frozenset(expected), healthy, tuple(outputs),
                dict(_DENSE_IN if inputs is None else inputs),
                dict(TRAINING_FEEDS if feeds is None else feeds), twin, about, contrast)


SUITE = {c.name: c for c in [
    _case("tf_layers_wired", _build_tf_layers("UPDATE_OPS"), "checkpoint", {NO_DEFAULT}, True,
          "tf.layers BN (fused=False), train op under control_dependencies(UPDATE_OPS)",
          contrast="saved_model_keep_prob_in_signature"),
    _case("tf_layers_unwired", _build_tf_layers(None), "checkpoint",
          {"stats-never-updated", "update-ops-not-in-train-op", NO_DEFAULT}, False,
          "tf.layers BN, UPDATE_OPS never wired into the train op", twin="tf_layers_wired"),
    _case("article", _build_article, "meta_graph", {"ema-zero-bias", NO_DEFAULT}, True,
          "the article's bn_layer and keep_prob dropout after 5 steps (given as the .meta file)",
          feeds={"training:0": False, "keep_prob:0": 1.0}),
    _case("ema_outside_cond", _build_ema_outside_cond, "checkpoint",
          {"updates-on-inference", "inference-batch-dependent", NO_DEFAULT}, False,
          "ema.apply built outside tf.cond: prediction updates the shadows and reads them updated",
          twin="article"),
    _case("keras_bn_wired", _build_keras("UPDATE_OPS"), "checkpoint",
          {"stats-never-updated", "update-ops-not-in-train-op", NO_DEFAULT}, False,
          "tf-keras BatchNormalization in a TF1 graph, UPDATE_OPS wired (it is empty)",
          twin="keras_bn_layer_updates"),
    _case("keras_bn_layer_updates", _build_keras("layer_updates"), "checkpoint", {NO_DEFAULT},
          True, "tf-keras BatchNormalization with layer.updates wired into the train op"),
    _case("fused_frozen_training_true", _build_frozen_fused(True), "frozen_graph",
          {"inference-batch-dependent"}, False,
          "tf.layers fused BN (conv) frozen with training=True", twin="fused_frozen_training_false",
          inputs=_IMAGE_IN, feeds={}),
    _case("fused_frozen_training_false", _build_frozen_fused(False), "frozen_graph", set(), True,
          "tf.layers fused BN (conv) frozen with training=False", inputs=_IMAGE_IN, feeds={}),
    _case("saved_model_keep_prob_const", _build_saved_model(lambda: tf.constant(0.5, name="keep_prob")),
          "saved_model", {"dropout-at-inference"}, False,
          "SavedModel whose dropout keep_prob is a Const 0.5", twin="saved_model_keep_prob_default"),
    _case("saved_model_keep_prob_default",
          _build_saved_model(lambda: tf.placeholder_with_default(1.0, [], name="keep_prob")),
          "saved_model", set(), True, "SavedModel with keep_prob placeholder_with_default(1.0)",
          feeds={"training:0": False, "keep_prob:0": 1.0}),
    _case("saved_model_training_defaults", _build_simple_save(0.5, True, False), "saved_model",
          {"dropout-at-inference", "inference-batch-dependent"}, False,
          "simple_save with keep_prob placeholder_with_default(0.5) and training "
          "placeholder_with_default(True), neither among the signature's inputs (x): every "
          "serving client gets dropout and batch statistics", twin="saved_model_keep_prob_in_signature",
          feeds={"training:0": False, "keep_prob:0": 1.0}),
    _case("saved_model_keep_prob_in_signature", _build_simple_save(0.5, False, True), "saved_model",
          set(), True, "simple_save with keep_prob placeholder_with_default(0.5) among the "
          "signature's inputs (the client feeds it) and training placeholder_with_default(False)",
          feeds={"training:0": False, "keep_prob:0": 1.0}),
    _case("keras_sequential_saved_model", _build_keras_sequential, "saved_model", set(), True,
          "tf-keras Sequential with BN and Dropout(0.5) fitted in a TF1 graph, as a SavedModel "
          "(the dropout rate is a Const, switched off by the learning phase)",
          inputs={"hidden_input:0": (None, FEATURES)}, outputs=("logits/BiasAdd:0",),
          feeds={"keras_learning_phase:0": False}),
    _case("nan_variance", _build_tf_layers("UPDATE_OPS", edit=_set_first(
        "block1/batch_normalization/moving_variance", np.nan)), "checkpoint",
          {"stats-not-finite", NO_DEFAULT}, False,
          "wired tf.layers BN whose first moving variance became NaN", twin="tf_layers_wired"),
    _case("negative_variance", _build_tf_layers("UPDATE_OPS", edit=_set_first(
        "block1/batch_normalization/moving_variance", -0.5)), "checkpoint",
          {"variance-not-positive", NO_DEFAULT}, False,
          "wired tf.layers BN whose first moving variance is -0.5", twin="tf_layers_wired"),
    _case("dead_channel", _build_tf_layers("UPDATE_OPS", edit=_dead_first_channel), "checkpoint",
          {"dead-channel", NO_DEFAULT}, True,
          "wired tf.layers BN whose first channel is dead: fc1's first unit zeroed, so BN's input "
          "there is identically 0, and that channel's moving mean and variance exactly 0 (what "
          "recalibrate stores)", contrast="tf_layers_wired"),
    _case("trainable_stats", _build_hand_written(trainable=True), "checkpoint",
          {"stats-trainable", NO_DEFAULT}, True,
          "hand-written BN whose moving statistics are trainable variables",
          contrast="zero_start_debiased"),
    _case("zero_start_few_steps", _build_hand_written(steps=5, variance_init=0.0), "checkpoint",
          {"ema-zero-bias", NO_DEFAULT}, True,
          "hand-written BN, both shadows start at 0, not debiased, 5 steps of decay 0.9",
          contrast="zero_start_debiased"),
    _case("zero_start_debiased", _build_hand_written(steps=5, variance_init=0.0, zero_debias=True),
          "checkpoint", {NO_DEFAULT}, True,
          "the same with assign_moving_average(zero_debias=True): no zero bias"),
    _case("unwired_no_meta", _build_tf_layers(None, meta=False), "checkpoint",
          {"stats-never-updated"}, False, "the unwired checkpoint without its .meta",
          twin="wired_no_meta", inputs={}, outputs=(), feeds={}),
    _case("wired_no_meta", _build_tf_layers("UPDATE_OPS", meta=False), "checkpoint", set(), True,
          "the wired checkpoint without its .meta", inputs={}, outputs=(), feeds={}),
    _case("demo_checkpoint", _build_demo_checkpoint, "checkpoint", {NO_DEFAULT}, True,
          "the project's ArticleModel after 40 steps: its checkpoint directory",
          outputs=("logits/add:0", "ArgMax:0"), feeds={"training:0": False, "keep_prob:0": 1.0}),
    _case("demo_frozen", _build_demo_frozen, "frozen_graph", set(), True,
          "the demo checkpoint exported by tf1_repro.comparisons.export (frozen .pb)",
          outputs=("output_logits:0", "output_predictions:0"), feeds={}),
]}


def build_case(name, base_dir):
    """Build SUITE[name] under base_dir/name unless it is already there; returns its path."""
    case = SUITE[name]

    def build(out_dir):
        with warnings.catch_warnings():  # tf.layers' and tf-keras' deprecation notices
            warnings.simplefilter("ignore", UserWarning)
            return case.build(out_dir)
    return built_once(os.path.join(base_dir, name), build)


@pytest.fixture(scope="session")
def suite_artefact(tmp_path_factory):
    """``suite_artefact(name) -> path``: SUITE[name] built once per session."""
    base = shared_folder(tmp_path_factory, "model_suite")

    def get(name):
        return build_case(name, base)
    return get


def main(argv=None):
    """``python tests/model_suite.py OUT_DIR [NAME ...]``: build cases (all by default), print paths."""
    import argparse  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(sorted(SUITE))}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(SUITE))
    if unknown:
        parser.error(f"NAME must be one of {', '.join(sorted(SUITE))}, got {unknown[0]!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.names or sorted(SUITE):
            print(f"{name:30s} {build_case(name, args.out_dir)}")


if __name__ == "__main__":
    from tf1_repro import runtime  # TF1 behaviour, as in the tests
    runtime.use_tf1_behavior()
    main()
