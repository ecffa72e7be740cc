"""Discovery: the BN layers of a checkpoint (``MigrateLayer``), their Keras 3 settings and
values.

With a graph (``PREFIX.meta``) the structural finder gives each layer's variables, epsilon,
decay, channel axis, call sites and moving-variance estimator; the layers it does not find (or
all, without a graph) come from ``naming.layers_from_names``, with epsilon and momentum assumed
unless ``--epsilon`` / ``--momentum`` give them."""

import numpy as np

from tf1_repro.graph import artefacts, walk
from tf1_repro.graph.control_flow import tf2_control_flow
from tf1_repro.tools import calls, naming
from tf1_repro.tools.finder import decay
from tf1_repro.tools.migrate.common import (
    DEFAULT_EPSILON, DEFAULT_MOMENTUM, ROLES, WEIGHTS, MigrateError, nice)
from tf1_repro.tools.migrate.layer import MigrateLayer


def load(path):
    """The artefact at ``path``, which must be a checkpoint (with values); MigrateError otherwise."""
    try:
        art = artefacts.load(path)
    except artefacts.ArtefactError as err:
        # migrate's message says what PATH must be before the artefact's own line
        raise MigrateError(f"migrate: PATH must be a TF1 checkpoint (prefix, directory or .meta), "
                           f"got {err}") from None
    if art.checkpoint is None:
        raise MigrateError(f"migrate: PATH must be a TF1 checkpoint (prefix, directory or .meta), "
                           f"got {path!r} ({art.format} without checkpoint values)")
    return art


def _graph_notes(b, keys, variables):
    """The notes of a finder layer ``b`` for migration (``keys`` is updated: a gamma/beta that is
    not a checkpoint variable becomes None)."""
    # the sharing is said again with the per-call check (verify.compare)
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
    return notes


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
        notes = _graph_notes(b, keys, variables)
        layers.append(MigrateLayer(
            name=b.name, naming=b.kind, sources=keys,
            shapes={r: list(variables[k]) for r, k in keys.items() if k}, found_by="graph",
            notes=notes, channel_axis=int(b.channel_axis), read_epsilon=b.epsilon,
            read_decay=b.decay, read_estimator=b.variance_estimator,
            decay_schedule=None if b.decay is not None else _decay_schedule(graph, b.update_ops)))
        layers[-1].call_sites = _moving_calls(graph, b, keys, notes)
    return layers, found, graph


def _moving_calls(graph, layer, keys, notes):
    """The calls of a layer (``[input, output]`` each) that Keras 3 must reproduce: its
    prediction calls (``tools.calls``: not a training tower's ``is_training=True`` call, nor the
    unused twin of a trained switched call), with a note naming the others; then, when several
    remain and some read the moving statistics (the variables are data inputs of the call's
    output) while others do not (a training tower normalising with batch statistics, e.g.
    DCGAN's ``batch_norm(train=True)``), only the former, with a note naming the others."""
    if len(layer.call_sites) < 2:
        return [[layer.input, layer.output]]
    roles = calls.layer_calls(layer)
    sites = [list(c) for c in roles.prediction_sites()]
    training = [i for i in roles.training if i not in roles.prediction]
    if training:
        notes.append(f"call(s) on {', '.join(roles.sites[i][0] for i in training)} normalise with "
                     f"batch statistics (a training call) and are not checked: Keras 3 prediction "
                     f"uses the moving statistics")
    if roles.unused:
        notes.append(f"call(s) on {', '.join(roles.sites[i][0] for i in roles.unused)} are not "
                     f"checked: unused call(s) of the shared variables; Keras 3 reproduces the "
                     f"call(s) that serve prediction ({roles.why})")
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
    """``{"cap", "op"}`` of the ``ExponentialMovingAverage(c, num_updates=step)`` schedule the
    layer's update ops decay by (``finder.decay.update_schedule``, the one place of the rule);
    None when there is none."""
    names = {o.name for o in graph.get_operations()}
    for name in update_ops:
        found = decay.update_schedule(graph.get_operation_by_name(name)) if name in names else None
        if found:
            return {"cap": nice(found[0]), "op": found[1]}
    return None


def _name_layers(variables, known, graph_present):
    """Layers found by checkpoint names whose statistics no graph layer holds."""
    layers = []
    for found in naming.layers_from_names(variables):
        if found["moving_mean"] in known:
            continue
        shapes = [s for s in found["shapes"].values() if s]
        layer = MigrateLayer(
            name=found["name"], naming=found["naming"],
            sources={role: found[role] for role in ROLES}, shapes=found["shapes"],
            found_by="names", notes=found["notes"], graph_not_understood=graph_present,
            channel_axis=naming.channel_axis(max(shapes, key=len)) if shapes else -1)
        if graph_present:
            layer.notes.append("the .meta graph was not understood: the structural finder found "
                               "no BN layer with these variables, so the layer was found by "
                               "checkpoint names and its epsilon and momentum are not read from "
                               "the graph (assumed unless --epsilon/--momentum give them)")
        layers.append(layer)
    return layers


