"""Which calls of a shared layer training runs, and which update ops each call makes.

A layer whose variables several calls share (two towers, a Keras model called on its own
``Input`` and again on the user's tensor) has one ``call_mode`` record per call (``layer.call_mode``);
this module adds what the graph says about each:

* ``trained``: the train op runs the call: one of its normalisation ops is among the data or
  control ancestors of a train op (``train_ops``), reached other than through an assign. Backprop
  reads only the calls the loss uses, so a call no train op reaches is not trained (an evaluation
  tower, or the unused call of a Keras model on its own ``Input``); the walk does not follow a
  BN update's data inputs, so wiring every call's updates into the train op (``model.updates``) does not
  make an unused call trained. A graph without a train op (a frozen or serving graph) trains no
  call.
* ``update_ops``: the layer's update ops computed from this call's input: an update belongs to
  the call whose input it reads (the batch statistics it averages come from that input), the
  nearest one when it reads several (a call fed by another call's output). An update that reads
  no call's input belongs to none (it is listed on the layer only).
"""

import re

from tf1_repro.graph.ops import WRITE_OPS

_STATS, _TRAINED = "__bn_statistics__", "__trained_names__"  # ctx.mode_cache keys
_REF_PASSING = ("Identity", "RefIdentity", "Switch", "RefSwitch", "Enter", "RefEnter")
# Optimizer ops that apply gradients to a variable (what a train op runs).
_APPLY = re.compile(r"(Resource)?(Sparse)?Apply\w+")


def train_ops(ctx):
    """Names of the graph's train ops: the ``train_op`` collection's members, else the sinks
    below the ops that apply gradients (``ApplyGradientDescent``, ``ResourceApplyAdam``, ...);
    ``[]`` without either."""
    named = [n for n in ctx.collections.get("train_op", []) if _has_op(ctx, n)]
    if named:
        return named
    graph_ops = ctx.graph.get_operations()
    applies = [op for op in graph_ops if _APPLY.fullmatch(op.type)]
    if not applies:
        return []
    below = {}
    for op in graph_ops:  # backprop's ops included: the optimizer's NoOp may sit under them
        for t in op.inputs:
            below.setdefault(t.op.name, []).append(op)
        for c in op.control_inputs:
            below.setdefault(c.name, []).append(op)
    seen, stack, sinks = set(), list(applies), []
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        nxt = below.get(op.name, [])
        if not nxt:
            sinks.append(op.name)
        stack.extend(nxt)
    return sorted(sinks)


def remember_statistics(ctx, groups):
    """Note on ``ctx`` the names of every layer's moving-statistic variables (read by a
    normalisation op, or filled by an EMA of its batch statistics) of ``groups``
    (``grouping.Group``), for ``trained_names``. Call once, before building the layers."""
    stats = set()
    for g in groups:
        stats |= set(g.linked_mean) | set(g.linked_var)
        for u in g.norms:
            stats |= {s.op.name for s in u.sources("mean") + u.sources("var")
                      if s.kind == "variable"}
    ctx.mode_cache[_STATS] = stats


def trained_names(ctx):
    """Names of every op a train op depends on (data and control), not following the data
    inputs of a BN update (a write of a moving statistic noted by ``remember_statistics``): an
    update wired into the train op reads its call's batch statistics, but does not make the
    train op train that call. Every other write is followed (``minimize(global_step=...)``'s
    train op is the step's ``AssignAdd``, behind the gradient updates). Memoised on ``ctx``."""
    if _TRAINED not in ctx.mode_cache:
        stats = ctx.mode_cache.get(_STATS, set())
        seen, stack = set(), [ctx.op(n) for n in train_ops(ctx)]
        while stack:
            op = stack.pop()
            if op.name in seen:
                continue
            seen.add(op.name)
            if op.type in WRITE_OPS and _target(op) in stats:
                stack.extend(op.control_inputs)
                continue
            stack.extend(t.op for t in op.inputs)
            stack.extend(op.control_inputs)
        ctx.mode_cache[_TRAINED] = seen
    return ctx.mode_cache[_TRAINED]


def _target(write):
    """The name of the variable op a write assigns (through ref Identity/Switch/Enter)."""
    t = write.inputs[0] if write.inputs else None
    while t is not None and t.op.type in _REF_PASSING and t.op.inputs:
        t = t.op.inputs[0]
    return t.op.name if t is not None else None


def is_trained(ctx, site):
    """Whether a train op runs the call ``site`` (its normalisation ops)."""
    names = trained_names(ctx)
    return any(u.op.name in names for u in site)


def updates_by_call(ctx, sites, writes):
    """``[[update op name]]`` per call: each of ``writes`` (``((stat, op), ...)``) on the call
    whose input it reads (see the module); with one call, every update is its own."""
    if len(sites) < 2:
        return [sorted({w.name for _, w in writes})] if sites else []
    inputs = [ctx.strip_switch(site[0].x).op.name for site in sites]
    out = [set() for _ in sites]
    for _, w in writes:
        hit = _inputs_read(ctx, w, set(inputs))
        near = [n for n in hit if not any(n != m and n in ctx.ancestors(ctx.op(m)) for m in hit)]
        for i, name in enumerate(inputs):
            if name in near:
                out[i].add(w.name)
    return [sorted(s) for s in out]


def _inputs_read(ctx, write, inputs, limit=200000):
    """Which of the ops named ``inputs`` the ``write`` depends on (data and control), walking up
    no further than them and the variables."""
    hit, seen = set(), set()
    stack = [t.op for t in write.inputs[1:]] + list(write.control_inputs)
    while stack and len(seen) < limit:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.name in inputs:
            hit.add(op.name)
            continue
        if op.type in ("VariableV2", "VarHandleOp", "Variable", "Const", "Placeholder"):
            continue
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return hit


def _has_op(ctx, name):
    try:
        ctx.op(name)
    except KeyError:
        return False
    return True
