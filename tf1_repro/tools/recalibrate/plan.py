"""The plan: which BN layers to recalibrate (``Layer``), in which pass (``depths``), with which
ops added to our copy of the graph (``build``); and the checkpoint they come from."""

import dataclasses
import glob
import os

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph import artefacts, walk
from tf1_repro.graph.errors import first_line
from tf1_repro.graph.ops import VARIABLE_OPS
from tf1_repro.tools import calls
from tf1_repro.tools.recalibrate.common import SCOPE, WHERE, RecalibrateError, has_op
from tf1_repro.tools.recalibrate.moments import ChannelMoments


def call_sites(layer):
    """[(input, output)] of the calls of a finder layer whose moments make its statistics: its
    prediction calls (``tools.calls``): every call but a training tower's (``is_training=True``,
    batch statistics at prediction too) and the untrained twin of a trained switched call (a
    Keras model's unused call on its own ``Input``); one unless its variables are shared."""
    return [tuple(site) for site in calls.prediction_sites(layer)]


def left_out_note(narrowed):
    """One note for the shared layers (``tools.calls.LayerCalls``) whose statistics come from
    some of their calls only: how many, which calls were left out and why, with the first as an
    example."""
    training = sum(len(set(c.training) - set(c.prediction)) for c in narrowed)
    unused = sum(len(c.unused) for c in narrowed)
    first = narrowed[0]
    left = [i for i in range(len(first.sites)) if i not in first.prediction]
    counts = ", ".join(part for part in (f"{training} training call(s)" if training else "",
                                         f"{unused} unused call(s)" if unused else "") if part)
    return (f"{len(narrowed)} shared BN layer(s) recalibrated on their prediction calls only "
            f"({first.why}); left out {counts}; e.g. {first.name}: used "
            f"{', '.join(x for x, _ in first.prediction_sites())}, left out "
            + ", ".join(f"{first.sites[i][0]} ({'training' if i in first.training else 'unused'})"
                        for i in left))


def depths(graph, layers):
    """{layer name: depth}: 0 if no BN layer is upstream of its inputs (every call's), else 1 + the
    deepest upstream. A shared layer with a call fed by its own output is refused."""
    own = {layer.name: {graph.get_tensor_by_name(out).op for _, out in call_sites(layer)} |
           {graph.get_operation_by_name(n) for n in (layer.bn_ops or []) if has_op(graph, n)}
           for layer in layers}
    upstream = {}
    for layer in layers:
        sites = call_sites(layer)
        for x, _ in sites:
            if own[layer.name] & walk.ancestors([graph.get_tensor_by_name(x).op], control=False):
                raise RecalibrateError(
                    f"{WHERE}: BN layer {layer.name} is shared by {len(sites)} calls and its call on {x} "
                    f"depends on the layer's own output, so its statistics cannot be pooled over one "
                    f"pass; recalibrate supports shared layers whose calls are side by side (towers)")
        above = walk.ancestors([graph.get_tensor_by_name(x).op for x, _ in sites], control=False)
        upstream[layer.name] = [other.name for other in layers
                                if other.name != layer.name and own[other.name] & above]
    result = {}

    def depth(name, trail=()):
        if name in trail:
            raise RecalibrateError(f"{WHERE}: BN layers {' -> '.join(trail + (name,))} form a cycle")
        if name not in result:
            result[name] = 1 + max((depth(u, trail + (name,)) for u in upstream[name]), default=-1)
        return result[name]
    for layer in layers:
        depth(layer.name)
    return result


@dataclasses.dataclass
class Layer:
    """One BN layer to recalibrate, with the graph pieces we add and its statistics."""
    info: object  # finder.BNLayer
    depth: int
    axis: int
    channels: int
    ddof: int
    mean_key: str
    var_key: str
    shape: tuple  # the moving statistics' shape in the checkpoint
    dtype: object
    old_mean: np.ndarray
    old_var: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    epsilon: float
    sites: list = None  # [(input, output)] per call; more than one for a shared layer
    input_moments: list = None  # fetches, one per call
    output_moments: list = None
    assign: object = None
    mean_value: object = None
    var_value: object = None
    moments: ChannelMoments = None  # pooled over the calls
    site_moments: list = None  # ChannelMoments per call (input)
    out_moments: list = None  # ChannelMoments per call (output)
    new_mean: np.ndarray = None
    new_var: np.ndarray = None


