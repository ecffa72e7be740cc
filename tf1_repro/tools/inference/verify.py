"""Verification of a serving artefact against the original graph: the check batches
(``make_batches``), the comparison (``verify``) and whether the original is deterministic.
(Moved unchanged from ``tools/inference.py``.)"""

import numpy as np

from tf1_repro.graph import walk
from tf1_repro.graph.graphdef import node_name
from tf1_repro.graph.ops import STATEFUL_RANDOM_OPS
from tf1_repro.tools.inference.errors import InferenceError

def input_shapes(graph, inputs):
    shapes = {}
    for name in inputs:
        shape = graph.get_tensor_by_name(name).shape
        if shape.rank is None or any(d is None for d in shape.as_list()[1:]):
            raise InferenceError(f"--data: input {name} has shape {shape} (only the batch "
                                 f"dimension may be unknown); give inputs with --data FILE.npz")
        shapes[name] = [None] + shape.as_list()[1:]
    return shapes


def make_batches(graph, inputs, data=None, sizes=(1, 16), seed=0):
    """{size: {input: array}}: rows of ``data`` ({name: array}, tiled if short) or N(0, 1)."""
    rng = np.random.default_rng(seed)
    batches = {}
    for size in sizes:
        batch = {}
        for name in inputs:
            tensor = graph.get_tensor_by_name(name)
            dtype = tensor.dtype.as_numpy_dtype
            if data is not None:
                key = name if name in data else node_name(name)
                if key not in data:
                    raise InferenceError(f"--data: no array named {node_name(name)} "
                                         f"(has {', '.join(sorted(data)) or 'none'})")
                rows = np.asarray(data[key])
                if rows.ndim == 0 or not len(rows):
                    raise InferenceError(f"--data: array {key} must have at least one row, got "
                                         f"shape {rows.shape}")
                reps = -(-size // len(rows))
                batch[name] = np.concatenate([rows] * reps)[:size].astype(dtype)
            else:
                shape = [size] + input_shapes(graph, [name])[name][1:]
                value = rng.normal(size=shape) if tensor.dtype.is_floating else rng.integers(0, 2, shape)
                batch[name] = value.astype(dtype)
        batches[size] = batch
    return batches


def verify(runner, reference, batches, tolerance=1e-4):
    """Compare a runner with the reference outputs ({size: [arrays]}) at every batch size.

    max_abs_diff: over sizes and outputs; ok when each output differs by at most
    ``tolerance * max(1, max |reference output|)``. max_rel_diff: over sizes and outputs, each
    output's max |diff| divided by that same scale ``max(1, max |reference output|)``, so ok is
    ``max_rel_diff <= tolerance`` (520 on outputs of 1e6 is 5.2e-4). batch_independent: each sample of
    the largest batch run alone equals its row in the batch (same tolerance);
    deterministic: the largest batch run twice gives the same bits.
    """
    diff, rel, ok = 0.0, 0.0, True
    outputs = {}
    for size, feeds in batches.items():
        outputs[size] = runner.run(feeds)
        for got, want in zip(outputs[size], reference[size]):
            d = _max_diff(got, want)
            diff = max(diff, d)
            rel = max(rel, d / output_scale(want))
            ok &= d <= tolerance * output_scale(want)
    largest = max(batches)
    feeds = batches[largest]
    again = runner.run(feeds)
    deterministic = all(np.array_equal(a, b, equal_nan=np.asarray(a).dtype.kind == "f")
                        for a, b in zip(again, outputs[largest]))
    independent = True
    for row in range(largest):
        alone = runner.run({k: v[row:row + 1] for k, v in feeds.items()})
        for got, want in zip(alone, outputs[largest]):
            independent &= _max_diff(got, np.asarray(want, np.float64)[row:row + 1]) <= \
                tolerance * output_scale(want)
    return {"max_abs_diff": diff, "max_rel_diff": rel, "within_tolerance": bool(ok),
            "batch_independent": bool(independent), "deterministic": bool(deterministic)}


def _max_diff(got, want):
    """max |got - want|; a NaN/inf where the other has the same NaN/inf counts as equal,
    elsewhere as inf."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    if not want.size:
        return 0.0
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    return float(np.max(np.where(same, 0.0, np.abs(got - want)), initial=0.0)) if not \
        np.all(same) else 0.0


def output_scale(want):
    """max(1, max |finite value|): the scale ``tolerance`` is relative to."""
    finite = np.asarray(want, np.float64)
    finite = finite[np.isfinite(finite)]
    return max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0


def random_ops(graph, outputs):
    """The stateful random ops the outputs depend on (data inputs): with one, the original
    graph's output may be random (a dropout always on); a graph whose output changes only
    because it updates variables at prediction has none."""
    ops = [graph.get_tensor_by_name(name).op for name in outputs]
    return sorted(op.name for op in walk.ancestors(ops, control=False) if op.type in STATEFUL_RANDOM_OPS)


def same_outputs(got, want):
    """The same bits (NaN equal to NaN) in every output: a graph run twice on the same batch
    with no random op gives this."""
    return all(np.array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64), equal_nan=True)
               for a, b in zip(got, want))
