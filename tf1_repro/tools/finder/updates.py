"""The update ops of a layer's moving statistics and where they live.

An update op writes a moving statistic (through ref/resource Identity, Switch, Enter), other than
its initializer and a checkpoint restore (``RESTORE_SCOPE``, RestoreV2 ancestors); an ``If`` whose
branch function writes the variable counts as one (TF2 control flow). Where it lives:

* ``"output"``: it runs whenever the layer's output runs (an ancestor of the output or of a
  normalisation op's output), or rides on it: a tensor that hands the output on unchanged runs it
  (slim's and contrib's ``updates_collections=None``: ``tf.identity(y)`` under control
  dependencies on the updates, or ``y = tf.cond(training, force_updates, lambda: y)``; Sonnet's
  ``update_ops_collection=None``): the output becomes that tensor;
* ``"UPDATE_OPS"`` / ``"collection:NAME"``: it feeds a member of that collection;
* ``"separate-op:NAME"``: only the op ``NAME`` runs it (a NoOp grouping it, or a cond's Merge);
* ``None``: no update op.
"""

import dataclasses

from tf1_repro.graph.ops import IF_OPS, WRITE_OPS
from tf1_repro.tools.finder import modes

RESTORE_SCOPE = "tf1_repro_restore"  # where artefacts.Artefact.restore adds its assign ops
RESTORE_OPS = {"RestoreV2", "Restore", "RestoreSlice"}
REF_PASSING = ("RefSwitch", "Switch", "Identity", "RefIdentity", "Enter", "RefEnter")


@dataclasses.dataclass(frozen=True, eq=False)
class UpdateLocation:
    """Where a layer's updates live: ``location`` (see the module), ``at_prediction`` (an update
    runs when the prediction output runs; None when unknown), ``output`` (the layer's output when
    the updates ride on it, else None) and ``notes``."""

    location: str = None
    at_prediction: bool = None
    output: object = None
    notes: tuple = ()


def writes_of(ctx, var_name):
    """Ops that write variable ``var_name``, other than its initializer and a restore."""
    var = ctx.op(var_name)
    targets, frontier, out = {var_name}, [var], []
    while frontier:
        o = frontier.pop()
        for c in ctx.consumers.get(o.name, []):
            if c.type in IF_OPS:  # an update inside a TF2 control-flow branch function
                index = [i for i, t in enumerate(c.inputs) if t.op.name in targets]
                if c not in out and any(
                        ctx.function_writes_arg(c.get_attr(attr).name, i - 1)
                        for i in index if i > 0 for attr in ("then_branch", "else_branch")):
                    out.append(c)
                continue
            if not c.inputs or c.inputs[0].op.name not in targets:
                continue
            if c.type in WRITE_OPS:
                if not is_init_or_restore(ctx, c, var_name):
                    out.append(c)
            elif c.type in REF_PASSING and c.name not in targets and (
                    c.outputs[0].dtype._is_ref_dtype  # pylint: disable=protected-access
                    or c.outputs[0].dtype.name == "resource"):
                targets.add(c.name)
                frontier.append(c)
    return out


def stat_writes(ctx, stats):
    """``((stat, write op), ...)`` for the moving statistics named ``stats`` (Consts have none)."""
    out = []
    for name in stats:
        if ctx.op(name).type != "Const":
            out += [(name, w) for w in writes_of(ctx, name)]
    return tuple(out)


def is_init_or_restore(ctx, write, var_name):
    """The variable's initializer, or an assign from a checkpoint restore."""
    if write.name == f"{var_name}/Assign" or write.name.startswith(RESTORE_SCOPE + "/"):
        return True  # the initializer, or artefacts.restore's own assign
    value = write.inputs[1].op
    kinds = {ctx.op(a).type for a in ctx.ancestors(value)}
    if kinds & RESTORE_OPS:
        return True
    return f"{var_name}/Initializer/" in value.name + "/"


