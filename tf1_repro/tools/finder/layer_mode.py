"""What switches a layer between training and prediction, and whether prediction reads the moving
statistics.

The predicate of a ``tf.cond`` on the statistics' path (or in front of a fused op's input, for a
cond around two fused ops) gives the mode input; without one, a layer built twice (a batch and a
moving-statistics op) is ``python_bool``, a lone fused op is its ``is_training`` attribute
(``attr:is_training``), and anything else has no mode (a frozen or prediction graph, or a
batch-statistics-only layer)."""

import dataclasses

from tf1_repro.tools.finder import modes
from tf1_repro.tools.finder.model import ModeInput


@dataclasses.dataclass(frozen=True, eq=False)
class LayerMode:
    """``mode`` (a ModeInput or None), ``used`` (prediction normalises with the moving statistics;
    None when unknown) and ``batch_only`` (the layer reads no moving statistic at all)."""

    mode: ModeInput
    used: bool
    batch_only: bool


def layer_mode(ctx, norms):
    """The ``LayerMode`` of a layer's normalisation ops ``norms``."""
    batch_only = not any(s.kind in ("variable", "const") for u in norms for s in u.mean + u.var)
    mode = _switching_mode(ctx, norms)
    if mode is None and len(norms) > 1 and {u.batch for u in norms} == {True, False}:
        return LayerMode(ModeInput("", "training", "python_bool", None, False), True, batch_only)
    if mode is None and len(norms) == 1 and norms[0].kind == "fused":
        op = norms[0].op
        training = bool(op.get_attr("is_training"))
        return LayerMode(ModeInput(op.name, "training", "attr:is_training", training, None),
                         not training, batch_only)
    if mode is None:
        # one path only: a frozen or prediction graph, or a batch-statistics-only layer
        used = None if batch_only else not any(u.batch for u in norms)
        return LayerMode(None, False if batch_only else used, batch_only)
    return LayerMode(mode, _used_at_prediction(ctx, norms, mode), batch_only)


def _switching_mode(ctx, norms):
    """The first mode input among the predicates on the layer's statistics' paths."""
    preds = []
    for u in norms:
        for s in u.mean + u.var:
            preds += [p for p, _ in s.branches]
        if u.kind == "fused" and len(norms) > 1:
            preds += [p for p, _ in ctx.switch_path(u.x)]
    for p in preds:
        mode = ctx.mode_of(p)
        if mode is not None:
            return mode
    return None


def _used_at_prediction(ctx, norms, mode):
    """Which statistics the prediction branch reads: True for moving ones."""
    used = None
    for u in norms:
        if u.kind == "fused" and len(norms) > 1:
            path = ctx.switch_path(u.x)
            if path:
                taken = modes.pred_in_prediction(ctx, path[0][0], mode)
                if taken is not None and bool(taken) == bool(path[0][1]):
                    used = not u.batch
            continue
        for s in u.mean + u.var:
            if modes.branch_taken_at_prediction(ctx, s.branches, mode):
                used = (used or False) or s.kind in ("variable", "const")
                if s.kind == "batch" and used is None:
                    used = False
    if mode.op == "Const" and used is None:
        used = not any(u.batch for u in norms)
    return used
