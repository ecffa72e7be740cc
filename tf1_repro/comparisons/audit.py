"""Behaviour audit of any BN builder ``FUNC(inputs, training)``, by probing, not by names.

The audit builds the layer in a fresh graph (graph seed = ``seed``) on a float32
placeholder and a scalar ``tf.bool`` placeholder, runs the initialisers once and
keeps those values: every probe starts by *loading* a known state, never by
re-running the initialisers (random gammas would differ between probes). Then,
from chosen feeds, it learns:

* **where the state changes**: which variables a training run changes with the
  output alone, with ``UPDATE_OPS``, with each other collection of ops, or after
  a separate op that nothing runs (an unconnected op that writes variables);
* **gamma and beta**: among variables no run changes, setting one to 0 makes the
  output constant over the batch (gamma, ``y = gamma * x_hat + beta``); adding 1
  to one adds exactly 1 to the output (beta). While probing they are fixed to
  gamma = 1, beta = 0;
* **the statistics**: per-channel variables (any shape that broadcasts to the
  channel axis: ``(C,)``, ``(1, C)``, ``(1, 1, 1, C)``) that something updates;
  the update verdicts are about those prediction reads (changing them changes
  the prediction output), or, when prediction reads none, about those kept;
* **the update rule**, from three training steps (with the ops the location
  needs) on batches with chosen moments, by fitting ``s_k = d s_{k-1} + (1-d) t_k``
  (plain EMA) or its debiased form ``s_k = sum_j d^(k-j) t_j / sum_j d^(k-j)``,
  with t the batch mean, the biased or the unbiased batch variance;
* **whether prediction uses stored statistics**: with batch statistics the
  prediction output is invariant under ``x -> 3x + 7`` per channel; with stored
  ones it is not;
* **epsilon**, on the prediction path when it reads stored statistics that can be
  loaded: with mean 0 and variance V loaded, the slope of the output in x is
  ``s(V) = gamma / sqrt(V + eps)``, so ``R = (s(0)/s(V))^2 = (V + eps)/eps`` and
  ``eps = V / (R - 1)`` (gamma cancels), with V = eps (a first estimate) so eps
  is half of V + eps. Otherwise on the training path: batches of ``±delta``
  have batch variance ``delta^2`` and slope ``gamma / sqrt(delta^2 + eps)``; two
  deltas with ``delta^2 = eps/16`` and ``eps`` give ``R = (s_a/s_b)^2`` and
  ``eps = (d_b^2 - R d_a^2)/(R - 1)``; a second pair (eps/4, 4 eps) must agree.
  ``epsilon_precision`` is the relative uncertainty: the larger of the spread
  of the estimates (channels, pairs) and float32 rounding propagated through R;
* whether prediction changes the statistics, depends on the batch, and whether
  the statistics are trainable. When a prediction run both updates and reads
  them, one state is loaded and the same batch predicted 30 times, and each
  sample alone: any differing output makes ``inference_batch_independent``
  false (measured); none leaves it None, the race explained either way.

Statistics that prediction reads but nothing updates (``tf.layers``
batch normalization called with ``training`` left at its default False) are
reported as kept, read and never updated: their inits and epsilon are measured
on the prediction path; the update rule is None with why.

A training step whose run writes a variable and also reads it with neither
ordered before the other (an EMA apply placed beside the assigns whose
variables it reads, in one ``tf.control_dependencies``) is a race: found on the
graph (ops in tf.cond branches the feed does not take left out), reported, and
measured read-after-write (the step runs once to learn what it writes, then
again from the same state with those values loaded), so the same builder gives
the same report in every process.

The structural finder (``finder.find``) says where things are; the audit checks
its gamma, beta and update location against what the probes measure (a
disagreement is a warning; the measured answer is reported), names its update
ops in the warnings, and takes its moving mean and variance for the prediction
path when the probes cannot tell them apart. A verdict that cannot be measured
is None with a line in ``differences`` saying why.
"""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.tools import finder
from tf1_repro.graph import walk
from tf1_repro.graph.ops import FUNCTION_CALL_OPS, PASS_THROUGH_OPS, VARIABLE_OPS, WRITE_OPS
from tf1_repro.comparisons import implementations
from tf1_repro.comparisons import loader

ARTICLE_BEHAVIOUR = {"updates_on_training": True, "updates_need_update_ops": False,
                     "updates_on_inference": False, "inference_batch_independent": True,
                     "moving_stats_trainable": False}
KEYS = ("decay", "epsilon", "epsilon_precision", "moving_mean_init", "moving_variance_init",
        "moving_variance_estimator", "zero_debias", "updates_on_training", "updates_need_update_ops",
        "updates_on_inference", "inference_batch_independent", "moving_stats_trainable",
        "update_location", "statistics_used_at_prediction", "matches_article", "differences",
        "warnings")
WHERE = "audit"
_FLOAT32_ULP = 2.0 ** -23
_STANDARD_KEYS = {getattr(tf.GraphKeys, k) for k in dir(tf.GraphKeys)
                  if k.isupper() and isinstance(getattr(tf.GraphKeys, k), str)}


