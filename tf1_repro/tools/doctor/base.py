"""What every doctor check shares: the error, the severities, a finding, and the ``Check`` unit.

A check is one finding id (ruff/pylint style): its id, severity, fix text and detection, in a
module of its own under ``doctor/checks/``. The report (``doctor/report.py``) asks every
registered check, in the registry's order, at each of four moments; a check answers at the
moments its rule needs and yields nothing at the others:

* ``layer(ctx, layer)``: one BN layer, from values and the graph (nothing runs);
* ``graph(ctx)``: the whole graph, once (nothing runs);
* ``serving_default(ctx, default)``: one mode ``PlaceholderWithDefault`` that a serving client
  leaves at its default (``ServingDefault``);
* ``dynamic(ctx, run)``: the outcome of one set of three prediction runs (``runs.Run``).
"""

import dataclasses
from typing import Iterator, Optional

import numpy as np

from tf1_repro.graph.errors import InputError

ERROR, WARNING, INFO = "error", "warning", "info"
WHERE = "doctor"
# The fix of a BN update that does not run with the train op (two checks give it).
UPDATE_OPS_FIX = ("with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)): "
                  "train_op = optimizer.minimize(loss)")


class DoctorError(InputError):
    """Unreadable input or a bad argument: one line naming the file or argument (exit status 2)."""


@dataclasses.dataclass
class Finding:
    """One finding of the report: ``to_dict`` is its JSON (id, severity, layer, message, fix)."""

    id: str
    severity: str
    layer: Optional[str]
    message: str
    fix: str

    def to_dict(self):
        return {"id": self.id, "severity": self.severity, "layer": self.layer,
                "message": self.message, "fix": self.fix}


class Check:
    """One finding id and its detection; subclass it in ``doctor/checks/`` and ``@register`` it.

    Class attributes: ``id`` (the finding id), ``severity`` (``ERROR``, ``WARNING`` or ``INFO``),
    ``fix`` (one line), ``tf2_fix`` (one line, optional: the fix in a TF2 SavedModel or Keras
    file, which the report uses there). Override the hooks the rule needs (see the module docstring); each yields
    ``Finding``s made with ``self.finding(layer, message)``.
    """

    id: str = ""
    severity: str = ERROR
    fix: str = ""
    tf2_fix: str = ""  # the fix on a TF2 SavedModel or Keras file, when it differs

    def finding(self, layer, message):
        return Finding(self.id, self.severity, layer, message, self.fix)

    def layer(self, ctx, layer) -> Iterator[Finding]:  # pylint: disable=unused-argument
        return iter(())

    def graph(self, ctx) -> Iterator[Finding]:  # pylint: disable=unused-argument
        return iter(())

    def serving_default(self, ctx, default) -> Iterator[Finding]:  # pylint: disable=unused-argument
        return iter(())

    def dynamic(self, ctx, run) -> Iterator[Finding]:  # pylint: disable=unused-argument
        return iter(())


REGISTRY = {}  # finding id -> Check instance, in declared order (the report's order)


def register(cls):
    """Class decorator: add one instance of the ``Check`` subclass to ``REGISTRY`` under its id."""
    if not cls.id or cls.id in REGISTRY:
        raise ValueError(f"doctor check {cls.__name__}: id {cls.id!r} is empty or registered twice")
    if cls.severity not in (ERROR, WARNING, INFO) or not cls.fix or "\n" in cls.fix or \
            "\n" in cls.tf2_fix:
        raise ValueError(f"doctor check {cls.id}: needs a severity among error/warning/info and a "
                         "one-line fix")
    REGISTRY[cls.id] = cls()
    return cls


def short(values):
    """Up to four values of an array, ``[1, 2, 3, 4, ...]`` (for messages)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    shown = ", ".join(f"{v:.4g}" for v in flat[:4])
    return f"[{shown}{', ...' if flat.size > 4 else ''}]"
