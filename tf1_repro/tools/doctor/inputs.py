"""What the runs are fed: ``--feed`` values typed by their tensors, and the input batches
(``--data`` arrays, else random N(0, 1) batches shaped by the placeholders or ``--input-shape``;
an unknown batch dimension is ``DEFAULT_BATCH``)."""

import numpy as np

from tf1_repro.graph import feeds as graph_feeds
from tf1_repro.tools.doctor.base import WHERE, DoctorError

DEFAULT_BATCH = 4


def resolve_feeds(doc, s):
    """``{tensor: typed value}`` of ``--feed`` in the artefact's graph; DoctorError for a name
    that is not a tensor or a value its dtype or shape refuses (the same with ``--no-run``)."""
    if s.feeds and doc.graph is None:
        raise DoctorError(f"{WHERE}: --feed {sorted(s.feeds)[0]}: {doc.art.source} has no graph "
                          "(a checkpoint without its .meta) to feed")
    typed = {}
    for name, value in s.feeds.items():
        t = _tensor(doc.graph, name, "--feed", doc.art.source)
        typed[t] = _feed_value(t, value, name)
    return typed


def _feed_value(tensor, value, where):
    """``value`` (bool, number, list or array; text parsed by ``graph.feeds.parse_feed``) typed by
    the tensor's dtype: a bool tensor takes true/false (or 0/1), a number tensor takes numbers
    (not true/false), an integer tensor whole numbers; the shape must fit the tensor's.
    DoctorError naming the feed otherwise (checked whether or not anything runs)."""
    dtype = tensor.dtype.base_dtype
    if isinstance(value, str):
        try:
            value = graph_feeds.parse_feed(f"{where}={value}")[1]
        except ValueError as err:
            raise DoctorError(f"{WHERE}: {err}") from None
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise DoctorError(f"{WHERE}: --feed {where} must be true, false, a number or a JSON list "
                          f"of them, got {value!r}")
    shown = array.tolist()
    if dtype.is_bool:
        if array.dtype.kind != "b" and not np.all(np.isin(array, (0, 1))):
            raise DoctorError(f"{WHERE}: --feed {where} must be true or false for a bool tensor, "
                              f"got {shown!r}")
    elif dtype.is_floating or dtype.is_integer:
        if array.dtype.kind == "b":
            raise DoctorError(f"{WHERE}: --feed {where} must be a number for a {dtype.name} "
                              f"tensor, got {shown!r}")
        if dtype.is_integer and np.any(array != np.round(array)):
            raise DoctorError(f"{WHERE}: --feed {where} must be a whole number for a {dtype.name} "
                              f"tensor, got {shown!r}")
    else:
        raise DoctorError(f"{WHERE}: --feed {where}: a {dtype.name} tensor cannot be fed from the "
                          "command line")
    if not tensor.shape.is_compatible_with(array.shape):
        raise DoctorError(f"{WHERE}: --feed {where} must have shape {tensor.shape.as_list()}, "
                          f"got {list(array.shape)}")
    return array.astype(dtype.as_numpy_dtype)


def _tensor(graph, name, what, source):
    try:
        return graph.get_tensor_by_name(name if ":" in name else f"{name}:0")
    except (KeyError, ValueError):
        raise DoctorError(f"{WHERE}: {what} {name}: no such tensor in {source}") from None


def random_inputs(inputs, s, source):
    """``{placeholder: batch}``: ``--data`` arrays, else random batches shaped by the placeholder
    (or ``--input-shape``); DoctorError for a shape left open or a name that is not an input."""
    rng = np.random.default_rng(0)
    data = {}
    by_key = {}
    for key, value in s.data.items():
        by_key[key if ":" in key else f"{key}:0"] = np.asarray(value)
    for t in inputs:
        if t.name in by_key:
            data[t] = by_key[t.name]
            continue
        shape = s.input_shapes.get(t.op.name) or s.input_shapes.get(t.name)
        if shape is None:
            dims = t.shape.as_list() if t.shape.rank is not None else None
            if dims is None:
                raise DoctorError(f"{WHERE}: input {t.op.name} in {source} has unknown rank: say "
                                  f"its shape with --input-shape {t.op.name}=N,... or --data")
            dims = [DEFAULT_BATCH if (i == 0 and d is None) else d for i, d in enumerate(dims)]
            if any(d is None for d in dims):
                raise DoctorError(f"{WHERE}: input {t.op.name} in {source} has shape "
                                  f"{t.shape.as_list()}: say it with --input-shape "
                                  f"{t.op.name}=N,... or --data")
            shape = tuple(dims)
        dtype = t.dtype.base_dtype
        if dtype.is_floating:
            data[t] = rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_integer:
            data[t] = rng.integers(0, 2, shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_bool:
            data[t] = np.zeros(shape, bool)
        else:
            raise DoctorError(f"{WHERE}: input {t.op.name} in {source} is {dtype.name}: give it "
                              "with --data")
    names = {t.op.name for t in inputs} | {t.name for t in inputs}
    stray = sorted(set(s.input_shapes) - names)
    if stray:
        raise DoctorError(f"{WHERE}: --input-shape {stray[0]} is not an input of the outputs run in "
                          f"{source} (inputs: {', '.join(sorted(t.name for t in inputs)) or 'none'})")
    unused = sorted(set(by_key) - {t.name for t in inputs})
    if unused:
        raise DoctorError(f"{WHERE}: --data {unused[0]} is not an input of the outputs run in "
                          f"{source} (inputs: {', '.join(sorted(t.name for t in inputs)) or 'none'})")
    return data