class _Layer:
    """The built layer in its graph and session, with probing helpers."""

    def __init__(self, func, input_shape, python_bool, seed):
        self.shape = tuple(input_shape)
        self.graph = tf.Graph()
        self.notes = []
        with self.graph.as_default():
            tf.set_random_seed(seed)
            self.x = tf.placeholder(tf.float32, (None,) + self.shape[1:], name="inputs")
            self.training = tf.placeholder(tf.bool, [], name="training")
            if python_bool:
                self.out_train = self._call(func, True, "FUNC(inputs, True)")
                first = set(self._variables())
                self.out_infer = self._call(func, False, "FUNC(inputs, False)")
                separate = [v for v in self._variables() if v not in first]
                if separate:
                    self.notes.append(
                        f"the two calls made separate variables ({', '.join(sorted(separate)[:4])}"
                        f"{', ...' if len(separate) > 4 else ''}): prediction never sees the trained "
                        f"statistics; share them with tf.variable_scope(..., reuse=tf.AUTO_REUSE)")
            else:
                self.out_train = self.out_infer = self._call(func, self.training, "FUNC(inputs, training)")
            user_ops = list(self.graph.get_operations())
            self.variables = self.graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)
            self.names = [v.op.name for v in self.variables]
            self.trainable = {v.op.name for v in self.graph.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES)}
            self.update_ops = self.graph.get_collection(tf.GraphKeys.UPDATE_OPS)
            self.collections = self._custom_collections()
            self._feeds = [v.initializer.inputs[1] for v in self.variables]
            self._loaders = [v.initializer for v in self.variables]
            init = tf.global_variables_initializer()
        self.separate_ops = self._sinks(user_ops)
        self.graph.finalize()
        self.sess = tf.Session(graph=self.graph)
        self.sess.run(init)  # once: every probe loads a state, never re-runs the initialisers
        self.initial = self.values()
        self._preds = {}

    def _variables(self):
        return [v.op.name for v in self.graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)]

    def _call(self, func, training, describe):
        out = loader.call(func, (self.x, training), WHERE, describe)
        if not isinstance(out, tf.Tensor) or not out.shape.is_compatible_with(self.x.shape):
            raise loader.BuilderError(
                f"{WHERE}: {describe} must return the layer's output, a tensor shaped like its "
                f"inputs {self.x.shape}, got {type(out).__name__}"
                f"{' of shape ' + str(out.shape) if isinstance(out, tf.Tensor) else ''}")
        return out

    def _custom_collections(self):
        """{name: [ops/tensors]} for every collection of ops that is not one of TF's own."""
        found = {}
        for key in self.graph.get_all_collection_keys():
            if not isinstance(key, str) or key in _STANDARD_KEYS:
                continue
            items = [i for i in self.graph.get_collection(key)
                     if isinstance(i, (tf.Operation, tf.Tensor)) and i.graph is self.graph]
            if items:
                found[key] = items
        return found

    def _sinks(self, user_ops):
        """Ops of the builder that nothing consumes, that write variables (themselves or above),
        and that neither output, UPDATE_OPS nor another collection runs: ops run separately."""
        consumers = set()
        for op in self.graph.get_operations():
            consumers.update(t.op for t in op.inputs)
            consumers.update(op.control_inputs)
        covered = walk.ancestors([self.out_train.op, self.out_infer.op]
                             + [_op(i) for i in self.update_ops]
                             + [_op(i) for items in self.collections.values() for i in items])
        sinks = []
        for op in user_ops:
            if op in consumers or op in covered or op.type in ("Placeholder", "Const", "VarHandleOp",
                                                               "VariableV2"):
                continue
            if walk.any_ancestor([op], lambda a: a.type in WRITE_OPS):
                sinks.append(op)
        return sinks

    def races(self, fetches, training):
        """{variable: sorted reader names} for the variables one run of ``fetches`` (``training``
        fed) both writes and reads with no order between the write and the read (neither depends
        on the other): which value the read sees then depends on thread timing. Ops in a tf.cond
        branch the feed does not take never run and are left out."""
        live, seen, stack = [], set(), [_op(f) for f in fetches]
        while stack:  # the ops the run needs, never through a branch it does not take
            op = stack.pop()
            if op in seen or not self._taken(op, training):
                continue
            seen.add(op)
            live.append(op)
            stack.extend(t.op for t in op.inputs)
            stack.extend(op.control_inputs)
        writes, reads = {}, {}
        for op in live:
            if op.type in WRITE_OPS and op.inputs:
                target = _variable_of(op.inputs[0])
                if target is not None:
                    writes.setdefault(target.name, []).append(op)
                continue
            if op.type in _NOT_READS or not op.outputs or any(_is_reference(t.dtype) for t in op.outputs):
                continue  # passes the reference on (or only asks about the variable)
            for t in op.inputs:
                target = _variable_of(t) if _is_reference(t.dtype) else None
                if target is not None:
                    reads.setdefault(target.name, []).append(op)
        found = {}
        for name in sorted(set(writes) & set(reads)):
            for write in writes[name]:
                above = walk.ancestors([write])
                racing = [r for r in reads[name] if r not in above
                          and not walk.any_ancestor([r], lambda a, w=write: a is w)]
                if racing:
                    found.setdefault(name, set()).update(r.name for r in racing)
        return {name: sorted(readers) for name, readers in found.items()}

    def _taken(self, op, training):
        """False when ``op`` sits in a tf.cond branch that this feed does not take."""
        context = op._get_control_flow_context()  # pylint: disable=protected-access
        while context is not None:
            pred, branch = getattr(context, "pred", None), getattr(context, "branch", None)
            if pred is not None and branch is not None:
                while not self.graph.is_fetchable(pred) and pred.op.type == "Identity":
                    pred = pred.op.inputs[0]  # tf.cond's pred_id: the pred it copies is fetchable
                key = (pred.name, training)
                if key not in self._preds:
                    try:
                        self._preds[key] = bool(self.sess.run(pred, {self.x: np.zeros(
                            (2,) + self.shape[1:], np.float32), self.training: training}))
                    except (tf.errors.OpError, ValueError, TypeError):
                        self._preds[key] = None  # unknown: counted as taken
                if self._preds[key] is not None and self._preds[key] != bool(branch):
                    return False
            context = getattr(context, "outer_context", None)
        return True

    def values(self):
        return dict(zip(self.names, self.sess.run(self.variables)))

    def load(self, values):
        self.sess.run(self._loaders, {f: values[n] for f, n in zip(self._feeds, self.names)})

    def run(self, batch, training, extra=()):
        out = self.out_train if training else self.out_infer
        return self.sess.run([out] + list(extra), {self.x: batch, self.training: training})[0]

    def run_separately(self, ops, batch, training):
        self.sess.run(list(ops), {self.x: batch, self.training: training})


