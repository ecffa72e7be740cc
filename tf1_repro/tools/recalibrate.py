"""Recalibrate: exact population BN statistics for a user's checkpoint, weights frozen.

For every BN layer the structural finder (``tf1_repro.tools.finder``) finds,
the moving mean and variance are replaced by the exact per-channel moments of
the layer's input over the given data, with everything upstream in prediction
mode (``finder.prediction_feeds()``: training False, keep_prob 1.0, ...) and
upstream BN layers already using their recalibrated statistics. A *vanilla*
dropout's keep_prob (training ``h * mask``, prediction ``h * keep_prob``) has no
prediction value in the graph (it is the training keep_prob): recalibrate refuses
until ``--feed NAME=VALUE`` gives it. The report lists every feed used.

A BN layer whose variables are shared by several calls (towers built with
``reuse=True``; ``BNLayer.call_sites``) gets the moments of all its calls' inputs
pooled into one population (Chan's rule over the calls), since one pair of moving
statistics normalises every call; each call's output is checked on its own.
Pooling includes the spread between the calls' means, which an EMA of per-batch
variances would miss; it is the variance of what the layer sees over the data.
A call whose input depends on the layer's own output (recurrent reuse) is refused.

The finder reads the checkpoint's MetaGraphDef, not the session's graph, whose
restore assigns could read as writes of gamma/beta (renorm layers). A layer's
input depends on every BN layer upstream of it, so layers are grouped by
depth (the longest chain of BN layers above them); all layers of one depth
share one pass over the data and their statistics are loaded into the
session's variables before the next depth's pass. A model needs
``max depth + 1`` passes, plus one check pass.

Streaming moments (memory independent of the data size). Each batch gives, per
channel c, in float64 inside the graph: ``n_b`` (values per channel: batch x
spatial positions), the batch mean ``m_b`` and ``M2_b = sum (x - m_b)^2``.
Batches merge by Chan et al.'s parallel rule::

    n = n_a + n_b,  delta = m_b - m_a,
    m = m_a + delta * n_b / n,  M2 = M2_a + M2_b + delta^2 * n_a * n_b / n

which is exact in exact arithmetic and in float64 agrees with one big batch to
~1e-15 relative. The population variance is ``M2 / n``.

Variance convention (what the stored moving variance means):

* ``biased`` (the article's layer, ``tf.layers``/Keras non-fused, every EMA of
  ``tf.nn.moments``): their moving variance averages biased batch variances,
  so the exact value is the biased population variance ``M2 / n``.
* ``unbiased`` (the fused kernel, ``FusedBatchNorm*``, which averages
  Bessel-corrected batch variances ``n_b/(n_b-1) * s_b^2``): we store
  ``M2 / (n - 1)``, the same Bessel-corrected estimator over the whole data.
  Why: it is what that moving variance estimates (E[n_b/(n_b-1) s_b^2] = sigma^2),
  so continued fused training keeps averaging the same quantity and the value
  does not jump; and it differs from ``M2 / n`` only by ``n/(n-1)`` (reported;
  1 + 1e-6 for a million values per channel), far below the EMA's noise.

Checks on the result (one more pass, prediction mode): for each recalibrated
layer with stored mean m and variance v (float32), input population mean mu and
variance s2, its output ``gamma (x - m)/sqrt(v + eps) + beta`` has per-channel
mean ``beta + gamma (mu - m)/sqrt(v + eps)`` (= beta up to m's float32
rounding) and variance ``gamma^2 s2/(v + eps)`` (= gamma^2 v/(v + eps) for the
biased convention). Tolerance: each float32 output is off by at most a few
ulps of its scale ``S = |gamma| (max|x| + |m|)/sqrt(v + eps) + |beta|``; we
allow ``64 u S`` for the mean and ``2 * 64 u S sqrt(var) + (64 u S)^2`` for the
variance, u = 2^-24 (float32 unit roundoff).

The report's "var change" is the largest relative change ``|new - old| / |old|``
over the channels ("from 0" when a channel's old variance is 0, "was non-finite" when it was
NaN/inf; the JSON lists such channels in mean_was_non_finite / variance_was_non_finite).

The new checkpoint has the source's variable names; every variable that is not
a recalibrated moving statistic is copied bit for bit (optimizer slots and the
global step included), with the ``checkpoint`` state file and a copy of the
``.meta``. The source is only read. Everything is validated and computed before
anything is written; a refused call writes nothing.
"""

import dataclasses
import glob
import os
import shutil
import tempfile
import time
from typing import Callable, Optional

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph import artefacts, feeds as user_feeds, safety, walk
from tf1_repro.graph.control_flow import tf2_control_flow
from tf1_repro.graph.errors import InputError
from tf1_repro.graph.ops import VARIABLE_OPS
from tf1_repro.tools import finder
from tf1_repro.comparisons import loader

WHERE = "recalibrate"
UNIT_ROUNDOFF = 2.0 ** -24
CHECK_ULPS = 64
DEFAULT_BATCH = 256
SCOPE = "tf1_repro_recalibrate"


class RecalibrateError(InputError):
    """Refused input or an impossible recalibration: one line (exit status 2); nothing written."""


# ---------------------------------------------------------------- streaming moments

class ChannelMoments:
    """Exact per-channel count, mean and M2 (sum of squared deviations) merged by Chan's rule.

    Memory is O(channels) whatever the number of values merged.
    """

    def __init__(self, channels):
        self.count = 0
        self.mean = np.zeros(channels, np.float64)
        self.m2 = np.zeros(channels, np.float64)
        self.absmax = np.zeros(channels, np.float64)

    def merge(self, count, mean, m2, absmax=None):
        """Merge a batch summarised by ``count`` values per channel, its mean and its M2."""
        count = int(count)
        if count == 0:
            return
        total = self.count + count
        delta = np.asarray(mean, np.float64) - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + np.asarray(m2, np.float64) + delta ** 2 * (self.count * count / total)
        self.count = total
        if absmax is not None:
            self.absmax = np.maximum(self.absmax, absmax)

    def add(self, values, axis=-1):
        """Merge a NumPy batch whose channel axis is ``axis`` (two-pass moments in float64)."""
        values = np.moveaxis(np.asarray(values, np.float64), axis, -1)
        flat = values.reshape(-1, values.shape[-1])
        mean = flat.mean(0)
        self.merge(flat.shape[0], mean, ((flat - mean) ** 2).sum(0), np.abs(flat).max(0))

    @classmethod
    def pooled(cls, parts):
        """The moments of the union of the populations ``parts`` summarise (Chan's rule again)."""
        result = cls(len(parts[0].mean))
        for part in parts:
            result.merge(part.count, part.mean, part.m2, part.absmax)
        return result

    def variance(self, ddof=0):
        """``M2 / (count - ddof)``: ddof 0 the population (biased) variance, 1 Bessel-corrected."""
        if self.count - ddof <= 0:
            raise ValueError(f"ChannelMoments: need more than {ddof} values per channel, got {self.count}")
        return self.m2 / (self.count - ddof)


