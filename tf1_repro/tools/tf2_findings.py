"""What ``find`` and ``doctor`` add, on TF2 SavedModels and Keras files, to the structural finder.

The finder reads the frozen signature like any frozen graph. ``complete(art, found)`` adds what
only these formats tell (and leaves the finder's ``Findings`` for other formats untouched):

* **moving statistics a serving function only writes.** A BN layer that normalises with the
  batch's statistics reads no moving statistic, so the finder names none; its ``moving_mean`` /
  ``moving_variance`` are then the variables at ``LAYER/moving_mean`` (the Consts the reader
  keeps, named by their variable paths) and, when the serving function writes them
  (``Artefact.writes``), its ``update_location`` is ``"serving-function"`` and
  ``updates_at_prediction`` True;
* **the Keras config, read as JSON** (``.keras``, ``.h5``, and a tf-keras SavedModel's
  ``keras_metadata.pb``; a Keras 3 export has none): each BatchNormalization layer's configured
  momentum (as decay, where the graph does not show one) and epsilon, and whether the serving
  function uses its moving statistics; each Dropout layer, and whether it is in the serving
  function (Keras removes a dropout at inference: that is reported as such, not as missing);
  a dropout found in the serving function takes its Keras layer's name (``drop``), else its
  scope without the wrapping ``StatefulPartitionedCall/``.

Nothing is deserialised through Keras and nothing runs.
"""

import dataclasses
import re
from typing import List, Optional

TF2_FORMATS = ("saved_model_tf2", "keras", "keras_h5")
REMOVED = "not in the serving function (Keras removes it at inference)"


@dataclasses.dataclass
class KerasLayer:
    """A BatchNormalization or Dropout layer of the Keras config and what the serving function
    does with it: ``found`` is the finder's layer or dropout name (None when not in it)."""

    name: str
    class_name: str
    momentum: Optional[float] = None
    epsilon: Optional[float] = None
    rate: Optional[float] = None
    found: Optional[str] = None
    moving_statistics_used: Optional[bool] = None

    @property
    def is_dropout(self):
        return self.class_name not in ("BatchNormalization", "SyncBatchNormalization")

    def line(self):
        """One line of the report."""
        if self.is_dropout:
            where = f"in the serving function as {self.found}" if self.found else REMOVED
            return f"{self.class_name} {self.name} (rate {self.rate:g}): {where}" \
                if self.rate is not None else f"{self.class_name} {self.name}: {where}"
        used = {True: "yes", False: "NO (batch statistics)", None: "unknown"}[
            self.moving_statistics_used]
        where = "" if self.found else "; not found in the serving function"
        return (f"{self.class_name} {self.name}: momentum {_num(self.momentum)} (decay), epsilon "
                f"{_num(self.epsilon)}; the serving function uses the moving statistics: {used}"
                f"{where}")

    def to_dict(self):
        return dict(dataclasses.asdict(self), in_serving_function=self.found is not None)


@dataclasses.dataclass
class View:
    """The finder's ``Findings`` completed (see the module docstring), with the signature, the
    Keras layers (None without a readable config), the serving function's writes and notes."""

    findings: object
    signature: Optional[str] = None
    signatures: List[str] = dataclasses.field(default_factory=list)
    keras_layers: Optional[List[KerasLayer]] = None
    writes: List[dict] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)
    inputs: dict = dataclasses.field(default_factory=dict)    # {signature input key: tensor}
    outputs: dict = dataclasses.field(default_factory=dict)   # {signature output key: tensor}

    def lines(self):
        """The report's lines (signatures, the frozen signature's inputs and outputs by key,
        Keras layers, writes, the reader's notes)."""
        out = []
        if self.signatures:
            out.append(f"  signatures: {', '.join(self.signatures)} (read: {self.signature})")
        if self.outputs:
            out.append(signature_line(self.signature, self.inputs, self.outputs))
        for layer in self.keras_layers or []:
            out.append(f"  keras: {layer.line()}")
        for w in self.writes:
            out.append(f"  the serving function writes {w['variable'] or '(not a variable)'} "
                       f"({w['op']} {w['node']})")
        out += [f"  note: {n}" for n in self.notes]
        return out

    def to_dict(self):
        return {"signature": self.signature, "signatures": list(self.signatures),
                "signature_inputs": dict(self.inputs), "signature_outputs": dict(self.outputs),
                "keras_layers": None if self.keras_layers is None else
                [k.to_dict() for k in self.keras_layers],
                "writes": list(self.writes), "reader_notes": list(self.notes)}


def keyed(mapping):
    """``head (Identity:0), probs (Identity_1:0)``: ``{signature key: tensor}`` as the report
    names them (the key the user knows, the frozen graph's tensor beside it)."""
    return ", ".join(f"{key} ({tensor})" for key, tensor in mapping.items()) or "none"


def signature_line(signature, inputs, outputs):
    """The report's line of the frozen signature's inputs and outputs, by key."""
    return f"  {signature}: inputs {keyed(inputs)} -> outputs {keyed(outputs)}"


def check_signature(art, signature):
    """ArtefactError (one line, naming the signatures there are) when ``--signature`` was given
    for an artefact without it: TF2 SavedModels and Keras files were checked by their readers; a
    TF1 SavedModel has signature defs; the other formats have none."""
    from tf1_repro.graph.artefacts import ArtefactError  # pylint: disable=import-outside-toplevel
    if signature is None or art.format in TF2_FORMATS:
        return
    names = art.signature_names if art.format == "saved_model" else []
    if signature not in names:
        raise ArtefactError(f"{art.source}: no signature {signature!r}; " +
                            (f"it has {', '.join(names)}" if names else
                             f"a {art.format} has no signatures"))