def moment_fetches(tensor, axis, name):
    """Float64 per-channel count, mean, M2 = sum (x - mean)^2 and max |x| of one batch."""
    rank = tensor.shape.rank
    with tf.name_scope(name):
        t64 = tf.cast(tensor, tf.float64)
        axes = [a for a in range(rank) if a != axis % rank]
        mean = tf.reduce_mean(t64, axes, keepdims=True)
        m2 = tf.reduce_sum(tf.square(t64 - mean), axes)
        count = tf.size(t64, out_type=tf.int64) // tf.cast(tf.shape(t64, out_type=tf.int64)[axis], tf.int64)
        return {"count": count, "mean": tf.reshape(mean, [-1]), "m2": m2,
                "absmax": tf.reduce_max(tf.abs(t64), axes)}


def _assign_op(graph, variable_name, dtype, shape):
    """An op writing a fed value into the variable (ref or resource), and its placeholder."""
    op = graph.get_operation_by_name(variable_name)
    value = tf.placeholder(dtype, shape, name="value")
    if op.type == "VarHandleOp":
        return tf.raw_ops.AssignVariableOp(resource=op.outputs[0], value=value), value
    return tf.assign(op.outputs[0], value, validate_shape=True), value


def prepare_layers(graph, reader, found, notes):
    """The recalibratable layers with their checkpoint values; RecalibrateError if none."""
    names = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    layers, narrowed = [], []
    for info in found.bn_layers:
        if info.moving_mean is None or info.moving_variance is None or \
                info.statistics_used_at_prediction is False:
            notes.append(f"{info.name}: no moving statistics used at prediction "
                         f"({info.kind}); nothing to recalibrate")
            continue
        if info.updates_at_prediction:
            raise RecalibrateError(
                f"{WHERE}: BN layer {info.name} updates its moving statistics whenever it predicts (the "
                f"update runs with its output), so every pass would move them; wire the update into the "
                f"train op only (python -m tf1_repro doctor explains), then recalibrate")
        for role, key in (("moving_mean", info.moving_mean), ("moving_variance", info.moving_variance)):
            if not has_op(graph, key) or graph.get_operation_by_name(key).type not in VARIABLE_OPS:
                raise RecalibrateError(f"{WHERE}: BN layer {info.name}'s {role} must be a variable, got "
                                       f"{key!r} (a constant? recalibrate needs a checkpoint)")
            if key not in names:
                raise RecalibrateError(f"{WHERE}: BN layer {info.name}'s {role} {key!r} is not in the "
                                       f"checkpoint (saved under another name?)")
        shape = tuple(names[info.moving_mean])
        channels = int(np.prod(shape)) if shape else 1
        epsilon = info.epsilon
        if epsilon is None:
            raise RecalibrateError(f"{WHERE}: BN layer {info.name}: its epsilon could not be found, so "
                                   f"the result cannot be checked")
        gamma = reader.get_tensor(info.gamma).astype(np.float64).reshape(-1) if info.gamma and \
            info.gamma in names else np.ones(channels)
        beta = reader.get_tensor(info.beta).astype(np.float64).reshape(-1) if info.beta and \
            info.beta in names else np.zeros(channels)
        layers.append(Layer(
            info=info, depth=0, axis=info.channel_axis, channels=channels, sites=call_sites(info),
            ddof=1 if (info.variance_estimator or ("unbiased" if info.kind == "fused" else None))
            == "unbiased" else 0,
            mean_key=info.moving_mean, var_key=info.moving_variance, shape=shape,
            dtype=dtypes[info.moving_mean].as_numpy_dtype,
            old_mean=reader.get_tensor(info.moving_mean).astype(np.float64).reshape(-1),
            old_var=reader.get_tensor(info.moving_variance).astype(np.float64).reshape(-1),
            gamma=gamma, beta=beta, epsilon=float(epsilon)))
        roles = calls.layer_calls(info)
        sites = roles.prediction_sites()
        if len(sites) > 1:
            notes.append(f"{info.name}: variables shared by {len(sites)} calls (inputs "
                         f"{', '.join(x for x, _ in sites)}): statistics pooled over every call's inputs "
                         f"(one population), each call's output checked")
        if len(sites) < len(roles.sites):
            narrowed.append(roles)
        if any("renormalisation" in note for note in info.notes):
            notes.append(f"{info.name}: batch renormalisation: prediction reads the moving mean and "
                         f"variance (recalibrated); its renorm variables (e.g. moving_stddev) are kept, and "
                         f"continued training derives the moving variance from them again")
        if info.variance_estimator is None:
            notes.append(f"{info.name}: no update op shows what its moving variance averages; stored "
                         + ("M2/(n-1), the fused kernel's Bessel-corrected convention" if info.kind == "fused"
                            else "the biased population variance M2/n"))
    if narrowed:
        notes.append(left_out_note(narrowed))
    if not layers:
        raise RecalibrateError(f"{WHERE}: PATH must hold BN layers that normalise with moving statistics "
                               f"at prediction, got {len(found.bn_layers)} BN layer(s), all using batch "
                               f"statistics at prediction (nothing to recalibrate)")
    return layers