def _op(item):
    return item if isinstance(item, tf.Operation) else item.op


# Ops that take a variable's reference without reading its value (or call functions whose reads
# this walk cannot see).
_NOT_READS = ("IsVariableInitialized", "VarIsInitializedOp", "VariableShape") + FUNCTION_CALL_OPS
_REFERENCE_PASSING = PASS_THROUGH_OPS[:1] + ("RefIdentity", "Switch", "RefSwitch", "Enter", "RefEnter")


def _is_reference(dtype):
    return dtype._is_ref_dtype or dtype.base_dtype == tf.resource  # pylint: disable=protected-access


def _variable_of(tensor):
    """The variable op a reference (ref or resource) tensor refers to, through ops that pass the
    reference on; None when it is not one."""
    op = tensor.op
    while op.type not in VARIABLE_OPS:
        if op.type not in _REFERENCE_PASSING or not op.inputs or not _is_reference(op.inputs[0].dtype):
            return None
        op = op.inputs[0].op
    return op


def _batch(shape, means, variances, rng):
    """A float32 batch whose per-channel mean and biased variance are exactly as asked (in float64)."""
    z = rng.standard_normal(shape)
    axes = tuple(range(len(shape) - 1))
    z = (z - z.mean(axes)) / z.std(axes)
    return (means + np.sqrt(variances) * z).astype(np.float32)


def _moments(batch):
    b = batch.astype(np.float64)
    axes = tuple(range(b.ndim - 1))
    n = int(np.prod(b.shape[:-1]))
    return b.mean(axes), b.var(axes), b.var(axes) * n / (n - 1)


def _fit(states, targets):
    """Best of plain / debiased EMA for shadows s0..s3 and targets t1..t3: (error, decay, debiased)."""
    s0, s1, s2, s3 = states
    t1, t2, t3 = targets
    scale = np.maximum(np.abs(np.array(targets)).max(0), 1e-6)
    fits = []
    with np.errstate(divide="ignore", invalid="ignore"):
        d = float(np.median((s2 - t2) / (s1 - t2)))
        pred = [d * s0 + (1 - d) * t1, None, d * s2 + (1 - d) * t3]
        fits.append((max(np.abs(pred[0] - s1).max(), np.abs(pred[2] - s3).max()) / scale.max(), d, False))
        d = float(np.median((t2 - s2) / (s2 - t1)))
        pred3 = (d * d * t1 + d * t2 + t3) / (1 + d + d * d)
        fits.append((max(np.abs(s1 - t1).max(), np.abs(pred3 - s3).max()) / scale.max(), d, True))
    fits = [f for f in fits if np.isfinite(f[0]) and 0.0 <= f[1] < 1.0]
    return min(fits) if fits else (np.inf, None, None)


def audit(func, input_shape=(8, 4), python_bool=False, seed=0):
    """The audit report (a dict with ``KEYS``); raises ``loader.BuilderError`` if FUNC won't build."""
    if len(input_shape) < 2 or input_shape[0] < 2 or input_shape[0] % 2:
        raise ValueError(f"{WHERE}: --input-shape must be N,...,C with rank >= 2 and an even batch "
                         f"size N >= 2, got {','.join(map(str, input_shape))}")
    layer = _Layer(func, input_shape, python_bool, seed)
    try:
        return _probe(layer, np.random.default_rng(seed))
    finally:
        layer.sess.close()


class _State:
    """Known states to load: the initial values, and the base (gamma = 1, beta = 0)."""

    def __init__(self, layer, channels):
        self.layer, self.channels = layer, channels
        self.initial = layer.initial
        self.base = dict(self.initial)

    def with_values(self, state, **flat):
        """``state`` with per-channel variables replaced by (C,) vectors or scalars, reshaped."""
        out = dict(state)
        for name, value in flat.items():
            out[name] = np.broadcast_to(np.asarray(value, np.float64).reshape(-1), (self.channels,)) \
                .reshape(self.initial[name].shape).astype(self.initial[name].dtype)
        return out


def _per_channel(value, channels):
    """One value per channel in any layout that broadcasts: (C,), (1, C), (1, 1, 1, C) and the
    channels-first (1, C, 1, 1) of code that transposes to NCHW inside the layer."""
    shape = np.shape(value)
    return (len(shape) >= 1 and int(np.prod(shape)) == channels and channels in shape
            and sum(d != 1 for d in shape) <= 1
            and np.issubdtype(np.asarray(value).dtype, np.floating))


def _changed(before, after):
    return {k for k in after if not np.array_equal(after[k], before[k])}