def complete(art, found):
    """``View`` of the artefact ``art`` (``graph.artefacts.Artefact``) and its finder ``found``;
    for a format outside ``TF2_FORMATS`` the findings are returned as they are."""
    if art.format not in TF2_FORMATS:
        return View(found)
    paths = dict(art.variable_paths)
    by_path = {path: const for const, path in paths.items()}
    written = {w["variable"]: w for w in art.writes if w.get("variable")}
    layers = [_named_by_writes(b, art) for b in found.bn_layers]
    layers = [_with_statistics(b, by_path, written) for b in layers]
    dropouts = [dataclasses.replace(d, name=_unwrapped(d.name)) for d in found.dropouts]
    findings = dataclasses.replace(found, bn_layers=layers, dropouts=dropouts)
    view = View(findings, art.signature, list(art.signature_names), None, list(art.writes),
                list(art.notes), dict(art.inputs), dict(art.outputs))
    if art.keras_layers is not None:
        view.keras_layers = [_keras_layer(spec, findings) for spec in art.keras_layers]
        _apply_momentum(findings, view.keras_layers)
        keras_name = {k.found: k.name for k in view.keras_layers if k.is_dropout and k.found}
        findings.dropouts[:] = [dataclasses.replace(d, name=keras_name[d.name])
                                if d.name in keras_name else d for d in findings.dropouts]
    return view


def _unwrapped(name):
    """A scope without the call that wraps the serving function (``StatefulPartitionedCall/``)."""
    parts = name.split("/")
    while len(parts) > 1 and re.fullmatch(r"(Stateful)?PartitionedCall(_\d+)?", parts[0]):
        parts = parts[1:]
    return "/".join(parts)


def _ancestors(inputs, names):
    """Node names ``names`` and every node above them (``inputs``: {node: [input nodes]})."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += inputs.get(name, [])
    return seen


def _named_by_writes(layer, art):
    """A layer that reads no variable (no gamma or beta, normalising with the batch's moments)
    has only the op scope of the frozen function for a name (``StatefulPartitionedCall``): when
    the serving function writes moving statistics computed from its moments, the object paths
    of those variables name it (``model/bn`` of ``model/bn/moving_mean``)."""
    from tf1_repro.tools.finder.names import common_scope  # pylint: disable=import-outside-toplevel
    if any((layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)) or \
            not art.writes or art.graph_def is None or not layer.bn_ops:
        return layer
    inputs = {n.name: [i.lstrip("^").split(":")[0] for i in n.input] for n in art.graph_def.node}
    above_input = _ancestors(inputs, [layer.input.split(":")[0]]) if layer.input else set()
    moments = _ancestors(inputs, layer.bn_ops) - above_input  # the layer's own statistics
    paths = [w["variable"] for w in art.writes if w.get("variable") and w.get("value") and
             _ancestors(inputs, [w["value"].split(":")[0]]) & moments]
    name = common_scope(paths) if paths else ""
    return dataclasses.replace(layer, name=name) if name else layer


def _prefix(layer):
    """The scope of a layer's variables (``bn`` of ``bn/gamma``), else its name."""
    for name in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance):
        if name and "/" in name:
            return name.rsplit("/", 1)[0]
    return layer.name


def _with_statistics(layer, by_path, written):
    """The layer with the moving statistics it does not read filled in (see the docstring)."""
    prefix = _prefix(layer)
    changes = {}
    for role in ("moving_mean", "moving_variance"):
        if getattr(layer, role) is None and f"{prefix}/{role}" in by_path:
            changes[role] = by_path[f"{prefix}/{role}"]
    stats = {changes.get(r, getattr(layer, r)) for r in ("moving_mean", "moving_variance")}
    writes = [w for path, w in written.items() if by_path.get(path) in stats or path in stats]
    if writes:
        changes.update(update_location="serving-function", updates_at_prediction=True,
                       update_ops=sorted(set(layer.update_ops) | {w["node"] for w in writes}))
    return dataclasses.replace(layer, **changes) if changes else layer


def _matches(config_name, found_name):
    """A Keras layer name against a finder name (``bn`` in ``net_1/bn_1/FusedBatchNormV3``:
    an exported Keras 3 model's scopes carry ``_1`` suffixes)."""
    pattern = re.compile(rf"{re.escape(config_name)}(_\d+)?")
    return any(pattern.fullmatch(part) for part in found_name.split("/"))


def _keras_layer(spec, findings):
    config = spec.get("config") or {}
    layer = KerasLayer(spec["name"], spec["class_name"], _float(config.get("momentum")),
                       _float(config.get("epsilon")), _float(config.get("rate")))
    if layer.is_dropout:
        hits = [d.name for d in findings.dropouts if _matches(layer.name, d.name)]
        layer.found = hits[0] if hits else None
    else:
        hits = [b for b in findings.bn_layers if _matches(layer.name, _prefix(b))
                or _matches(layer.name, b.name)]
        if hits:
            layer.found = hits[0].name
            layer.moving_statistics_used = hits[0].statistics_used_at_prediction
    return layer


def _apply_momentum(findings, keras_layers):
    """Each BN layer's decay from its Keras momentum where the graph shows none (in place)."""
    momentum = {k.found: k.momentum for k in keras_layers if not k.is_dropout and k.found}
    findings.bn_layers[:] = [dataclasses.replace(b, decay=momentum[b.name])
                             if b.decay is None and momentum.get(b.name) is not None else b
                             for b in findings.bn_layers]


def _float(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _num(value):
    return "-" if value is None else f"{value:g}"