def locate(ctx, writes, norms, output, mode):
    """The ``UpdateLocation`` of a layer's update ``writes`` (``((stat, op), ...)``, not empty),
    given its normalisation ops ``norms``, its ``output`` tensor and its ``mode``.

    An update that is an ancestor of the output, or of a tensor that hands the output on
    unchanged (``riding_output``), lives at ``output``: running the output runs it. That tensor
    then is the layer's output."""
    locations, at_prediction, new_output, notes = [], False, None, []
    pred_out = ctx.ancestors(output.op)
    unit_outs = set()
    for u in norms:
        unit_outs |= ctx.ancestors(u.y.op)
    for _, w in writes:
        if w.name not in unit_outs and w.name not in pred_out and _collection_of(ctx, w) is None:
            rider = riding_output(ctx, new_output or output, w)
            if rider is not None:
                new_output = rider
                pred_out = ctx.ancestors(rider.op)
    for _, w in writes:
        if w.name in unit_outs or w.name in pred_out:
            locations.append("output")
            if w.name in pred_out and runs_at_prediction(ctx, w, mode):
                at_prediction = True
            continue
        loc = _collection_of(ctx, w)
        if loc is None:
            loc = f"separate-op:{ctx.op(sink_of(ctx, w)).name}"
        locations.append(loc)
    location = locations[0]
    separate = sorted({loc.split(":", 1)[1] for loc in locations if loc.startswith("separate-op:")})
    if location.startswith("separate-op:"):
        location = "separate-op:" + ",".join(separate)
    if len({loc.split(":")[0] for loc in locations}) > 1:
        notes.append(f"update ops live in more than one place: {sorted(set(locations))}")
        for preferred in ("output", "UPDATE_OPS"):
            if preferred in locations:
                location = preferred
                break
    return UpdateLocation(location, at_prediction, new_output, tuple(notes))


def riding_output(ctx, output, write):
    """The first tensor (breadth first from ``output``) that hands ``output`` on unchanged and
    runs ``write``: an Identity with a control dependency on it (slim's and contrib's
    ``updates_collections=None`` with a Python ``is_training``), or a cond's Merge each of whose
    branches is ``output`` handed on (``tf.cond(training, force_updates, lambda: y)``); else
    None. Handing on goes through Identity, Snapshot and a cond's Switch; a tensor inside a cond
    branch the output is not in (the Identity in ``force_updates``) is not the output, its Merge
    may be."""
    def branch(t):
        return [(p.name, port) for p, port in ctx.switch_path(t)]

    home = branch(output)
    chain, frontier, seen = {output.op.name}, [output.op], set()
    while frontier:
        o = frontier.pop(0)
        for c in ctx.consumers.get(o.name, []):
            if c.name in seen:
                continue
            if c.type == "Merge":
                if not all(t.op.name in chain for t in c.inputs):
                    continue
            elif c.type not in ("Identity", "Snapshot", "Switch", "RefSwitch") or \
                    c.inputs[0].op.name not in chain:
                continue
            seen.add(c.name)
            chain.add(c.name)
            if c.type != "Switch" and write.name in ctx.ancestors(c) and \
                    branch(c.outputs[0]) == home:
                return c.outputs[0]
            frontier.append(c)
    return None


def _collection_of(ctx, write):
    """``UPDATE_OPS`` or ``collection:NAME`` when ``write`` feeds a member of a collection.

    When several collections hold it, the same answer whatever their order (a meta graph's
    collections come as a map with no fixed order): ``update_ops`` first, then ``train_op`` (the
    train op runs it), then the first name in sorted order."""
    below = ctx.descendants(write)
    matches = sorted(key for key, members in ctx.collections.items()
                     if any(m in below for m in members))
    if not matches:
        return None
    if "update_ops" in matches:
        return "UPDATE_OPS"
    return "collection:" + ("train_op" if "train_op" in matches else matches[0])


def tf2_notes(writes):
    """The note for updates inside TF2 If branch functions (their decay is not read)."""
    inside = sorted({w.name for _, w in writes if w.type in IF_OPS})
    if not inside:
        return ()
    return ("TF2 control flow: the update runs inside the branch function of "
            f"{', '.join(inside)}; its decay is not read (build the graph under "
            "tf.compat.v1.disable_v2_behavior() to have it read)",)


def runs_at_prediction(ctx, write, mode):
    """An update that is an ancestor of the output runs at prediction unless a tf.cond branch
    that prediction does not take holds it."""
    path = ctx.switch_path(write.inputs[0]) or ctx.switch_path(write.inputs[1])
    if not path or mode is None or mode.op == "python_bool":
        return True
    pred, port = path[0]
    taken = modes.pred_in_prediction(ctx, pred, mode)
    return taken is None or bool(taken) == bool(port)


def sink_of(ctx, op):
    """What a user must run to run the update ``op``: the ``NoOp`` that groups it (e.g.
    ``ema.apply``), else, inside a ``tf.cond``, the cond's ``Merge`` (a branch's ops cannot be
    fetched), else the op itself."""
    frontier, seen, merge = [op], set(), None
    in_cond = bool(ctx.switch_path(op.inputs[0]) or
                   (len(op.inputs) > 1 and ctx.switch_path(op.inputs[1])))
    while frontier:
        o = frontier.pop()
        if o.name in seen:
            continue
        seen.add(o.name)
        nxt = ctx.consumers.get(o.name, []) + ctx.ctrl_consumers.get(o.name, [])
        if not nxt and o.type == "NoOp" and o is not op:
            return o.name
        if o.type == "Merge" and merge is None:
            merge = o
        frontier.extend(nxt)
    return merge.name if in_cond and merge is not None else op.name
