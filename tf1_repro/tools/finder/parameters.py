"""A layer's parameters (gamma, beta) and moving statistics, its name, statistics shape and
channel axis.

Each is the first variable or Const its normalisation ops trace it to (a note when there are
several, unless they are Consts of one value); a gamma/beta computed from a variable through a per-channel correction (batch
renormalisation's ``gamma * r``) is that variable, with a note. A layer whose ops read no moving
statistic takes those EMA updates fill from its batch statistics (*linked*), else a fused op's
ignored inputs: both *unread*. The name is the longest scope its variables share, never shortened
by a Const (see ``layer_name``)."""

import dataclasses

from tf1_repro.graph.ops import FUSED_BN_OPS, VARIABLE_OPS
from tf1_repro.tools.finder.names import common_scope, scope
from tf1_repro.tools.finder.updates import writes_of

_KEYS = {"scale": "gamma", "offset": "beta"}
_THROUGH = ("Mul", "Add", "AddV2", "Identity", "Switch", "Merge", "ReadVariableOp")


@dataclasses.dataclass(frozen=True)
class Parameters:
    """Node names of ``gamma``, ``beta``, ``moving_mean``, ``moving_variance`` (None when absent);
    ``unread``: the moving statistics the layer updates but does not read; ``notes``."""

    gamma: str = None
    beta: str = None
    moving_mean: str = None
    moving_variance: str = None
    unread: tuple = ()
    notes: tuple = ()

    @property
    def names(self):
        """The parameters' and statistics' names, in that order, absent ones left out."""
        return [n for n in (self.gamma, self.beta, self.moving_mean, self.moving_variance) if n]

    @property
    def stats(self):
        """The moving statistics' names (mean first)."""
        return [n for n in (self.moving_mean, self.moving_variance) if n]


def read_parameters(ctx, group):
    """The ``Parameters`` of a ``grouping.Group``."""
    norms, notes = group.norms, []

    def pick(key):
        found = []
        for u in norms:
            for s in u.sources(key):
                if s.kind in ("variable", "const") and s.op.name not in found:
                    found.append(s.op.name)
        if len(found) > 1 and not _equal_consts(ctx, found):
            notes.append(f"{key}: more than one source ({', '.join(found)}); reporting the first")
        return found[0] if found else None

    chosen = {"scale": pick("scale"), "offset": pick("offset")}
    for key in ("scale", "offset"):
        if chosen[key] is None:
            behind = parameter_behind(ctx, norms, key)
            if behind:
                notes.append(f"{_KEYS[key]} {behind} reaches the normalisation through a "
                             f"per-channel correction (batch renormalisation or similar)")
                chosen[key] = behind
    mean, var = pick("mean"), pick("var")
    unread = ()
    if mean is None and var is None:
        mean = group.linked_mean[0] if group.linked_mean else None
        var = group.linked_var[0] if group.linked_var else None
        if mean is None and var is None:  # a fused op in training mode
            mean = next((s.op.name for u in norms for s in u.mean_ignored
                         if s.kind in ("variable", "const")), None)
            var = next((s.op.name for u in norms for s in u.var_ignored
                        if s.kind in ("variable", "const")), None)
        unread = tuple(n for n in (mean, var) if n)
    return Parameters(chosen["scale"], chosen["offset"], mean, var, unread, tuple(notes))


def _equal_consts(ctx, names):
    """Consts of one value (slim's ``scale=False`` gamma, one per call of a shared layer): one
    parameter, no note."""
    if any(ctx.op(n).type != "Const" for n in names):
        return False
    values = [ctx.const_value(ctx.op(n).outputs[0]) for n in names]
    return all(v is not None and v.shape == values[0].shape and (v == values[0]).all()
               for v in values)


def parameter_behind(ctx, norms, key):
    """A variable a computed scale/offset is made from through Mul/Add (renorm's gamma * r): not
    written by any update, not a statistic."""
    stats = {s.op.name for u in norms for s in u.mean + u.var}
    for u in norms:
        for src in u.sources(key):
            if src.kind not in ("batch", "tensor"):
                continue
            frontier = [src.op]
            for _ in range(4):
                nxt = []
                for o in frontier:
                    if o.type not in _THROUGH:
                        continue
                    for t in o.inputs:
                        for s2 in ctx.trace(t):
                            if s2.kind == "variable" and not writes_of(ctx, s2.op.name) and \
                                    s2.op.name not in stats:
                                return s2.op.name
                        nxt.append(t.op)
                frontier = nxt
    return None


def layer_name(ctx, norms, params):
    """The layer's name: the longest scope its variables share (gamma, beta and the moving
    statistics that are variable ops). A Const never shortens it: slim's ``scale=False`` gamma is a
    Const named after the *op* scope (``InceptionV2/InceptionV2/.../BatchNorm/Const``, and
    ``InceptionV2_1/...`` in a second tower), not the variable scope. A layer with no variables (a
    frozen graph) is named by its Consts' scope, leaving out Consts that TF named itself
    (``Const``, ``Const_3``: values written in the code, not frozen variables) when others are
    there. With neither, or no common scope: its normalisation ops' scope without
    ``/batchnorm``, ``/cond``, ``/FusedBatchNorm``; unscoped: the first op's name."""
    names = params.names
    variables = [n for n in names if ctx.op(n).type != "Const"]
    consts = [n for n in names if ctx.op(n).type == "Const"]
    frozen = [n for n in consts if not is_auto_const(n)]
    name = common_scope(variables) if variables else common_scope(frozen or consts)
    if not name:
        name = common_scope([u.op.name for u in norms]) or scope(norms[0].op.name)
        for suffix in ("/batchnorm", "/cond", "/FusedBatchNorm"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
    return name or norms[0].op.name  # an unscoped layer: named by its normalisation op


def is_auto_const(name):
    """A Const TF named itself (``.../Const``, ``.../Const_2``): a value in the code, named after
    the op scope it was made in."""
    leaf = name.rsplit("/", 1)[-1]
    return leaf == "Const" or (leaf.startswith("Const_") and leaf[6:].isdigit())


def variable_shape(op):
    """A variable's or Const's declared shape (a resource handle's own shape is ())."""
    try:
        if op.type in VARIABLE_OPS:
            dims = [d.size for d in op.get_attr("shape").dim]
        else:
            dims = op.outputs[0].shape.as_list()
    except (ValueError, TypeError):
        return None
    return None if any(d is None or d < 0 for d in dims) else tuple(dims)


def channel_axis(norms, x):
    """The axis the statistics run along: 1 for a fused op with ``data_format`` NC..., else the one
    non-1 axis of the statistics as the normalisation broadcasts them (``(1, C, 1)`` against a
    rank-3 input is axis 1), else -1 (channels last)."""
    for u in norms:
        if u.op.type in FUSED_BN_OPS:
            fmt = u.op.get_attr("data_format")
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            return 1 if fmt.startswith("NC") else -1
    rank = x.shape.rank
    for u in norms:
        if u.op.type in ("Rsqrt", "Sqrt", "Pow"):
            try:
                dims = u.op.outputs[0].shape.as_list()
            except ValueError:
                continue
            if rank and len(dims) == rank and sum(d != 1 for d in dims) == 1 and None not in dims:
                axis = next(i for i, d in enumerate(dims) if d != 1)
                return -1 if axis == rank - 1 else axis
    return -1