def _probe(layer, rng):
    shape, channels = layer.shape, layer.shape[-1]
    c = np.arange(channels)
    report = dict.fromkeys(KEYS)
    warnings, differences = list(layer.notes), []
    states = _State(layer, channels)
    initial = states.initial
    per_channel = [n for n in layer.names if _per_channel(initial[n], channels)]
    probe = _batch(shape, 5.0 + c, 4.0 * (1 + 0.1 * c), rng)

    # 1. Where does the state change: with the output, UPDATE_OPS, a collection, a separate op?
    mechanisms = _mechanisms(layer, initial, probe, channels)
    changed_anywhere = set().union(*(m["changed"] for m in mechanisms))
    changed_by_training = set().union(*(m["changed"] for m in mechanisms
                                        if m["location"] in ("output", "UPDATE_OPS")))

    # 2. Gamma and beta among the variables nothing changes; fixed to 1 and 0 from here on.
    gamma, beta = _affine_parameters(layer, states, probe, [n for n in per_channel
                                                            if n not in changed_anywhere])
    states.base = states.with_values(initial, **{n: 1.0 for n in gamma}, **{n: 0.0 for n in beta})
    structure = _structure(layer, warnings)
    for found in structure:  # where the finder says they are, checked against what they do
        for role, probed in (("gamma", gamma), ("beta", beta)):
            named = getattr(found, role)
            if named in layer.names and named not in probed:
                warnings.append(f"the structural finder names {named} as {role}, but it does not act "
                                f"as one on the output (the probes used {', '.join(probed) or 'none'})")

    # 3. Which per-channel variables does prediction read; which are the statistics?
    query = _batch(shape, 1.0, 2.0, rng)
    reads = _prediction_reads(layer, states.base, query, [n for n in per_channel
                                                          if n not in gamma + beta])
    candidates = [n for n in per_channel if n in changed_anywhere]
    read_stats = [n for n in candidates if n in reads]
    if not candidates:  # kept and read at prediction, but nothing updates them (training left False)
        read_stats = [n for n in reads if n not in layer.trainable]
    stats = read_stats or candidates
    if not structure and (gamma or stats):
        warnings.append("the structural finder found no BN layer in this graph, so doctor, "
                        "recalibrate, to-inference and migrate would not see this layer; the verdicts "
                        "here come from the probes alone")
    location = next((m for m in mechanisms if set(stats) & m["changed"]), None)
    report["update_location"] = location["location"] if location else None
    report["updates_on_training"] = bool(set(stats) & mechanisms[0]["changed"])
    report["updates_need_update_ops"] = bool(
        not report["updates_on_training"] and location is not None and location["location"] == "UPDATE_OPS")
    structural = sorted({f.update_location for f in structure if f.update_location})
    if location and structural and location["location"].split(":")[0] not in \
            {where.split(":")[0] for where in structural}:
        warnings.append(f"the structural finder places the updates at {', '.join(structural)}, but the "
                        f"statistics move only with {location['location']} (reported)")
    others = sorted(changed_by_training - set(stats))
    if read_stats and others and not set(read_stats) & changed_by_training:  # e.g. two-stage statistics
        warnings.append(f"training also changes {', '.join(others)}, which prediction does not read; "
                        f"the statistics prediction reads are {', '.join(sorted(read_stats))}")

    # Races in a training step: a variable written and read in one run with no order between.
    raced = location["raced"] if location else {}
    for name, readers in sorted(raced.items()):
        line = (f"a training step writes {name} and reads it ({', '.join(sorted(readers)[:3])}"
                f"{', ...' if len(readers) > 3 else ''}) with no order between the write and the read: "
                f"whether the read sees this batch's value or the previous one depends on thread timing "
                f"(a race; typical of an EMA apply placed beside the assigns it reads, in one "
                f"tf.control_dependencies); the update rule here is measured with the read after the write")
        differences.append(line)
        warnings.append(f"training races its own update of {name}: the moving statistics follow this "
                        f"batch or the previous one, by thread timing")

    # 4. Three training steps with chosen moments; fit the update rule to each statistic.
    means = [5.0 + c, -3.0 + 2 * c, 8.0 - c]
    variances = [4.0 * (1 + 0.1 * c), 0.25 * (1 + 0.1 * c), 9.0 * (1 + 0.1 * c)]
    steps = [_batch(shape, m, v, rng) for m, v in zip(means, variances)]
    layer.load(states.base)
    history = [layer.values()]
    for batch in steps:
        _train_step(layer, batch, location)
        history.append(layer.values())
    trained = history[-1]
    moving_mean, moving_var = _fit_statistics(report, stats, history, [_moments(b) for b in steps],
                                              initial) if candidates else (None, None)
    judged = [n for n in (moving_mean, moving_var) if n] or stats
    report["moving_stats_trainable"] = any(n in layer.trainable for n in judged) if judged else None

    # 5. Prediction: does it use stored statistics, change them, depend on the batch?
    report["statistics_used_at_prediction"] = _uses_stored_statistics(layer, trained, query)
    layer.load(trained)
    layer.run(query, False)  # a prediction runs the output alone, never the train op's UPDATE_OPS
    at_prediction = _changed(trained, layer.values())
    report["updates_on_inference"] = bool(set(stats) & at_prediction)
    if at_prediction - set(stats):
        warnings.append(f"a training=False run also changes {', '.join(sorted(at_prediction - set(stats)))}")
    racy = report["updates_on_inference"] and bool(set(read_stats) & at_prediction)
    if not racy:
        report["inference_batch_independent"] = _batch_independent(layer, trained, query, rng)
    elif _racy_batch_dependence(layer, trained, query):
        report["inference_batch_independent"] = False  # measured: some run read this batch's update

    # 6. Epsilon: on the prediction path when its statistics can be loaded, else on the training path.
    read_mean = read_var = None
    if not report["updates_on_inference"] and report["statistics_used_at_prediction"]:
        read_mean, read_var = _prediction_roles(layer, trained, read_stats, query)
        named = [(f.moving_mean, f.moving_variance) for f in structure
                 if f.moving_mean in read_stats and f.moving_variance in read_stats]
        if not (read_mean and read_var) and len(named) == 1:
            read_mean, read_var = named[0]  # the finder's, when the probe cannot tell them apart
    for key, name in (("moving_mean_init", read_mean), ("moving_variance_init", read_var)):
        if report[key] is None and name:  # read at prediction, though not an EMA of batch moments
            report[key] = _init(initial[name])
    if read_mean and read_var:
        eps = _epsilon_prediction(layer, states, read_mean, read_var)
        path = "prediction"
    else:
        eps = _epsilon_training(layer, states, shape)
        path = "training"
    report["epsilon"], report["epsilon_precision"] = eps if eps else (None, None)

    # 7. Verdict against the article.
    update_ops = sorted({op for f in structure for op in f.update_ops})
    _differences(report, layer, states, probe, stats, candidates, location, racy, path, gamma, beta,
                 differences, warnings, update_ops)
    report["matches_article"] = not differences and not layer.notes
    report["differences"] = differences
    report["warnings"] = warnings
    return report


