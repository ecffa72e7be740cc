"""``migrate``: BN weights from any TF1 checkpoint to Keras 3, verified layer by layer, and back.

``to_keras3(path, out)``:

1. Load the checkpoint (``artefacts.load``: a prefix, a directory, or a ``.meta``). With a
   graph (``PREFIX.meta``) the structural finder gives each BN layer's variables, epsilon,
   decay (an ``ExponentialMovingAverage(c, num_updates=step)`` schedule: its cap ``c``, read
   from the graph), channel axis, call sites and moving-variance estimator. Layers it does
   not find (or without a graph) come from ``naming.layers_from_names`` (article,
   tf.layers/Keras, slim; scale/center=False); their epsilon/momentum are *assumed* (1e-5 and
   0.9, or ``--epsilon``/``--momentum``), and with a graph the report says it was not
   understood. Statistics, gamma and beta may be (C,) or broadcast to one axis ((1, C),
   (1, 1, 1, C), (1, C, 1, 1)); the channel axis is then the non-1 one.
2. Write ``weights.npz`` (``{layer}/gamma|beta|moving_mean|moving_variance``, the
   checkpoint's values unchanged, reshaped to (C,); a missing gamma/beta is 1/0, noted) and
   ``layers.json`` (with the stored shapes, channel axis and what each layer was checked
   against).
3. Verify in Keras 3 (a child process): each layer is built with the converted weights
   (``ArticleBatchNormalization`` for the article's layers on the last axis, stock
   ``BatchNormalization(axis=channel_axis)`` otherwise; ``compare-keras3`` measures that both
   reproduce their TF1 layer) and fed the inputs the TF1 layer gets in prediction mode: from
   ``--data``, or random inputs pushed through the user's graph (restored, prediction feeds;
   every call of a layer shared by several calls, each against its own output; a vanilla
   dropout's keep_prob before a layer has no prediction value in the graph and must be an
   array in ``--data``, else the command refuses). A layer the
   finder missed is checked against the graph's own ``{layer}/batchnorm/add_1`` output when
   there is exactly one (so an assumed epsilon that is wrong fails); otherwise, and without a
   graph, the check is only a self-check: random inputs at the layer's moving statistics fed
   to the article's TF1 ``bn_layer`` restored with the same values and epsilon. A layer
   fails above ``TOLERANCE`` relative (max |diff| / max |TF1 output|). Batch renormalisation
   is dropped (noted: prediction is the same, continued training is not).
4. For the demo model (``model.json`` beside the checkpoint): ``model.keras`` with
   ``ArticleBatchNormalization``; its predictions vs the TF1 checkpoint's on held-out data;
   then ``train_steps`` more training steps in both (the same batches, dropout off,
   Adam's state from the checkpoint), comparing every BN shadow after every step.

``to_article(path, out)``: Keras 3 weights (``weights.npz`` as above, or a ``.weights.h5``)
to an article-named TF1 checkpoint ``DIR/model.ckpt`` (``P/gamma``, ``P/beat``,
``P/P/moments/Squeeze/ema``, ``P/P/moments/Squeeze_1/ema``; from a ``.weights.h5`` or
``.keras`` also Dense/Conv ``{layer}/kernel`` and ``{layer}/bias``), read back and compared
bitwise, names found again by ``naming``.

Bad input raises ``MigrateError`` (one line; exit status 2) before anything is written.
"""

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.layers.bn import article_variable_names, bn_layer, bn_variables
from tf1_repro.graph import artefacts, safety, walk
from tf1_repro.comparisons import keras3_worker
from tf1_repro.tools import naming
from tf1_repro.graph.control_flow import tf2_control_flow
from tf1_repro.graph.errors import InputError

TARGETS = ("keras3", "article")
ROLES = naming.ROLES
TOLERANCE = 1e-5
TRAJECTORY_TOLERANCE = 1e-4
WEIGHTS, LAYERS, MODEL, REPORT = "weights.npz", "layers.json", "model.keras", "migration.json"
ARTICLE_PREFIX = "model.ckpt"
DEFAULT_EPSILON, DEFAULT_MOMENTUM = 1e-5, 0.9
RANDOM_BATCH = 64


class MigrateError(InputError):
    """A refused input: one line, exit status 2; nothing was written."""


def _nice(value):
    """A float32 setting (9.99999975e-06) as the short decimal it was written as (1e-05)."""
    return None if value is None else float(str(np.float32(value)))


def check_settings(to, epsilon, momentum, train_steps):
    """The command's settings, checked in one place."""
    if to not in TARGETS:
        raise MigrateError(f"migrate: --to must be one of {', '.join(TARGETS)}, got {to!r}")
    if epsilon is not None and not (isinstance(epsilon, (int, float)) and 0 < epsilon < np.inf):
        raise MigrateError(f"migrate: --epsilon must be a finite number > 0, got {epsilon!r}")
    if momentum is not None and not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
        raise MigrateError(f"migrate: --momentum must be in [0, 1] (the TF1 decay), got {momentum!r}")
    if isinstance(train_steps, bool) or not isinstance(train_steps, int) or train_steps < 0:
        raise MigrateError(f"migrate: train_steps must be an integer >= 0, got {train_steps!r}")