# ---------------------------------------------------------------- data sources

@dataclasses.dataclass
class Data:
    """Batches of feed values keyed by name, from ``.npz``, ``.npy`` or ``module.py:FUNC``.

    ``arrays`` (npz/npy) are read lazily by key; ``func()`` (a generator) is called
    once per pass and must yield the same feed dicts each time (checked).
    """
    spec: str
    kind: str  # "npz" | "npy" | "generator"
    arrays: Optional[dict] = None
    func: Optional[Callable] = None

    @property
    def keys(self):
        return None if self.arrays is None else sorted(self.arrays)


def open_data(spec):
    """A ``Data`` for ``FILE.npz``, ``FILE.npy`` or ``module.py:FUNC``; RecalibrateError otherwise."""
    if not isinstance(spec, str) or not spec:
        raise RecalibrateError(f"{WHERE}: --data must be FILE.npz, FILE.npy or module.py:FUNC, got {spec!r}")
    lower = spec.lower()
    if lower.endswith(".npz"):
        if not os.path.isfile(spec):
            raise RecalibrateError(f"{WHERE}: --data must be an existing file, got {spec!r} (no such file)")
        try:
            npz = np.load(spec, allow_pickle=False)
            arrays = {key: _LazyArray(npz, key) for key in npz.files}
        except (OSError, ValueError) as err:
            raise RecalibrateError(f"{WHERE}: --data {spec!r} is not a readable .npz: {err}") from None
        if not arrays:
            raise RecalibrateError(f"{WHERE}: --data {spec!r} holds no arrays")
        return Data(spec, "npz", arrays=arrays)
    if lower.endswith(".npy"):
        if not os.path.isfile(spec):
            raise RecalibrateError(f"{WHERE}: --data must be an existing file, got {spec!r} (no such file)")
        try:
            array = np.load(spec, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise RecalibrateError(f"{WHERE}: --data {spec!r} is not a readable .npy: {err}") from None
        return Data(spec, "npy", arrays={None: array})
    path, sep, name = spec.rpartition(":")
    if sep and path.endswith(".py") and name:
        try:
            func = loader.load(spec, WHERE)
        except loader.BuilderError as err:
            raise RecalibrateError(str(err)) from None
        return Data(spec, "generator", func=func)
    raise RecalibrateError(f"{WHERE}: --data must be FILE.npz, FILE.npy or module.py:FUNC, got {spec!r}")


class _LazyArray:
    """One array of an .npz, loaded on first use (only the arrays the graph needs are read)."""

    def __init__(self, npz, key):
        self.npz, self.key, self._value = npz, key, None

    def get(self):
        if self._value is None:
            self._value = self.npz[self.key]
        return self._value


def _array(value):
    return value.get() if isinstance(value, _LazyArray) else value


def _batches(data, keys, batch_size, max_samples, optional=()):
    """Yield dicts {key: array} of at most ``batch_size`` samples (arrays) or as yielded (FUNC);
    a FUNC's keys in ``optional`` are passed on when present."""
    limit = max_samples if max_samples is not None else float("inf")
    if data.kind != "generator":
        arrays = {k: _array(data.arrays[k]) for k in keys}
        total = min(len(next(iter(arrays.values()))), limit)
        for start in range(0, int(total), batch_size):
            stop = int(min(start + batch_size, total))
            yield {k: np.asarray(a[start:stop]) for k, a in arrays.items()}
        return
    try:
        iterator = iter(data.func())
    except Exception as err:  # pylint: disable=broad-except
        raise RecalibrateError(f"{WHERE}: --data {data.spec} raised {type(err).__name__}: "
                               f"{loader._one_line(err)}") from None  # pylint: disable=protected-access
    seen = 0
    index = 0
    while seen < limit:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as err:  # pylint: disable=broad-except
            raise RecalibrateError(f"{WHERE}: --data {data.spec} raised {type(err).__name__} at batch "
                                   f"{index}: {loader._one_line(err)}") from None  # pylint: disable=protected-access
        if not isinstance(item, dict) or not item:
            raise RecalibrateError(f"{WHERE}: --data {data.spec} must yield non-empty dicts "
                                   f"{{placeholder name: array}}, got {type(item).__name__} at batch {index}")
        missing = [k for k in keys if k not in item]
        if missing:
            raise RecalibrateError(f"{WHERE}: --data {data.spec} batch {index} has no key {missing[0]!r} "
                                   f"(keys: {', '.join(sorted(map(str, item)))})")
        batch = {k: np.asarray(item[k]) for k in list(keys) + [k for k in optional if k in item]}
        if not batch:
            raise RecalibrateError(f"{WHERE}: --data {data.spec} must yield an input of the BN layers, got "
                                   f"keys {', '.join(sorted(map(str, item)))} at batch {index}, none of them "
                                   f"a placeholder above a BN layer")
        sizes = {k: (v.shape[0] if v.ndim else None) for k, v in batch.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise RecalibrateError(f"{WHERE}: --data {data.spec} batch {index}: every array must have "
                                   f"the same first (sample) dimension, got {sizes}")
        size = next(iter(sizes.values()))
        if seen + size > limit:
            batch = {k: v[:int(limit - seen)] for k, v in batch.items()}
            size = int(limit - seen)
        seen += size
        index += 1
        yield batch


# ---------------------------------------------------------------- graph analysis

def _ancestors(ops, control=False):
    """Every op the given ops depend on (data inputs; control inputs too when ``control``)."""
    return walk.ancestors(ops, control)


def call_sites(layer):
    """[(input, output)] of every call of a finder layer (one unless its variables are shared)."""
    return [tuple(site) for site in (layer.call_sites or [])] or [(layer.input, layer.output)]


def depths(graph, layers):
    """{layer name: depth}: 0 if no BN layer is upstream of its inputs (every call's), else 1 + the
    deepest upstream. A shared layer with a call fed by its own output is refused."""
    own = {layer.name: {graph.get_tensor_by_name(out).op for _, out in call_sites(layer)} |
           {graph.get_operation_by_name(n) for n in (layer.bn_ops or []) if _has_op(graph, n)}
           for layer in layers}
    upstream = {}
    for layer in layers:
        sites = call_sites(layer)
        for x, _ in sites:
            if own[layer.name] & _ancestors([graph.get_tensor_by_name(x).op]):
                raise RecalibrateError(
                    f"{WHERE}: BN layer {layer.name} is shared by {len(sites)} calls and its call on {x} "
                    f"depends on the layer's own output, so its statistics cannot be pooled over one "
                    f"pass; recalibrate supports shared layers whose calls are side by side (towers)")
        above = _ancestors([graph.get_tensor_by_name(x).op for x, _ in sites])
        upstream[layer.name] = [other.name for other in layers
                                if other.name != layer.name and own[other.name] & above]
    result = {}

    def depth(name, trail=()):
        if name in trail:
            raise RecalibrateError(f"{WHERE}: BN layers {' -> '.join(trail + (name,))} form a cycle")
        if name not in result:
            result[name] = 1 + max((depth(u, trail + (name,)) for u in upstream[name]), default=-1)
        return result[name]
    for layer in layers:
        depth(layer.name)
    return result


def _has_op(graph, name):
    try:
        graph.get_operation_by_name(name)
        return True
    except (KeyError, ValueError):
        return False


def _tensor(graph, name, what):
    name = name if ":" in name else name + ":0"
    try:
        return graph.get_tensor_by_name(name)
    except (KeyError, ValueError):
        raise RecalibrateError(f"{WHERE}: {what} must name a tensor in the graph, got {name!r}") from None


def _channel_axis(layer):
    """The input's channel axis, as the finder read it (fused ``data_format``, or the axis the
    statistics broadcast along)."""
    return layer.channel_axis


# ---------------------------------------------------------------- the plan

@dataclasses.dataclass
class _Layer:
    """One BN layer to recalibrate, with the graph pieces we add and its statistics."""
    info: object  # finder.BNLayer
    depth: int
    axis: int
    channels: int
    ddof: int
    mean_key: str
    var_key: str
    shape: tuple  # the moving statistics' shape in the checkpoint
    dtype: object
    old_mean: np.ndarray
    old_var: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    epsilon: float
    sites: list = None  # [(input, output)] per call; more than one for a shared layer
    input_moments: list = None  # fetches, one per call
    output_moments: list = None
    assign: object = None
    mean_value: object = None
    var_value: object = None
    moments: ChannelMoments = None  # pooled over the calls
    site_moments: list = None  # ChannelMoments per call (input)
    out_moments: list = None  # ChannelMoments per call (output)
    new_mean: np.ndarray = None
    new_var: np.ndarray = None


def _moment_fetches(tensor, axis, name):
    """Float64 per-channel count, mean, M2 = sum (x - mean)^2 and max |x| of one batch."""
    rank = tensor.shape.rank
    with tf.name_scope(name):
        t64 = tf.cast(tensor, tf.float64)
        axes = [a for a in range(rank) if a != axis % rank]
        mean = tf.reduce_mean(t64, axes, keepdims=True)
        m2 = tf.reduce_sum(tf.square(t64 - mean), axes)
        count = tf.size(t64, out_type=tf.int64) // tf.cast(tf.shape(t64, out_type=tf.int64)[axis], tf.int64)
        return {"count": count, "mean": tf.reshape(mean, [-1]), "m2": m2,
                "absmax": tf.reduce_max(tf.abs(t64), axes)}


def _assign_op(graph, variable_name, dtype, shape):
    """An op writing a fed value into the variable (ref or resource), and its placeholder."""
    op = graph.get_operation_by_name(variable_name)
    value = tf.placeholder(dtype, shape, name="value")
    if op.type == "VarHandleOp":
        return tf.raw_ops.AssignVariableOp(resource=op.outputs[0], value=value), value
    return tf.assign(op.outputs[0], value, validate_shape=True), value


def _prepare_layers(graph, reader, found, notes):
    """The recalibratable layers with their checkpoint values; RecalibrateError if none."""
    names = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    layers = []
    for info in found.bn_layers:
        if info.moving_mean is None or info.moving_variance is None or \
                info.statistics_used_at_prediction is False:
            notes.append(f"{info.name}: no moving statistics used at prediction "
                         f"({info.kind}); nothing to recalibrate")
            continue
        if info.updates_at_prediction:
            raise RecalibrateError(
                f"{WHERE}: BN layer {info.name} updates its moving statistics whenever it predicts (the "
                f"update runs with its output), so every pass would move them; wire the update into the "
                f"train op only (python -m tf1_repro doctor explains), then recalibrate")
        for role, key in (("moving_mean", info.moving_mean), ("moving_variance", info.moving_variance)):
            if not _has_op(graph, key) or graph.get_operation_by_name(key).type not in VARIABLE_OPS:
                raise RecalibrateError(f"{WHERE}: BN layer {info.name}'s {role} must be a variable, got "
                                       f"{key!r} (a constant? recalibrate needs a checkpoint)")
            if key not in names:
                raise RecalibrateError(f"{WHERE}: BN layer {info.name}'s {role} {key!r} is not in the "
                                       f"checkpoint (saved under another name?)")
        shape = tuple(names[info.moving_mean])
        channels = int(np.prod(shape)) if shape else 1
        epsilon = info.epsilon
        if epsilon is None:
            raise RecalibrateError(f"{WHERE}: BN layer {info.name}: its epsilon could not be found, so "
                                   f"the result cannot be checked")
        gamma = reader.get_tensor(info.gamma).astype(np.float64).reshape(-1) if info.gamma and \
            info.gamma in names else np.ones(channels)
        beta = reader.get_tensor(info.beta).astype(np.float64).reshape(-1) if info.beta and \
            info.beta in names else np.zeros(channels)
        layers.append(_Layer(
            info=info, depth=0, axis=_channel_axis(info), channels=channels, sites=call_sites(info),
            ddof=1 if (info.variance_estimator or ("unbiased" if info.kind == "fused" else None))
            == "unbiased" else 0,
            mean_key=info.moving_mean, var_key=info.moving_variance, shape=shape,
            dtype=dtypes[info.moving_mean].as_numpy_dtype,
            old_mean=reader.get_tensor(info.moving_mean).astype(np.float64).reshape(-1),
            old_var=reader.get_tensor(info.moving_variance).astype(np.float64).reshape(-1),
            gamma=gamma, beta=beta, epsilon=float(epsilon)))
        sites = call_sites(info)
        if len(sites) > 1:
            notes.append(f"{info.name}: variables shared by {len(sites)} calls (inputs "
                         f"{', '.join(x for x, _ in sites)}): statistics pooled over every call's inputs "
                         f"(one population), each call's output checked")
        if any("renormalisation" in note for note in info.notes):
            notes.append(f"{info.name}: batch renormalisation: prediction reads the moving mean and "
                         f"variance (recalibrated); its renorm variables (e.g. moving_stddev) are kept, and "
                         f"continued training derives the moving variance from them again")
        if info.variance_estimator is None:
            notes.append(f"{info.name}: no update op shows what its moving variance averages; stored "
                         + ("M2/(n-1), the fused kernel's Bessel-corrected convention" if info.kind == "fused"
                            else "the biased population variance M2/n"))
    if not layers:
        raise RecalibrateError(f"{WHERE}: PATH must hold BN layers that normalise with moving statistics "
                               f"at prediction, got {len(found.bn_layers)} BN layer(s), all using batch "
                               f"statistics at prediction (nothing to recalibrate)")
    return layers


def _build(graph, layers):
    """Add the moment, output-moment (one of each per call) and assign ops (in our copy of the graph only)."""
    with graph.as_default(), tf.name_scope(SCOPE):
        for i, layer in enumerate(layers):
            layer.input_moments, layer.output_moments = [], []
            for j, (x_name, y_name) in enumerate(layer.sites):
                x, y = graph.get_tensor_by_name(x_name), graph.get_tensor_by_name(y_name)
                if x.shape.rank is None or x.shape.rank < 2:
                    raise RecalibrateError(f"{WHERE}: BN layer {layer.info.name}'s input {x.name} must have "
                                           f"a known rank >= 2, got shape {x.shape}")
                dim = x.shape[layer.axis]
                if dim is not None and int(dim) != layer.channels:
                    raise RecalibrateError(f"{WHERE}: BN layer {layer.info.name}: input {x.name} has "
                                           f"{int(dim)} channels on axis {layer.axis}, its moving statistics "
                                           f"{layer.channels}")
                layer.input_moments.append(_moment_fetches(x, layer.axis, f"input_{i}_{j}"))
                layer.output_moments.append(_moment_fetches(y, layer.axis, f"output_{i}_{j}"))
            with tf.name_scope(f"assign_{i}"):
                mean_op, layer.mean_value = _assign_op(graph, layer.mean_key, layer.dtype, layer.shape)
                var_op, layer.var_value = _assign_op(graph, layer.var_key, layer.dtype, layer.shape)
                layer.assign = tf.group(mean_op, var_op)


# ---------------------------------------------------------------- opening the checkpoint

def resolve_checkpoint(path):
    """(checkpoint prefix, .meta path) from a prefix or a directory with a ``.meta``."""
    if os.path.isdir(path):
        prefix = artefacts.latest_checkpoint(path)  # this folder's files, whatever the state file says
        if prefix is None:
            raise RecalibrateError(f"{WHERE}: PATH must be a checkpoint prefix or a directory with a "
                                   f"checkpoint and its .meta, got directory {path!r} without a checkpoint")
    else:
        prefix = path[:-len(".index")] if path.endswith(".index") else path
        if path.endswith(".meta"):
            prefix = path[:-len(".meta")]
        if not os.path.isfile(prefix + ".index"):
            raise RecalibrateError(f"{WHERE}: PATH must be a checkpoint prefix (PREFIX.index exists) or a "
                                   f"directory, got {path!r}")
    meta = prefix + ".meta"
    if not os.path.isfile(meta):
        metas = glob.glob(os.path.join(os.path.dirname(prefix) or ".", "*.meta"))
        if len(metas) != 1:
            raise RecalibrateError(f"{WHERE}: PATH needs the graph: {prefix}.meta must exist (or exactly "
                                   f"one .meta beside it), got {len(metas)} .meta file(s)")
        meta = metas[0]
    return prefix, meta


def _open(prefix, meta):
    """(graph, session, meta graph): a new graph with the .meta imported (names unchanged), a session
    with the checkpoint's values, and the MetaGraphDef (what the finder reads).

    ``tf1_repro.graph.artefacts`` restores each variable through its own assign ops,
    so none of the user's save/restore ops run. Those assign ops are in the returned graph,
    which is why the finder reads the MetaGraphDef instead (a structural finder may take them
    for writes, e.g. of a renorm layer's gamma).
    """
    from tf1_repro.graph import artefacts  # pylint: disable=import-outside-toplevel
    try:
        graph_only = artefacts.load(meta)
        art = artefacts.Artefact("checkpoint", prefix, graph_only.graph_def, graph_only.meta_graph, prefix)
        return (*art.open(), graph_only.meta_graph)
    except artefacts.ArtefactError as err:
        raise RecalibrateError(f"{WHERE}: {err}") from None


# ---------------------------------------------------------------- feeds

def parse_feed(text):
    """``NAME=VALUE`` -> (NAME, value) (see ``user_feeds.parse_feed``); ``RecalibrateError`` otherwise."""
    try:
        return user_feeds.parse_feed(text)
    except ValueError as err:
        raise RecalibrateError(f"{WHERE}: {err}") from None


@dataclasses.dataclass
class _Feeds:
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


def unbound_mode_inputs(found):
    """{placeholder node name: what it drives} for mode inputs with no known prediction value: the
    keep_prob of a *vanilla* dropout (training ``h * mask``, prediction ``h * keep_prob``), whose
    prediction value is the training keep_prob, which the graph does not hold. From
    ``Findings.unbound_mode_inputs()`` where the finder has it, and from the dropouts' convention."""
    unbound = {}
    drops = {d.keep_prob.get("name"): d for d in found.dropouts if d.keep_prob}
    for mode in getattr(found, "unbound_mode_inputs", lambda: [])():
        drop = drops.get(mode.name)
        unbound[mode.name] = f"vanilla dropout {drop.name}" if drop else f"{mode.role} input"
    for drop in found.dropouts:
        keep = drop.keep_prob or {}
        if drop.convention == "vanilla" and keep.get("source") in ("placeholder", "placeholder_with_default") \
                and keep.get("name"):
            unbound.setdefault(keep["name"], f"vanilla dropout {drop.name}")
    return unbound


def _plan_feeds(graph, data, found, user_feeds, fetch_tensors, labels):
    """Which tensors get constants, which get data; RecalibrateError for what cannot be fed.

    Mode inputs get their prediction values (``found.prediction_feeds()``); a vanilla dropout's
    keep_prob has none (``unbound_mode_inputs``) and must come from ``--feed``.
    """
    constant = {}
    unbound = unbound_mode_inputs(found)
    for name, value in found.prediction_feeds().items():
        if name.split(":")[0] not in unbound:
            constant[_tensor(graph, name, "a mode input")] = value
    given = set()
    for name, value in (user_feeds or {}).items():
        tensor = _tensor(graph, name, "--feed NAME")
        try:
            constant[tensor] = np.asarray(value, tensor.dtype.as_numpy_dtype)
        except (TypeError, ValueError):
            raise RecalibrateError(f"{WHERE}: --feed {name} must be a {tensor.dtype.name}, got "
                                   f"{value!r}") from None
        given.add(tensor)
    above = _ancestors([t.op for t in fetch_tensors], control=True)
    for name, what in sorted(unbound.items()):
        tensor = _tensor(graph, name, "a mode input")
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
        return _Feeds(constant, by_key, labels, optional, given)
    for key in data.arrays:  # inputs with a default (PlaceholderWithDefault) that the data gives
        if key not in by_key and key.split(":")[0] in optional:
            by_key[key] = optional[key.split(":")[0]]
    if not by_key:
        raise RecalibrateError(f"{WHERE}: --data must hold an input of the BN layers, got keys "
                               f"{', '.join(data.keys)}, none of them a placeholder above a BN layer")
    if labels and labels not in data.arrays:
        raise RecalibrateError(f"{WHERE}: --labels must be a key of the data, got {labels!r} "
                               f"(keys: {', '.join(data.keys)})")
    sizes = {key: _array(data.arrays[key]).shape for key in list(by_key) + ([labels] if labels else [])}
    for key, shape in sizes.items():
        if len(shape) == 0 or shape[0] != next(iter(sizes.values()))[0]:
            raise RecalibrateError(f"{WHERE}: data arrays must share their first (sample) dimension, "
                                   f"got {dict((k, tuple(s)) for k, s in sizes.items())}")
    for key, tensor in by_key.items():
        _check_shape(key, sizes[key], tensor, "array")
    return _Feeds(constant, by_key, labels, given=given)


def _check_shape(key, shape, tensor, what):
    wanted = tensor.shape
    if wanted.rank is not None and not tf.TensorShape(shape).is_compatible_with(wanted):
        raise RecalibrateError(
            f"{WHERE}: data {what} {key!r} has shape {tuple(shape)}, but placeholder {tensor.name} takes "
            f"{_shape_text(wanted)}")


def _shape_text(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape.as_list()) + ")"


def _checked_sum(key, array, offset):
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


# ---------------------------------------------------------------- passes

@dataclasses.dataclass
class _Pass:
    name: str
    samples: int = 0
    batches: int = 0
    seconds: float = 0.0
    fingerprint: float = 0.0


def _run_pass(sess, data, feeds, fetches, batch_size, max_samples, name, on_batch, bar_factory, total):
    """One pass over the data in prediction mode; ``on_batch(results, batch)`` per batch.

    One ``session.run`` per batch through ``Session.make_callable`` (the fetch and feed
    structure is resolved once, at the first batch, not per batch).
    """
    record = _Pass(name)
    started = time.perf_counter()
    flat = tf.nest.flatten(fetches)
    constants = list(feeds.constant.items())
    constant_values = [v for _, v in constants]
    run, data_items = None, None
    required = list(feeds.data) + ([feeds.labels] if feeds.labels else [])
    with bar_factory(name, total=total, unit="batch") as bar:
        for batch in _batches(data, required, batch_size, max_samples, feeds.optional):
            size = len(next(iter(batch.values())))
            if size == 0:
                continue
            if run is None:
                data_items = list(feeds.data.items()) + [(k, feeds.optional[k]) for k in batch
                                                         if k in feeds.optional and k not in feeds.data]
                run = sess.make_callable(flat, feed_list=[t for t, _ in constants] + [t for _, t in data_items])
            values = []
            for key, tensor in data_items:
                if key not in batch:
                    raise RecalibrateError(f"{WHERE}: --data {data.spec} batch {record.batches} has no key "
                                           f"{key!r}, which the first batch had")
                value = batch[key]
                if record.batches == 0 or data.kind == "generator":
                    _check_shape(key, value.shape, tensor, "batch" if data.kind == "generator" else "array")
                record.fingerprint += _checked_sum(key, value, record.samples)
                values.append(value if value.dtype == tensor.dtype.as_numpy_dtype
                              else value.astype(tensor.dtype.as_numpy_dtype))
            on_batch(tf.nest.pack_sequence_as(fetches, run(*constant_values, *values)), batch)
            record.samples += size
            record.batches += 1
            bar.update(1)
    record.seconds = time.perf_counter() - started
    return record


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1, **info):
        pass


def _no_progress(desc, total=None, unit="it", initial=0):  # pylint: disable=unused-argument
    """A progress factory that shows nothing (``tf1_repro.progress.factory()`` shows a bar)."""
    return _NoBar()


def _accuracy_counter(labels_key):
    state = {"correct": 0, "total": 0}

    def count(predicted, batch):
        labels = np.asarray(batch[labels_key])
        predicted = np.asarray(predicted)
        if predicted.ndim == labels.ndim + 1:
            predicted = predicted.argmax(-1)
        if labels.ndim == predicted.ndim + 1:
            labels = labels.argmax(-1)
        if predicted.shape != labels.shape:
            raise RecalibrateError(f"{WHERE}: --predictions gives shape {predicted.shape} per batch, "
                                   f"--labels {labels.shape}; they must match (class ids or scores)")
        state["correct"] += int((predicted == labels).sum())
        state["total"] += int(labels.size)
    return state, count


def recalibrate(path, data, out, feeds=None, batch_size=DEFAULT_BATCH, max_samples=None, labels=None,
                predictions=None, force=False, progress=None, log=None, find=None):
    """Recalibrate every BN layer of the checkpoint at ``path`` over ``data``; write it to ``out``.

    Args:
      path: checkpoint prefix or directory holding a checkpoint and its ``.meta``.
      data: ``FILE.npz`` / ``FILE.npy`` / ``module.py:FUNC`` (imports and calls user code), or a ``Data``.
      out: directory for the new checkpoint (refused if it holds one, unless ``force``).
      feeds: {placeholder name: value} for inputs neither the data nor the finder covers.
      batch_size: samples per run for .npz/.npy data (a FUNC's batches are used as yielded).
      max_samples: use at most this many samples.
      labels, predictions: a data key and a tensor name: accuracy before and after.
      progress: a progress factory ``make(desc, total, unit) -> bar`` such as
        ``tf1_repro.progress.factory()`` (None: no display).
      find: ``find(meta_graph) -> Findings`` (default ``tf1_repro.tools.finder.find``), given the
        checkpoint's MetaGraphDef; node names are those of the graph the passes run.

    Returns the report (a JSON-able dict). Raises RecalibrateError (nothing written).
    """
    if find is None:
        find = finder.find
    _check_settings(batch_size, max_samples, labels, predictions)
    bar_factory = progress or _no_progress
    log = log or (lambda line: None)
    prefix, meta = resolve_checkpoint(path)
    _check_out(out, prefix, force)
    data = data if isinstance(data, Data) else open_data(data)
    reader = tf.train.load_checkpoint(prefix)
    graph, sess, meta_graph = _open(prefix, meta)
    notes = []
    try:
        found = find(meta_graph)
        control_flow = tf2_control_flow(graph, found)
        if control_flow:
            raise RecalibrateError(f"{WHERE}: {control_flow}; nothing written")
        if not found.bn_layers:
            raise RecalibrateError(f"{WHERE}: PATH must hold a graph with BN layers, got none in {meta}")
        layers = _prepare_layers(graph, reader, found, notes)
        level = depths(graph, [layer.info for layer in layers])
        for layer in layers:
            layer.depth = level[layer.info.name]
        layers.sort(key=lambda l: (l.depth, l.info.name))
        predictions_tensor = _tensor(graph, predictions, "--predictions") if predictions else None
        _build(graph, layers)
        fetch_tensors = [graph.get_tensor_by_name(name) for l in layers for site in l.sites
                         for name in site] + \
            ([predictions_tensor] if predictions_tensor is not None else [])
        unsafe = safety.unsafe_to_run(graph, fetch_tensors)
        if unsafe:
            raise RecalibrateError(f"{WHERE}: {safety.refusal(unsafe, 'the BN inputs')}")
        plan = _plan_feeds(graph, data, found, feeds, fetch_tensors, labels)
        graph.finalize()
        report = _passes(sess, data, plan, layers, predictions_tensor, batch_size, max_samples,
                         bar_factory, log)
    finally:
        sess.close()
    report.update({"source": prefix, "meta": meta, "data": data.spec, "out": out, "notes": notes,
                   "feeds": plan.report()})
    if not report["checks_ok"]:
        worst = next(l for l in report["layers"] if not l["check"]["holds"])
        raise RecalibrateError(
            f"{WHERE}: the check failed for BN layer {worst['name']} (output mean off by "
            f"{worst['check']['mean_error']:.3g}, tolerance {worst['check']['mean_tolerance']:.3g}; variance "
            f"off by {worst['check']['variance_error']:.3g}, tolerance "
            f"{worst['check']['variance_tolerance']:.3g}); "
            f"nothing written")
    new_values = {}
    for layer in layers:
        new_values[layer.mean_key] = layer.new_mean.reshape(layer.shape).astype(layer.dtype)
        new_values[layer.var_key] = layer.new_var.reshape(layer.shape).astype(layer.dtype)
    report["written"] = write_checkpoint(prefix, meta, out, new_values, force)
    return report


def _check_settings(batch_size, max_samples, labels, predictions):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RecalibrateError(f"{WHERE}: --batch-size must be a positive integer, got {batch_size!r}")
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples < 2):
        raise RecalibrateError(f"{WHERE}: --max-samples must be an integer >= 2 (a variance needs two "
                               f"values), got {max_samples!r}")
    if bool(labels) != bool(predictions):
        raise RecalibrateError(f"{WHERE}: --labels and --predictions go together, got only "
                               f"{'--labels' if labels else '--predictions'}")