def _structure(layer, warnings):
    """The structural finder's BN layers in the audit's graph (the finder only reads the graph);
    [] with a warning if it fails, and the probes alone decide."""
    try:
        return finder.find(layer.graph).bn_layers
    except Exception as err:  # pylint: disable=broad-except
        warnings.append(f"the structural finder could not read this graph ({type(err).__name__}: "
                        f"{err}); where things are comes from the probes alone")
        return []


def _mechanisms(layer, initial, probe, channels):
    """[{location, extra (run with the output), after (run separately after it), changed}], in the
    order a user would look: the output alone, UPDATE_OPS, other collections, separate ops."""
    found = [{"location": "output", "extra": [], "after": []}]
    if layer.update_ops:
        found.append({"location": "UPDATE_OPS", "extra": layer.update_ops, "after": []})
    for key, items in sorted(layer.collections.items()):
        found.append({"location": f"collection:{key}", "extra": items, "after": []})
    for op in layer.separate_ops:
        found.append({"location": f"separate-op:{op.name}", "extra": [], "after": [op]})
    usable, separate = [], []
    for mechanism in found:
        mechanism["raced"] = {}
        for fetches in ([layer.out_train] + list(mechanism["extra"]), mechanism["after"]):
            for name, readers in (layer.races(fetches, True) if fetches else {}).items():
                mechanism["raced"].setdefault(name, set()).update(readers)
        layer.load(initial)
        try:
            _train_step(layer, probe, mechanism)
        except (tf.errors.OpError, ValueError, TypeError):
            continue  # ops that cannot run with the layer's feeds alone (or cannot be fetched)
        mechanism["changed"] = _changed(initial, layer.values())
        (separate if mechanism["after"] else usable).append(mechanism)
    layer.load(initial)
    own = usable[0]["changed"] if usable else set()
    separate = [m for m in separate if any(_per_channel(initial[n], channels)
                                           for n in m["changed"] - own)]
    if separate:  # one mechanism: every separate op that writes per-channel state (mean's, variance's)
        after = [m["after"][0] for m in separate]
        raced = {}
        for name, readers in list(layer.races([layer.out_train], True).items()) + \
                list(layer.races(after, True).items()):
            raced.setdefault(name, set()).update(readers)
        usable.append({"location": "separate-op:" + ",".join(op.name for op in after),
                       "extra": [], "after": after, "raced": raced,
                       "changed": set().union(*(m["changed"] for m in separate))})
    return usable


def _train_step(layer, batch, location):
    """One training step (the output with the ops the location needs). With variables the step
    writes and reads unordered (``location["raced"]``), it runs twice: once to learn what it
    writes into them, then again from the same state with those values already loaded, so every
    read sees the written value whichever runs first (the read-after-write order the author
    meant), the same in every run."""
    raced = sorted(location["raced"]) if location else []
    if raced:
        before = layer.values()
        _run_step(layer, batch, location)
        written = layer.values()
        layer.load(dict(before, **{n: written[n] for n in raced}))
    _run_step(layer, batch, location)


def _run_step(layer, batch, location):
    layer.run(batch, True, location["extra"] if location else [])
    if location and location["after"]:
        layer.run_separately(location["after"], batch, True)


def _affine_parameters(layer, states, probe, names):
    """(gamma names, beta names): setting gamma to 0 makes the output constant over the batch;
    adding 1 to beta adds exactly 1 to the output. Tried on the training output, and on the
    prediction output for variables the training output does not read."""
    gamma, beta = [], []
    axes = tuple(range(len(layer.shape) - 1))
    for training in (True, False):
        layer.load(states.initial)
        base = layer.run(probe, training).astype(np.float64)
        if not np.all(np.isfinite(base)) or np.all(base.std(axes) < 1e-3):
            continue
        for name in names:
            if name in gamma or name in beta:
                continue
            flat = states.initial[name].reshape(-1).astype(np.float64)
            layer.load(states.with_values(states.initial, **{name: flat + 1.0}))
            shifted = layer.run(probe, training).astype(np.float64)
            layer.load(states.with_values(states.initial, **{name: 0.0}))
            zeroed = layer.run(probe, training).astype(np.float64)
            if np.allclose(shifted - base, 1.0, rtol=0, atol=1e-5 * max(1.0, np.abs(base).max())):
                beta.append(name)
            elif np.all(zeroed.std(axes) <= 1e-6 * max(1.0, np.abs(zeroed).max())) and \
                    not np.array_equal(shifted, base):
                gamma.append(name)
    layer.load(states.initial)
    return gamma, beta