def _check_out(out, marker, force):
    if os.path.exists(out) and not os.path.isdir(out):
        raise MigrateError(f"migrate: --out must be a directory, got {out!r}, which is a file")
    if os.path.exists(os.path.join(out, marker)) and not force:
        raise MigrateError(f"migrate: --out must not hold {marker} already (pass --force to "
                           f"overwrite), got {out!r} with {marker}")


# ---- discovery ----------------------------------------------------------------------------

def _load(path):
    try:
        art = artefacts.load(path)
    except artefacts.ArtefactError as err:
        raise MigrateError(f"migrate: PATH must be a TF1 checkpoint (prefix, directory or .meta), "
                           f"got {err}") from None
    if art.checkpoint is None:
        raise MigrateError(f"migrate: PATH must be a TF1 checkpoint (prefix, directory or .meta), "
                           f"got {path!r} ({art.format} without checkpoint values)")
    return art


def _graph_layers(art, variables):
    """Layers from the structural finder whose statistics are checkpoint variables, with the
    imported graph (to read decay schedules) and the findings."""
    from tf1_repro.tools import finder  # pylint: disable=import-outside-toplevel
    graph = art.import_graph()
    found = finder.find(graph)
    control_flow = tf2_control_flow(graph, found)
    if control_flow:
        raise MigrateError(f"migrate: {control_flow}; nothing written")
    layers = []
    for b in found.bn_layers:
        keys = {role: getattr(b, role) for role in ROLES}
        if keys["moving_mean"] not in variables or keys["moving_variance"] not in variables:
            continue
        # the sharing is said again with the per-call check (_compare)
        notes = [n for n in b.notes if not n.startswith("the variables are shared by")]
        for role, filler in (("gamma", "1"), ("beta", "0")):
            if keys[role] is not None and keys[role] not in variables:
                notes.append(f"{role} {keys[role]} is not a checkpoint variable: filled with {filler}")
                keys[role] = None
            elif keys[role] is None:
                notes.append(f"no {role} ({'scale' if role == 'gamma' else 'center'}=False?): "
                             f"filled with {filler}")
        if b.updates_at_prediction:
            notes.append("the TF1 graph updates this layer's moving statistics at prediction time "
                         "too (its EMA runs outside the tf.cond), so its prediction outputs move "
                         "with each batch; Keras 3 predicts from the stored values")
        if b.statistics_used_at_prediction is False:
            notes.append("the TF1 layer normalises with batch statistics at prediction time; Keras "
                         "3 prediction uses the moving statistics")
        renorm = sorted(k for k in variables if k.startswith(b.name + "/renorm_"))
        if renorm or any("renormalisation" in note for note in b.notes):
            notes.append("renorm is dropped: the TF1 layer uses batch renormalisation, the Keras 3 "
                         "layer is a plain BatchNormalization; prediction is the same (moving "
                         "statistics, gamma, beta), continued training is not (no r/d corrections"
                         + (f"; {', '.join(renorm)} not migrated)" if renorm else ")"))
        layers.append({"name": b.name, "naming": b.kind, **keys,
                       "shapes": {r: list(variables[k]) for r, k in keys.items() if k},
                       "notes": notes, "epsilon": b.epsilon, "decay": b.decay,
                       "decay_schedule": None if b.decay is not None else
                       _decay_schedule(graph, b.update_ops),
                       "variance_estimator": b.variance_estimator, "found_by": "graph",
                       "channel_axis": int(b.channel_axis),
                       "call_sites": _moving_calls(graph, b, keys, notes),
                       "input": b.input, "output": b.output})
        layers[-1]["input"], layers[-1]["output"] = layers[-1]["call_sites"][0]
    return layers, found, graph


def _moving_calls(graph, layer, keys, notes):
    """The calls of a layer (``[input, output]`` each) that Keras 3 must reproduce: when its
    variables are shared by several calls and some read the moving statistics (the variables
    are data inputs of the call's output) while others do not (a training tower normalising
    with batch statistics, e.g. DCGAN's ``batch_norm(train=True)``), only the former, with a
    note naming the others."""
    sites = [list(c) for c in layer.call_sites] if len(layer.call_sites) > 1 \
        else [[layer.input, layer.output]]
    if len(sites) < 2:
        return sites
    stats = {keys["moving_mean"], keys["moving_variance"]}
    names = {op.name for op in graph.get_operations()}
    moving = []
    for site in sites:
        if site[1].split(":")[0] not in names:
            return sites
        reads = {op.name for op in walk.ancestors([graph.get_tensor_by_name(site[1]).op],
                                                    control=False)}
        moving.append(bool(stats & reads))
    if any(moving) and not all(moving):
        left = [site[0] for site, m in zip(sites, moving) if not m]
        notes.append(f"call(s) on {', '.join(left)} normalise with batch statistics (a training "
                     f"call) and are not checked: Keras 3 prediction uses the moving statistics")
        return [site for site, m in zip(sites, moving) if m]
    return sites


