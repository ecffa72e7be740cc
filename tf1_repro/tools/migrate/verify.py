"""The TF1 side of the verification: each layer's prediction-mode inputs and outputs, from the
user's graph (``graph_inputs``) or a self-check through the article's ``bn_layer``
(``name_inputs``), and the comparison with Keras 3's outputs (``compare``)."""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph import artefacts, feeds, safety, walk
from tf1_repro.graph.errors import OWN_SCOPES, InputError, run_error_line, short_list
from tf1_repro.layers.bn import bn_layer, bn_variables
from tf1_repro.tools.migrate.common import RANDOM_BATCH, ROLES, TOLERANCE, MigrateError

# migrate's --data message predates the shared one; kept word for word
UNREADABLE_DATA = ("{where}: {what} must be a .npz file of input arrays, got {path!r} "
                   "({error_type}: {first_line:.120})")


def load_data(path):
    """``{name: array}`` of ``--data`` (None without it); MigrateError when it cannot be read."""
    if path is None:
        return None
    try:
        return feeds.load_npz(path, "migrate", unreadable=UNREADABLE_DATA)
    except InputError as err:
        raise MigrateError(str(err)) from None


def _graph_feeds(graph, findings, data, seed):
    """``(feeds, fed, unbound)``: the finder's prediction feeds, ``--data`` arrays by
    placeholder name (a mode input too), random normal values for the other float placeholders;
    ``fed`` ({"--data"|"random"|"nothing": [names]}) says which of the user's placeholders got
    what (the restore placeholders our ``Artefact.open`` added are not the user's: left out);
    ``unbound`` ({name: what}) are mode inputs with no prediction value that ``--data`` does
    not give: a vanilla dropout's keep_prob, whose prediction value is its training value."""
    feeds_ = dict(findings.prediction_feeds())
    unbound = feeds.unbound_mode_inputs(findings)
    mode_names = {m.name for m in findings.mode_inputs}
    rng = np.random.default_rng(seed)
    for name in list(unbound):
        if data is not None and (name in data or f"{name}:0" in data):
            feeds_[f"{name}:0"] = data.get(name, data.get(f"{name}:0"))
            del unbound[name]
    placeholders = [op for op in graph.get_operations()
                    if op.type == "Placeholder" and op.name not in mode_names and
                    not op.name.startswith(tuple(f"{scope}/" for scope in OWN_SCOPES))]
    fed = {"--data": [], "random": [], "nothing": []}
    for op in placeholders:
        tensor = op.outputs[0]
        if data is not None:
            value = data.get(op.name, data.get(tensor.name))
            if value is None and len(data) == 1 and len(placeholders) == 1 and \
                    not _names_a_node(graph, next(iter(data))):  # one array for one placeholder
                value = next(iter(data.values()))
            if value is not None:
                feeds_[tensor.name] = value
                fed["--data"].append(op.name)
                continue
        if tensor.dtype.is_floating and tensor.shape.rank is not None:
            shape = [RANDOM_BATCH if d is None else d for d in tensor.shape.as_list()]
            feeds_[tensor.name] = rng.standard_normal(shape).astype(tensor.dtype.as_numpy_dtype)
            fed["random"].append(op.name)
        else:
            fed["nothing"].append(op.name)
    return feeds_, fed, unbound


def _names_a_node(graph, key):
    try:
        graph.get_operation_by_name(key.split(":")[0])
    except KeyError:
        return False
    return True


def _fed_text(fed):
    """What the user's placeholders were fed: ``--data: 'images'; nothing: 'ids'``."""
    return "; ".join(f"{how}: {short_list(names)}" for how, names in
                     (("--data", fed["--data"]), ("random floats", fed["random"]),
                      ("nothing", fed["nothing"])) if names) or "no placeholders"


def _unbound_above(graph, unbound, tensors):
    """The first unbound mode input the tensors depend on, as ``(name, what)``, or None."""
    above = {op.name for op in walk.ancestors([graph.get_tensor_by_name(t).op for t in tensors])}
    return next(((n, w) for n, w in sorted(unbound.items()) if n in above), None)


def _named_output(graph, name):
    """``(input, output)`` tensor names of ``tf.nn.batch_normalization`` under the layer's scope
    (``{name}/.../batchnorm/add_1 = x * inv + offset``, x from outside the scope), or None
    when there is not exactly one."""
    outs = [op for op in graph.get_operations() if op.type in ("Add", "AddV2") and
            op.name.startswith(name + "/") and op.name.endswith("/batchnorm/add_1")]
    if len(outs) != 1:
        return None
    out = outs[0]
    scope = out.name[: -len("add_1")]
    for mul in (t.op for t in out.inputs if t.op.type == "Mul" and t.op.name.startswith(scope)):
        outside = [t for t in mul.inputs if not t.op.name.startswith(scope)]
        if len(outside) == 1 and outside[0].shape.is_compatible_with(out.outputs[0].shape):
            return outside[0].name, out.outputs[0].name
    return None


