"""legacy.naming.layers_from_names: BN layers from checkpoint names, every naming of issue 13.

Names come from real graphs where TensorFlow makes them (the article's layer, tf.layers, EMA
under other scopes), and are written out where only the naming matters (slim, object-based).
"""

import pytest

from tf1_repro.layers.bn import bn_layer
from tf1_repro.comparisons import implementations
from tf1_repro.tools.naming import channel_axis, channels, layers_from_names, shape_problem

from tests.conftest import tf


def _graph_variables(build):
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 4])
        training = tf.placeholder(tf.bool, [])
        build(x, training)
        tf.train.AdamOptimizer().minimize(tf.reduce_sum(tf.add_n(
            [tf.reduce_sum(v) for v in tf.trainable_variables()])))  # slots: P/gamma/Adam ...
        return {v.op.name: v.shape.as_list() for v in tf.global_variables()}


def _by_name(variables):
    return {layer["name"]: layer for layer in layers_from_names(variables)}


def test_article_layer_under_a_scope_with_optimizer_slots():
    def build(x, training):
        with tf.variable_scope("block1"):
            bn_layer(x, training, "bn")
    layers = _by_name(_graph_variables(build))
    assert list(layers) == ["block1/bn"]
    layer = layers["block1/bn"]
    assert (layer["naming"], layer["gamma"], layer["beta"]) == ("article", "block1/bn/gamma",
                                                                "block1/bn/beat")
    assert layer["moving_mean"] == "block1/bn/block1/bn/moments/Squeeze/ema"
    assert layer["moving_variance"] == "block1/bn/block1/bn/moments/Squeeze_1/ema"
    assert layer["shapes"] == {"gamma": [4], "beta": [4], "moving_mean": [4], "moving_variance": [4]}
    assert layer["notes"] == []


def test_ema_default_name_outside_the_variable_scope_and_a_second_moments():
    def build(x, training):
        del training
        with tf.variable_scope("enc"):
            tf.get_variable("gamma", [4])
            tf.get_variable("beta", [4])
            with tf.name_scope("enc_1/"):  # a second build of the scope: name scope enc_1
                tf.nn.moments(x, [0], name="moments")
                mean, var = tf.nn.moments(x, [0], name="moments")  # -> moments_1
        tf.train.ExponentialMovingAverage(0.9).apply([mean, var])  # default name, any scope
    variables = _graph_variables(build)
    assert "enc_1/moments_1/Squeeze/ExponentialMovingAverage" in variables
    layers = layers_from_names(variables)
    assert [(l["name"], l["naming"], l["gamma"], l["beta"]) for l in layers] == [
        ("enc_1", "article", None, None)]  # enc_1 holds no gamma: the scope itself, noted
    assert layers[0]["moving_variance"] == "enc_1/moments_1/Squeeze_1/ExponentialMovingAverage"
    assert layers[0]["notes"] == ["no gamma in the checkpoint (scale=False?): filled with 1",
                                  "no beta in the checkpoint (center=False?): filled with 0"]


def test_article_shadows_of_a_rebuilt_scope_belong_to_the_layer_holding_gamma():
    variables = {"net/bn/gamma": [3], "net/bn/beat": [3],
                 "net/bn/net/bn_1/moments/Squeeze/ema": [3],
                 "net/bn/net/bn_1/moments/Squeeze_1/ema": [3]}
    (layer,) = layers_from_names(variables)
    assert (layer["name"], layer["gamma"], layer["beta"]) == ("net/bn", "net/bn/gamma", "net/bn/beat")


@pytest.mark.filterwarnings("ignore:`tf.layers.batch_normalization` is deprecated")
def test_tf_layers_with_center_false():
    def build(x, training):
        implementations.tf_layers_batch_normalization()(x, training=training, center=False,
                                                        name="block2/batch_normalization")
    layers = _by_name(_graph_variables(build))
    layer = layers["block2/batch_normalization"]
    assert (layer["naming"], layer["gamma"], layer["beta"]) == (
        "keras", "block2/batch_normalization/gamma", None)
    assert layer["moving_variance"] == "block2/batch_normalization/moving_variance"
    assert layer["notes"] == ["no beta in the checkpoint (center=False?): filled with 0"]


def test_slim_batchnorm_scale_false_and_object_based_keys():
    variables = {
        "conv1/BatchNorm/beta": [5], "conv1/BatchNorm/moving_mean": [5],
        "conv1/BatchNorm/moving_variance": [5], "conv1/weights": [3, 3, 1, 5],
        "layer_with_weights-0/gamma/.ATTRIBUTES/VARIABLE_VALUE": [2],
        "layer_with_weights-0/beta/.ATTRIBUTES/VARIABLE_VALUE": [2],
        "layer_with_weights-0/moving_mean/.ATTRIBUTES/VARIABLE_VALUE": [2],
        "layer_with_weights-0/moving_variance/.ATTRIBUTES/VARIABLE_VALUE": [2],
        "layer_with_weights-0/gamma/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE": [2]}
    layers = _by_name(variables)
    assert list(layers) == ["conv1/BatchNorm", "layer_with_weights-0"]
    slim = layers["conv1/BatchNorm"]
    assert (slim["naming"], slim["gamma"], slim["beta"]) == ("slim", None, "conv1/BatchNorm/beta")
    keras = layers["layer_with_weights-0"]
    assert keras["moving_mean"] == "layer_with_weights-0/moving_mean/.ATTRIBUTES/VARIABLE_VALUE"


def test_wrong_statistics_shape_is_named():
    (layer,) = layers_from_names({"b/gamma": [4], "b/beta": [4], "b/moving_mean": [4],
                                  "b/moving_variance": [5]})
    assert shape_problem(layer) == ("layer b: moving_variance must have the shape of gamma (4,), "
                                    "got (5,) (b/moving_variance)")


def test_no_layers_and_bad_argument():
    assert layers_from_names({"dense/kernel": [3, 4], "dense/bias": [4]}) == []
    with pytest.raises(TypeError, match="variables must be a dict"):
        layers_from_names(["bn/gamma"])


def test_statistics_that_broadcast_to_one_axis_are_per_channel():
    def layer(**shapes):
        return {"name": "b", **{role: f"b/{role}" for role in shapes}, "shapes": shapes}
    for shape in ([1, 4], [1, 1, 1, 4], [1, 4, 1, 1]):  # Sonnet, slim, NCHW
        assert shape_problem(layer(beta=shape, moving_mean=shape, moving_variance=shape)) is None
    assert shape_problem(layer(gamma=[4], moving_mean=[1, 4], moving_variance=[1, 4])) is None
    assert [channel_axis(s) for s in ([4], [1, 4], [1, 1, 1, 4], [1, 4, 1, 1], [1, 1])] == \
        [-1, -1, -1, 1, -1]
    assert channels([1, 4, 1, 1]) == 4 and channels([2, 4]) is None
    assert shape_problem(layer(moving_mean=[2, 4], moving_variance=[2, 4])) == (
        "layer b: moving_mean must be per channel, (C,) or C with every other dimension 1 such "
        "as (1, C) or (1, C, 1, 1), got shape (2, 4) (b/moving_mean)")
    assert shape_problem(layer(moving_mean=[1, 4, 1, 1], moving_variance=[1, 1, 1, 4])) == (
        "layer b: moving_variance must have the shape of moving_mean (1, 4, 1, 1), got "
        "(1, 1, 1, 4) (b/moving_variance)")
