"""Checkpoint migration between the article's names and the gamma/beta/moving_* convention.

The article's layer ``name`` (inside scope S) stores::

    S/name/gamma  S/name/beat  S/name/S/name/moments/Squeeze/ema  S/name/S/name/moments/Squeeze_1/ema

``tf.compat.v1.layers.batch_normalization`` and tf-keras ``BatchNormalization``
(TF1 name-based checkpoints) store ``P/gamma``, ``P/beta``, ``P/moving_mean``,
``P/moving_variance``. ``convert`` renames every BN layer it finds (and their
optimizer slots, e.g. ``P/gamma/Adam``), copies every other variable unchanged,
writes a TF checkpoint and verifies each layer by loading it into the target
implementation and comparing prediction outputs with the source layer's.

What cannot carry over exactly: the fused kernel's moving-variance convention.
A fused target reads the moving variance as stored, so predictions carry over
exactly (verified with fused=False and fused=True targets); but continued
training with a fused kernel averages Bessel-corrected batch variances, so the
stored (biased) value drifts up by n/(n-1) afterwards. The tool keeps the
biased value rather than rescaling it, since rescaling would change every
prediction; build targets with the article's epsilon (``--epsilon``) and
momentum 0.9.
"""

import os

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.layers import article
from tf1_repro.comparisons import implementations
from tf1_repro.graph import artefacts
from tf1_repro.graph.errors import InputError
from tf1_repro.tools import naming
from tf1_repro.layers.bn import article_variable_names

TARGETS = ("keras", "tf-layers", "article")
STANDARD = ("gamma", "beta", "moving_mean", "moving_variance")
WHERE = "convert-checkpoint"
TOLERANCE = 1e-5


def resolve_source(src):
    """A checkpoint prefix from a prefix or a directory; InputError naming what is missing."""
    if os.path.isdir(src):
        prefix = artefacts.latest_checkpoint(src)
        if not prefix:
            raise InputError(f"{WHERE}: SRC must be a checkpoint prefix or a directory with a "
                             f"checkpoint, got directory {src!r} without one")
        return prefix
    if not os.path.exists(src + ".index"):
        raise InputError(f"{WHERE}: SRC must be a checkpoint prefix (PREFIX.index exists) or a "
                         f"directory, got {src!r}")
    return src


def _found(names, naming_kinds):
    """Layers ``naming.layers_from_names`` finds (from names alone) of the given namings."""
    return [layer for layer in naming.layers_from_names(dict.fromkeys(names))
            if layer["naming"] in naming_kinds]


def article_layers(names):
    """prefix -> {gamma, beta, moving_mean, moving_variance: checkpoint key} for article layers
    (``naming``'s article naming, every role present)."""
    return {layer["name"]: {role: layer[role] for role in STANDARD}
            for layer in _found(names, ("article",)) if all(layer[role] for role in STANDARD)}


def standard_layers(names):
    """prefix -> keys for gamma/beta/moving_mean/moving_variance layers (tf.layers, Keras, slim);
    InputError for one without gamma or beta, which the article's layer cannot represent."""
    layers = {}
    for layer in _found(names, ("keras", "slim")):
        missing = [role for role in STANDARD if layer[role] is None]
        if missing:
            raise InputError(f"{WHERE}: layer {layer['name']} must have gamma, beta, moving_mean "
                             f"and moving_variance to become the article's layer, got no "
                             f"{missing[0]} (built with center/scale=False?)")
        layers[layer["name"]] = {role: layer[role] for role in STANDARD}
    return layers


def _renames(names, layers, target_names):
    """old key -> new key for every key, layer variables and their slots renamed."""
    mapping = {}
    for prefix, old in layers.items():
        new = target_names(prefix)
        for role, old_key in old.items():
            mapping[old_key] = new[role]
            for name in names:
                if name.startswith(old_key + "/"):
                    mapping[name] = new[role] + name[len(old_key):]
    return {name: mapping.get(name, name) for name in names}


def _standard_names(prefix):
    return {k: f"{prefix}/{k}" for k in STANDARD}


def convert(src, dst, to, epsilon=1e-5, seed=0):
    """Convert SRC to DST for target ``to``; returns a report with the verification.

    Raises InputError (a ValueError; nothing written) for a bad target, a missing source, an
    existing destination or a checkpoint without BN layers of the source convention.
    """
    if to not in TARGETS:
        raise InputError(f"{WHERE}: --to must be one of {', '.join(TARGETS)}, got {to!r}")
    prefix = resolve_source(src)
    if os.path.exists(dst + ".index"):
        raise InputError(f"{WHERE}: DST must not exist yet, got {dst!r} (remove it or pick "
                         f"another prefix)")
    reader = tf.train.load_checkpoint(prefix)
    names = set(reader.get_variable_to_shape_map())
    if to == "article":
        layers = standard_layers(names)
        renames = _renames(names, layers, article_variable_names)
    else:
        layers = article_layers(names)
        renames = _renames(names, layers, _standard_names)
    if not layers:
        kind = "gamma/beta/moving_mean/moving_variance" if to == "article" else "article (gamma/beat/…/ema)"
        raise InputError(f"{WHERE}: SRC must hold {kind} BN layers to convert to {to}, got none "
                         f"in {prefix}")
    clashes = sorted(n for n, new in renames.items() if new in names and new != n and renames.get(new) == new)
    if clashes:
        raise InputError(f"{WHERE}: renaming {clashes[0]} would overwrite {renames[clashes[0]]}, "
                         f"which SRC already holds")
    _write(reader, renames, dst)
    verified = {p: _verify(prefix, dst, p, layers[p], to, epsilon, seed) for p in sorted(layers)}
    return {"source": prefix, "destination": dst, "to": to, "layers": sorted(layers),
            "renamed": {k: v for k, v in sorted(renames.items()) if k != v},
            "copied": sorted(k for k, v in renames.items() if k == v),
            "verification": verified,
            "max_difference": max(max(v.values()) for v in verified.values()),
            "ok": all(max(v.values()) <= TOLERANCE for v in verified.values())}


