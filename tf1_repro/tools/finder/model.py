"""The finder's public results: ``ModeInput``, ``BNLayer``, ``Dropout``, ``Findings`` (their fields
and ``to_dict()`` are what every tool and the JSON output read), and ``describe`` (the text table)."""

import dataclasses

PREDICTION_VALUES = {"training": False, "keep_prob": 1.0, "rate": 0.0, "learning_phase": 0}


@dataclasses.dataclass
class ModeInput:
    """A tensor that switches between training and prediction.

    ``op`` is ``"Placeholder"``, ``"PlaceholderWithDefault"``, ``"Const"`` or
    ``"python_bool"`` (no tensor: the graph was built once per mode);
    ``prediction_value`` is what prediction feeds it.
    """

    name: str
    role: str
    op: str
    default: object = None
    prediction_value: object = None

    @property
    def tensor(self):
        return f"{self.name}:0"

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class BNLayer:
    """One batch-norm layer. Variable fields hold node names (a variable op or a Const).

    ``call_sites``: ``[input, output]`` of each call of the layer's variables (two towers: two);
    ``call_modes``: for each, ``{"input", "mode", "mode_input", "trained", "update_ops"}``,
    ``mode`` one of ``prediction``, ``training``, ``switched``, ``both`` (see
    ``layer.call_mode``), ``trained`` whether a train op runs the call and ``update_ops`` the
    layer's update ops computed from that call's input (``calls``). ``input`` and ``output`` are
    those of the call that runs in prediction mode, else of the first switched one a train op
    runs, else of the first switched one (``layer.call_key``); a note says which and why.
    ``update_ops`` lists every call's updates."""

    name: str
    kind: str
    input: str
    output: str
    gamma: str = None
    beta: str = None
    moving_mean: str = None
    moving_variance: str = None
    epsilon: float = None
    decay: float = None
    decay_cap: float = None
    update_ops: list = dataclasses.field(default_factory=list)
    update_location: str = None
    updates_at_prediction: bool = None
    zero_debias: bool = None
    mode: ModeInput = None
    statistics_used_at_prediction: bool = None
    variance_estimator: str = None
    stat_shape: tuple = None
    channel_axis: int = -1
    call_sites: list = dataclasses.field(default_factory=list)
    call_modes: list = dataclasses.field(default_factory=list)
    bn_ops: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["mode"] = self.mode.to_dict() if self.mode else None
        d["stat_shape"] = list(self.stat_shape) if self.stat_shape is not None else None
        return d


@dataclasses.dataclass
class Dropout:
    """One dropout: ``keep_prob`` is ``{"param", "source", "name", "value"}``."""

    name: str
    kind: str
    input: str
    output: str
    keep_prob: dict
    convention: str = None
    mode: ModeInput = None
    scales_at_prediction: bool = False
    random_ops: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["mode"] = self.mode.to_dict() if self.mode else None
        return d


@dataclasses.dataclass
class Findings:
    """What ``find`` returns: the BN layers (graph order), the dropouts, the mode inputs and the
    graph-wide notes."""

    bn_layers: list
    dropouts: list
    mode_inputs: list
    notes: list = dataclasses.field(default_factory=list)

    def prediction_feeds(self):
        """``{tensor name: value}`` that puts every layer in prediction mode (Consts left out, and
        the inputs whose prediction value the graph cannot tell: ``unbound_mode_inputs``)."""
        return {m.tensor: m.prediction_value for m in self.mode_inputs
                if m.op in ("Placeholder", "PlaceholderWithDefault") and m.prediction_value is not None}

    def unbound_mode_inputs(self):
        """Mode placeholders a user must feed: the keep_prob of a vanilla dropout, whose
        prediction multiplies by keep_prob's *training* value (the graph does not hold it)."""
        return [m for m in self.mode_inputs
                if m.op in ("Placeholder", "PlaceholderWithDefault") and m.prediction_value is None]

    def to_dict(self):
        return {"bn_layers": [b.to_dict() for b in self.bn_layers],
                "dropouts": [d.to_dict() for d in self.dropouts],
                "mode_inputs": [m.to_dict() for m in self.mode_inputs], "notes": list(self.notes)}


def describe(findings):
    """A short text table of the layers and dropouts found."""
    lines = []
    for b in findings.bn_layers:
        mode = "-" if b.mode is None else (b.mode.op if b.mode.op == "python_bool" else
                                           f"{b.mode.name} ({b.mode.op})")
        lines.append(f"  BN {b.name or '(unnamed)'} [{b.kind}] eps={b.epsilon:g} "
                     f"decay={'-' if b.decay is None else f'{b.decay:g}'} mode={mode} "
                     f"updates={b.update_location or '-'} "
                     f"moving stats at prediction={b.statistics_used_at_prediction}")
    for d in findings.dropouts:
        kp = d.keep_prob
        lines.append(f"  dropout {d.name} [{d.kind}, {d.convention}] {kp['param']} from "
                     f"{kp['source']} {kp['name']}" + (f" = {kp['value']:g}" if kp["value"] is not None else ""))
    return "\n".join(lines) if lines else "  no BN layer or dropout found"
