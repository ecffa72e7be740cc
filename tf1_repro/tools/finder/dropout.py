"""Dropouts: from every random draw forward through the ops that build the mask to the op that
applies it to the data (a registered dropout pattern), then back through any scaling: ``x /
keep_prob`` or ``x * 1/(1 - rate)`` is the *inverted* convention, none is *vanilla*.
``keep_prob`` (or ``rate``) is traced to its placeholder or Const: the mask's threshold first,
else the scale."""

import dataclasses

import numpy as np

from tf1_repro.graph.ops import RANDOM_DRAW_OPS
from tf1_repro.tools.finder.model import Dropout
from tf1_repro.tools.finder.names import scope
from tf1_repro.tools.finder.patterns import match_dropout
from tf1_repro.tools.finder.patterns._mask import data_mode, scaling

# Ops a mask is built with between the random draw and where it meets the data.
MASK_OPS = ("Add", "AddV2", "Floor", "GreaterEqual", "Greater", "Less", "LessEqual", "Cast",
            "Mul", "Sub", "RealDiv", "Identity", "Merge", "Switch")
THRESHOLDS = ("GreaterEqual", "Greater", "Less", "LessEqual")


@dataclasses.dataclass(frozen=True)
class KeepProb:
    """Where keep_prob comes from: ``param`` (``keep_prob`` or ``rate``), ``source``
    (``placeholder``, ``placeholder_with_default``, ``const``, ``tensor``), the node ``name`` and
    its ``value`` (for a Const)."""

    param: str = "keep_prob"
    source: str = "tensor"
    name: str = None
    value: float = None

    def to_dict(self):
        """The ``Dropout.keep_prob`` dict."""
        return {"param": self.param, "source": self.source, "name": self.name, "value": self.value}


def find_dropouts(ctx):
    """Every dropout of the graph, one per output, in graph order of their random draws."""
    found, seen = [], set()
    for op in ctx.ops:
        if op.type not in RANDOM_DRAW_OPS:
            continue
        match = mask_application(ctx, op)
        d = None if match is None else make_dropout(ctx, match)
        if d is not None and d.output not in seen:
            seen.add(d.output)
            found.append(d)
    return found


def mask_application(ctx, rand):
    """The ``DropoutMatch`` of the first op, breadth first from ``rand``, a pattern claims."""
    frontier, seen = [rand], set()
    mask_region = {rand.name}
    while frontier:
        o = frontier.pop(0)
        for c in ctx.consumers.get(o.name, []):
            if c.name in seen:
                continue
            seen.add(c.name)
            match = match_dropout(ctx, rand, c, mask_region)
            if match is not None:
                return match
            if c.type in MASK_OPS:
                mask_region.add(c.name)
                frontier.append(c)
    return None


def make_dropout(ctx, match):
    """The ``Dropout`` of a pattern's match."""
    rand, apply_op, data = match.rand, match.apply_op, match.data
    notes = []
    scale_by, x = scaling(data)
    convention = "inverted" if scale_by else "vanilla"
    x = ctx.strip_switch(x)
    keep = keep_prob_source(ctx, rand, apply_op, scale_by)
    output = apply_op.outputs[0]
    mode = data_mode(ctx, data)
    merge = [c for c in ctx.consumers.get(apply_op.name, []) if c.type == "Merge"]
    if merge:
        output = merge[0].outputs[0]
    scales_at_prediction = False
    if convention == "vanilla" and merge:
        others = [t for t in merge[0].inputs if t.op.name != apply_op.name]
        scales_at_prediction = any(t.op.type == "Mul" and keep.name is not None and any(
            _source_name(ctx, i) == keep.name for i in t.op.inputs) for t in others)
        notes.append("no scaling in training: prediction " + (
            "multiplies by keep_prob (the article's first way): prediction needs keep_prob's "
            "training value fed, not 1.0" if scales_at_prediction else
            "should multiply by keep_prob (the article's first way)"))
    name = scope(apply_op.name) or apply_op.name
    if mode is not None and name.endswith("/dropout") and "/cond" in name:
        name = name.split("/cond")[0]
    return Dropout(name=name, kind=match.kind, input=x.name, output=output.name,
                   keep_prob=keep.to_dict(), convention=convention, mode=mode,
                   random_ops=[rand.name], notes=notes, scales_at_prediction=scales_at_prediction)


def _source_name(ctx, t):
    src = scalar_source(ctx, t)
    return None if src is None or src[1] is None else src[1].name


def keep_prob_source(ctx, rand, apply_op, scale_by):
    """The ``KeepProb`` of a dropout: the mask's threshold, else its Floor's addend, else the
    scale."""
    candidates = []
    below = _descendant_ops_until(ctx, rand, apply_op)
    for c in below:
        if c.type in THRESHOLDS:
            others = [t for t in c.inputs if rand.name not in ctx.ancestors(t.op)]
            if others:
                # uniform >= rate keeps with probability 1 - rate; uniform < keep_prob keeps
                candidates.append(("rate" if c.type in ("GreaterEqual", "Greater") else "keep_prob",
                                   others[0]))
    for c in below:
        if c.type == "Floor" and c.inputs[0].op.type in ("Add", "AddV2"):
            others = [t for t in c.inputs[0].op.inputs if rand.name not in ctx.ancestors(t.op)]
            if others:
                candidates.append(("keep_prob", others[0]))
    if scale_by:
        candidates.append(("keep_prob" if scale_by[0] == "div" else "scale", scale_by[1]))
    for param, t in candidates:
        src = scalar_source(ctx, t)
        if src is None:
            continue
        kind, op, inverse = src
        value = ctx.const_value(t)
        if param == "rate" and inverse:
            param = "keep_prob"
        if param == "scale":
            param = "keep_prob"
            value = None if value is None else 1.0 / float(np.ravel(value)[0])
        elif value is not None:
            value = float(np.ravel(value)[0])
        if param == "keep_prob" and inverse and value is not None and candidates[0][0] == "rate":
            value = 1.0 - value
        return KeepProb(param, kind, op.name,
                        None if kind in ("placeholder", "tensor") else value)
    return KeepProb()


def _descendant_ops_until(ctx, start, stop):
    out, frontier, seen = [], [start], set()
    while frontier:
        o = frontier.pop(0)
        for c in ctx.consumers.get(o.name, []):
            if c.name in seen or c is stop:
                continue
            seen.add(c.name)
            out.append(c)
            if len(out) < 50:
                frontier.append(c)
    return out


def scalar_source(ctx, t, depth=0, inverse=False):
    """(source kind, op, whether the tensor is 1 - source) for a keep_prob/rate tensor."""
    op = t.op
    if depth > 16:
        return None
    if op.type == "Placeholder":
        return "placeholder", op, inverse
    if op.type == "PlaceholderWithDefault":
        return "placeholder_with_default", op, inverse
    if op.type == "Const":
        return "const", op, inverse
    if op.type in ("Identity", "Cast", "Switch", "Enter", "Reshape", "Squeeze"):
        return scalar_source(ctx, op.inputs[0], depth + 1, inverse)
    if op.type in ("Sub", "RealDiv", "Div"):
        a = ctx.const_value(op.inputs[0])
        if a is not None and np.all(a == 1):
            return scalar_source(ctx, op.inputs[1], depth + 1,
                                 (not inverse) if op.type == "Sub" else inverse)
    consts = [ctx.const_value(i) for i in op.inputs]
    if op.inputs and all(c is not None for c in consts):
        return "const", op, inverse
    return "tensor", op, inverse
