"""Verification under ``--fix-training-mode``, where the original's output depends on its batch
(or is random) and cannot be the reference.

* ``batch_shift``: how far sample 0 of a batch moves when run alone (the original's batch
  dependence, also reported without the flag);
* ``bn_numpy_checks``: each repaired BN layer's output, in the repaired graph (before folding),
  against NumPy's ``gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta`` on its
  own input, with the statistics read from the original artefact;
* ``keras_check``: the repaired graph's outputs against the Keras file run by Keras with every
  layer in inference mode (``keras_reference``); a Keras-made SavedModel is never deserialised
  through Keras (a Lambda's Python would run), so it gets the NumPy checks only.

The artefacts themselves are compared with the repaired graph (``verify.verify``: same outputs,
batch independent, deterministic) by the command.
"""

import numpy as np

from tf1_repro.graph.graphdef import tensor_name
from tf1_repro.tools.inference import keras_reference
from tf1_repro.tools.inference.training_mode import _value  # pylint: disable=protected-access

SAVED_MODEL_NOTE = ("not compared with Keras: a SavedModel is never deserialised through Keras "
                    "(a Lambda's Python would run); each repaired BN is checked against NumPy "
                    "with its stored statistics instead")


def _diff(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float("inf") if got.shape != want.shape else float(np.max(np.abs(got - want), initial=0.0))


def _scale(want):
    want = np.asarray(want, np.float64)
    return max(1.0, float(np.max(np.abs(want), initial=0.0)))


def batch_shift(runner, batch):
    """max |output row 0 of ``batch`` - output of row 0 run alone| over the outputs; None when
    the batch run again gives other values (the graph updates what it reads at prediction: its
    outputs move from run to run, whatever the batch)."""
    together = runner.run(batch)
    alone = runner.run({k: v[:1] for k, v in batch.items()})
    again = runner.run(batch)
    if any(_diff(a, t) > 0.0 for a, t in zip(again, together)):
        return None
    return max((_diff(a, np.asarray(t)[:1]) for a, t in zip(alone, together)), default=0.0)


def bn_numpy_checks(fmt, repaired, graph, sess, findings, fixes, batch, tolerance):
    """[{layer, max_abs_diff, ok}] for each repaired BN (``fixes``: its ``BNFix``es, by layer)."""
    graph_def = graph.as_graph_def()
    layers = [b for b in findings.bn_layers if b.name in fixes]
    if not layers:
        return []
    fetches = [t for b in layers for t in (tensor_name(b.input), tensor_name(b.output))]
    runner = fmt.open_graph_def(repaired, fetches)
    try:
        values = runner.run(batch)
    finally:
        runner.close()
    checks = []
    for i, bn in enumerate(layers):
        x, y = (np.asarray(v, np.float64) for v in values[2 * i:2 * i + 2])
        fix = fixes[bn.name]
        gamma = _value(graph, sess, graph_def, bn.gamma) if bn.gamma else None
        beta = _value(graph, sess, graph_def, bn.beta) if bn.beta else None
        gamma = np.ones_like(fix.moving_mean, np.float64) if gamma is None else np.asarray(gamma, np.float64)
        beta = np.zeros_like(fix.moving_mean, np.float64) if beta is None else np.asarray(beta, np.float64)
        epsilon = np.float64(np.float32(bn.epsilon or 0.0))
        want = gamma * (x - np.asarray(fix.moving_mean, np.float64)) / np.sqrt(
            np.asarray(fix.moving_variance, np.float64) + epsilon) + beta
        d = _diff(y, want)
        checks.append({"layer": fix.layer, "max_abs_diff": d, "ok": bool(d <= tolerance * _scale(want))})
    return checks


def keras_check(art, repaired_outputs, inputs, outputs, batch, tolerance):
    """``{"max_abs_diff", "ok"}`` of the repaired outputs (``repaired_outputs`` on ``batch``)
    against Keras, ``{"skipped": why}`` where it does not apply, ``{"error": line}`` on failure."""
    if art is None or art.format not in keras_reference.FORMATS:
        if art is not None and art.format == "saved_model_tf2":
            return {"skipped": SAVED_MODEL_NOTE}
        return {"skipped": "not a Keras file"}
    order = list(art.inputs.values())
    if sorted(order) != sorted(inputs) or list(outputs) != list(art.outputs.values()):
        return {"skipped": "--inputs/--outputs differ from the Keras model's own"}
    try:
        want = keras_reference.keras_outputs(art.source, art.format, [batch[i] for i in order])
    except keras_reference.KerasReferenceError as err:
        return {"error": str(err)}
    d = max((_diff(g, w) for g, w in zip(repaired_outputs, want)), default=0.0)
    ok = len(want) == len(repaired_outputs) and all(
        _diff(g, w) <= tolerance * _scale(w) for g, w in zip(repaired_outputs, want))
    return {"max_abs_diff": d, "ok": bool(ok)}
