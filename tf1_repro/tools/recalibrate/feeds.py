"""What recalibrate feeds: the prediction-mode constants and ``--feed`` values, and which
placeholders the data fills (``plan_feeds``)."""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph import feeds, walk
from tf1_repro.tools.recalibrate.common import WHERE, RecalibrateError, tensor_named
from tf1_repro.tools.recalibrate.data import array_of


def parse_feed(text):
    """``NAME=VALUE`` -> (NAME, value) (see ``feeds.parse_feed``); ``RecalibrateError`` otherwise."""
    try:
        return feeds.parse_feed(text)
    except ValueError as err:
        raise RecalibrateError(f"{WHERE}: {err}") from None


@dataclasses.dataclass
class Feeds:
    """What each pass feeds: constants (prediction mode and ``--feed``) and data placeholders."""

    constant: dict  # tensor -> value (prediction mode and --feed)
    data: dict  # data key -> placeholder tensor
    labels: Optional[str]
    optional: dict = dataclasses.field(default_factory=dict)  # PlaceholderWithDefault name -> tensor
    given: set = dataclasses.field(default_factory=set)  # the constant tensors --feed set

    def report(self):
        """[{"name", "value", "source"}] of every constant feed (mode inputs and --feed), JSON-able."""
        return [{"name": t.name[:-2] if t.name.endswith(":0") else t.name,
                 "value": np.asarray(v).tolist(), "source": "--feed" if t in self.given else "prediction mode"}
                for t, v in sorted(self.constant.items(), key=lambda item: item[0].name)]


def plan_feeds(graph, data, found, user_feeds, fetch_tensors, labels):
    """Which tensors get constants, which get data; RecalibrateError for what cannot be fed.

    Mode inputs the fetches depend on get their prediction values (``found.prediction_feeds()``;
    one that only an unused call reads, such as a Keras model's ``keras_learning_phase`` beside
    the user's ``training``, is neither fed nor reported); a vanilla dropout's keep_prob has none
    (``graph.feeds.unbound_mode_inputs``) and must come from ``--feed``.
    """
    constant = {}
    unbound = feeds.unbound_mode_inputs(found)
    above = walk.ancestors([t.op for t in fetch_tensors], control=True)
    for name, value in found.prediction_feeds().items():
        tensor = tensor_named(graph, name, "a mode input")
        if name.split(":")[0] not in unbound and tensor.op in above:
            constant[tensor] = value
    given = set()
    for name, value in (user_feeds or {}).items():
        tensor = tensor_named(graph, name, "--feed NAME")
        try:
            constant[tensor] = np.asarray(value, tensor.dtype.as_numpy_dtype)
        except (TypeError, ValueError):
            raise RecalibrateError(f"{WHERE}: --feed {name} must be a {tensor.dtype.name}, got "
                                   f"{value!r}") from None
        given.add(tensor)
    for name, what in sorted(unbound.items()):
        tensor = tensor_named(graph, name, "a mode input")
        if tensor not in constant and tensor.op in above:
            raise RecalibrateError(
                f"{WHERE}: placeholder {name!r} is the keep_prob of {what} (training keeps h * mask "
                f"unscaled, prediction multiplies by keep_prob), so prediction mode needs its training "
                f"value, which the graph does not hold; pass --feed {name}=VALUE (the keep_prob it "
                f"trained with)")
    needed = sorted((op for op in above if op.type == "Placeholder" and op.outputs[0] not in constant),
                    key=lambda op: op.name)
    optional = {op.name: op.outputs[0] for op in above
                if op.type == "PlaceholderWithDefault" and op.outputs[0] not in constant}
    by_key = {}
    if data.kind == "npy":
        if len(needed) != 1:
            raise RecalibrateError(
                f"{WHERE}: a .npy --data feeds a single input placeholder, but the BN inputs need "
                f"{len(needed)}: {', '.join(op.name for op in needed) or 'none'} (use a .npz keyed by name)")
        data.arrays = {needed[0].name: data.arrays.pop(None)}
    for op in needed:
        if data.kind == "generator":
            by_key[op.name] = op.outputs[0]
            continue
        key = op.name if op.name in data.arrays else (op.name + ":0" if op.name + ":0" in data.arrays
                                                     else None)
        if key is None:
            raise RecalibrateError(
                f"{WHERE}: placeholder {op.name!r} is needed to compute the BN inputs but the data has no "
                f"{op.name!r} (keys: {', '.join(data.keys)}) and no --feed {op.name}=VALUE was given")
        by_key[key] = op.outputs[0]
    if data.kind == "generator":
        return Feeds(constant, by_key, labels, optional, given)
    for key in data.arrays:  # inputs with a default (PlaceholderWithDefault) that the data gives
        if key not in by_key and key.split(":")[0] in optional:
            by_key[key] = optional[key.split(":")[0]]
    if not by_key:
        raise RecalibrateError(f"{WHERE}: --data must hold an input of the BN layers, got keys "
                               f"{', '.join(data.keys)}, none of them a placeholder above a BN layer")
    if labels and labels not in data.arrays:
        raise RecalibrateError(f"{WHERE}: --labels must be a key of the data, got {labels!r} "
                               f"(keys: {', '.join(data.keys)})")
    sizes = {key: array_of(data.arrays[key]).shape for key in list(by_key) + ([labels] if labels else [])}
    for key, shape in sizes.items():
        if len(shape) == 0 or shape[0] != next(iter(sizes.values()))[0]:
            raise RecalibrateError(f"{WHERE}: data arrays must share their first (sample) dimension, "
                                   f"got {dict((k, tuple(s)) for k, s in sizes.items())}")
    for key, tensor in by_key.items():
        check_shape(key, sizes[key], tensor, "array")
    return Feeds(constant, by_key, labels, given=given)


def check_shape(key, shape, tensor, what):
    wanted = tensor.shape
    if wanted.rank is not None and not tf.TensorShape(shape).is_compatible_with(wanted):
        raise RecalibrateError(
            f"{WHERE}: data {what} {key!r} has shape {tuple(shape)}, but placeholder {tensor.name} takes "
            f"{_shape_text(wanted)}")


def _shape_text(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape.as_list()) + ")"


def checked_sum(key, array, offset):
    """The float64 sum of a batch (the pass's fingerprint); RecalibrateError naming a NaN/inf sample."""
    if array.dtype.kind not in "fc":
        return float(np.sum(array, dtype=np.float64)) if array.dtype.kind in "iub" else 0.0
    total = np.sum(array, dtype=np.float64) if array.dtype.kind == "f" else np.sum(array)
    if np.isfinite(total):
        return float(np.real(total))
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise RecalibrateError(f"{WHERE}: data {key!r} must be finite, got {array[index]} in sample "
                               f"{offset + index[0]} (index {index[1:] if len(index) > 1 else ()})")
    return float("inf")  # finite values whose sum overflows