def _prediction_reads(layer, state, query, names):
    """The variables whose value changes the prediction output (each scaled and shifted in turn)."""
    layer.load(state)
    base = [layer.run(query, False)]
    layer.load(state)
    base.append(layer.run(query, False))
    reads = []
    for name in names:
        flat = state[name].reshape(-1).astype(np.float64)
        layer.load(_replace(state, name, flat * 1.5 + 0.7))
        out = layer.run(query, False)
        if not any(np.allclose(out, b, rtol=1e-6, atol=1e-6) for b in base):
            reads.append(name)
    layer.load(state)
    return reads


def _prediction_roles(layer, state, names, query):
    """(mean, variance) among the statistics prediction reads: adding 1 to the mean shifts every
    output of a channel by the same amount; adding 1 to the variance rescales x - mean. None
    unless exactly one of each."""
    axes = tuple(range(query.ndim - 1))
    layer.load(state)
    base = layer.run(query, False).astype(np.float64)
    means, variances = [], []
    for name in names:
        layer.load(_replace(state, name, state[name].reshape(-1).astype(np.float64) + 1.0))
        diff = layer.run(query, False).astype(np.float64) - base
        size = np.abs(diff).max()
        if not np.isfinite(size) or size == 0:
            continue
        (means if np.all(diff.std(axes) <= 1e-5 * size) else variances).append(name)
    layer.load(state)
    if len(means) == 1 and len(variances) == 1:
        return means[0], variances[0]
    return None, None


def _replace(state, name, flat):
    out = dict(state)
    out[name] = np.asarray(flat).reshape(state[name].shape).astype(state[name].dtype)
    return out


def _fit_statistics(report, stats, history, moments, initial):
    """Fit the update rule to each statistic; fill decay, zero_debias, inits and the estimator.
    Returns (moving mean name, moving variance name), None where nothing fits."""
    fits = {}
    for name in stats:
        states = [h[name].reshape(-1).astype(np.float64) for h in history]
        for kind, index in (("mean", 0), ("biased", 1), ("unbiased", 2)):
            fits[(name, kind)] = _fit(states, [m[index] for m in moments])
    tol = 1e-4
    mean_fit = min(((f, n) for (n, k), f in fits.items() if k == "mean"), default=None, key=lambda t: t[0][0])
    var_fit = min(((f, n, k) for (n, k), f in fits.items() if k != "mean"
                   and not (mean_fit and n == mean_fit[1] and mean_fit[0][0] < tol)),
                  default=None, key=lambda t: t[0][0])
    moving_mean = mean_fit[1] if mean_fit and mean_fit[0][0] < tol else None
    moving_var = var_fit[1] if var_fit and var_fit[0][0] < tol else None
    if moving_mean:
        report["decay"] = round(mean_fit[0][1], 5)
        report["zero_debias"] = mean_fit[0][2]
        report["moving_mean_init"] = _init(initial[moving_mean])
    if moving_var:
        report["moving_variance_estimator"] = var_fit[2]
        report["moving_variance_init"] = _init(initial[moving_var])
        if report["decay"] is None:
            report["decay"] = round(var_fit[0][1], 5)
            report["zero_debias"] = var_fit[0][2]
    return moving_mean, moving_var


def _init(value):
    value = np.asarray(value, dtype=np.float64).reshape(-1)
    return float(value[0]) if np.all(value == value[0]) else float(value.mean())


def _uses_stored_statistics(layer, state, query):
    """False when prediction normalises with the batch's own statistics: its output is then the
    same for x and 3x + 7 (up to epsilon's share of the variance); True when it is not."""
    axes = tuple(range(query.ndim - 1))
    layer.load(state)
    a = layer.run(query, False).astype(np.float64)
    layer.load(state)
    b = layer.run((3.0 * query + 7.0).astype(np.float32), False).astype(np.float64)
    layer.load(state)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return None
    scale = max(1e-6, float(a.std(axes).max()))
    return bool(np.abs(a - b).max() > 1e-2 * scale)


def _slopes(layer, state, shape, training, delta):
    """Per-channel (y(+delta) - y(-delta)) / (2 delta) on a batch of alternating ±delta samples."""
    signs = np.where(np.arange(shape[0]) % 2 == 0, 1.0, -1.0).reshape((-1,) + (1,) * (len(shape) - 1))
    layer.load(state)
    out = layer.run((signs * delta * np.ones(shape)).astype(np.float32), training).astype(np.float64)
    return (out[0] - out[1]).reshape(-1, shape[-1]).mean(0) / (2 * delta)


def _precision(estimates, eps, r):
    """Relative uncertainty: the spread of the estimates, at least float32 rounding through R."""
    spread = float(np.max(np.abs(np.asarray(estimates) - eps)) / eps)
    bound = float(np.max(r / (r - 1))) * 4 * _FLOAT32_ULP
    return float(f"{max(spread, bound):.1g}")


def _epsilon_prediction(layer, states, moving_mean, moving_var):
    """(epsilon, precision) from prediction slopes with mean 0 and variance 0 or V loaded."""
    shape = (2,) + layer.shape[1:]

    def slope(variance):
        state = states.with_values(states.base, **{moving_mean: 0.0, moving_var: variance})
        return _slopes(layer, state, shape, False, 1.0)

    s0 = slope(0.0)
    if not np.all(np.isfinite(s0)) or np.any(s0 == 0):
        return None
    guess = float(np.median(1.0 / s0 ** 2))  # exact when gamma is 1 (fixed) or absent
    for _ in range(2):
        r = (s0 / slope(guess)) ** 2
        est = guess / (r - 1)
        if not np.all(np.isfinite(est)) or np.any(est <= 0):
            return None
        guess = float(np.median(est))
    r = (s0 / slope(guess)) ** 2
    estimates = guess / (r - 1)
    eps = float(np.median(estimates))
    layer.load(states.base)
    return float(f"{eps:.3g}"), _precision(estimates, eps, r)


