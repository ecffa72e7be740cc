"""What every experiment shares: parameters, claims, results, the registry.

A claim compares a measured number with what theory predicts::

    holds = abs(measured - expected) <= tolerance        (relation None)
    holds = measured >= expected                         (relation ">=")
    holds = measured <= expected                         (relation "<=")

``holds`` is always computed from the numbers, never set. Tolerances are
absolute, in the measured quantity's units, and each statement says how they
follow from the sample sizes (k standard errors) or from float32 rounding.
"""

import dataclasses
import math
from typing import Callable, Dict, List, Optional

import numpy as np

from tf1_repro.layers import checks

REGISTRY = {}


@dataclasses.dataclass
class Claim:
    id: str
    statement: str
    measured: float
    expected: float
    tolerance: float = 0.0
    relation: Optional[str] = None  # None: |measured - expected| <= tolerance; or ">=" / "<="

    def __post_init__(self):
        if self.relation not in (None, ">=", "<="):
            raise ValueError(f"Claim: relation must be None, '>=' or '<=', got {self.relation!r}")
        self.measured, self.expected, self.tolerance = (
            float(self.measured), float(self.expected), float(self.tolerance))

    @property
    def holds(self):
        if self.relation == ">=":
            return self.measured >= self.expected
        if self.relation == "<=":
            return self.measured <= self.expected
        return abs(self.measured - self.expected) <= self.tolerance  # NaN never holds

    def to_dict(self):
        out = {"id": self.id, "statement": self.statement, "measured": _json_number(self.measured),
               "expected": _json_number(self.expected), "tolerance": _json_number(self.tolerance),
               "holds": self.holds}
        if self.relation:
            out["relation"] = self.relation
        return out


def _json_number(value):
    return value if math.isfinite(value) else str(value)


@dataclasses.dataclass
class Series:
    """One figure: y-lines over a shared x (TensorBoard scalars and a PNG plot).

    For the figure (``tf1_repro.experiments.plots``): ``theory`` names the lines that
    are closed forms (drawn as lines; the others are measured, drawn as markers);
    ``band`` gives a theory line's tolerance as (lower, upper) lists over x, shaded;
    ``reference`` adds horizontal lines {label: (y, half-width or 0)};
    ``categories`` labels x for bar charts (x are then 0..k-1); ``claim`` is the id
    of the claim the figure shows (its verdict goes in the title); ``symlog_y`` is a
    log axis that also shows 0.
    """
    x: List[float]
    lines: Dict[str, List[float]]
    x_label: str = "step"
    y_label: str = ""
    log_x: bool = False
    log_y: bool = False
    theory: List[str] = dataclasses.field(default_factory=list)
    band: Dict[str, tuple] = dataclasses.field(default_factory=dict)
    reference: Dict[str, tuple] = dataclasses.field(default_factory=dict)
    categories: Optional[List[str]] = None
    claim: Optional[str] = None
    symlog_y: bool = False

    def to_dict(self):
        return {"x": [_plain(v) for v in self.x], "x_label": self.x_label, "y_label": self.y_label,
                "lines": {k: [_plain(v) for v in vals] for k, vals in self.lines.items()}}


def _plain(value):
    value = float(value)
    return _json_number(int(value) if value.is_integer() and abs(value) < 2**53 else value)


@dataclasses.dataclass
class Result:
    headers: List[str]
    rows: List[list]
    claims: List[Claim]
    series: Dict[str, Series] = dataclasses.field(default_factory=dict)
    histograms: Dict[str, list] = dataclasses.field(default_factory=dict)  # tag -> [(step, array)]
    graph: object = None  # the tf.Graph, for TensorBoard
    notes: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Param:
    name: str
    default: object
    help: str
    check: Callable = None  # check(where, value) raises ValueError/TypeError

    def parse(self, text):
        """A ``--set`` value, typed like the default."""
        where = f"--set {self.name}"
        try:
            if isinstance(self.default, (list, tuple)):
                kind = type(self.default[0])
                value = [kind(part) for part in text.split(",") if part.strip()]
                if not value:
                    raise ValueError
            else:
                value = type(self.default)(text)
        except ValueError:
            kind = "a comma-separated list of numbers" if isinstance(self.default, (list, tuple)) \
                else f"{'an integer' if isinstance(self.default, int) else 'a number'}"
            raise ValueError(f"{where}: must be {kind}, got {text!r}") from None
        return self.validate(value, where)

    def validate(self, value, where=None):
        if self.check:
            self.check(where or self.name, value)
        return value


@dataclasses.dataclass
class Experiment:
    name: str
    claim: str
    params: List[Param]
    run: Callable  # run(params: dict, seed: int, bn) -> Result

    def param(self, name):
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params)
        raise ValueError(f"experiment {self.name}: --set key must be one of {known}, got {name!r}")

    def resolve(self, overrides=None):
        """Defaults updated with ``overrides`` (name -> text or value), each checked."""
        params = {p.name: p.default for p in self.params}
        for key, value in (overrides or {}).items():
            p = self.param(key)
            params[key] = p.parse(value) if isinstance(value, str) else p.validate(value)
        return params


def register(name, claim, params):
    def wrap(run):
        REGISTRY[name] = Experiment(name, claim, params, run)
        return run
    return wrap


# ---- parameter checks

def in_open_unit(where, value):
    if not 0.0 < checks.real_number(where, "value", value) < 1.0:
        raise ValueError(f"{where}: must be in (0, 1), got {value!r}")


def keep_prob(where, value):
    checks.check_keep_prob(where, value)


def positive(where, value):
    if not checks.real_number(where, "value", value) > 0:
        raise ValueError(f"{where}: must be > 0, got {value!r}")


def finite(where, value):
    if not math.isfinite(checks.real_number(where, "value", value)):
        raise ValueError(f"{where}: must be a finite number, got {value!r}")


def at_least(minimum):
    def check(where, value):
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
                raise ValueError(f"{where}: must be an integer >= {minimum}, got {value!r}")
    return check


def one_of(choices):
    def check(where, value):
        if value not in choices:
            raise ValueError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
    return check


def data_param():
    """``--set data=digits``: the trained model's data (accuracy claims on real held-out digits)."""
    return Param("data", "blobs", "the trained model's data: blobs (synthetic) or digits (scikit-learn's "
                 "handwritten digits); closed-form parts stay on synthetic data", one_of(("blobs", "digits")))


def float32_ulp(value):
    """The spacing of float32 numbers at ``value`` (one rounding is at most half of it)."""
    return float(np.spacing(np.float32(abs(value))))
