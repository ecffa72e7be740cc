"""The serving passes' registry: each pass registers itself by name, with the op types it
rewrites stated as data (as TF graph_transforms' ``REGISTER_GRAPH_TRANSFORM`` does).

A pass is a function ``run(graph_def, ctx) -> PassResult`` (``context.PassContext`` in,
``context.PassResult`` out) that never changes its input GraphDef."""

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Pass:
    """A registered pass: its name, its function, the op types it rewrites (``()``: any node)
    and the first line of its docstring."""
    name: str
    run: Callable
    targets: tuple
    summary: str


REGISTRY = {}


def register(name, targets=()):
    """Decorator: register ``run`` under ``name`` (a name is registered once)."""
    def wrap(run):
        if name in REGISTRY:
            raise ValueError(f"serving pass {name!r} is registered twice")
        doc = (run.__doc__ or "").strip().splitlines()
        REGISTRY[name] = Pass(name, run, tuple(targets), doc[0] if doc else "")
        return run
    return wrap


def get(name):
    """The registered pass ``name``; ValueError listing the registered names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"serving pass must be one of {', '.join(sorted(REGISTRY))}, got {name!r}")
    return REGISTRY[name]