def _epsilon_training(layer, states, shape):
    """(epsilon, precision) from training slopes on ±delta batches, or None when the training
    output does not follow gamma * x / sqrt(delta^2 + eps)."""
    def estimate(var_a, var_b):
        r = (_slopes(layer, states.base, shape, True, np.sqrt(var_a))
             / _slopes(layer, states.base, shape, True, np.sqrt(var_b))) ** 2
        return (var_b - r * var_a) / (r - 1), r

    s = _slopes(layer, states.base, shape, True, 1e-4)
    if not np.all(np.isfinite(s)) or np.any(s == 0):
        return None
    guess = float(np.median(np.maximum(1.0 / s ** 2 - 1e-8, 1e-12)))
    for _ in range(3):
        est, _ = estimate(guess / 16, guess)
        if not np.all(np.isfinite(est)) or np.any(est <= 0):
            return None
        guess = float(np.median(est))
    first, r1 = estimate(guess / 16, guess)
    second, r2 = estimate(guess / 4, 4 * guess)
    estimates = np.concatenate([first, second])
    eps = float(np.median(estimates))
    layer.load(states.base)
    if not eps > 0 or np.max(np.abs(estimates - eps)) > 1e-2 * eps:
        return None
    return float(f"{eps:.3g}"), _precision(estimates, eps, np.concatenate([r1, r2]))


def _batch_independent(layer, trained, query, rng):
    """Each query sample alone, in its batch and in a 3x batch gives the same output."""
    other = _batch((2 * query.shape[0],) + query.shape[1:], -2.0, 9.0, rng)
    layer.load(trained)
    in_batch = layer.run(query, False)
    layer.load(trained)
    in_big = layer.run(np.concatenate([query, other]), False)[:len(query)]
    alone = []
    for i in range(len(query)):
        layer.load(trained)
        alone.append(layer.run(query[i:i + 1], False)[0])
    alone = np.array(alone)
    scale = max(1.0, float(np.abs(in_batch).max()))
    return bool(np.abs(in_batch - in_big).max() <= 1e-5 * scale
                and np.abs(in_batch - alone).max() <= 1e-5 * scale)


def _racy_batch_dependence(layer, trained, query, runs=30):
    """For a prediction that races its own update: from one loaded state, does any of ``runs``
    runs of the same batch differ from the first, or any sample alone from it in that batch?"""
    outs = []
    for _ in range(runs):
        layer.load(trained)
        outs.append(layer.run(query, False).astype(np.float64))
    alone = []
    for i in range(len(query)):
        layer.load(trained)
        alone.append(layer.run(query[i:i + 1], False)[0].astype(np.float64))
    layer.load(trained)
    scale = 1e-5 * max(1.0, float(np.abs(outs[0]).max()))
    return bool(any(np.abs(o - outs[0]).max() > scale for o in outs[1:])
                or np.abs(np.array(alone) - outs[0]).max() > scale)


def _plain_training_output(layer, states, probe, eps):
    """With gamma = 1 and beta = 0 loaded, is the training output (x - batch mean) / sqrt(batch
    var + eps)? False for batch renormalisation (x_hat * r + d); None when eps is unknown."""
    if eps is None:
        return None
    layer.load(states.base)
    out = layer.run(probe, True).astype(np.float64)
    layer.load(states.base)
    x = probe.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    expected = (x - x.mean(axes)) / np.sqrt(x.var(axes) + eps)
    return bool(np.abs(out - expected).max() <= 1e-3)


def _training_is_prediction(layer, states, probe):
    """Whether the output with training=True fed equals the prediction output (same state)."""
    layer.load(states.base)
    trained = layer.run(probe, True)
    layer.load(states.base)
    predicted = layer.run(probe, False)
    layer.load(states.base)
    return bool(np.array_equal(trained, predicted))


_BEHAVIOUR = {
    "updates_on_training": "moving statistics do not update when the output runs with training=True",
    "updates_need_update_ops": "updates run only with the UPDATE_OPS collection: a train op without "
                               "tf.control_dependencies(update_ops) leaves them at their initial values",
    "updates_on_inference": "a training=False run changes the moving statistics: predictions drift "
                            "with every batch predicted",
    "inference_batch_independent": "at prediction a sample's output depends on its batch (batch "
                                   "statistics are used): the article's warning",
    "moving_stats_trainable": "the moving statistics are trainable: an optimizer changes them by "
                              "gradient as well",
}
_SETTINGS_ORDER = ("decay", "zero_debias", "moving_mean_init", "moving_variance_init",
                   "moving_variance_estimator")