def graph_inputs(art, layers, findings, data, seed):
    """``({layer: [(input, TF1 output) per call]}, reference)`` in prediction mode, pushed through
    the user's graph: the finder's layers (every call of a shared one), and layers found by names
    whose ``tf.nn.batch_normalization`` output is found by name (``{layer}/batchnorm/add_1``)."""
    try:
        graph, sess = art.open()
    except artefacts.ArtefactError as err:
        if any(layer.found_by == "graph" for layer in layers):
            # the message says what the graph must do before the artefact's own line
            raise MigrateError(f"migrate: PATH's graph must open with its checkpoint, got "
                               f"{err}") from None
        for layer in layers:
            layer.notes.append(f"the graph cannot be run ({err}): the check is only a "
                               f"self-check")
        return {}, "the user's graph could not be opened"
    try:
        io = _run_graph(graph, sess, layers, findings, data, seed)
    finally:
        sess.close()
    return io, "the user's graph in prediction mode (" + ("--data" if data else "random inputs") + ")"


def _run_graph(graph, sess, layers, findings, data, seed):
    """The finder's layers' calls, run in one ``session.run``; then each name-found layer's
    ``batchnorm/add_1`` output where it can be run (a self-check, noted, where it cannot)."""
    feeds_, fed, unbound = _graph_feeds(graph, findings, data, seed)
    fetches = {layer.name: [tuple(c) for c in layer.call_sites] for layer in layers
               if layer.found_by == "graph"}
    tensors = [t for calls in fetches.values() for pair in calls for t in pair]
    unsafe = safety.unsafe_to_run(graph, tensors) if tensors else None
    if unsafe:
        raise MigrateError(f"migrate: {safety.refusal(unsafe, 'the BN layers')}")
    needed = _unbound_above(graph, unbound, tensors)
    if needed:
        raise MigrateError(
            f"migrate: --data must give placeholder {needed[0]!r}, the keep_prob of "
            f"{needed[1]} before the BN layers (prediction multiplies by keep_prob, so it "
            f"needs the value it trained with, which the graph does not hold), got "
            f"{'no --data' if data is None else 'no array ' + repr(needed[0]) + ' in --data'}")
    try:
        values = sess.run(fetches, feeds_) if fetches else {}
    except (tf.errors.OpError, ValueError, KeyError) as err:
        raise MigrateError(f"migrate: --data must feed the graph's inputs for the BN layers "
                           f"(fed {_fed_text(fed)}), got {type(err).__name__}: "
                           f"{run_error_line(err, 200)}") from None
    io = {}
    for layer in layers:
        if layer.name in values:
            io[layer.name] = [(np.asarray(i), np.asarray(o)) for i, o in values[layer.name]]
            layer.verified_against = "graph"
            continue
        pair = _named_output(graph, layer.name)
        if pair is None:
            layer.notes.append(f"no {layer.name}/batchnorm/add_1 output found in the "
                               f"graph: the check is only a self-check")
            continue
        needed = _unbound_above(graph, unbound, pair)
        if needed:
            layer.notes.append(f"the graph's output {pair[1]} is not run: it needs "
                               f"placeholder {needed[0]!r} ({needed[1]}) in --data: the "
                               f"check is only a self-check")
            continue
        if safety.unsafe_to_run(graph, list(pair)):
            layer.notes.append(f"the graph's output {pair[1]} is not run (file/IO/Python ops "
                               f"before it): the check is only a self-check")
            continue
        try:
            i, o = sess.run(list(pair), feeds_)
        except (tf.errors.OpError, ValueError, KeyError) as err:
            layer.notes.append(f"the graph's output {pair[1]} could not be run "
                               f"({type(err).__name__}: {run_error_line(err, 160)}): the "
                               f"check is only a self-check")
            continue
        io[layer.name] = [(np.asarray(i), np.asarray(o))]
        layer.verified_against = f"graph output {pair[1]} (found by name)"
        layer.call_sites = [list(pair)]
    return io


