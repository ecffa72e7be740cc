"""One ``BNLayer`` from a group of normalisation ops: the analyses (parameters, calls, mode,
updates, decay, variance estimator) run in turn, each returning a typed value, and their notes
joined in that order.

The kind is the pattern's (``fused``, ``global_normalization``, ``batch_normalization``), except
``article``: a ``batch_normalization`` whose updates run with its output but not at prediction,
switched by a mode tensor that selects batch statistics in training and the moving ones at
prediction; batch renormalisation is always ``batch_normalization``."""

from tf1_repro.tools.finder import (calls, decay, estimator, grouping, layer_mode, parameters,
                                    updates)
from tf1_repro.tools.finder.model import BNLayer


def build_layer(ctx, group):
    """The ``BNLayer`` of a ``grouping.Group``."""
    norms = group.norms
    params = parameters.read_parameters(ctx, group)
    notes = list(params.notes)
    sites = grouping.call_sites(ctx, norms)
    writes = updates.stat_writes(ctx, params.stats)
    call_modes = [call_mode(ctx, site) for site in sites]
    for record, site, own in zip(call_modes, sites, calls.updates_by_call(ctx, sites, writes)):
        record["trained"] = calls.is_trained(ctx, site)
        record["update_ops"] = own
    index = min(range(len(sites)), key=lambda i: call_key(call_modes, i))
    chosen = sites[index]
    x = ctx.strip_switch(chosen[0].x)
    output = grouping.call_output(ctx, chosen)
    call_sites = [[ctx.strip_switch(site[0].x).name, grouping.call_output(ctx, site).name]
                  for site in sites]
    if len(sites) > 1:
        notes.append(f"the variables are shared by {len(sites)} calls (inputs "
                     f"{', '.join(c[0] for c in call_sites)}; modes "
                     f"{', '.join(m['mode'] for m in call_modes)}): input and output are those of "
                     f"the call on {x.name}, {_why(call_modes[index])}; call_sites and call_modes "
                     f"list all")
    eps_values = sorted({u.eps for u in norms})
    if len(eps_values) > 1:
        notes.append(f"the normalisation ops use different epsilons {eps_values}; reporting the "
                     f"prediction path's")
    mode = layer_mode.layer_mode(ctx, norms)
    if len(sites) > 1 and call_modes[index]["mode"] == "switched" and mode.mode is not None and \
            mode.mode.name != call_modes[index]["mode_input"]:
        mode = layer_mode.layer_mode(ctx, chosen)  # the chosen call's own switch
    eps = eps_values[0]
    if mode.mode is not None and len(eps_values) > 1:
        pred_norms = [u for u in norms if not u.batch]
        eps = pred_norms[0].eps if pred_norms else eps

    place, summary = _updates(ctx, _located_writes(writes, call_modes), norms, output, params,
                              mode)
    notes += list(place.notes) + list(updates.tf2_notes(writes)) + list(summary.notes)
    if place.output is not None:  # the updates ride on a tensor that hands the output on
        call_sites = [[c[0], place.output.name if c[1] == output.name else c[1]]
                      for c in call_sites]
        output = place.output
    used = mode.used
    kind = _kind(norms, place, mode, params)
    notes += _state_notes(norms, params, mode)
    if mode.batch_only and params.unread:
        used = False
    shape = parameters.variable_shape(ctx.op(params.stats[0])) if params.stats else None
    if shape is not None and len(shape) > 1:
        notes.append(f"moving statistics shaped {shape} (broadcast to the channel axis)")
    return BNLayer(name=parameters.layer_name(ctx, norms, params), kind=kind, input=x.name,
                   output=output.name, gamma=params.gamma, beta=params.beta,
                   moving_mean=params.moving_mean, moving_variance=params.moving_variance,
                   epsilon=eps, decay=summary.decay, update_ops=[w.name for _, w in writes],
                   update_location=place.location, updates_at_prediction=place.at_prediction,
                   zero_debias=summary.zero_debias, decay_cap=summary.decay_cap, mode=mode.mode,
                   statistics_used_at_prediction=used,
                   variance_estimator=estimator.variance_estimator(
                       ctx, summary.readings, params.moving_variance),
                   stat_shape=shape, channel_axis=parameters.channel_axis(norms, x),
                   call_sites=call_sites, call_modes=call_modes, bn_ops=[u.op.name for u in norms], notes=notes)


# Which call of a shared layer is its input/output: the best rank, then a call the train op
# trains before one it does not, then the first in graph order (``call_key``).
CALL_RANK = {"prediction": 0, "switched": 1, "both": 2, "training": 3}


