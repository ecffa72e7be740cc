"""The finder on BN layers as public TF1 code builds them: updates that ride on the layer's output
(TF-Slim / contrib ``updates_collections=None``, fused or not; Sonnet v1's
``update_ops_collection=None``; a ``tf.cond`` between two slim calls), the DCGAN-2016 two-stage
"assigner" (Stack Overflow 33950177's ``ConvolutionalBatchNormalizer``), layer names next to a
Const gamma, and a TF-Slim net with a training and an evaluation tower.

The builders take ``(inputs, training)`` as ``python -m tf1_repro audit FILE.py:FUNC`` calls them,
so the audit can measure the same layers; each returns the layer's output as the user gets it."""

import sys
import warnings

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from tensorflow.python.training import moving_averages

from real_models import import_slim, real_model  # pylint: disable=unused-import
from tf1_repro.tools import finder
from tf1_repro.tools.finder import pipeline
from tf1_repro.tools.finder.model import BNLayer

# ---- builders (inputs, training): training is a bool tensor, or a Python bool where noted


def slim_fused_updates_on_output(inputs, training):
    """``slim.batch_norm(..., updates_collections=None, fused=True)``: the updates are forced onto
    the output (``tf.cond(training, force_updates, lambda: y)``; with a Python True, an Identity
    under control dependencies)."""
    return import_slim().batch_norm(inputs, is_training=training, updates_collections=None,
                                    fused=True, scope="bn")


def slim_plain_updates_on_output(inputs, training):
    """``slim.batch_norm(..., updates_collections=None, fused=False)``: the updates are control
    dependencies of the statistics it normalises with."""
    return import_slim().batch_norm(inputs, is_training=training, updates_collections=None,
                                    fused=False, scope="bn")


def sonnet_updates_on_output(inputs, training):
    """What Sonnet v1's ``BatchNorm(update_ops_collection=None)`` builds: in the training branch
    of a ``tf.cond``, ``with tf.control_dependencies([update_mean, update_var]): out =
    tf.identity(out)``."""
    channels = inputs.shape[-1]
    axes = list(range(len(inputs.shape) - 1))
    with tf.variable_scope("batch_norm"):
        gamma = tf.get_variable("gamma", [channels], initializer=tf.ones_initializer())
        beta = tf.get_variable("beta", [channels], initializer=tf.zeros_initializer())
        mean_ = tf.get_variable("moving_mean", [channels], initializer=tf.zeros_initializer(),
                                trainable=False)
        var_ = tf.get_variable("moving_variance", [channels], initializer=tf.ones_initializer(),
                               trainable=False)

        def train():
            mean, var = tf.nn.moments(inputs, axes)
            out = tf.nn.batch_normalization(inputs, mean, var, beta, gamma, 1e-3)
            update_mean = moving_averages.assign_moving_average(mean_, mean, 0.9)
            update_var = moving_averages.assign_moving_average(var_, var, 0.9)
            with tf.control_dependencies([update_mean, update_var]):
                return tf.identity(out)

        return tf.cond(training, train,
                       lambda: tf.nn.batch_normalization(inputs, mean_, var_, beta, gamma, 1e-3))


def _two_slim_calls(inputs, training, fused):
    slim = import_slim()
    return tf.cond(training,
                   lambda: slim.batch_norm(inputs, is_training=True, updates_collections=None,
                                           fused=fused, scope="bn"),
                   lambda: slim.batch_norm(inputs, is_training=False, updates_collections=None,
                                           fused=fused, scope="bn", reuse=True))


def cond_of_two_slim_calls_fused(inputs, training):
    """A ``tf.cond`` choosing between a training and an inference slim call (``reuse=True``),
    each ``updates_collections=None``, fused."""
    return _two_slim_calls(inputs, training, True)


def cond_of_two_slim_calls_plain(inputs, training):
    """The same, ``fused=False``."""
    return _two_slim_calls(inputs, training, False)