def _write(reader, renames, dst):
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with tf.Graph().as_default() as graph:
        var_list = {new: tf.Variable(reader.get_tensor(old), name="v") for old, new in renames.items()}
        saver = tf.train.Saver(var_list=var_list)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            saver.save(sess, dst, write_meta_graph=False)


def _layer_output(build, checkpoint, keys, batch, channels):
    """Prediction output of one standalone layer restored from ``checkpoint``."""
    with tf.Graph().as_default() as graph:
        x = tf.placeholder(tf.float32, [None, channels])
        out, variables = build(x)
        saver = tf.train.Saver(var_list={keys[role]: variables[role] for role in STANDARD})
        with tf.Session(graph=graph) as sess:
            saver.restore(sess, checkpoint)
            return sess.run(out, {x: batch}).astype(np.float64)


def _article_build(x):
    out = article.bn_layer(None, x, False, name="verify")
    by_name = {v.op.name: v for v in tf.global_variables()}
    names = article_variable_names("verify")
    return out, {role: by_name[names[role]] for role in STANDARD}


def _tf_layers_build(fused, epsilon):
    def build(x):
        inputs = tf.reshape(x, [-1, 1, 1, x.shape[-1]]) if fused else x
        out = implementations.tf_layers_batch_normalization()(inputs, training=False, epsilon=epsilon,
                                                     fused=fused, name="verify")
        by_name = {v.op.name: v for v in tf.global_variables()}
        return tf.reshape(out, tf.shape(x)), {role: by_name[f"verify/{role}"] for role in STANDARD}
    return build


def _keras_build(epsilon):
    def build(x):
        layer = implementations.keras_batch_normalization_class()(epsilon=epsilon, name="verify")
        out = layer(x, training=False)
        return out, {"gamma": layer.gamma, "beta": layer.beta, "moving_mean": layer.moving_mean,
                     "moving_variance": layer.moving_variance}
    return build


def _verify(src, dst, prefix, src_keys, to, epsilon, seed):
    """Max |target - source| prediction output of one layer, per target build."""
    reader = tf.train.load_checkpoint(src)
    channels = reader.get_tensor(src_keys["gamma"]).shape[0]
    mean = reader.get_tensor(src_keys["moving_mean"]).astype(np.float64)
    var = reader.get_tensor(src_keys["moving_variance"]).astype(np.float64)
    rng = np.random.default_rng(seed)
    batch = (mean + np.sqrt(np.maximum(var, 1e-6)) * rng.standard_normal((64, channels))).astype(np.float32)
    if to == "article":
        source = _layer_output(_tf_layers_build(False, epsilon), src, src_keys, batch, channels)
        targets = {"article bn_layer": _article_build}
        dst_keys = article_variable_names(prefix)
    else:
        source = _layer_output(_article_build, src, src_keys, batch, channels)
        dst_keys = _standard_names(prefix)
        targets = ({"keras BN": _keras_build(epsilon)} if to == "keras" else
                   {"tf.layers fused=False": _tf_layers_build(False, epsilon),
                    "tf.layers fused=True": _tf_layers_build(True, epsilon)})
    return {name: float(np.abs(_layer_output(build, dst, dst_keys, batch, channels) - source).max())
            for name, build in targets.items()}


def format_report(report):
    lines = [f"converted {report['source']} -> {report['destination']} (target: {report['to']})",
             f"  {len(report['layers'])} BN layer(s): {', '.join(report['layers'])}",
             f"  {len(report['renamed'])} variable(s) renamed, {len(report['copied'])} copied unchanged"]
    for old, new in list(report["renamed"].items())[:12]:
        lines.append(f"    {old} -> {new}")
    if len(report["renamed"]) > 12:
        lines.append(f"    ... and {len(report['renamed']) - 12} more")
    lines.append("  verification (prediction outputs of each layer, target vs source, on a batch of 64):")
    for layer, checks in report["verification"].items():
        for target, diff in checks.items():
            lines.append(f"    {layer:<20} {target:<22} max |difference| {diff:.3g}")
    lines.append(f"  {'OK' if report['ok'] else 'FAILED'}: max difference {report['max_difference']:.3g} "
                 f"(limit {TOLERANCE:g})")
    if report["to"] != "article":
        lines.append("  note: a fused target predicts exactly as stored, but continued fused training "
                     "moves the moving variance to the Bessel-corrected n/(n-1) convention")
    return "\n".join(lines)
