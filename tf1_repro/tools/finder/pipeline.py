"""The finder's stages, in order: match every op against the BN patterns (``Norm``s), group them
into layers (``Group``s), build each ``BNLayer``, find the dropouts, then collect the mode inputs
and the graph-wide notes into ``Findings``."""

from tf1_repro.tools.finder import calls, control_flow, grouping
from tf1_repro.tools.finder.dropout import find_dropouts
from tf1_repro.tools.finder.layer import build_layer
from tf1_repro.tools.finder.model import PREDICTION_VALUES, Findings, ModeInput
from tf1_repro.tools.finder.patterns import match_bn

_PLACEHOLDER_SOURCES = ("placeholder", "placeholder_with_default")


def run(ctx):
    """The ``Findings`` of the graph in ``ctx``."""
    norms, notes = match_norms(ctx)
    groups = grouping.group(ctx, norms)
    calls.remember_statistics(ctx, groups)
    layers = [build_layer(ctx, group) for group in groups]
    layers.sort(key=lambda layer: ctx.order.get(layer.bn_ops[0], 0))
    unique_names(layers)
    dropouts = find_dropouts(ctx)
    mode_inputs = collect_mode_inputs(ctx, layers, dropouts)
    notes += control_flow.hidden_layer_notes(ctx, layers)
    notes += control_flow.layer_update_notes(layers)
    return Findings(layers, dropouts, mode_inputs, notes)


class FinderInternalError(AssertionError):
    """A check of the finder's own results failed: a bug in the finder, not in the user's graph."""


def unique_names(layers):
    """Give every layer its own name, in place, and check it.

    A layer's name is its variables' common scope (``parameters.layer_name``). Two layers can
    share that scope only when a user puts the variables of both in one scope (``net/mean_a``,
    ``net/mean_b``): each such layer is then named by its own first parameter node (moving
    mean, moving variance, gamma, beta, else its first normalisation op), with a note. That name
    is its own, since layers are grouped by the variables and Consts they share, so no two hold
    the same node. Disambiguating, rather than failing, keeps the tools working on such graphs;
    the note says it happened. If names still collide the finder is wrong:
    ``FinderInternalError``."""
    by_name = {}
    for layer in layers:
        by_name.setdefault(layer.name, []).append(layer)
    for name, same in by_name.items():
        if len(same) < 2:
            continue
        for layer in same:
            own = next(n for n in (layer.moving_mean, layer.moving_variance, layer.gamma,
                                   layer.beta, layer.bn_ops[0]) if n)
            layer.notes.append(f"named {own}: {len(same)} layers' variables share the scope "
                               f"{name!r}, so the layer is named by its own node")
            layer.name = own
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise FinderInternalError(f"finder: two BN layers have one name ({', '.join(dup)}); "
                                  f"each layer must be named by its own variables")


def match_norms(ctx):
    """(``[Norm]`` in graph order, notes on ops a pattern failed to read)."""
    norms, notes = [], []
    for op in ctx.ops:
        try:
            norm = match_bn(ctx, op)
        except Exception as err:  # pylint: disable=broad-except
            # an odd graph must not stop the tools: say which op could not be read
            notes.append(f"{op.name} ({op.type}) looks like a normalisation op but could "
                         f"not be read: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
            continue
        if norm:
            norms.append(norm)
    return norms, notes


def collect_mode_inputs(ctx, layers, dropouts):
    """Every mode input: the layers' and dropouts' switches, dropouts' keep_prob placeholders and
    Keras learning-phase placeholders.

    A vanilla dropout's keep_prob placeholder (training ``x * mask``, whether or not the graph
    builds the prediction side ``x * keep_prob``) gets prediction value None: prediction
    multiplies by its training value, which the graph does not hold, and feeding 1.0 would serve
    outputs 1/keep_prob too large. Set on the shared ``ModeInput``, so
    ``Findings.unbound_mode_inputs`` (the one place of this rule) lists it."""
    modes = {}
    for item in layers + dropouts:
        if item.mode is not None and item.mode.op != "python_bool":
            modes[item.mode.name] = item.mode
    for d in dropouts:
        src = d.keep_prob
        if src["source"] in _PLACEHOLDER_SOURCES and src["name"] not in modes:
            op = ctx.op(src["name"])
            default = ctx.const_value(op.inputs[0]) if op.inputs else None
            modes[src["name"]] = ModeInput(src["name"], src["param"], op.type,
                                           None if default is None else float(default),
                                           PREDICTION_VALUES[src["param"]])
        if src["source"] in _PLACEHOLDER_SOURCES and (d.scales_at_prediction or d.convention == "vanilla"):
            modes[src["name"]].prediction_value = None
    for op in ctx.ops:
        if op.type in ("Placeholder", "PlaceholderWithDefault") and \
                op.name.split("/")[-1].startswith("keras_learning_phase") and op.name not in modes:
            default = ctx.const_value(op.inputs[0]) if op.inputs else None
            modes[op.name] = ModeInput(op.name, "learning_phase", op.type,
                                       None if default is None else default.item(),
                                       False if op.outputs[0].dtype.is_bool else 0)
    return list(modes.values())
