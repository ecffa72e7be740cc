"""The registered patterns: each form of batch norm and of dropout the finder recognises, one small
module each, tried in the declared order (``BN_PATTERN_MODULES``, ``DROPOUT_PATTERN_MODULES``).

A BN pattern is ``match(ctx, op) -> Optional[Norm]`` for a candidate op (``root_ops`` lists the op
types it can start from). A dropout pattern is ``match(ctx, rand, op, mask_region) ->
Optional[DropoutMatch]`` for an op reached from a random draw ``rand`` (``mask_region``: the names
of the ops between them that build the mask). The first pattern that matches an op claims it.
Modules whose names start with ``_`` are shared helpers, not patterns.
"""

import dataclasses
import importlib
from typing import Callable

BN_PATTERN_MODULES = ("fused", "global_normalization", "nn_batch_normalization", "centred",
                      "gamma_first")
DROPOUT_PATTERN_MODULES = ("keras_dropout", "stateless_dropout", "select_dropout", "floor_dropout",
                           "hand_written_dropout")


@dataclasses.dataclass(frozen=True)
class Pattern:
    """A registered pattern: its ``name``, the op types it starts from, its ``match`` function and
    its module's docstring (the rule it implements)."""

    name: str
    family: str
    root_ops: tuple
    match: Callable
    module: str

    @property
    def rule(self):
        """The pattern's rule: its module's docstring."""
        return importlib.import_module(self.module).__doc__


BN_PATTERNS = []
DROPOUT_PATTERNS = []


def _register(registry, family, name, root_ops):
    def decorate(match):
        if any(p.name == name for p in registry):
            raise ValueError(f"finder pattern {name!r} is registered twice")
        registry.append(Pattern(name, family, tuple(root_ops), match, match.__module__))
        return match
    return decorate


def register_bn_pattern(name, root_ops):
    """Register ``match(ctx, op) -> Optional[Norm]`` as BN pattern ``name`` (tried on ops whose
    type is in ``root_ops``)."""
    return _register(BN_PATTERNS, "bn", name, root_ops)


def register_dropout_pattern(name, root_ops):
    """Register ``match(ctx, rand, op, mask_region) -> Optional[DropoutMatch]`` as dropout pattern
    ``name`` (tried on ops whose type is in ``root_ops``: what applies the mask)."""
    return _register(DROPOUT_PATTERNS, "dropout", name, root_ops)


def match_bn(ctx, op):
    """The ``Norm`` of the first BN pattern that matches ``op``, else None."""
    for pattern in BN_PATTERNS:
        if op.type in pattern.root_ops:
            found = pattern.match(ctx, op)
            if found is not None:
                return found
    return None


def match_dropout(ctx, rand, op, mask_region):
    """The ``DropoutMatch`` of the first dropout pattern that matches ``op``, else None."""
    for pattern in DROPOUT_PATTERNS:
        if op.type in pattern.root_ops:
            found = pattern.match(ctx, rand, op, mask_region)
            if found is not None:
                return found
    return None


for _name in BN_PATTERN_MODULES + DROPOUT_PATTERN_MODULES:
    importlib.import_module(f"{__name__}.{_name}")
