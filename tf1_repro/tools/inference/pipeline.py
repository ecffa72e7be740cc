"""Run serving passes in a declared order, checking the graph after each and recording what each
changed (as tf2onnx's optimizers and ONNX Runtime's graph transformers do).

A pipeline is a tuple of steps: a registered pass name (``passes.REGISTRY``) or a ``Repeat`` of
steps, run round after round until a round in which no pass changed anything (a fixpoint: fold
constants and resolve switches until nothing is left to do). After each pass the new GraphDef is
imported into a fresh ``tf.Graph`` (its large constants' bytes left out); a graph TensorFlow refuses raises ``PassError`` naming the
pass. Each pass run gives a ``PassRecord`` (name, node counts before and after, changed names).

Rewrite note: ``convert`` used to call the passes by hand (prune 7 times, one loop for the
fixpoint); its order is now data (``convert.STAGES``).
"""

import dataclasses

import tensorflow.compat.v1 as tf

from tf1_repro.graph.errors import exception_line
from tf1_repro.graph.graphdef import without_large_values
from tf1_repro.tools.inference import passes


class PassError(RuntimeError):
    """A pass left a GraphDef TensorFlow cannot import (a bug in the pass, not bad input)."""


@dataclasses.dataclass(frozen=True)
class Repeat:
    """Steps run in order, round after round, until a round where none changed anything."""
    steps: tuple

    def __init__(self, *steps):
        object.__setattr__(self, "steps", tuple(steps))


@dataclasses.dataclass(frozen=True)
class PassRecord:
    """One pass run: its name, the graph's node count before and after, the nodes it changed."""
    name: str
    ops_before: int
    ops_after: int
    changed: tuple

    def as_dict(self):
        """``{"name", "ops_before", "ops_after", "changed"}`` (JSON-able)."""
        return {"name": self.name, "ops_before": self.ops_before, "ops_after": self.ops_after,
                "changed": list(self.changed)}


def names(steps):
    """The pass names of ``steps`` in order, a Repeat's as ``(a, b)*`` (for documentation)."""
    return [f"({', '.join(names(s.steps))})*" if isinstance(s, Repeat) else s for s in steps]


def check_imports(graph_def, name):
    """PassError when TensorFlow cannot import ``graph_def`` (left by the pass ``name``).
    The graph is imported with its large constants' bytes left out (``without_large_values``:
    dtypes and shapes kept): importing checks names, inputs, attributes, dtypes and shapes,
    never a constant's bytes, and a full import of a frozen ResNet-50 (94 MB) cost 270-540 MB
    per pass (measured)."""
    try:
        with tf.Graph().as_default():
            tf.import_graph_def(without_large_values(graph_def), name="")
    except Exception as err:  # pylint: disable=broad-except
        raise PassError(f"serving pass {name} left a graph TensorFlow cannot import: "
                        f"{exception_line(err)}") from err


def run(steps, graph_def, ctx, records=None, check=True):
    """Run ``steps`` on ``graph_def`` with ``ctx``; returns (GraphDef, [PassRecord]).
    ``records``: a list the records are appended to (and returned); ``check``: import the graph
    after each pass (``check_imports``)."""
    records = [] if records is None else records
    for step in _validated(steps):
        if isinstance(step, Repeat):
            while True:
                first = len(records)
                graph_def, _ = run(step.steps, graph_def, ctx, records, check)
                if not any(r.changed for r in records[first:]):
                    break
            continue
        before = len(graph_def.node)
        result = passes.get(step).run(graph_def, ctx)
        if check:
            check_imports(result.graph_def, step)
        records.append(PassRecord(step, before, len(result.graph_def.node), tuple(result.changed)))
        graph_def = result.graph_def
    return graph_def, records


def _validated(steps):
    """``steps`` once every name in them is a registered pass (ValueError before anything runs)."""
    for step in steps:
        if isinstance(step, Repeat):
            _validated(step.steps)
        else:
            passes.get(step)
    return steps