def build(graph, layers):
    """Add the moment, output-moment (one of each per call) and assign ops (in our copy of the graph only)."""
    with graph.as_default(), tf.name_scope(SCOPE):
        for i, layer in enumerate(layers):
            layer.input_moments, layer.output_moments = [], []
            for j, (x_name, y_name) in enumerate(layer.sites):
                x, y = graph.get_tensor_by_name(x_name), graph.get_tensor_by_name(y_name)
                if x.shape.rank is None or x.shape.rank < 2:
                    raise RecalibrateError(f"{WHERE}: BN layer {layer.info.name}'s input {x.name} must have "
                                           f"a known rank >= 2, got shape {x.shape}")
                dim = x.shape[layer.axis]
                if dim is not None and int(dim) != layer.channels:
                    raise RecalibrateError(f"{WHERE}: BN layer {layer.info.name}: input {x.name} has "
                                           f"{int(dim)} channels on axis {layer.axis}, its moving statistics "
                                           f"{layer.channels}")
                layer.input_moments.append(moment_fetches(x, layer.axis, f"input_{i}_{j}"))
                layer.output_moments.append(moment_fetches(y, layer.axis, f"output_{i}_{j}"))
            with tf.name_scope(f"assign_{i}"):
                mean_op, layer.mean_value = _assign_op(graph, layer.mean_key, layer.dtype, layer.shape)
                var_op, layer.var_value = _assign_op(graph, layer.var_key, layer.dtype, layer.shape)
                layer.assign = tf.group(mean_op, var_op)


def resolve_checkpoint(path):
    """(checkpoint prefix, .meta path) from a prefix or a directory with a ``.meta``."""
    if os.path.isdir(path):
        prefix = artefacts.latest_checkpoint(path)  # this folder's files, whatever the state file says
        if prefix is None:
            raise RecalibrateError(f"{WHERE}: PATH must be a checkpoint prefix or a directory with a "
                                   f"checkpoint and its .meta, got directory {path!r} without a checkpoint")
    else:
        prefix = path[:-len(".index")] if path.endswith(".index") else path
        if path.endswith(".meta"):
            prefix = path[:-len(".meta")]
        if not os.path.isfile(prefix + ".index"):
            raise RecalibrateError(f"{WHERE}: PATH must be a checkpoint prefix (PREFIX.index exists) or a "
                                   f"directory, got {path!r}{_unreadable(path)}")
    meta = prefix + ".meta"
    if not os.path.isfile(meta):
        metas = glob.glob(os.path.join(os.path.dirname(prefix) or ".", "*.meta"))
        if len(metas) != 1:
            raise RecalibrateError(f"{WHERE}: PATH needs the graph: {prefix}.meta must exist (or exactly "
                                   f"one .meta beside it), got {len(metas)} .meta file(s)")
        meta = metas[0]
    return prefix, meta


def _unreadable(path):
    """``" (READER'S LINE)"`` when the artefact readers cannot read ``path`` (a corrupt file is
    named as such, not only as the wrong kind), else ``""``."""
    if not os.path.exists(path):
        return ""
    try:
        artefacts.load(path)
    except artefacts.ArtefactError as err:
        return f" ({err})"
    return ""


def checkpoint_reader(prefix):
    """``tf.train.load_checkpoint(prefix)``; RecalibrateError with one line when the checkpoint
    cannot be read (a garbage or truncated ``.index``)."""
    try:
        return tf.train.load_checkpoint(prefix)
    except Exception as err:  # pylint: disable=broad-except
        raise RecalibrateError(f"{WHERE}: {prefix}: unreadable checkpoint "
                               f"({first_line(err)})") from None


def open_checkpoint(prefix, meta):
    """(graph, session, meta graph): a new graph with the .meta imported (names unchanged), a session
    with the checkpoint's values, and the MetaGraphDef (what the finder reads).

    ``tf1_repro.graph.artefacts`` restores each variable through its own assign ops,
    so none of the user's save/restore ops run. Those assign ops are in the returned graph,
    which is why the finder reads the MetaGraphDef instead (a structural finder may take them
    for writes, e.g. of a renorm layer's gamma).
    """
    try:
        graph_only = artefacts.load(meta)
        art = artefacts.Artefact("checkpoint", prefix, graph_only.graph_def, graph_only.meta_graph, prefix)
        return (*art.open(), graph_only.meta_graph)
    except artefacts.ArtefactError as err:
        raise RecalibrateError(f"{WHERE}: {err}") from None