def _decay_schedule(graph, update_ops):
    """The cap ``c`` of an ``ExponentialMovingAverage(c, num_updates=step)`` decay, whose update
    ops decay by ``min(c, (1 + step) / (10 + step))``: a ``Minimum`` of a scalar Const in (0, 1)
    and a division among the update ops' data inputs; None when there is none."""
    names = {o.name for o in graph.get_operations()}
    ops = [graph.get_operation_by_name(n) for n in update_ops if n in names]
    for op in sorted(walk.ancestors(ops, control=False), key=lambda o: o.name):
        if op.type != "Minimum":
            continue
        for const, other in ((op.inputs[0], op.inputs[1]), (op.inputs[1], op.inputs[0])):
            if const.op.type != "Const" or other.op.type not in ("RealDiv", "Div", "TrueDiv"):
                continue
            value = tf.make_ndarray(const.op.get_attr("value"))
            if value.size == 1 and 0 < float(value.ravel()[0]) < 1:
                return {"cap": _nice(value.ravel()[0]), "op": op.name}
    return None


def _name_layers(variables, known, graph_present):
    """Layers found by checkpoint names whose statistics no graph layer holds."""
    layers = [layer for layer in naming.layers_from_names(variables)
              if layer["moving_mean"] not in known]
    for layer in layers:
        layer["found_by"] = "names"
        layer["graph_not_understood"] = graph_present
        shapes = [s for s in layer["shapes"].values() if s]
        layer["channel_axis"] = naming.channel_axis(max(shapes, key=len)) if shapes else -1
        if graph_present:
            layer["notes"].append("the .meta graph was not understood: the structural finder found "
                                  "no BN layer with these variables, so the layer was found by "
                                  "checkpoint names and its epsilon and momentum are not read from "
                                  "the graph (assumed unless --epsilon/--momentum give them)")
    return layers


def discover(art, epsilon=None, momentum=None):
    """``(layers, findings or None, graph or None, source)``: each layer a dict as
    ``naming.layers_from_names`` gives, plus the settings it will have in Keras 3 and where
    they come from. Layers the finder misses in a graph are found by names (and say so)."""
    variables = {k: list(v) for k, v in art.variables().items()}
    findings = graph = None
    layers = []
    graph_present = art.meta_graph is not None or art.graph_def is not None
    if graph_present:
        layers, findings, graph = _graph_layers(art, variables)
    layers += _name_layers(variables, {layer["moving_mean"] for layer in layers}, graph_present)
    if not layers:
        raise MigrateError(f"migrate: PATH must hold BN layers (article gamma/beat/…/ema, "
                           f"gamma/beta/moving_mean/moving_variance or slim BatchNorm/…), got "
                           f"none among the {len(variables)} variables of {art.checkpoint}")
    for layer in layers:
        problem = naming.shape_problem(layer)
        if problem:
            raise MigrateError(f"migrate: {problem}")
        _settings(layer, epsilon, momentum)
    by = sorted({layer["found_by"] for layer in layers})
    return layers, findings, graph, " and ".join(by)


def _settings(layer, epsilon, momentum):
    assumed = []
    from_graph = layer["found_by"] == "graph"
    schedule = layer.get("decay_schedule")
    for key, given, read, default, flag in (
            ("epsilon", epsilon, layer.get("epsilon"), DEFAULT_EPSILON, "--epsilon"),
            ("momentum", momentum, layer.get("decay"), DEFAULT_MOMENTUM, "--momentum")):
        if given is not None:
            layer[key] = float(given)
            if read is not None and _nice(read) != float(given):
                layer["notes"].append(f"{key} {float(given):g} set by {flag}; the graph says "
                                      f"{_nice(read):g}")
        elif read is not None:
            layer[key] = _nice(read)
        elif key == "momentum" and schedule is not None:
            cap = schedule["cap"]
            start = int(np.ceil((10 * cap - 1) / (1 - cap)))
            layer[key] = cap
            layer["notes"].append(
                f"the TF1 decay is a schedule, min({cap:g}, (1 + step) / (10 + step)) "
                f"(ExponentialMovingAverage num_updates; {schedule['op']}), capped at {cap:g} from "
                f"step {start}: Keras 3's momentum is a constant, set to the cap {cap:g}; "
                f"{flag} sets it")
        else:
            layer[key] = default
            assumed.append(key)
            if from_graph:
                why = "the graph's decay is not a constant the finder can read"
            elif layer.get("graph_not_understood"):
                why = "the .meta graph was not understood"
            else:
                why = "no graph says it"
            layer["notes"].append(f"{key} {default:g} assumed ({why}); {flag} sets it")
    estimator = layer.get("variance_estimator")
    if estimator is None:
        estimator = "biased" if layer["naming"] == "article" else None
        if estimator:
            assumed.append("moving_variance_estimator")
    layer["moving_variance_estimator"] = estimator
    layer["assumed"] = assumed
    article = layer["naming"] == "article"
    layer["keras_layer"] = "ArticleBatchNormalization" if article else "BatchNormalization"
    if not article and layer["channel_axis"] != -1:
        layer["notes"].append(f"channels on axis {layer['channel_axis']} (NCHW): the Keras 3 layer "
                              f"is BatchNormalization(axis={layer['channel_axis']})")
    if article and layer["channel_axis"] != -1:
        layer["keras_layer"] = "BatchNormalization"
        layer["notes"].append(
            f"channel axis {layer['channel_axis']}: ArticleBatchNormalization normalises the last "
            f"axis only, so the layer is a stock BatchNormalization(axis="
            f"{layer['channel_axis']}), which predicts the same gamma * (x - mean) / sqrt(var + "
            f"eps) + beta and updates the same way (biased batch variance, shadow = momentum * "
            f"shadow + (1 - momentum) * batch)")
    if estimator == "unbiased":
        layer["notes"].append("the TF1 layer averages Bessel-corrected (n/(n-1)) batch variances "
                              "(a fused kernel); Keras 3 BatchNormalization averages biased ones, "
                              "so continued training moves the moving variance by (n-1)/n; "
                              "the stored value is copied unchanged, so predictions carry over")


