"""The other direction: Keras 3 BN weights (``weights.npz`` or a ``.weights.h5`` / ``.keras``)
to an article-named TF1 checkpoint ``DIR/model.ckpt``, read back and compared bitwise, names
found again by ``naming``."""

import os

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.layers.bn import article_variable_names
from tf1_repro.tools import naming
from tf1_repro.tools.migrate.common import ARTICLE_PREFIX, ROLES, MigrateError, check_out


def read_keras_weights(path):
    """``({layer: {role: array}}, {key: array} of other weights)`` from a migrate ``weights.npz`` or a Keras 3 ``.weights.h5``.

    In a ``.weights.h5`` (also the one inside a ``.keras``) a BN layer is a ``vars`` group
    holding exactly four vectors of one length (gamma, beta, moving_mean, moving_variance:
    the order of both stock ``BatchNormalization`` and ``ArticleBatchNormalization``),
    named by the group's ``name`` attribute (the Keras layer's name).
    """
    if path.endswith(".npz"):
        try:
            with np.load(path) as loaded:
                flat = dict(loaded)
        except (OSError, ValueError) as err:
            raise MigrateError(f"migrate: PATH must be a weights.npz or .weights.h5, got {path!r} "
                               f"({type(err).__name__})") from None
        layers = {}
        for key, value in flat.items():
            name, _, role = key.rpartition("/")
            if role not in ROLES or not name:
                raise MigrateError(f"migrate: PATH keys must be {{layer}}/gamma|beta|moving_mean|"
                                   f"moving_variance, got {key!r} in {path}")
            layers.setdefault(name, {})[role] = value
        return layers, {}
    if path.endswith((".h5", ".keras")):
        return _read_h5(path)
    raise MigrateError(f"migrate: PATH must be a weights.npz, a Keras .weights.h5 or a .keras "
                       f"file for --to article, got {path!r}")


def _read_h5(path):
    """``(BN layers, other weights)`` of a Keras 3 weights file (``.weights.h5``, or the one
    inside a ``.keras``). Other weights are Dense/Conv layers' ``{layer}/kernel`` and
    ``{layer}/bias`` (the names ``tf.get_variable`` gives in TF1 code such as ArticleModel).

    Keras 3 names the groups after the layer classes (``layers/batch_normalization_1/vars``)
    and keeps the layer's own name in the group's ``name`` attribute, which is used.
    """
    import io  # pylint: disable=import-outside-toplevel
    import zipfile  # pylint: disable=import-outside-toplevel
    import h5py  # pylint: disable=import-outside-toplevel
    layers, others = {}, {}
    try:
        source = path
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                source = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(source, "r") as f:
            def visit(name, obj):
                if not (isinstance(obj, h5py.Group) and name.endswith("vars")) or \
                        name.startswith("optimizer"):
                    return
                values = [np.asarray(obj[k]) for k in sorted(obj.keys(), key=int)]
                layer = str(obj.attrs.get("name") or "/".join(
                    p for p in name.split("/")[:-1] if p != "layers"))
                if len(values) == 4 and all(v.ndim == 1 and v.shape == values[0].shape
                                            for v in values):
                    layers[layer] = dict(zip(ROLES, values))
                elif 1 <= len(values) <= 2 and values[0].ndim >= 2 and \
                        (len(values) == 1 or values[1].ndim == 1):
                    others.update(zip((f"{layer}/kernel", f"{layer}/bias"), values))
            f.visititems(visit)
    except (OSError, KeyError, zipfile.BadZipFile) as err:
        raise MigrateError(f"migrate: PATH must be a readable Keras .weights.h5 or .keras, got "
                           f"{path!r} ({str(err).splitlines()[0][:120]})") from None
    return layers, others


def _save_checkpoint(arrays, prefix):
    with tf.Graph().as_default() as graph:
        var_list = {key: tf.Variable(value, name="v") for key, value in arrays.items()}
        saver = tf.train.Saver(var_list=var_list)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            return saver.save(sess, prefix, write_meta_graph=False)


def to_article(path, out, force=False):
    """Keras 3 BN weights to an article-named TF1 checkpoint ``out/model.ckpt``, checked bitwise."""
    if not os.path.exists(path):
        raise MigrateError(f"migrate: PATH must be a weights.npz or .weights.h5, got {path!r} "
                           f"(no such file)")
    layers, others = read_keras_weights(path)
    if not layers:
        raise MigrateError(f"migrate: PATH must hold BN weights (four vectors per layer), got "
                           f"none in {path}")
    arrays = {}
    for name, values in sorted(layers.items()):
        missing = [r for r in ROLES if r not in values]
        if missing:
            raise MigrateError(f"migrate: layer {name} must have {', '.join(ROLES)}, got no "
                               f"{missing[0]} in {path}")
        channels = values["gamma"].shape
        for role in ROLES:
            if values[role].shape != channels or len(channels) != 1:
                raise MigrateError(f"migrate: layer {name}: {role} must have the shape of gamma "
                                   f"{tuple(channels)}, got {tuple(values[role].shape)}")
        keys = article_variable_names(name)
        arrays.update({keys[role]: values[role] for role in ROLES})
    clash = sorted(set(others) & set(arrays))
    if clash:
        raise MigrateError(f"migrate: PATH must not hold a weight named like a BN variable, got "
                           f"{clash[0]}")
    arrays.update(others)
    check_out(out, ARTICLE_PREFIX + ".index", force)
    os.makedirs(out, exist_ok=True)
    prefix = _save_checkpoint(arrays, os.path.join(out, ARTICLE_PREFIX))
    reader = tf.train.load_checkpoint(prefix)
    back = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    bitwise = back.keys() == arrays.keys() and all(
        back[k].dtype == v.dtype and back[k].tobytes() == v.tobytes() for k, v in arrays.items())
    found = naming.layers_from_names({k: list(v.shape) for k, v in back.items()})
    refound = sorted(layer["name"] for layer in found) == sorted(layers)
    return {"to": "article", "source": path, "checkpoint": prefix, "layers": sorted(layers),
            "variables": sorted(arrays), "other_weights": sorted(others), "bitwise": bool(bitwise), "names_found_again": refound,
            "ok": bool(bitwise and refound)}