class ConvolutionalBatchNormalizer:
    """Stack Overflow 33950177, as DCGAN implementations of 2016 used it: training assigns the
    batch moments into plain variables; prediction reads an EMA of those, which only the op
    ``get_assigner()`` returns advances (run after each optimisation step)."""

    def __init__(self, depth, epsilon, ewma_trainer):
        self.mean = tf.Variable(tf.constant(0.0, shape=[depth]), trainable=False, name="mean")
        self.variance = tf.Variable(tf.constant(1.0, shape=[depth]), trainable=False,
                                    name="variance")
        self.beta = tf.Variable(tf.constant(0.0, shape=[depth]), name="beta")
        self.gamma = tf.Variable(tf.constant(1.0, shape=[depth]), name="gamma")
        self.ewma_trainer, self.epsilon = ewma_trainer, epsilon

    def get_assigner(self):
        """The EWMA apply op that must be run after optimisation."""
        return self.ewma_trainer.apply([self.mean, self.variance])

    def normalize(self, x, train=True):
        if train:
            mean, variance = tf.nn.moments(x, list(range(len(x.shape) - 1)))
            with tf.control_dependencies([self.mean.assign(mean), self.variance.assign(variance)]):
                return tf.nn.batch_norm_with_global_normalization(
                    x, mean, variance, self.beta, self.gamma, self.epsilon, True)
        mean = self.ewma_trainer.average(self.mean)
        variance = self.ewma_trainer.average(self.variance)
        return tf.nn.batch_norm_with_global_normalization(
            x, mean, variance, tf.identity(self.beta), tf.identity(self.gamma), self.epsilon, True)


_NORMALIZERS = {}


def two_stage_normalizer_python_bool(inputs, training):
    """The normalizer called with a Python bool, once per mode (``audit --python-bool``): one
    object per graph, its assigner grouped as ``bn/assigner``."""
    graph = tf.get_default_graph()
    if graph not in _NORMALIZERS:
        with tf.variable_scope("bn"):
            bn = ConvolutionalBatchNormalizer(inputs.shape[-1], 1e-3,
                                              tf.train.ExponentialMovingAverage(0.99))
            tf.group(bn.get_assigner(), name="assigner")
        _NORMALIZERS[graph] = bn
    with tf.variable_scope("bn", reuse=True):
        return _NORMALIZERS[graph].normalize(inputs, training)


def two_stage_normalizer_cond(inputs, training):
    """The normalizer with its two modes in a ``tf.cond`` on a ``training`` tensor."""
    with tf.variable_scope("bn"):
        bn = ConvolutionalBatchNormalizer(inputs.shape[-1], 1e-3,
                                          tf.train.ExponentialMovingAverage(0.99))
        tf.group(bn.get_assigner(), name="assigner")
        return tf.cond(training, lambda: bn.normalize(inputs, True),
                       lambda: bn.normalize(inputs, False))


# ---- tests

def _graph(builder, training, shape=(None, 2, 2, 3)):
    """(graph, x, training placeholder or None, output) of ``builder`` on a fresh graph."""
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = tf.placeholder(tf.float32, shape, name="x")
        flag = tf.placeholder(tf.bool, [], name="is_training") if training == "tensor" else None
        y = builder(x, flag if training == "tensor" else training)
    return graph, x, flag, y


def _moving_mean_moves(graph, x, flag, output, layer):
    """Whether running ``output`` alone in training mode changes the moving mean."""
    with graph.as_default(), tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        mean = graph.get_tensor_by_name(layer.moving_mean + ":0")
        before = sess.run(mean)
        feed = {x: np.random.default_rng(0).normal(3.0, 1.0, (8, 2, 2, 3))}
        if flag is not None:
            feed[flag] = True
        sess.run(graph.get_tensor_by_name(output), feed)
        return not np.allclose(before, sess.run(mean))


RIDING = [(slim_fused_updates_on_output, "tensor"), (slim_fused_updates_on_output, True),
          (slim_plain_updates_on_output, "tensor"), (slim_plain_updates_on_output, True),
          (sonnet_updates_on_output, "tensor"), (cond_of_two_slim_calls_fused, "tensor"),
          (cond_of_two_slim_calls_plain, "tensor")]


@pytest.mark.parametrize("builder,training", RIDING,
                         ids=[f"{b.__name__}-{t}" for b, t in RIDING])
def test_updates_riding_on_the_output_are_at_output(builder, training):
    """Running the layer's output alone in training mode updates the statistics: the location is
    ``output``, and the output is the tensor the user gets (the Merge or Identity that carries the
    updates), not the normalisation op's."""
    graph, x, flag, y = _graph(builder, training)
    (layer,) = finder.find(graph).bn_layers
    assert (layer.update_location, layer.output) == ("output", y.name)
    assert layer.call_sites == [["x:0", y.name]]
    assert _moving_mean_moves(graph, x, flag, layer.output, layer)
    if training == "tensor":  # the update is in the training branch only
        assert layer.updates_at_prediction is False
        assert layer.mode.name == "is_training"


@pytest.mark.parametrize("builder", [two_stage_normalizer_python_bool, two_stage_normalizer_cond])
def test_two_stage_assigner_is_a_separate_op(builder):
    """DCGAN 2016: prediction reads the EMA shadows, which only ``bn/assigner`` advances; the
    training output writes the plain variables, not the statistics prediction reads."""
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = tf.placeholder(tf.float32, [None, 2, 2, 3], name="x")
        if builder is two_stage_normalizer_python_bool:
            builder(x, True)
            y = builder(x, False)
        else:
            y = builder(x, tf.placeholder(tf.bool, [], name="is_training"))
    (layer,) = finder.find(graph).bn_layers
    assert layer.update_location == "separate-op:bn/assigner"
    assert layer.moving_mean == "bn/bn/mean/ExponentialMovingAverage"
    assert layer.output == y.name and layer.decay == pytest.approx(0.99)


