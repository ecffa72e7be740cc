"""The BN layers and dropouts the doctor checks, as typed records (from the finder, or from
variable names when a checkpoint has no graph), and the finder's notes the report shows."""

import dataclasses
import re
from typing import Optional, Tuple

from tf1_repro.graph.ops import FUNCTION_CALL_OPS
from tf1_repro.tools import finder
from tf1_repro.tools.doctor.artefact import import_graph

# The layer's fields the report shows, in the report's key order.
_REPORTED = ("name", "kind", "input", "output", "gamma", "beta", "moving_mean", "moving_variance",
             "epsilon", "decay", "mode", "update_location", "call_sites", "zero_initialised")
_TF2_FLOW = FUNCTION_CALL_OPS


@dataclasses.dataclass
class Layer:
    """A BN layer: what the report shows (``to_report``) and what the checks read besides.

    ``call_sites`` is None for a layer found from variable names (no graph: the report has no
    such key); ``zero_initialised`` is known only from names (the article's naming), else None
    and read from the initializers by ``ema-zero-bias``. ``zero_debias``, ``update_ops`` and
    ``stats_at_prediction`` and ``call_modes`` are the finder's ``BNLayer`` fields (None/() without
    a graph)."""

    name: str
    kind: str
    input: Optional[str]
    output: Optional[str]
    gamma: Optional[str]
    beta: Optional[str]
    moving_mean: Optional[str]
    moving_variance: Optional[str]
    epsilon: Optional[float]
    decay: Optional[float]
    mode: Optional[dict]
    update_location: Optional[str]
    call_sites: Optional[list]
    zero_initialised: Optional[bool]
    zero_debias: Optional[bool] = None
    update_ops: Tuple[str, ...] = ()
    stats_at_prediction: Optional[bool] = None
    call_modes: Optional[list] = None  # the finder's, one record per call (not reported)

    def statistic(self, role):
        """The variable name of ``role`` ("moving_mean" or "moving_variance")."""
        return getattr(self, role)

    def to_report(self):
        """The report's dict of this layer (without the value ranges, added by the report)."""
        out = {key: getattr(self, key) for key in _REPORTED}
        if self.call_sites is None:
            del out["call_sites"]
        return out


@dataclasses.dataclass
class Dropout:
    """A dropout as the finder found it; the report shows all but ``output``."""

    name: str
    kind: str
    keep_prob: Optional[dict]
    convention: Optional[str]
    mode: Optional[dict]
    output: Optional[str]

    def to_report(self):
        return {"name": self.name, "kind": self.kind, "keep_prob": self.keep_prob,
                "convention": self.convention, "mode": self.mode}


@dataclasses.dataclass
class Found:
    """The BN layers and dropouts of an artefact, the finder's result (None without a graph) and
    the notes the report starts with."""

    layers: list
    dropouts: list
    result: Optional[object]
    notes: list
    view: Optional[object] = None  # tf2_findings.View (signatures, Keras layers, writes)


def find(doc):
    """``Found`` for the artefact: the finder on its imported graph, or, for a checkpoint without
    a graph, ``naming.layers_from_names`` on its variables (with a note)."""
    unloaded = doc.is_tf2 and doc.art.checkpoint is not None  # a TF2 signature not loaded
    if doc.graph_def is None or unloaded:
        from tf1_repro.tools import naming  # pylint: disable=import-outside-toplevel
        layers = [Layer(name=f["name"], kind=f["naming"], input=None, output=None,
                        gamma=f["gamma"], beta=f["beta"], moving_mean=f["moving_mean"],
                        moving_variance=f["moving_variance"], epsilon=None, decay=None, mode=None,
                        update_location=None, call_sites=None,
                        zero_initialised=f["naming"] == "article")
                  for f in naming.layers_from_names(doc.variables)]
        view = None
        if unloaded:
            from tf1_repro.tools import tf2_findings  # pylint: disable=import-outside-toplevel
            view = tf2_findings.complete(doc.art, finder.Findings([], [], []))
        return Found(layers, [], None, [
            "the signature was not loaded: BN layers found from variable names in variables/; "
            "only the checks on values ran" if unloaded else
            "no graph (.meta) with the checkpoint: BN layers found from variable names; only the "
            "checks on values ran"], view)
    graph, collections = import_graph(doc)
    from tf1_repro.tools import tf2_findings  # pylint: disable=import-outside-toplevel
    view = tf2_findings.complete(doc.art, finder.find(graph, collections))
    result = view.findings
    layers = [Layer(name=b.name, kind=b.kind, input=b.input, output=b.output, gamma=b.gamma,
                    beta=b.beta, moving_mean=b.moving_mean, moving_variance=b.moving_variance,
                    epsilon=b.epsilon, decay=b.decay, mode=b.mode.to_dict() if b.mode else None,
                    update_location=b.update_location, call_sites=list(b.call_sites),
                    zero_initialised=None, zero_debias=b.zero_debias,
                    update_ops=tuple(b.update_ops),
                    stats_at_prediction=b.statistics_used_at_prediction,
                    call_modes=[dict(m) for m in b.call_modes])
              for b in result.bn_layers]
    dropouts = [Dropout(d.name, d.kind, d.keep_prob, d.convention,
                        d.mode.to_dict() if d.mode else None, d.output) for d in result.dropouts]
    return Found(layers, dropouts, result, finder_notes(doc, result), view)


def finder_notes(doc, result):
    """The finder's notes the report must show: ``Findings.notes`` (TF2 control flow, ops it
    could not read) and, per layer, those of a layer whose prediction mode it could not read
    (``statistics_used_at_prediction`` None) or that name TF2 control flow. When the graph calls
    functions holding batch-norm ops through TF2 control flow and the finder said nothing of
    it, a note says those were not analysed (the report is not silently "healthy")."""
    notes = list(getattr(result, "notes", []) or [])
    for b in result.bn_layers:
        unread = b.statistics_used_at_prediction is None
        for note in b.notes:
            if unread or note.startswith("TF2 control flow"):
                line = f"BN layer {b.name}: {note}"
                if line not in notes:
                    notes.append(line)
        if unread and not b.notes:
            notes.append(f"BN layer {b.name}: whether prediction uses the moving statistics "
                         "could not be read; no mode finding is reported for it")
    if not any(n.startswith("TF2 control flow") for n in notes):
        library = {f.signature.name: f for f in doc.graph_def.library.function}
        holding = {name: sorted({node.op for node in f.node_def if re.fullmatch(
            r"FusedBatchNorm\w*|BatchNormWithGlobalNormalization\w*", node.op)})
                   for name, f in library.items()}
        callers = sorted((n.name, n.op, holding[a.func.name]) for n in doc.graph_def.node
                         if n.op in _TF2_FLOW for a in n.attr.values()
                         if holding.get(a.func.name))
        if callers:
            name, op, kinds = callers[0]
            notes.append(f"TF2 control flow: {op} op {name} calls functions holding "
                         f"{', '.join(kinds)}; BN ops inside TF2 control flow functions were not "
                         "analysed (build the graph under tf.compat.v1.disable_v2_behavior() "
                         "and save it again)")
    return notes
