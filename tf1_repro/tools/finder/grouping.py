"""Normalisation ops into layers, and a layer's calls.

Normalisation ops that share a variable or Const (gamma, beta, a statistic read or one an EMA
update fills from their batch statistics) are one layer: the two branches of a fused ``tf.cond``,
or a layer built twice with Python bools. Within a layer, the ops on one input are one call; a
layer shared by two towers has two."""

import dataclasses

from tf1_repro.graph.ops import WRITE_OPS
from tf1_repro.tools.finder.decay import read_decay

# Ops an EMA update's value passes through from the batch statistic to the write.
_TO_WRITE = ("Identity", "Switch", "Sub", "Mul", "Squeeze", "Reshape", "Enter", "StopGradient",
             "RealDiv")


@dataclasses.dataclass(frozen=True, eq=False)
class Group:
    """One layer's normalisation ops (``norms``, graph order) and the variables EMA updates fill
    from their batch mean and variance (``linked_mean``, ``linked_var``, sorted)."""

    norms: tuple
    linked_mean: tuple = ()
    linked_var: tuple = ()


def linked(ctx, norm, key):
    """Variables that EMA writes fill from ``norm``'s batch ``key`` (``mean``/``var``) statistic
    (a moving statistic that training updates even where this op never reads it), sorted."""
    found, frontier, seen = [], [], set()
    for src in norm.batch_sources(key):
        # only the consumers of this output (a fused op's mean and variance are outputs 1, 2)
        frontier += [c for c in ctx.consumers.get(src.op.name, [])
                     if any(t.op.name == src.op.name and t.value_index == src.output
                            for t in c.inputs)]
    pending = [c for c in frontier if c.type not in WRITE_OPS] + \
        [c for c in frontier if c.type in WRITE_OPS]
    frontier = []
    for c in pending:
        seen.add(c.name)
        if c.type in WRITE_OPS:
            found += _ema_target(ctx, c)
        elif c.type in _TO_WRITE + ("Merge",):
            frontier.append(c)
    while frontier:
        o = frontier.pop()
        for c in ctx.consumers.get(o.name, []):
            if c.name in seen:
                continue
            seen.add(c.name)
            if c.type in WRITE_OPS:
                found += _ema_target(ctx, c)
            elif c.type in _TO_WRITE:
                frontier.append(c)
    return tuple(sorted(set(found)))


def _ema_target(ctx, write):
    """``[variable name]`` when ``write`` is an EMA update with a decay, else ``[]``."""
    target = ctx.trace(write.inputs[0])
    if target and target[0].kind == "variable" and \
            read_decay(ctx, write, target[0].op.name).decay is not None:
        return [target[0].op.name]
    return []


def variables_of(norm, linked_mean, linked_var):
    """Names of the variables and Consts ``norm`` reads or fills (a frozen graph's parameters are
    Consts)."""
    names = set()
    for key in ("scale", "offset", "mean", "var"):
        names |= {s.op.name for s in norm.sources(key) if s.kind in ("variable", "const")}
    return names | set(linked_mean) | set(linked_var)


def group(ctx, norms):
    """``[Group]``: the normalisation ops joined by the variables they share."""
    groups = []
    for u in norms:
        mean, var = linked(ctx, u, "mean"), linked(ctx, u, "var")
        names = variables_of(u, mean, var)
        item = {"norms": [u], "vars": set(names), "mean": {u: mean}, "var": {u: var}}
        joined = [g for g in groups if names & g["vars"]] if names else []
        if not joined:
            groups.append(item)
            continue
        first = joined[0]
        for g in [item] + joined[1:]:
            first["norms"] += g["norms"]
            first["vars"] |= g["vars"]
            first["mean"].update(g["mean"])
            first["var"].update(g["var"])
            if g is not item:
                groups.remove(g)
    out = []
    for g in groups:
        ordered = tuple(sorted(g["norms"], key=lambda u: ctx.order.get(u.op.name, 0)))
        out.append(Group(ordered, tuple(sorted({n for u in ordered for n in g["mean"][u]})),
                         tuple(sorted({n for u in ordered for n in g["var"][u]}))))
    return out


def call_sites(ctx, norms):
    """Normalisation ops grouped by the tensor they normalise: one group per call of a shared
    layer (two towers reusing one BN), while a cond's two branches or a train/predict pair built
    on the same input stay one call."""
    sites = {}
    for u in norms:
        sites.setdefault(ctx.strip_switch(u.x).name, []).append(u)
    return list(sites.values())


# Ops that hand a tensor on unchanged (a cond's Switch included), forward from a layer's output.
PASS_ON = ("Identity", "Snapshot", "Switch", "RefSwitch")


def passed_on(ctx, t):
    """The tensor ``t`` hands on unchanged: back through Identity/Snapshot/Switch."""
    while t.op.type in PASS_ON and t.op.inputs:
        t = t.op.inputs[0]
    return t


def call_output(ctx, norms):
    """The output of one call: its op's output; the Merge of a cond's branches, each of which is
    one of the call's normalisation outputs handed on unchanged (an Identity with control
    dependencies on the updates, as Sonnet's ``update_ops_collection=None`` and a cond between
    two slim calls build them, included); or (built twice with Python bools) the last
    prediction op's."""
    ys = [u.y for u in norms]
    if len(ys) == 1:
        # a single op inside a cond branch whose other branch is not a BN (rare): keep y
        return ys[0]
    names = {y.name for y in ys}
    found, frontier, seen = [], [y.op for y in ys], set()
    while frontier:
        o = frontier.pop(0)
        for c in ctx.consumers.get(o.name, []):
            if c.name in seen:
                continue
            seen.add(c.name)
            if c.type == "Merge":
                sources = {passed_on(ctx, t).name for t in c.inputs}
                if sources <= names and len(sources) == len(names):
                    found.append(c)
            elif c.type in PASS_ON and c.inputs and passed_on(ctx, c.inputs[0]).name in names:
                frontier.append(c)
    if found:
        return min(found, key=lambda m: ctx.order.get(m.name, 0)).outputs[0]
    # built twice (Python bools): the last one built is usually the prediction path
    pred = [u.y for u in norms if not u.batch]
    return (pred or ys)[-1]