def _article_outputs(weights, inputs, epsilon, axis=-1):
    """The article's TF1 ``bn_layer`` in prediction mode with the given values (channels on
    ``axis``: moved last for ``bn_layer`` and back)."""
    inputs_last = np.moveaxis(inputs, axis, -1)
    with tf.Graph().as_default() as graph:
        x = tf.placeholder(tf.float32, (None,) + inputs_last.shape[1:])
        out = bn_layer(x, False, name="verify", eps=epsilon)
        variables = bn_variables("verify")
        with tf.Session(graph=graph) as sess:
            for role in ROLES:
                variables[role].load(weights[role].astype(np.float32), sess)
            return np.moveaxis(np.asarray(sess.run(out, {x: inputs_last})), -1, axis)


def name_inputs(layers, weights, data, seed):
    """A self-check: inputs from ``--data[layer]`` or at the layer's moving statistics, through
    the article's TF1 ``bn_layer`` with the same values and the same (maybe assumed) epsilon."""
    rng = np.random.default_rng(seed)
    result = {}
    for layer in layers:
        w = weights[layer.name]
        axis, channels = layer.channel_axis, w["gamma"].shape[0]
        rank = max([2] + [len(s) for s in layer.stored_shapes.values()]) if axis != -1 else 2
        if data is not None and layer.name in data:
            inputs = data[layer.name].astype(np.float32)
            if inputs.ndim < 2 or inputs.shape[axis] != channels:
                raise MigrateError(f"migrate: --data[{layer.name!r}] must have {channels} "
                                   f"channels on axis {axis}, got shape {list(inputs.shape)}")
        else:
            mean, var = w["moving_mean"].astype(np.float64), w["moving_variance"].astype(np.float64)
            shape = [RANDOM_BATCH] + [2] * (rank - 2) + [channels]
            inputs = (mean + np.sqrt(np.maximum(var, 1e-6)) * rng.standard_normal(shape))
            inputs = np.moveaxis(inputs, -1, axis).astype(np.float32)
        result[layer.name] = [(inputs, _article_outputs(w, inputs, layer.epsilon, axis))]
        layer.verified_against = "self-check"
        layer.call_sites = [["inputs", "outputs"]]
    how = "--data" if data is not None else "random inputs at each layer's moving statistics"
    return result, (f"a self-check for {', '.join(layer.name for layer in layers)}: the "
                    f"article's TF1 bn_layer with the same values and epsilon ({how}); it cannot "
                    f"show that epsilon is right")


def compare(layer, calls, keras_out):
    """The Keras 3 outputs vs the TF1 outputs of every call; the layer's diff is the worst call's."""
    diffs = []
    for i, (_, tf1_out) in enumerate(calls):
        key = layer.name if i == 0 else f"{layer.name}@call{i}"
        tf1_out = tf1_out.astype(np.float64)
        diff, scale = _max_diff(keras_out[f"{key}/outputs"], tf1_out)
        diffs.append((diff, diff / max(scale, 1e-12)))
        bad = ~np.isfinite(tf1_out)
        if bad.any():
            layer.notes.append(f"the TF1 layer itself outputs NaN/inf at {int(bad.sum())} of "
                               f"{bad.size} values (statistics as stored); compared where finite, "
                               f"NaN/inf required at the same places")
    layer.max_abs_diff = max(d for d, _ in diffs)
    layer.relative_diff = max(r for _, r in diffs)
    layer.ok = layer.relative_diff <= TOLERANCE
    if len(calls) > 1:
        layer.call_site_relative_diffs = [r for _, r in diffs]
        layer.notes.append(
            f"the variables are shared by {len(calls)} calls (inputs "
            f"{', '.join(c[0] for c in layer.call_sites)}): one Keras 3 layer serves them all; "
            f"verified on each call's own input and output (relative diff per call: "
            f"{', '.join(f'{r:.3g}' for _, r in diffs)})")
    if not layer.ok and layer.graph_not_understood and layer.verified_against != "self-check":
        layer.notes.append(
            f"the Keras 3 layer with epsilon {layer.epsilon:g} (not read from the graph) "
            f"differs from the graph's own output by {layer.relative_diff:.3g} relative: the "
            f"graph's epsilon (or its formula) is another; set --epsilon to the graph's value")


def _max_diff(keras_out, tf1_out):
    """(max |diff| where both are finite, max |TF1 output| there); inf if the NaN/inf places differ."""
    keras_out = np.asarray(keras_out, np.float64)
    bad = ~np.isfinite(tf1_out)
    if not np.array_equal(bad, ~np.isfinite(keras_out)):
        return float("inf"), 1.0
    if bad.all():
        return 0.0, 1.0
    good = ~bad
    return (float(np.abs(keras_out[good] - tf1_out[good]).max()),
            float(np.abs(tf1_out[good]).max()))
