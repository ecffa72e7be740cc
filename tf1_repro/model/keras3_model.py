"""The demo's ``ArticleModel`` as a Keras 3 functional model (Keras 3 process only).

Same layers, names and maths as ``tf1_repro.model.network.ArticleModel`` built from its
``model.json`` config; the Keras layer names are the TF1 variable scopes, so a TF1
checkpoint key maps to a Keras weight by ``checkpoint_key(layer, weight)``::

    dense: x -> bn_input -> fc1 (no bias) -> bn_hidden -> relu -> dropout -> logits
           (dropout_before_bn: fc1 -> relu -> dropout -> bn_hidden -> logits)
    conv:  x -> conv1 3x3 SAME (no bias) -> bn_conv -> relu -> dropout -> mean over H, W -> logits

BN layers are ``ArticleBatchNormalization(momentum=moving_decay, epsilon=eps)``, dropout
is ``InvertedDropout(keep_prob)`` (the article's ``tf.nn.dropout``). The optimizer for
continued training is Adam with TF1 ``AdamOptimizer``'s constants (beta 0.9/0.999,
epsilon 1e-8: the same update formula as TF1's ``ApplyAdam``).
"""

import keras

from tf1_repro.layers.keras3 import ArticleBatchNormalization, InvertedDropout

BN_ROLES = ("gamma", "beta", "moving_mean", "moving_variance")


def bn_layer_names(config):
    """The BN layer names of the model, in build order."""
    if config["kind"] == "conv":
        return ["bn_conv"]
    return ["bn_input", "bn_hidden"]


def build(config, keep_prob=0.8):
    """The Keras 3 model for an ``ArticleModel`` config (the dict of ``model.json``)."""
    momentum, epsilon = config.get("moving_decay", 0.9), config.get("eps", 1e-5)

    def bn(name):
        return ArticleBatchNormalization(momentum=momentum, epsilon=epsilon, name=name)

    drop = InvertedDropout(keep_prob, seed=config.get("seed", 0) + 1, name="dropout")
    inputs = keras.Input(shape=tuple(config["input_shape"]), name="x")
    width = config.get("width", 32)
    if config["kind"] == "dense":
        h = bn("bn_input")(inputs)
        h = keras.layers.Dense(width, use_bias=False, name="fc1")(h)
        if config.get("dropout_before_bn", False):
            h = bn("bn_hidden")(drop(keras.layers.ReLU(name="relu")(h)))
        else:
            h = drop(keras.layers.ReLU(name="relu")(bn("bn_hidden")(h)))
    else:
        h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv1")(inputs)
        h = drop(keras.layers.ReLU(name="relu")(bn("bn_conv")(h)))
        h = keras.layers.GlobalAveragePooling2D(name="mean_hw")(h)
    logits = keras.layers.Dense(config["num_classes"], name="logits")(h)
    return keras.Model(inputs, logits, name="article_model")


def checkpoint_keys(config):
    """``{(keras layer, weight name): TF1 checkpoint key}`` for the non-BN weights."""
    first = ("conv1", "kernel") if config["kind"] == "conv" else ("fc1", "kernel")
    return {first: f"{first[0]}/kernel", ("logits", "kernel"): "logits/kernel",
            ("logits", "bias"): "logits/bias"}


def set_weights(model, config, tf1_arrays, bn_arrays):
    """Copy weights in: non-BN from ``tf1_arrays`` (checkpoint key -> array), BN from
    ``bn_arrays`` (``{layer}/{role}`` -> array, the migrate's weights.npz)."""
    for (layer, weight), key in checkpoint_keys(config).items():
        variable = next(v for v in model.get_layer(layer).weights if v.name == weight)
        variable.assign(tf1_arrays[key])
    for name in bn_layer_names(config):
        layer = model.get_layer(name)
        for role in BN_ROLES:
            getattr(layer, role).assign(bn_arrays[f"{name}/{role}"])


def trainable_checkpoint_keys(model, config):
    """The TF1 checkpoint key of each of ``model.trainable_variables``, in order."""
    by_path = {(layer, weight): key for (layer, weight), key in checkpoint_keys(config).items()}
    beta_key = {"gamma": "gamma", "beta": "beat"}
    keys = []
    for variable in model.trainable_variables:
        layer, weight = variable.path.split("/")[-2:]
        keys.append(by_path.get((layer, weight), f"{layer}/{beta_key.get(weight, weight)}"))
    return keys


def adam(config):
    """Keras 3 Adam with TF1 AdamOptimizer's constants and the config's learning rate."""
    return keras.optimizers.Adam(learning_rate=config.get("learning_rate", 0.01), beta_1=0.9,
                                 beta_2=0.999, epsilon=1e-8)


def restore_adam(optimizer, model, config, tf1_arrays, step):
    """Set Adam's state to the TF1 checkpoint's: the m/v slots (``KEY/Adam``, ``KEY/Adam_1``)
    and the iteration count (TF1 ``beta1_power`` = 0.9**(step + 1) is Keras's next power)."""
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    keys = trainable_checkpoint_keys(model, config)
    for variable, key in zip(model.trainable_variables, keys):
        index = optimizer._get_variable_index(variable)  # pylint: disable=protected-access
        optimizer._momentums[index].assign(tf1_arrays[f"{key}/Adam"])  # pylint: disable=protected-access
        optimizer._velocities[index].assign(tf1_arrays[f"{key}/Adam_1"])  # pylint: disable=protected-access
    optimizer.iterations.assign(step)
