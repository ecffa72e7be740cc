"""Which call of a shared BN layer each tool uses: one rule for doctor, to-inference,
recalibrate and migrate.

A layer whose variables several calls share (``BNLayer.call_sites``; two towers built with
``reuse=True``, a Keras model called on its own ``Input`` and again on the user's tensor) has one
record per call in ``BNLayer.call_modes``: ``mode`` (``prediction``, ``switched``, ``both``,
``training``), ``trained`` (a train op runs it) and ``update_ops`` (the updates computed from that
call's input), all read by the finder (``finder.layer``, ``finder.calls``). ``layer_calls`` sorts
the calls into roles:

* **training** calls: those the train op runs (``trained``), unless they normalise with the moving
  statistics only (a ``prediction`` call the loss happens to read updates nothing); when the train
  op runs none (or the graph has no train op), the calls that normalise with the batch's
  statistics in every mode (``training``);
* **prediction** calls: those that normalise with the moving statistics at prediction
  (``prediction``, ``switched`` fed its prediction value, ``both``). When the tool knows the
  prediction outputs (``reached``: the ops they depend on), the prediction calls are those the
  outputs depend on. Otherwise a ``switched`` or ``both`` call that no train op runs, while
  another ``switched`` or ``both`` call of the layer is trained, is left out: the trained call is
  the one that serves (its mode input fed its prediction value) and the untrained twin is a copy
  nothing uses (a Keras model's call on its own ``Input``). A ``prediction`` call is always kept
  (an evaluation tower built with ``is_training=False`` is what serves). When no call qualifies,
  every call is a prediction call (the tools' behaviour before calls had roles);
* **unused** calls: neither.

With one call (or no per-call records: a layer found from variable names), that call is the
prediction call, and the training call when the train op runs it.

``trained_update_ops`` says which of a layer's update ops must run with the train op (those of
its training calls: an unused call's updates are never meant to run), and
``prefer_prediction_outputs`` which of several candidate outputs serve (those downstream of no
training-only or unused call)."""

import dataclasses
from typing import Optional, Tuple

from tf1_repro.graph import walk

PREDICTION_MODES = ("prediction", "switched", "both")
_TWIN_MODES = ("switched", "both")


@dataclasses.dataclass(frozen=True)
class LayerCalls:
    """The calls of one layer by role: ``sites`` (``(input, output)`` tensor names of every call,
    in graph order) and the indices into it of the ``prediction``, ``training`` and ``unused``
    calls (see the module). ``why`` says how the prediction calls were chosen."""

    name: str
    sites: Tuple[Tuple[str, str], ...]
    prediction: Tuple[int, ...]
    training: Tuple[int, ...]
    unused: Tuple[int, ...]
    why: str = ""

    def prediction_sites(self):
        """``[(input, output)]`` of the prediction calls."""
        return [self.sites[i] for i in self.prediction]

    @property
    def shared(self):
        """Whether several calls share the layer's variables."""
        return len(self.sites) > 1


def _records(layer):
    """``(sites, call_modes)`` of a layer, or ``(sites, None)`` when there are no per-call
    records matching its sites."""
    sites = tuple(tuple(s) for s in (getattr(layer, "call_sites", None) or []))
    if not sites:
        sites = ((layer.input, layer.output),)
    modes = getattr(layer, "call_modes", None) or None
    if modes is not None and len(modes) != len(sites):
        modes = None
    return sites, modes