# ---- reading values ---------------------------------------------------------------------

def layer_weights(art, layer):
    """``{role: array}``: the checkpoint's values unchanged, a per-channel shape that broadcasts
    to the channel axis ((1, C), (1, 1, 1, C), (1, C, 1, 1)) written as (C,) and noted."""
    values = {}
    for role in ("moving_mean", "moving_variance", "gamma", "beta"):
        if layer[role] is not None:
            values[role] = art.read(layer[role])
    channels = int(np.prod(values["moving_mean"].shape))
    layer["stored_shapes"] = {role: list(v.shape) for role, v in values.items()}
    for role, value in list(values.items()):
        if value.shape != (channels,):
            layer["notes"].append(f"{role} stored as {list(value.shape)} (broadcast to the channel "
                                  f"axis): written to {WEIGHTS} as ({channels},)")
            values[role] = value.reshape(channels)
    variance = values["moving_variance"]
    if not np.isfinite(variance).all() or (variance < 0).any():
        layer["notes"].append(f"moving_variance has {int((~np.isfinite(variance)).sum())} NaN/inf "
                              f"and {int((variance < 0).sum())} negative values: copied as they are")
    dtype = values["moving_mean"].dtype
    if "gamma" not in values:
        values["gamma"] = np.ones(channels, dtype)
    if "beta" not in values:
        values["beta"] = np.zeros(channels, dtype)
    return {role: values[role] for role in ROLES}