def call_key(call_modes, i):
    """The sort key of call ``i`` (records of ``call_mode`` with ``trained``): its mode's
    ``CALL_RANK``, then trained first, then graph order. Among calls of one rank, the one the
    train op runs is the one that matters: a switched call that is trained serves prediction
    too (its mode input fed its prediction value), while an untrained twin (a Keras model's own
    call on its ``Input``, left unused) serves neither."""
    record = call_modes[i]
    return CALL_RANK[record["mode"]], not record.get("trained", False), i


def _located_writes(writes, call_modes):
    """The update ops whose place is the layer's ``update_location``: those of the calls the
    train op runs when one of them has updates (the updates of an unused call, which no train op
    runs, do not say where the layer's live), else every one."""
    trained = {name for record in call_modes if record.get("trained")
               for name in record.get("update_ops", ())}
    if len(call_modes) < 2 or not trained:
        return writes
    return tuple((stat, w) for stat, w in writes if w.name in trained) or writes


def call_mode(ctx, site):
    """How one call (``site``: its normalisation ops) normalises: ``{"input", "mode",
    "mode_input"}`` with ``mode``

    * ``"prediction"``: always with the moving statistics (a Python ``False``, a fused op's
      ``is_training=False``, a prediction graph);
    * ``"training"``: always with the batch's (a Python ``True``, ``is_training=True``, a layer
      with no moving statistics);
    * ``"switched"``: a mode input chooses (``mode_input`` names it; prediction feeds it its
      prediction value);
    * ``"both"``: a batch and a moving-statistics op on one input, with no switch (a layer built
      twice with Python bools on the same tensor)."""
    found = layer_mode.layer_mode(ctx, site)
    mode, mode_input = found.mode, None
    if mode is None:
        kind = "training" if any(u.batch for u in site) or found.batch_only else "prediction"
    elif mode.op == "python_bool":
        kind = "both"
    elif mode.op == "attr:is_training":
        kind = "training" if mode.default else "prediction"
    else:
        kind, mode_input = "switched", mode.name
    return {"input": ctx.strip_switch(site[0].x).name, "mode": kind, "mode_input": mode_input}


def _why(chosen):
    """Why the call ``chosen`` (a ``call_mode``) is the layer's input and output."""
    return {"prediction": "the call that runs in prediction mode (a Python False or "
                          "is_training=False)",
            "switched": f"the first call {'the train op runs, ' if chosen.get('trained') else ''}"
                        f"switched by a mode input ({chosen['mode_input']}, fed its prediction "
                        f"value at prediction); no call runs in prediction mode alone",
            "both": "the first call that builds both modes on one input; no call runs in "
                    "prediction mode alone",
            "training": "the first call; every call runs in training mode"}[chosen["mode"]]


def _updates(ctx, writes, norms, output, params, mode):
    """(``UpdateLocation``, ``DecaySummary``) of the layer's update ``writes``; with none, no
    location, and ``at_prediction`` False for variables (a frozen graph's Consts: None)."""
    if not writes:
        variables = params.stats and all(ctx.op(n).type != "Const" for n in params.stats)
        return (updates.UpdateLocation(at_prediction=False if variables else None),
                decay.DecaySummary())
    return (updates.locate(ctx, writes, norms, output, mode.mode), decay.summarise(ctx, writes))


def _kind(norms, place, mode, params):
    """The layer's kind (see the module)."""
    kind = norms[0].kind
    if kind == "batch_normalization" and place.location == "output" and mode.mode is not None \
            and not place.at_prediction and mode.used and mode.mode.op != "python_bool" and \
            any(u.batch for u in norms) and params.moving_mean and \
            any(s.kind == "batch" for u in norms for s in u.mean):
        kind = "article"
    if any(u.rescaled for u in norms):
        kind = "batch_normalization"
    return kind


def _state_notes(norms, params, mode):
    """Notes on batch renormalisation, batch-statistics-only layers and a fused kernel that
    updates its statistics itself."""
    notes = []
    if any(u.rescaled for u in norms):
        notes.append("the training output is rescaled by per-channel factors computed from the "
                     "batch and moving statistics (batch renormalisation)")
    if mode.batch_only and params.unread:
        notes.append(f"moving statistics {', '.join(params.unread)} are updated in training but "
                     f"never read: the layer normalises with the batch's statistics in every mode")
    elif mode.batch_only:
        notes.append("no moving statistics: the layer normalises with the batch's statistics "
                     "in every mode")
    if any(u.fused_factor != 1.0 for u in norms):
        notes.append("fused kernel with exponential_avg_factor: the kernel updates the "
                     "statistics itself")
    return notes
