"""The decay of a moving statistic's update, read from the update op itself.

* ``AssignSub(s, (s - v) * (1 - d))`` (``assign_moving_average``, ``ExponentialMovingAverage``,
  tf.layers and Keras): decay ``d``, value ``v``;
* ``Assign(s, d*s + (1-d)*v)``: decay ``d``;
* zero-debiased (``assign_moving_average(..., zero_debias=True)``): ``Assign(s, biased / (1 -
  d^t))`` where ``biased`` is itself an EMA: the inner decay, with ``debiased`` set;
* an ``ExponentialMovingAverage(decay, num_updates=step)`` schedule, factor ``1 - min(decay,
  (1 + step) / (10 + step))``: no constant decay, its cap in ``cap`` (``schedule_cap``).
"""

import dataclasses

import numpy as np

from tf1_repro.graph.ops import IF_OPS
from tf1_repro.tools.finder.trace import reads

ASSIGN = ("Assign", "AssignVariableOp")
ASSIGN_SUB = ("AssignSub", "AssignSubVariableOp")


@dataclasses.dataclass(frozen=True, eq=False)
class DecayReading:
    """What one update op says: ``decay`` (None when not a constant), ``value`` (the tensor
    averaged in, when found), ``debiased`` (zero-debiased EMA) and ``cap`` (the cap of a decay
    schedule seen in the update, else None)."""

    decay: float = None
    value: object = None
    debiased: bool = False
    cap: float = None


def read_decay(ctx, write, stat):
    """The ``DecayReading`` of ``write``, an op writing the moving statistic named ``stat``."""
    value = write.inputs[1]
    if write.type in ASSIGN and value.op.type in ("RealDiv", "Div"):
        inner = value.op.inputs[0].op
        while inner.type in ("Identity", "ReadVariableOp") and inner.inputs:
            inner = inner.inputs[0].op
        if inner.type in ASSIGN_SUB and \
                any(o.type == "Pow" for o in ops_above(value.op.inputs[1].op, 4)):
            biased = ctx.trace(inner.inputs[0])
            reading = read_decay(ctx, inner, biased[0].op.name if biased else None)
            if reading.decay is not None:
                return DecayReading(reading.decay, reading.value, debiased=True)
    if write.type in ASSIGN_SUB and value.op.type == "Mul":
        cap = None
        for i in (0, 1):
            found = schedule_cap(value.op.inputs[i], ctx)
            cap = found if found is not None else cap
            factor = ctx.const_value(value.op.inputs[i])
            diff = value.op.inputs[1 - i]
            if factor is not None and np.size(factor) == 1 and diff.op.type == "Sub":
                src = [s.op.name for s in ctx.trace(diff.op.inputs[0])]
                if stat in src or reads(ctx, diff.op.inputs[0], stat):
                    return DecayReading(1.0 - float(np.ravel(factor)[0]), diff.op.inputs[1], cap=cap)
                src = [s.op.name for s in ctx.trace(diff.op.inputs[1])]
                if stat in src or reads(ctx, diff.op.inputs[1], stat):  # (v - s) * (1 - d), AssignAdd
                    return DecayReading(cap=cap)
        if cap is not None:
            return DecayReading(cap=cap)
    if write.type in ASSIGN and value.op.type in ("Add", "AddV2"):
        decay = other = None
        for t in (value.op.inputs[0], value.op.inputs[1]):
            if t.op.type == "Mul":
                for i in (0, 1):
                    c = ctx.const_value(t.op.inputs[i])
                    if c is not None and np.size(c) == 1:
                        if reads(ctx, t.op.inputs[1 - i], stat):
                            decay = float(np.ravel(c)[0])
                        else:
                            other = t.op.inputs[1 - i]
        if decay is not None:
            return DecayReading(decay, other)
    if write.type in ASSIGN:
        return DecayReading(value=value)
    return DecayReading()