def _passes(sess, data, plan, layers, predictions, batch_size, max_samples, bar_factory, log):
    """Depth by depth: moments, then load them; then the check pass. Returns the report."""
    total_batches = None
    if data.kind != "generator":
        n = len(_array(data.arrays[next(iter(plan.data))])) if plan.data else 0
        n = min(n, max_samples) if max_samples else n
        total_batches = -(-n // batch_size)
    passes = []
    accuracy = {}
    deepest = max(layer.depth for layer in layers)
    for depth in range(deepest + 1):
        group = [layer for layer in layers if layer.depth == depth]
        for layer in group:
            layer.site_moments = [ChannelMoments(layer.channels) for _ in layer.sites]
        fetches = {"moments": [layer.input_moments for layer in group]}
        state, count = _accuracy_counter(plan.labels) if (depth == 0 and predictions is not None) \
            else (None, None)
        if count:
            fetches["predictions"] = predictions

        def on_batch(results, batch, group=group, count=count):
            for layer, per_site in zip(group, results["moments"]):
                for moments, m in zip(layer.site_moments, per_site):
                    moments.merge(m["count"], m["mean"], m["m2"], m["absmax"])
            if count:
                count(results["predictions"], batch)
        record = _run_pass(sess, data, plan, fetches, batch_size, max_samples,
                           f"pass {depth + 1}/{deepest + 2}: depth {depth} ({len(group)} layer(s))",
                           on_batch, bar_factory, total_batches)
        _check_pass(passes, record, data)
        passes.append(record)
        if state:
            accuracy["before"] = state["correct"] / max(state["total"], 1)
        for layer in group:
            layer.moments = ChannelMoments.pooled(layer.site_moments)
            if layer.moments.count < 2:
                raise RecalibrateError(
                    f"{WHERE}: BN layer {layer.info.name} needs at least 2 values per channel for a "
                    f"variance, got {layer.moments.count} ({record.samples} sample(s))")
            if not (np.all(np.isfinite(layer.moments.mean)) and np.all(np.isfinite(layer.moments.m2))):
                raise RecalibrateError(f"{WHERE}: BN layer {layer.info.name}'s input is not finite over the "
                                       f"data (the model, not the data, produced NaN/inf)")
            layer.new_mean = layer.moments.mean
            layer.new_var = layer.moments.variance(layer.ddof)
            stored = {layer.mean_value: layer.new_mean.reshape(layer.shape).astype(layer.dtype),
                      layer.var_value: layer.new_var.reshape(layer.shape).astype(layer.dtype)}
            sess.run(layer.assign, stored)
        log(f"pass {depth + 1}: {record.samples} samples, {record.seconds:.2f} s")
    # check pass: prediction-mode outputs of every recalibrated layer (and accuracy after)
    for layer in layers:
        layer.out_moments = [ChannelMoments(layer.channels) for _ in layer.sites]
    fetches = {"outputs": [layer.output_moments for layer in layers]}
    state, count = _accuracy_counter(plan.labels) if predictions is not None else (None, None)
    if count:
        fetches["predictions"] = predictions

    def on_check(results, batch):
        for layer, per_site in zip(layers, results["outputs"]):
            for moments, m in zip(layer.out_moments, per_site):
                moments.merge(m["count"], m["mean"], m["m2"])
        if count:
            count(results["predictions"], batch)
    record = _run_pass(sess, data, plan, fetches, batch_size, max_samples,
                       f"pass {deepest + 2}/{deepest + 2}: check", on_check, bar_factory, total_batches)
    _check_pass(passes, record, data)
    passes.append(record)
    if state:
        accuracy["after"] = state["correct"] / max(state["total"], 1)
    rows = [_layer_report(layer) for layer in layers]
    recal_seconds = sum(p.seconds for p in passes[:-1])
    return {
        "samples": passes[0].samples,
        "layers": [dict(row, samples=passes[0].samples) for row in rows],
        "passes": {"recalibration": deepest + 1, "check": 1, "total": deepest + 2,
                   "per_pass": [{"name": p.name, "samples": p.samples, "batches": p.batches,
                                 "seconds": p.seconds, "samples_per_second": p.samples / p.seconds
                                 if p.seconds else None} for p in passes]},
        "throughput": {"samples_per_second_per_pass": passes[0].samples * (deepest + 1) / recal_seconds
                       if recal_seconds else None,
                       "seconds": sum(p.seconds for p in passes)},
        "accuracy": accuracy or None,
        "checks_ok": all(r["check"]["holds"] for r in rows),
        "check_tolerance": f"{CHECK_ULPS} float32 ulps (u = 2^-24) of each channel's output scale "
                           f"S = |gamma| (max|x| + |m|)/sqrt(v + eps) + |beta|: mean within {CHECK_ULPS} u S, "
                           f"variance within 2 {CHECK_ULPS} u S sqrt(var) + ({CHECK_ULPS} u S)^2",
    }


def _check_pass(passes, record, data):
    if passes and (record.samples != passes[0].samples or record.fingerprint != passes[0].fingerprint):
        raise RecalibrateError(
            f"{WHERE}: --data {data.spec} must give the same data on every pass (FUNC is called once per "
            f"pass), got {record.samples} samples (sum {record.fingerprint:.17g}) after "
            f"{passes[0].samples} (sum {passes[0].fingerprint:.17g})")


def _site_check(layer, moments, out_moments, stored_mean, stored_var):
    """The check of one call: its output's per-channel mean and variance against the closed form."""
    denom = np.sqrt(stored_var + layer.epsilon)
    expected_mean = layer.beta + layer.gamma * (moments.mean - stored_mean) / denom
    expected_var = layer.gamma ** 2 * moments.variance(0) / (stored_var + layer.epsilon)
    scale = np.abs(layer.gamma) * (moments.absmax + np.abs(stored_mean)) / denom + np.abs(layer.beta)
    mean_tol = CHECK_ULPS * UNIT_ROUNDOFF * scale
    var_tol = 2 * mean_tol * np.sqrt(expected_var) + mean_tol ** 2
    mean_err = np.abs(out_moments.mean - expected_mean)
    var_err = np.abs(out_moments.variance(0) - expected_var)
    return {"mean_error": float(mean_err.max()), "mean_tolerance": float(mean_tol[np.argmax(mean_err)]),
            "variance_error": float(var_err.max()), "variance_tolerance": float(var_tol[np.argmax(var_err)]),
            "holds": bool(np.all(mean_err <= mean_tol) and np.all(var_err <= var_tol))}


def relative_change(old, new):
    """(largest |new - old| / |old| over the channels with a finite old != 0, or None; number of
    channels that changed from 0). Channels whose old value is NaN/inf are left out (see
    ``non_finite``)."""
    old, new = np.asarray(old, np.float64), np.asarray(new, np.float64)
    finite = np.isfinite(old)
    nonzero = (old != 0) & finite
    from_zero = int(np.sum((old == 0) & (new != 0)))
    rel = np.abs(new[nonzero] - old[nonzero]) / np.abs(old[nonzero])
    return (float(rel.max()) if rel.size else None), from_zero


def non_finite(values):
    """The channels (indices) whose value is NaN or inf."""
    return [int(i) for i in np.flatnonzero(~np.isfinite(np.asarray(values, np.float64)))]


def _json_values(values):
    """A list for JSON: NaN/inf as None (JSON has no such numbers)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, np.float64)]


def _layer_report(layer):
    """Old/new statistics, the largest changes and the check of one layer (of each call when shared;
    ``check`` is the worst call's)."""
    stored_mean = layer.new_mean.astype(layer.dtype).astype(np.float64)
    stored_var = layer.new_var.astype(layer.dtype).astype(np.float64)
    checks = [_site_check(layer, m, out, stored_mean, stored_var)
              for m, out in zip(layer.site_moments, layer.out_moments)]
    worst = max(checks, key=lambda c: (not c["holds"], c["mean_error"] / max(c["mean_tolerance"], 1e-300),
                                       c["variance_error"] / max(c["variance_tolerance"], 1e-300)))
    std = np.sqrt(layer.moments.variance(0))
    finite_mean = np.isfinite(layer.old_mean)
    mean_change = np.abs(layer.old_mean[finite_mean] - layer.new_mean[finite_mean]) / \
        np.where(std[finite_mean] > 0, std[finite_mean], 1.0)
    var_change, from_zero = relative_change(layer.old_var, layer.new_var)
    n = layer.moments.count
    row = {
        "name": layer.info.name, "kind": layer.info.kind, "depth": layer.depth,
        "input": layer.info.input, "output": layer.info.output,
        "moving_mean": layer.mean_key, "moving_variance": layer.var_key,
        "values_per_channel": n, "channels": layer.channels, "epsilon": layer.epsilon,
        "variance_stored": "unbiased M2/(n-1)" if layer.ddof else "biased M2/n",
        "unbiased_over_biased": n / (n - 1),
        "old_mean": _json_values(layer.old_mean), "new_mean": layer.new_mean.tolist(),
        "old_variance": _json_values(layer.old_var), "new_variance": layer.new_var.tolist(),
        "largest_mean_change_in_std": float(mean_change.max()) if mean_change.size else None,
        "largest_variance_change_relative": var_change,
        "mean_was_non_finite": non_finite(layer.old_mean),
        "variance_was_non_finite": non_finite(layer.old_var),
        "variance_channels_changed_from_zero": from_zero,
        "check": dict(worst, holds=all(c["holds"] for c in checks)),
    }
    if len(layer.sites) > 1:
        row["calls"] = [{"input": x, "output": y, "values_per_channel": m.count, "check": c}
                        for (x, y), m, c in zip(layer.sites, layer.site_moments, checks)]
    return row


# ---------------------------------------------------------------- writing

def _checkpoint_files(directory):
    state = os.path.join(directory, "checkpoint")
    return sorted(set(glob.glob(os.path.join(directory, "*.index"))) |
                  ({state} if os.path.isfile(state) else set()))


def _check_out(out, prefix, force):
    """Refuse an --out that is a file, the source's directory, or holds a checkpoint (unless force)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise RecalibrateError(f"{WHERE}: --out must be a directory, got {out!r} (a file)")
    if os.path.realpath(out) == os.path.realpath(os.path.dirname(os.path.abspath(prefix))):
        raise RecalibrateError(f"{WHERE}: --out must not be the source checkpoint's directory, got {out!r} "
                               f"(the source is never modified)")
    if os.path.isdir(out) and _checkpoint_files(out) and not force:
        raise RecalibrateError(f"{WHERE}: --out {out!r} already holds a checkpoint "
                               f"({os.path.basename(_checkpoint_files(out)[0])}); pass --force to replace it")
    parent = os.path.abspath(out)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK):
        raise RecalibrateError(f"{WHERE}: --out must be writable, got {out!r} ({parent} is not writable)")


def write_checkpoint(source_prefix, meta, out, new_values, force=False):
    """Write a complete checkpoint in ``out``: ``new_values`` replace those keys, the rest bit for bit.

    Writes PREFIX.index/.data-* (the source's basename), the ``checkpoint`` state
    file and a copy of the ``.meta``, then re-reads everything and verifies it.
    The files are written into a temporary directory first and moved in at the end.
    """
    _check_out(out, source_prefix, force)
    reader = tf.train.load_checkpoint(source_prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    unknown = sorted(set(new_values) - set(shapes))
    if unknown:
        raise RecalibrateError(f"{WHERE}: new values for {unknown[0]!r}, which the checkpoint does not hold")
    base = os.path.basename(source_prefix)
    parent = out if os.path.isdir(out) else os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".recalibrate-", dir=parent)
    try:
        names = sorted(shapes)
        with tf.Graph().as_default() as graph:
            inputs = [tf.placeholder(dtypes[n], shapes[n]) for n in names]
            save = tf.raw_ops.SaveV2(prefix=os.path.join(tmp, base), tensor_names=names,
                                     shape_and_slices=[""] * len(names), tensors=inputs)
            with tf.Session(graph=graph) as sess:
                sess.run(save, {i: new_values[n] if n in new_values else reader.get_tensor(n)
                                for i, n in zip(inputs, names)})
        shutil.copyfile(meta, os.path.join(tmp, base + ".meta"))
        # an absolute folder keeps the paths in the state file relative to it ("model.ckpt-N"): a
        # relative one makes TensorFlow write them relative to the working directory
        tf.train.update_checkpoint_state(os.path.abspath(tmp), base, all_model_checkpoint_paths=[base])
        os.makedirs(out, exist_ok=True)
        if force:
            for old in glob.glob(os.path.join(out, base + ".data-*")):
                os.remove(old)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _verify_written(reader, os.path.join(out, base), meta, new_values, out)


def _verify_written(source, prefix, meta, new_values, out):
    """Re-read the written checkpoint: replaced keys hold the new values, all others the source's bytes."""
    written = tf.train.load_checkpoint(prefix)
    names = set(source.get_variable_to_shape_map())
    if set(written.get_variable_to_shape_map()) != names:
        raise RecalibrateError(f"{WHERE}: the written checkpoint {prefix} has other variables than the source")
    copied = 0
    for name in names:
        expected = new_values[name] if name in new_values else source.get_tensor(name)
        got = written.get_tensor(name)
        if np.asarray(got).dtype != np.asarray(expected).dtype or \
                np.asarray(got).tobytes() != np.asarray(expected).tobytes():
            raise RecalibrateError(f"{WHERE}: verification failed: {name} in {prefix} differs")
        copied += name not in new_values
    with open(meta, "rb") as a, open(prefix + ".meta", "rb") as b:
        if a.read() != b.read():
            raise RecalibrateError(f"{WHERE}: verification failed: {prefix}.meta differs from {meta}")
    latest = tf.train.latest_checkpoint(out)
    if latest is None or os.path.realpath(latest) != os.path.realpath(prefix):
        raise RecalibrateError(f"{WHERE}: verification failed: tf.train.latest_checkpoint({out}) is {latest}")
    return {"prefix": prefix, "replaced": sorted(new_values), "copied_bit_for_bit": copied,
            "latest_checkpoint": latest}


# ---------------------------------------------------------------- report

def format_report(report):
    """The report as text."""
    passes = report["passes"]
    lines = [f"recalibrated {report['source']} over {report['samples']:,} samples of {report['data']}",
             f"  {len(report['layers'])} BN layer(s), {passes['recalibration']} recalibration pass(es) "
             f"+ 1 check pass; {report['throughput']['samples_per_second_per_pass']:,.0f} samples/s "
             f"per recalibration pass",
             f"  {'layer':<28} {'kind':<20} {'depth':>5} {'values/ch':>10}  {'mean change':>11}  "
             f"{'var change':>10}  stored variance   check"]
    if report.get("feeds"):
        lines.insert(2, "  prediction feeds: " + ", ".join(
            f"{f['name']}={_feed_text(f['value'])}{' (--feed)' if f['source'] == '--feed' else ''}"
            for f in report["feeds"]))
    for row in report["layers"]:
        lines.append(f"  {row['name']:<28} {row['kind']:<20} {row['depth']:>5} {row['values_per_channel']:>10,}  "
                     f"{_mean_change_text(row):>11}  {_change_text(row):>10}  "
                     f"{row['variance_stored']:<17} {'✓' if row['check']['holds'] else '✗'} "
                     f"(mean {row['check']['mean_error']:.2g} ≤ {row['check']['mean_tolerance']:.2g}, "
                     f"var {row['check']['variance_error']:.2g} ≤ {row['check']['variance_tolerance']:.2g})")
        for call in row.get("calls", []):
            c = call["check"]
            lines.append(f"      call on {call['input']} ({call['values_per_channel']:,} values/ch): "
                         f"{'✓' if c['holds'] else '✗'} (mean {c['mean_error']:.2g} ≤ {c['mean_tolerance']:.2g}, "
                         f"var {c['variance_error']:.2g} ≤ {c['variance_tolerance']:.2g})")
        k = min(4, len(row["new_mean"]))
        lines.append(f"      mean {_few(row['old_mean'], k)} -> {_few(row['new_mean'], k)}   "
                     f"variance {_few(row['old_variance'], k)} -> {_few(row['new_variance'], k)}")
        for what, key in (("mean", "mean_was_non_finite"), ("variance", "variance_was_non_finite")):
            if row.get(key):
                lines.append(f"      moving {what} was non-finite (NaN/inf) in channel(s) "
                             f"{', '.join(map(str, row[key][:8]))}{', …' if len(row[key]) > 8 else ''}: "
                             f"replaced by the data's")
        if row["variance_stored"].startswith("unbiased"):
            lines.append(f"      fused kernel: stored M2/(n-1), the Bessel-corrected variance its EMA "
                         f"averages; M2/(n-1) = {row['unbiased_over_biased']:.7f} x M2/n")
    if report.get("accuracy"):
        acc = report["accuracy"]
        lines.append(f"  accuracy over the data: {acc['before']:.4f} before -> {acc['after']:.4f} after")
    lines.append(f"  check: prediction-mode outputs have per-channel mean beta and variance "
                 f"gamma^2 var/(var+eps) within {CHECK_ULPS} float32 ulps of the output scale")
    for note in report.get("notes", []):
        lines.append(f"  note: {note}")
    if report.get("written"):
        w = report["written"]
        lines.append(f"  wrote {w['prefix']} (+ .meta, checkpoint): {len(w['replaced'])} statistics "
                     f"replaced, {w['copied_bit_for_bit']} variables copied bit for bit (verified)")
    return "\n".join(lines)


def _mean_change_text(row):
    """The largest mean change in standard deviations, or "was non-finite" when a channel's old was."""
    if row.get("mean_was_non_finite"):
        return "was non-finite"
    change = row["largest_mean_change_in_std"]
    return "-" if change is None else f"{change:.3g}sd"


def _change_text(row):
    """The largest relative variance change |new - old| / |old|, "was non-finite" when a channel's
    old was NaN/inf, or "from 0" when a channel's old is 0."""
    if row.get("variance_was_non_finite"):
        return "was non-finite"
    if row.get("variance_channels_changed_from_zero"):
        return "from 0"
    change = row["largest_variance_change_relative"]
    return "-" if change is None else f"{change * 100:.3g}%"


def _feed_text(value):
    if isinstance(value, list):
        return f"[{len(value)} values]" if len(value) > 4 else str(value)
    return str(value)


def _few(values, k):
    text = ", ".join(("non-finite" if v is None else f"{v:.4g}") for v in values[:k])
    return f"[{text}{', ...' if len(values) > k else ''}]"