def test_a_const_gamma_under_a_doubled_op_scope_does_not_shorten_the_name():
    """Slim's ``scale=False`` gamma is a Const named after the op scope (``net/net/block/bn/Const``);
    the layer is named by its variables' scope, live and frozen."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 2, 2, 3], name="x")
        with tf.variable_scope("net/block/bn"):
            beta = tf.get_variable("beta", [3], initializer=tf.zeros_initializer())
            mean = tf.get_variable("moving_mean", [3], initializer=tf.zeros_initializer())
            var = tf.get_variable("moving_variance", [3], initializer=tf.ones_initializer())
        with tf.name_scope("net/net/block/bn/"):
            gamma = tf.constant(1.0, shape=[3])
            y = tf.nn.fused_batch_norm(x, gamma, beta, mean, var, epsilon=1e-3,
                                       is_training=False)[0]
    assert gamma.op.name == "net/net/block/bn/Const"
    (layer,) = finder.find(graph).bn_layers
    assert (layer.name, layer.gamma) == ("net/block/bn", "net/net/block/bn/Const")
    with graph.as_default(), tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        frozen = tf.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(),
                                                              [y.op.name])
    assert finder.find(frozen).bn_layers[0].name == "net/block/bn"


def test_two_layers_whose_variables_share_one_scope_get_their_own_names():
    """Hand-written layers with all their variables in one scope: each is named by its own moving
    mean, with a note."""
    graph = tf.Graph()
    with graph.as_default():
        h = tf.placeholder(tf.float32, [None, 3], name="x")
        with tf.variable_scope("net"):
            for tag in ("a", "b"):
                mean = tf.get_variable(f"mean_{tag}", [3], initializer=tf.zeros_initializer())
                var = tf.get_variable(f"var_{tag}", [3], initializer=tf.ones_initializer())
                h = tf.nn.batch_normalization(h, mean, var, None, None, 1e-3)
    layers = finder.find(graph).bn_layers
    assert [layer.name for layer in layers] == ["net/mean_a", "net/mean_b"]
    assert all("scope 'net'" in layer.notes[-1] for layer in layers)


def test_two_layers_with_one_name_and_one_node_are_an_internal_error():
    """The finder's own check: names that are still not unique are its bug, said clearly."""
    layers = [BNLayer("bn", "fused", "x:0", f"y{i}:0", moving_mean="bn/moving_mean",
                      bn_ops=["bn/op"]) for i in range(2)]
    with pytest.raises(pipeline.FinderInternalError, match="two BN layers have one name"):
        pipeline.unique_names(layers)


def _import(prefix):
    graph = tf.Graph()
    with graph.as_default():
        tf.train.import_meta_graph(prefix + ".meta", clear_devices=True)
    return graph


def test_slim_two_towers_every_layer_named_by_its_own_scope(real_model):  # pylint: disable=redefined-outer-name
    """TF-Slim inception_v2, a training tower and an evaluation tower (``reuse=True``): 68 layers,
    68 names, each the scope of the layer's own variables (never ``InceptionV2``); each layer's
    input and output are the evaluation tower's (``is_training=False``), said in a note."""
    prefix, _ = real_model("slim_inception_v2_two_towers")
    layers = finder.find(_import(prefix)).bn_layers
    names = [layer.name for layer in layers]
    assert len(layers) == 68 and len(set(names)) == 68
    assert "InceptionV2/Mixed_3b/Branch_1/Conv2d_0a_1x1/BatchNorm" in names
    for layer in layers:
        assert layer.moving_mean == layer.name + "/moving_mean"
        assert layer.beta == layer.name + "/beta"
        assert layer.gamma.endswith(layer.name + "/Const")  # op-scoped: InceptionV2/InceptionV2/...
        assert [m["mode"] for m in layer.call_modes] == ["training", "prediction"]
        assert [m["input"] for m in layer.call_modes] == [c[0] for c in layer.call_sites]
        assert layer.input.startswith("InceptionV2_1/") and layer.output.startswith("InceptionV2_1/")
        assert [layer.input, layer.output] == layer.call_sites[1]
        assert any("runs in prediction mode" in note for note in layer.notes)
        assert not any("more than one source" in note for note in layer.notes)
    assert all("call_modes" in layer.to_dict() for layer in layers)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