def schedule(factor, ctx=None):
    """``(cap, Minimum op name)`` of an ``ExponentialMovingAverage(decay, num_updates=step)``
    schedule, whose EMA factor tensor ``factor`` is ``1 - min(decay, (1 + step) / (10 + step))``;
    else None.

    The one place this rule lives (``migrate`` reads it too): ``ctx`` is a finder
    ``GraphContext`` (one is made for ``factor.graph`` when not given)."""
    if ctx is None:
        from tf1_repro.tools.finder.context import GraphContext  # pylint: disable=import-outside-toplevel
        ctx = GraphContext(factor.graph)
    op = factor.op
    while op.type in ("Identity", "Cast", "Switch") and op.inputs:
        op = op.inputs[0].op
    if op.type != "Sub" or ctx.const_value(op.inputs[0]) is None:
        return None
    inner = op.inputs[1].op
    while inner.type in ("Identity", "Cast", "Switch") and inner.inputs:
        inner = inner.inputs[0].op
    if inner.type != "Minimum":
        return None
    for t in inner.inputs:
        value = ctx.const_value(t)
        if value is not None and np.size(value) == 1:
            return float(np.ravel(value)[0]), inner.name
    return None


def schedule_cap(factor, ctx=None):
    """The cap of ``schedule(factor)``, else None."""
    found = schedule(factor, ctx)
    return found[0] if found else None


def update_schedule(write, ctx=None):
    """``(cap, Minimum op name)`` of the schedule of an EMA update op
    ``AssignSub(s, (s - v) * factor)``, else None."""
    if write.type not in ASSIGN_SUB or write.inputs[1].op.type != "Mul":
        return None
    found = [schedule(t, ctx) for t in write.inputs[1].op.inputs]
    return next((f for f in reversed(found) if f is not None), None)


def update_schedule_cap(write, ctx=None):
    """The schedule cap of an EMA update op ``AssignSub(s, (s - v) * factor)``, else None."""
    found = update_schedule(write, ctx)
    return found[0] if found else None


def ops_above(op, depth):
    """``op`` and its data ancestors up to ``depth`` steps."""
    out, frontier = [op], [op]
    for _ in range(depth):
        frontier = [t.op for o in frontier for t in o.inputs]
        out += frontier
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class DecaySummary:
    """A layer's decay: ``decay`` (float32-rounded, the first update's), ``decay_cap`` (a
    schedule's cap when no update shows a constant decay), ``zero_debias`` (None when no decay
    is read), ``readings`` (``((stat, DecayReading), ...)`` per update outside TF2 control flow)
    and ``notes``."""

    decay: float = None
    decay_cap: float = None
    zero_debias: bool = None
    readings: tuple = ()
    notes: tuple = ()


def summarise(ctx, writes):
    """The ``DecaySummary`` of a layer's update ``writes`` (``((stat, op), ...)``, not empty)."""
    readings = tuple((stat, read_decay(ctx, w, stat)) for stat, w in writes if w.type not in IF_OPS)
    decays = [r.decay for _, r in readings if r.decay is not None]
    notes, decay, cap = [], None, None
    if decays:
        decay = float(np.float32(decays[0]))
        if any(abs(d - decays[0]) > 1e-6 for d in decays):
            notes.append(f"the statistics use different decays {sorted(set(decays))}")
    else:
        caps_by_stat = {}
        for stat, r in readings:
            if r.cap is not None:
                caps_by_stat[stat] = r.cap
        caps = sorted(set(caps_by_stat.values()))
        if caps:
            cap = caps[-1]
            notes.append(f"the decay is a schedule, min({cap:g}, (1 + step) / (10 + step)) "
                         f"(ExponentialMovingAverage with num_updates): decay reports None, "
                         f"decay_cap {cap:g}")
        else:
            notes.append("the update ops do not show a constant decay (a tensor or a schedule): "
                         "decay unknown")
    zero_debias = any(r.debiased for _, r in readings) if decays else None
    return DecaySummary(decay, cap, zero_debias, readings, tuple(notes))