def _load_data(path):
    if path is None:
        return None
    try:
        with np.load(path) as loaded:
            arrays = {k: np.asarray(v) for k, v in loaded.items()}
    except (OSError, ValueError) as err:
        raise MigrateError(f"migrate: --data must be a .npz file of input arrays, got {path!r} "
                           f"({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    if not arrays:
        raise MigrateError(f"migrate: --data must hold at least one array, got {path!r} (empty)")
    return arrays


# ---- TF1 side of the verification ------------------------------------------------------

def _graph_feeds(graph, findings, data, seed):
    """``(feeds, placeholder names, unbound)``: the finder's prediction feeds, ``--data`` arrays by
    placeholder name (a mode input too), random normal values for the other float placeholders;
    ``unbound`` ({name: what}) are mode inputs with no prediction value that ``--data`` does
    not give: a vanilla dropout's keep_prob, whose prediction value is its training value."""
    feeds = dict(findings.prediction_feeds())
    drops = {(d.keep_prob or {}).get("name"): d.name for d in findings.dropouts}
    unbound = {m.name: f"vanilla dropout {drops[m.name]}" if m.name in drops else f"{m.role} input"
               for m in findings.unbound_mode_inputs()}
    mode_names = {m.name for m in findings.mode_inputs}
    rng = np.random.default_rng(seed)
    for name in list(unbound):
        if data is not None and (name in data or f"{name}:0" in data):
            feeds[f"{name}:0"] = data.get(name, data.get(f"{name}:0"))
            del unbound[name]
    placeholders = [op for op in graph.get_operations()
                    if op.type == "Placeholder" and op.name not in mode_names]
    for op in placeholders:
        tensor = op.outputs[0]
        if data is not None:
            value = data.get(op.name, data.get(tensor.name))
            if value is None and len(data) == 1 and len(placeholders) == 1:
                value = next(iter(data.values()))
            if value is not None:
                feeds[tensor.name] = value
                continue
        if tensor.dtype.is_floating and tensor.shape.rank is not None:
            shape = [RANDOM_BATCH if d is None else d for d in tensor.shape.as_list()]
            feeds[tensor.name] = rng.standard_normal(shape).astype(tensor.dtype.as_numpy_dtype)
    return feeds, [p.name for p in placeholders], unbound


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


def _graph_inputs(art, layers, findings, data, seed):
    """``{layer: [(input, TF1 output) per call]}`` in prediction mode, pushed through the user's
    graph: the finder's layers (every call of a shared one), and layers found by names whose
    ``tf.nn.batch_normalization`` output is found by name (``{layer}/batchnorm/add_1``)."""
    try:
        graph, sess = art.open()
    except artefacts.ArtefactError as err:
        if any(layer["found_by"] == "graph" for layer in layers):
            raise MigrateError(f"migrate: PATH's graph must open with its checkpoint, got "
                               f"{err}") from None
        for layer in layers:
            layer["notes"].append(f"the graph cannot be run ({err}): the check is only a "
                                  f"self-check")
        return {}, "the user's graph could not be opened"
    io = {}
    try:
        feeds, placeholders, unbound = _graph_feeds(graph, findings, data, seed)
        fetches = {layer["name"]: [tuple(c) for c in layer["call_sites"]] for layer in layers
                   if layer["found_by"] == "graph"}
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
            values = sess.run(fetches, feeds) if fetches else {}
        except (tf.errors.OpError, ValueError, KeyError) as err:
            raise MigrateError(f"migrate: --data must feed the graph's inputs for the BN layers "
                               f"(random float inputs were fed to {placeholders}), "
                               f"got {type(err).__name__}: {str(err).splitlines()[0][:160]}") from None
        for layer in layers:
            if layer["name"] in values:
                io[layer["name"]] = [(np.asarray(i), np.asarray(o)) for i, o in values[layer["name"]]]
                layer["verified_against"] = "graph"
                continue
            pair = _named_output(graph, layer["name"])
            if pair is None:
                layer["notes"].append(f"no {layer['name']}/batchnorm/add_1 output found in the "
                                      f"graph: the check is only a self-check")
                continue
            needed = _unbound_above(graph, unbound, pair)
            if needed:
                layer["notes"].append(f"the graph's output {pair[1]} is not run: it needs "
                                      f"placeholder {needed[0]!r} ({needed[1]}) in --data: the "
                                      f"check is only a self-check")
                continue
            if safety.unsafe_to_run(graph, list(pair)):
                layer["notes"].append(f"the graph's output {pair[1]} is not run (file/IO/Python ops "
                                      f"before it): the check is only a self-check")
                continue
            try:
                i, o = sess.run(list(pair), feeds)
            except (tf.errors.OpError, ValueError, KeyError) as err:
                layer["notes"].append(f"the graph's output {pair[1]} could not be run "
                                      f"({type(err).__name__}: {str(err).splitlines()[0][:120]}): "
                                      f"the check is only a self-check")
                continue
            io[layer["name"]] = [(np.asarray(i), np.asarray(o))]
            layer["verified_against"] = f"graph output {pair[1]} (found by name)"
            layer["call_sites"] = [list(pair)]
    finally:
        sess.close()
    return io, "the user's graph in prediction mode (" + ("--data" if data else "random inputs") + ")"


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


def _name_inputs(layers, weights, data, seed):
    """A self-check: inputs from ``--data[layer]`` or at the layer's moving statistics, through
    the article's TF1 ``bn_layer`` with the same values and the same (maybe assumed) epsilon."""
    rng = np.random.default_rng(seed)
    result = {}
    for layer in layers:
        w = weights[layer["name"]]
        axis, channels = layer["channel_axis"], w["gamma"].shape[0]
        rank = max([2] + [len(s) for s in layer.get("stored_shapes", {}).values()]) \
            if axis != -1 else 2
        if data is not None and layer["name"] in data:
            inputs = data[layer["name"]].astype(np.float32)
            if inputs.ndim < 2 or inputs.shape[axis] != channels:
                raise MigrateError(f"migrate: --data[{layer['name']!r}] must have {channels} "
                                   f"channels on axis {axis}, got shape {list(inputs.shape)}")
        else:
            mean, var = w["moving_mean"].astype(np.float64), w["moving_variance"].astype(np.float64)
            shape = [RANDOM_BATCH] + [2] * (rank - 2) + [channels]
            inputs = (mean + np.sqrt(np.maximum(var, 1e-6)) * rng.standard_normal(shape))
            inputs = np.moveaxis(inputs, -1, axis).astype(np.float32)
        result[layer["name"]] = [(inputs, _article_outputs(w, inputs, layer["epsilon"], axis))]
        layer["verified_against"] = "self-check"
        layer["call_sites"] = [["inputs", "outputs"]]
    how = "--data" if data is not None else "random inputs at each layer's moving statistics"
    return result, (f"a self-check for {', '.join(layer['name'] for layer in layers)}: the "
                    f"article's TF1 bn_layer with the same values and epsilon ({how}); it cannot "
                    f"show that epsilon is right")


def _demo_config(art, layers):
    """The ArticleModel config when the checkpoint is the demo's (model.json beside it)."""
    folder = os.path.dirname(os.path.abspath(art.checkpoint))
    path = os.path.join(folder, "model.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    names = ["bn_conv"] if config.get("kind") == "conv" else ["bn_input", "bn_hidden"]
    if sorted(names) != sorted(layer["name"] for layer in layers):
        return None
    train_file = os.path.join(folder, "train.json")
    batch_size = 64
    if os.path.isfile(train_file):
        with open(train_file, encoding="utf-8") as f:
            batch_size = json.load(f).get("batch_size", 64)
    return {"config": config, "batch_size": batch_size}


def _demo_dataset(config):
    """The demo's data for a model.json config: Blobs (dense) or Stripes (conv), sized to it."""
    from tf1_repro.model import data  # pylint: disable=import-outside-toplevel
    shape = config["input_shape"]
    if config["kind"] == "dense":
        return data.Blobs(features=shape[0], classes=config["num_classes"], seed=config["seed"])
    if shape[0] == shape[1] and shape[2] == 1 and config["num_classes"] == 2:
        return data.Stripes(size=shape[0])
    raise MigrateError(f"migrate: model.json beside PATH must describe the demo's data (dense, or "
                       f"conv on [S, S, 1] with 2 classes), got input_shape {shape}")


GRADIENT_FREE = 1e-6  # a parameter whose gradient is below this fraction of the largest one


def _demo_tf1(art, demo, train_steps):
    """The TF1 demo model: held-out logits, the gradient-free parameters, and ``train_steps``
    steps (dropout off) twice: all parameters trained, then the gradient-free ones held at
    their checkpoint values after every step."""
    from tf1_repro.model import data, network  # pylint: disable=import-outside-toplevel
    config = demo["config"]
    dataset = _demo_dataset(config)
    x_pred, _ = data.held_out(dataset, 256, config["seed"])
    arrays = {"x_pred": x_pred}
    with tf.Graph().as_default() as graph:
        model = network.ArticleModel(**config)
        shadows = {name: bn_variables(name) for name in model.bn_outputs}
        trainable = tf.trainable_variables()
        gradients = tf.gradients(model.loss, trainable)
        with tf.Session(graph=graph) as sess:
            model.saver.restore(sess, art.checkpoint)
            step = int(sess.run(model.global_step))
            logits = model.logits_for(sess, x_pred, training=False, keep_prob=1.0)
            batches = [data.train_batch(dataset, demo["batch_size"], config["seed"], step + i)
                       for i in range(train_steps)]
            for i, (x, y) in enumerate(batches):
                arrays[f"x_{i}"], arrays[f"y_{i}"] = x, y
            sizes = {}
            if batches:
                values = sess.run(gradients, model.feed(batches[0][0], training=True,
                                                        keep_prob=1.0, y=batches[0][1]))
                sizes = {v.op.name: float(np.abs(g).max()) for v, g in zip(trainable, values)}
            largest = max(sizes.values(), default=0.0)
            pinned = sorted(k for k, g in sizes.items() if g <= GRADIENT_FREE * largest)
            start = {v.op.name: sess.run(v) for v in trainable}
            by_name = {v.op.name: v for v in trainable}
            trajectories = {}
            for run, pins in (("all", []), ("pinned", pinned)):
                if run == "pinned" and not pinned:
                    break
                model.saver.restore(sess, art.checkpoint)
                trajectory = []
                for x, y in batches:
                    sess.run(model.train_op, model.feed(x, training=True, keep_prob=1.0, y=y))
                    for key in pins:
                        by_name[key].load(start[key], sess)
                    trajectory.append(sess.run({n: {"moving_mean": s["moving_mean"],
                                                    "moving_variance": s["moving_variance"]}
                                                for n, s in shadows.items()}))
                trajectories[run] = trajectory
    return arrays, logits, trajectories, step, {k: sizes[k] for k in pinned}, largest


def _trajectory_diff(reference, out, run):
    steps = []
    for i, stats in enumerate(reference):
        worst = 0.0
        for name, values in stats.items():
            for role, value in values.items():
                diff = np.abs(out[f"{run}/step_{i}/{name}/{role}"] - value).max()
                worst = max(worst, float(diff / max(np.abs(value).max(), 1e-12)))
        steps.append(worst)
    return steps


def _demo_check(art, demo, weights, train_steps, model_path):
    arrays, logits, trajectories, step, pinned, largest = _demo_tf1(art, demo, train_steps)
    reader = tf.train.load_checkpoint(art.checkpoint)
    for key in reader.get_variable_to_shape_map():
        arrays[f"tf1:{key}"] = reader.get_tensor(key)
    for name, w in weights.items():
        for role in ROLES:
            arrays[f"bn:{name}/{role}"] = w[role]
    runs = [{"name": run, "pinned": sorted(pinned) if run == "pinned" else []}
            for run in trajectories]
    out, info = keras3_worker.run("demo-model", arrays, {
        "config": demo["config"], "step": step, "train_steps": train_steps, "save": model_path,
        "keep_prob": 0.8, "runs": runs})
    scale = float(np.abs(logits).max())
    prediction = float(np.abs(out["logits_pred"] - logits).max())
    diffs = {run: _trajectory_diff(reference, out, run) for run, reference in trajectories.items()}
    checked = "pinned" if "pinned" in diffs else "all"
    worst = max(diffs[checked], default=0.0)
    reloaded = bool(np.array_equal(out["logits_reloaded"], out["logits_pred"]))
    return {"step": step, "prediction_samples": int(arrays["x_pred"].shape[0]),
            "prediction_max_abs_diff": prediction, "prediction_relative": prediction / scale,
            "reloaded_identical": reloaded, "train_steps": train_steps,
            "gradient_free": pinned, "largest_gradient": largest,
            "trajectory_relative_diff_per_step": diffs,
            "trajectory_checked": checked,
            "trajectory_max_relative_diff": {run: max(d, default=0.0) for run, d in diffs.items()},
            "ok": bool(prediction / scale <= TOLERANCE and reloaded
                       and worst <= TRAJECTORY_TOLERANCE),
            "keras": info.get("keras_version")}


def to_keras3(path, out, epsilon=None, momentum=None, data=None, force=False, seed=0,
              train_steps=20):
    """Migrate ``path`` to Keras 3 in ``out``; returns the report (see the module docstring)."""
    check_settings("keras3", epsilon, momentum, train_steps)
    art = _load(path)
    _check_out(out, WEIGHTS, force)
    data_arrays = _load_data(data)
    layers, findings, _, source = discover(art, epsilon, momentum)
    weights = {layer["name"]: layer_weights(art, layer) for layer in layers}
    io, references = {}, []
    if findings is not None:
        io, reference = _graph_inputs(art, layers, findings, data_arrays, seed)
        references.append(reference)
    rest = [layer for layer in layers if layer["name"] not in io]
    if rest:
        more, reference = _name_inputs(rest, weights, data_arrays, seed)
        io.update(more)
        references.append(reference)
    arrays, specs = {}, []
    for layer in layers:
        name = layer["name"]
        for i, (inputs, _) in enumerate(io[name]):
            key = name if i == 0 else f"{name}@call{i}"
            arrays[f"{key}/inputs"] = inputs.astype(np.float32)
            arrays.update({f"{key}/{role}": weights[name][role] for role in ROLES})
            specs.append({"name": key, "layer": "article" if layer["keras_layer"].startswith(
                "Article") else "stock", "kwargs": {"momentum": layer["momentum"],
                                                    "epsilon": layer["epsilon"],
                                                    "axis": layer["channel_axis"]}})
    keras_out, _ = keras3_worker.run("predict-layers", arrays, {"layers": specs})
    for layer in layers:
        _compare(layer, io[layer["name"]], keras_out)
    demo, demo_skipped = _demo_config(art, layers), None
    staging = tempfile.mkdtemp(prefix="tf1_repro_migrate_")
    try:
        demo_report = None
        if demo is not None:
            try:
                demo_report = _demo_check(art, demo, weights, train_steps,
                                          os.path.join(staging, MODEL))
            except (tf.errors.OpError, ValueError) as err:  # model.json beside another model
                demo_skipped = (f"model.json is beside the checkpoint but the demo model cannot "
                                f"be rebuilt from it: {type(err).__name__}: "
                                f"{str(err).strip().splitlines()[0][:160]}")
        os.makedirs(out, exist_ok=True)
        np.savez(os.path.join(out, WEIGHTS), **{f"{n}/{r}": w[r] for n, w in weights.items()
                                               for r in ROLES})
        entries = [_entry(layer) for layer in layers]
        with open(os.path.join(out, LAYERS), "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=2)
        if demo_report is not None:
            shutil.move(os.path.join(staging, MODEL), os.path.join(out, MODEL))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = [WEIGHTS, LAYERS] + ([MODEL] if demo_report else [])
    return {"to": "keras3", "source": art.checkpoint, "format": art.format, "found_by": source,
            "graph": findings is not None, "reference": "; ".join(references), "out": out, "written": written, "layers": entries,
            "demo_model": demo_report, "demo_skipped": demo_skipped, "tolerance": TOLERANCE,
            "ok": all(layer["ok"] for layer in layers) and (demo_report is None or demo_report["ok"])}


def _compare(layer, calls, keras_out):
    """The Keras 3 outputs vs the TF1 outputs of every call; the layer's diff is the worst call's."""
    diffs = []
    for i, (_, tf1_out) in enumerate(calls):
        key = layer["name"] if i == 0 else f"{layer['name']}@call{i}"
        tf1_out = tf1_out.astype(np.float64)
        diff, scale = _max_diff(keras_out[f"{key}/outputs"], tf1_out)
        diffs.append((diff, diff / max(scale, 1e-12)))
        bad = ~np.isfinite(tf1_out)
        if bad.any():
            layer["notes"].append(f"the TF1 layer itself outputs NaN/inf at {int(bad.sum())} of "
                                  f"{bad.size} values (statistics as stored); compared where finite, "
                                  f"NaN/inf required at the same places")
    layer["max_abs_diff"] = max(d for d, _ in diffs)
    layer["relative_diff"] = max(r for _, r in diffs)
    layer["ok"] = layer["relative_diff"] <= TOLERANCE
    if len(calls) > 1:
        layer["call_site_relative_diffs"] = [r for _, r in diffs]
        layer["notes"].append(
            f"the variables are shared by {len(calls)} calls (inputs "
            f"{', '.join(c[0] for c in layer['call_sites'])}): one Keras 3 layer serves them all; "
            f"verified on each call's own input and output (relative diff per call: "
            f"{', '.join(f'{r:.3g}' for _, r in diffs)})")
    if not layer["ok"] and layer.get("graph_not_understood") and \
            layer["verified_against"] != "self-check":
        layer["notes"].append(
            f"the Keras 3 layer with epsilon {layer['epsilon']:g} (not read from the graph) "
            f"differs from the graph's own output by {layer['relative_diff']:.3g} relative: the "
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


def _entry(layer):
    return {"name": layer["name"], "naming": layer["naming"],
            "source": {role: layer[role] for role in ROLES},
            "momentum": layer["momentum"], "epsilon": layer["epsilon"],
            "moving_variance_estimator": layer["moving_variance_estimator"],
            "assumed": layer["assumed"], "keras_layer": layer["keras_layer"],
            "channel_axis": layer["channel_axis"], "stored_shapes": layer["stored_shapes"],
            "found_by": layer["found_by"], "verified_against": layer["verified_against"],
            "call_sites": layer["call_sites"],
            **({"call_site_relative_diffs": layer["call_site_relative_diffs"]}
               if "call_site_relative_diffs" in layer else {}),
            "max_abs_diff": layer["max_abs_diff"], "relative_diff": layer["relative_diff"],
            "ok": layer["ok"], "notes": layer["notes"]}


# ---- the other direction ----------------------------------------------------------------

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
    _check_out(out, ARTICLE_PREFIX + ".index", force)
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


def migrate(path, to="keras3", out=None, epsilon=None, momentum=None, data=None, force=False,
            seed=0, train_steps=20):
    """``to_keras3`` or ``to_article``; see the module docstring."""
    check_settings(to, epsilon, momentum, train_steps)
    if not out:
        raise MigrateError("migrate: --out must be a directory, got none")
    if to == "article":
        return to_article(path, out, force=force)
    return to_keras3(path, out, epsilon, momentum, data, force, seed, train_steps)


def format_report(report):
    """The report as the command prints it."""
    if report["to"] == "article":
        return "\n".join([
            f"migrated {report['source']} -> {report['checkpoint']} (article names)",
            f"  {len(report['layers'])} BN layer(s): {', '.join(report['layers'])}",
            f"  other weights: {', '.join(report['other_weights']) or 'none'}",
            f"  read back bitwise equal: {report['bitwise']}; layers found again by name: "
            f"{report['names_found_again']}",
            f"  {'OK' if report['ok'] else 'FAILED'}"])
    width = max([20] + [len(e["name"]) for e in report["layers"]])
    found_by = {"graph": "the structural finder (.meta graph)",
                "names": "checkpoint names (" + ("the .meta graph was not understood"
                                                 if report["graph"] else "no graph") + ")",
                "graph and names": "the structural finder (.meta graph) and, where it found "
                                   "none, checkpoint names"}[report["found_by"]]
    lines = [f"migrated {report['source']} -> {report['out']}/ ({', '.join(report['written'])})",
             f"  BN layers found by {found_by}; reference: {report['reference']}",
             f"  {'layer':<{width}} keras layer                momentum  epsilon   estimator  "
             "max |diff|  relative"]
    for e in report["layers"]:
        star = {key: "*" if key in e["assumed"] else " " for key in ("momentum", "epsilon")}
        lines.append(f"  {e['name']:<{width}} {e['keras_layer']:<26} {e['momentum']:<8g}"
                     f"{star['momentum']} {e['epsilon']:<8g}{star['epsilon']} "
                     f"{str(e['moving_variance_estimator']):<10} "
                     f"{e['max_abs_diff']:<10.3g}  {e['relative_diff']:.3g}"
                     f"{'' if e['ok'] else '  FAILED'}")
        if e["verified_against"] != "graph":
            lines.append(f"      checked against: {e['verified_against']}")
        for note in e["notes"]:
            lines.append(f"      note: {note}")
    if any(k in e["assumed"] for e in report["layers"] for k in ("epsilon", "momentum")):
        lines.append("  * assumed: " + ("no graph says it" if not report["graph"] else
                                        "not read from the graph (see the notes)")
                     + "; set with --epsilon / --momentum")
    demo = report["demo_model"]
    if demo:
        lines.append(f"  demo model (model.keras, ArticleBatchNormalization): predictions on "
                     f"{demo['prediction_samples']} held-out samples vs the TF1 checkpoint: max "
                     f"|diff| {demo['prediction_max_abs_diff']:.3g} (relative "
                     f"{demo['prediction_relative']:.3g}); reloaded model.keras identical: "
                     f"{demo['reloaded_identical']}")
        worst = demo["trajectory_max_relative_diff"]
        lines.append(f"  continued training from step {demo['step']}, {demo['train_steps']} steps "
                     f"(same batches, dropout off, Adam state from the checkpoint), moving "
                     f"statistics vs TF1's at every step:")
        lines.append(f"    every parameter trained: max relative diff {worst['all']:.3g}")
        if "pinned" in worst:
            names = ", ".join(f"{k} (|gradient| {g:.2g} vs {demo['largest_gradient']:.2g})"
                              for k, g in demo["gradient_free"].items())
            lines.append(f"    gradient-free parameters held in both ({names}; Adam divides "
                         f"their rounding noise by its own size): max relative diff "
                         f"{worst['pinned']:.3g}")
        lines.append(f"    checked: {demo['trajectory_checked']} (limit {TRAJECTORY_TOLERANCE:g})")
    if report.get("demo_skipped"):
        lines.append(f"  demo model not checked: {report['demo_skipped']}")
    self_checked = [e["name"] for e in report["layers"] if e["verified_against"] == "self-check"]
    lines.append(f"  {'OK' if report['ok'] else 'FAILED'} (limit {report['tolerance']:g} relative "
                 f"per layer" + (f"; only a self-check for {', '.join(self_checked)}"
                                 if self_checked else "") + ")")
    return "\n".join(lines)