def _differences(report, layer, states, probe, stats, candidates, location, racy, path, gamma, beta,
                 differences, warnings, update_ops):
    """Fill differences (from the article, each with its consequence or why it is unmeasured)
    and warnings (known bugs)."""
    # Unmeasurable verdicts first, each with why.
    unmeasured = [k for k in _SETTINGS_ORDER if report[k] is None]
    if not stats:
        unmeasured += ["moving_stats_trainable", "update_location"]
        differences.append(f"{', '.join(unmeasured)} cannot be measured: the layer keeps no moving "
                           f"statistics (no per-channel variable changes with the output, UPDATE_OPS, "
                           f"any other collection or any separate op), so nothing updates")
    elif not candidates:
        unmeasured = [k for k in unmeasured if k not in ("moving_mean_init", "moving_variance_init")]
        unmeasured += ["update_location"]
        inits = [f"{role} {report[key]:g}" for role, key in (("mean", "moving_mean_init"),
                                                               ("variance", "moving_variance_init"))
                 if report[key] is not None]
        differences.append(f"{', '.join(unmeasured)} cannot be measured: the layer keeps moving statistics "
                           f"({', '.join(sorted(stats))}) and reads them at prediction, but nothing updates "
                           f"them (not the output, UPDATE_OPS, any other collection or any separate op): "
                           f"they stay at their initial values"
                           + (f" ({', '.join(inits)})" if inits else "")
                           + ", as with tf.layers / Keras batch normalization called with training left "
                             "at its default False")
    elif unmeasured:
        differences.append(f"{', '.join(unmeasured)} could not be measured: no statistic among "
                           f"{', '.join(sorted(stats))} follows an EMA of the batch moments")
    if report["epsilon"] is None:
        differences.append(f"epsilon, epsilon_precision could not be measured: the {path} output does "
                           f"not follow gamma * x / sqrt(var + eps) on batches of ±delta")
    if report["statistics_used_at_prediction"] is None:
        differences.append("statistics_used_at_prediction could not be measured: prediction outputs "
                           "are not finite")
    race = ("a prediction run both updates and reads the moving statistics, so unless the graph orders "
            "the read after the update, whether an output used this batch's update depends on thread "
            "timing (a race; typical of an EMA op built outside the tf.cond)")
    if racy and report["inference_batch_independent"] is False:
        differences.append(f"inference_batch_independent is false, measured: {race}; from one loaded "
                           f"state, repeated prediction runs of the same batch, or a sample alone against "
                           f"it in its batch, gave different outputs, so a sample's output depends on its "
                           f"batch (and on timing)")
    elif racy:
        differences.append(f"inference_batch_independent cannot be measured: {race}; from one loaded "
                           f"state, repeated prediction runs of the same batch and each sample alone gave "
                           f"the same outputs, but another run may order them otherwise")
    if racy:
        warnings.append("prediction races its own update of the moving statistics: outputs may "
                        "depend on thread timing and on the batch")

    # Settings against the article's.
    settings = {k: report[k] for k in implementations.ARTICLE_SETTINGS}
    close = {k: v for k, v in settings.items() if v is not None}
    if close.get("decay") is not None and abs(close["decay"] - 0.9) <= 1e-3:
        close["decay"] = 0.9
    if close.get("epsilon") is not None and abs(close["epsilon"] / 1e-5 - 1) <= 0.01:
        close["epsilon"] = 1e-5
    differences += implementations.causes(dict(implementations.ARTICLE_SETTINGS, **close))

    # Where the statistics come from at prediction, and where their updates are.
    if report["statistics_used_at_prediction"] is False:
        kept = (f"the moving statistics it keeps ({', '.join(sorted(candidates))}) are not used at "
                f"prediction" if candidates else "the layer keeps no moving statistics")
        line = f"prediction normalises each batch with its own statistics: {kept}"
        differences.append(line)
        warnings.append(line)
    if location and location["location"].startswith(("collection:", "separate-op:")):
        where = location["location"]
        names = where.split(":", 1)[1]
        what = (f"the ops in the collection '{names}' run with the train op" if where.startswith("collection:")
                else f"the separate op '{names}' runs (after each training step)" if "," not in names
                else f"the separate ops {', '.join(repr(n) for n in names.split(','))} run (with or "
                     f"after each training step)")
        warnings.append(f"the moving statistics update only when {what}: neither the output nor "
                        f"UPDATE_OPS updates them"
                        + (f" (update ops: {', '.join(update_ops)})" if update_ops else ""))
    if _plain_training_output(layer, states, probe, report["epsilon"]) is False and (gamma or beta) and \
            _training_is_prediction(layer, states, probe):
        differences.append("the output with training=True fed is the prediction output (normalised with the "
                           "stored statistics, not the batch's): the layer ignores its training input, as "
                           "when training is left at its default False, and trains on statistics that "
                           "never change")
    elif _plain_training_output(layer, states, probe, report["epsilon"]) is False and (gamma or beta):
        differences.append("in training, with gamma=1 and beta=0, the output is not (x - batch mean) / "
                           "sqrt(batch var + eps) (as with batch renormalisation, which corrects it by "
                           "r and d from the moving statistics): training outputs differ from the "
                           "article's")

    # Behaviour against the article's.
    for key, expected in ARTICLE_BEHAVIOUR.items():
        if report[key] is None or report[key] == expected:
            continue
        if not stats and key.startswith("updates_"):
            continue  # said once above: no statistics, nothing to update
        if racy and key == "inference_batch_independent":
            continue  # said above: a race, not batch statistics
        differences.append(_BEHAVIOUR[key])
        if key != "updates_on_training":
            warnings.append(_BEHAVIOUR[key])
    if stats and not report["updates_on_training"] and not report["updates_need_update_ops"] and \
            not (location and location["location"].startswith(("collection:", "separate-op:"))):
        warnings.append("the moving statistics never update, with or without UPDATE_OPS")


def format_audit(report):
    lines = []
    for key in KEYS[:-2]:
        lines.append(f"  {key:<30} {report[key]}")
    lines.append("  differences from the article:" + ("" if report["differences"] else " none"))
    lines += [f"    - {d}" for d in report["differences"]]
    lines.append("  warnings:" + ("" if report["warnings"] else " none"))
    lines += [f"    ! {w}" for w in report["warnings"]]
    return "\n".join(lines)
