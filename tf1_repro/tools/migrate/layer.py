"""One BN layer as ``migrate`` carries it from discovery to the report (``MigrateLayer``)."""

import dataclasses
from typing import Optional

from tf1_repro.tools.migrate.common import ROLES


@dataclasses.dataclass
class MigrateLayer:
    """A BN layer to migrate: what was found (by the structural finder or by checkpoint names),
    the settings it gets in Keras 3 and where they come from, and how it was verified.

    ``sources`` maps each role (gamma, beta, moving_mean, moving_variance) to its checkpoint
    variable, None when the layer has none (filled with 1/0). ``read_epsilon``, ``read_decay``,
    ``decay_schedule`` and ``read_estimator`` are what the graph says (None: it does not);
    ``epsilon``, ``momentum`` and ``moving_variance_estimator`` are the settings chosen from
    them, the flags and the defaults (``assumed`` names the defaulted ones)."""

    name: str
    naming: str
    sources: dict
    shapes: dict
    found_by: str  # "graph" | "names"
    notes: list = dataclasses.field(default_factory=list)
    channel_axis: int = -1
    call_sites: list = dataclasses.field(default_factory=list)  # [[input, output]] per call
    graph_not_understood: bool = False
    read_epsilon: Optional[float] = None
    read_decay: Optional[float] = None
    decay_schedule: Optional[dict] = None  # {"cap", "op"} of an EMA num_updates schedule
    read_estimator: Optional[str] = None
    # the Keras 3 settings (discover)
    epsilon: Optional[float] = None
    momentum: Optional[float] = None
    moving_variance_estimator: Optional[str] = None
    assumed: list = dataclasses.field(default_factory=list)
    keras_layer: Optional[str] = None
    # the values and the verification
    stored_shapes: dict = dataclasses.field(default_factory=dict)
    verified_against: Optional[str] = None
    call_site_relative_diffs: Optional[list] = None
    max_abs_diff: Optional[float] = None
    relative_diff: Optional[float] = None
    ok: Optional[bool] = None

    @property
    def moving_mean(self):
        return self.sources["moving_mean"]

    def naming_view(self):
        """The layer as ``naming`` describes one (``naming.shape_problem`` reads it)."""
        return {"name": self.name, "naming": self.naming, **self.sources, "shapes": self.shapes,
                "notes": self.notes}

    def to_dict(self):
        """The layer's entry in ``layers.json`` and in the report."""
        return {"name": self.name, "naming": self.naming,
                "source": {role: self.sources[role] for role in ROLES},
                "momentum": self.momentum, "epsilon": self.epsilon,
                "moving_variance_estimator": self.moving_variance_estimator,
                "assumed": self.assumed, "keras_layer": self.keras_layer,
                "channel_axis": self.channel_axis, "stored_shapes": self.stored_shapes,
                "found_by": self.found_by, "verified_against": self.verified_against,
                "call_sites": self.call_sites,
                **({"call_site_relative_diffs": self.call_site_relative_diffs}
                   if self.call_site_relative_diffs is not None else {}),
                "max_abs_diff": self.max_abs_diff, "relative_diff": self.relative_diff,
                "ok": self.ok, "notes": self.notes}