def layer_calls(layer, reached=None):
    """The ``LayerCalls`` of ``layer`` (a finder ``BNLayer`` or any object with ``name``,
    ``input``, ``output``, ``call_sites`` and ``call_modes``). ``reached``: names of the ops the
    prediction outputs depend on, when the tool knows them (``None``: it does not)."""
    sites, modes = _records(layer)
    if len(sites) < 2 or modes is None:
        trained = tuple(i for i, m in enumerate(modes or []) if m.get("trained"))
        return LayerCalls(layer.name, sites, tuple(range(len(sites))), trained, (),
                          "" if len(sites) < 2 else "no per-call modes: every call")
    training = _trained(modes) or tuple(i for i, m in enumerate(modes) if m["mode"] == "training")
    candidates = [i for i, m in enumerate(modes) if m["mode"] in PREDICTION_MODES]
    prediction, why = (), ""
    if reached is not None:
        prediction = tuple(i for i in candidates if _op(sites[i][1]) in reached)
        why = "the calls the prediction outputs depend on" if prediction else ""
    if not prediction:
        twins = [i for i in candidates if modes[i]["mode"] in _TWIN_MODES]
        if any(modes[i].get("trained") for i in twins):
            prediction = tuple(i for i in candidates if modes[i]["mode"] == "prediction" or
                               modes[i].get("trained"))
            why = "the calls that normalise with the moving statistics at prediction, less " \
                  "the untrained twins of a trained switched call"
        else:
            prediction = tuple(candidates)
            why = "the calls that normalise with the moving statistics at prediction"
    if not prediction:
        prediction, why = tuple(range(len(sites))), "no call normalises with the moving " \
            "statistics at prediction: every call"
    unused = tuple(i for i in range(len(sites)) if i not in prediction and i not in training)
    return LayerCalls(layer.name, sites, prediction, training, unused, why)


def prediction_sites(layer, reached=None):
    """``[(input, output)]`` of the layer's prediction calls (``layer_calls``)."""
    return layer_calls(layer, reached).prediction_sites()


def trained_update_ops(layer):
    """The update ops of ``layer`` that must run with the train op: those of its training calls
    and those the finder could put on no call; ``None`` when the layer's calls do not say (one
    call, no per-call records, or no call the train op runs): then every update op must."""
    sites, modes = _records(layer)
    if len(sites) < 2 or modes is None or "update_ops" not in modes[0]:
        return None
    trained = _trained(modes)
    if not trained:
        return None
    on_calls = {name for m in modes for name in m.get("update_ops", ())}
    kept = {name for i in trained for name in modes[i].get("update_ops", ())}
    return sorted(kept | (set(getattr(layer, "update_ops", ()) or ()) - on_calls))


@dataclasses.dataclass(frozen=True)
class OutputChoice:
    """Which candidate outputs serve: ``outputs`` (kept, in the candidates' order), ``left``
    (``{output: why}`` for those left out) and a ``note`` for the report (None when nothing was
    left out)."""

    outputs: Tuple[str, ...]
    left: dict
    note: Optional[str]


def prefer_prediction_outputs(graph, layers, candidates):
    """Of ``candidates`` (tensor names), the outputs downstream of no training-only or unused
    call of a shared layer (``layer_calls`` without outputs): the evaluation tower's logits, not
    the training tower's; the output of a Keras model's call on the user's tensor, not of its
    call on its own ``Input``. Candidates that reach no shared layer are kept. When every
    candidate is left out, all are kept (the tools' behaviour before)."""
    shared = [layer_calls(layer) for layer in layers]
    shared = [c for c in shared if c.shared and len(c.prediction) < len(c.sites)]
    if not shared or len(candidates) < 2:
        return OutputChoice(tuple(candidates), {}, None)
    kept, left = [], {}
    for name in candidates:
        above = {o.name for o in walk.ancestors([graph.get_tensor_by_name(name).op])}
        why = None
        for calls in shared:
            reached = [i for i, (_, out) in enumerate(calls.sites) if _op(out) in above]
            if reached and not set(reached) & set(calls.prediction):
                role = "training" if set(reached) <= set(calls.training) else "unused"
                why = f"it depends on the {role} call of {calls.name} on {calls.sites[reached[0]][0]}"
                break
        if why:
            left[name] = why
        else:
            kept.append(name)
    if not kept or not left:
        return OutputChoice(tuple(candidates), {}, None)
    note = (f"several calls share the BN layers: ran {', '.join(kept)}, downstream of the calls "
            f"that serve prediction; not " + "; not ".join(f"{n} ({w})" for n, w in left.items())
            + " (--outputs chooses others)")
    return OutputChoice(tuple(kept), left, note)


def _trained(modes):
    """Indices of the calls the train op runs, but those normalising with the moving statistics
    only (they update nothing)."""
    return tuple(i for i, m in enumerate(modes) if m.get("trained") and m["mode"] != "prediction")


def _op(tensor_name):
    return tensor_name.split(":")[0]