def discover(art, epsilon=None, momentum=None):
    """``(layers, findings or None, graph or None, source)``: each layer a ``MigrateLayer`` with
    the settings it will have in Keras 3 and where they come from. Layers the finder misses in a
    graph are found by names (and say so)."""
    variables = {k: list(v) for k, v in art.variables().items()}
    findings = graph = None
    layers = []
    graph_present = art.meta_graph is not None or art.graph_def is not None
    if graph_present:
        layers, findings, graph = _graph_layers(art, variables)
    layers += _name_layers(variables, {layer.moving_mean for layer in layers}, graph_present)
    if not layers:
        raise MigrateError(f"migrate: PATH must hold BN layers (article gamma/beat/…/ema, "
                           f"gamma/beta/moving_mean/moving_variance or slim BatchNorm/…), got "
                           f"none among the {len(variables)} variables of {art.checkpoint}")
    for layer in layers:
        problem = naming.shape_problem(layer.naming_view())
        if problem:
            raise MigrateError(f"migrate: {problem}")
        _settings(layer, epsilon, momentum)
    by = sorted({layer.found_by for layer in layers})
    return layers, findings, graph, " and ".join(by)


def _setting(layer, key, given, read, default, flag):
    """One of epsilon/momentum: ``--flag``, else the graph's, else (momentum) an EMA schedule's
    cap, else the default (assumed, noted)."""
    if given is not None:
        if read is not None and nice(read) != float(given):
            layer.notes.append(f"{key} {float(given):g} set by {flag}; the graph says "
                               f"{nice(read):g}")
        return float(given)
    if read is not None:
        return nice(read)
    schedule = layer.decay_schedule
    if key == "momentum" and schedule is not None:
        cap = schedule["cap"]
        start = int(np.ceil((10 * cap - 1) / (1 - cap)))
        layer.notes.append(
            f"the TF1 decay is a schedule, min({cap:g}, (1 + step) / (10 + step)) "
            f"(ExponentialMovingAverage num_updates; {schedule['op']}), capped at {cap:g} from "
            f"step {start}: Keras 3's momentum is a constant, set to the cap {cap:g}; "
            f"{flag} sets it")
        return cap
    layer.assumed.append(key)
    if layer.found_by == "graph":
        why = "the graph's decay is not a constant the finder can read"
    elif layer.graph_not_understood:
        why = "the .meta graph was not understood"
    else:
        why = "no graph says it"
    layer.notes.append(f"{key} {default:g} assumed ({why}); {flag} sets it")
    return default


def _settings(layer, epsilon, momentum):
    """The layer's Keras 3 settings: epsilon, momentum, the moving-variance estimator and the
    Keras layer class, with notes where they differ from TF1 or are assumed."""
    layer.assumed = []
    layer.epsilon = _setting(layer, "epsilon", epsilon, layer.read_epsilon, DEFAULT_EPSILON,
                             "--epsilon")
    layer.momentum = _setting(layer, "momentum", momentum, layer.read_decay, DEFAULT_MOMENTUM,
                              "--momentum")
    estimator = layer.read_estimator
    if estimator is None:
        estimator = "biased" if layer.naming == "article" else None
        if estimator:
            layer.assumed.append("moving_variance_estimator")
    layer.moving_variance_estimator = estimator
    article = layer.naming == "article"
    axis = layer.channel_axis
    layer.keras_layer = "ArticleBatchNormalization" if article else "BatchNormalization"
    if not article and axis != -1:
        layer.notes.append(f"channels on axis {axis} (NCHW): the Keras 3 layer "
                           f"is BatchNormalization(axis={axis})")
    if article and axis != -1:
        layer.keras_layer = "BatchNormalization"
        layer.notes.append(
            f"channel axis {axis}: ArticleBatchNormalization normalises the last "
            f"axis only, so the layer is a stock BatchNormalization(axis="
            f"{axis}), which predicts the same gamma * (x - mean) / sqrt(var + "
            f"eps) + beta and updates the same way (biased batch variance, shadow = momentum * "
            f"shadow + (1 - momentum) * batch)")
    if estimator == "unbiased":
        layer.notes.append("the TF1 layer averages Bessel-corrected (n/(n-1)) batch variances "
                           "(a fused kernel); Keras 3 BatchNormalization averages biased ones, "
                           "so continued training moves the moving variance by (n-1)/n; "
                           "the stored value is copied unchanged, so predictions carry over")


def layer_weights(art, layer):
    """``{role: array}``: the checkpoint's values unchanged, a per-channel shape that broadcasts
    to the channel axis ((1, C), (1, 1, 1, C), (1, C, 1, 1)) written as (C,) and noted."""
    values = {}
    for role in ("moving_mean", "moving_variance", "gamma", "beta"):
        if layer.sources[role] is not None:
            values[role] = art.read(layer.sources[role])
    channels = int(np.prod(values["moving_mean"].shape))
    layer.stored_shapes = {role: list(v.shape) for role, v in values.items()}
    for role, value in list(values.items()):
        if value.shape != (channels,):
            layer.notes.append(f"{role} stored as {list(value.shape)} (broadcast to the channel "
                               f"axis): written to {WEIGHTS} as ({channels},)")
            values[role] = value.reshape(channels)
    variance = values["moving_variance"]
    if not np.isfinite(variance).all() or (variance < 0).any():
        layer.notes.append(f"moving_variance has {int((~np.isfinite(variance)).sum())} NaN/inf "
                           f"and {int((variance < 0).sum())} negative values: copied as they are")
    dtype = values["moving_mean"].dtype
    if "gamma" not in values:
        values["gamma"] = np.ones(channels, dtype)
    if "beta" not in values:
        values["beta"] = np.zeros(channels, dtype)
    return {role: values[role] for role in ROLES}
