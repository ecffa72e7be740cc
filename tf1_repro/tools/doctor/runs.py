"""The dynamic part: what runs (the plan), the client's feeds, and the three prediction runs.

The graph is imported into a ``tf.Graph`` of its own and every variable is assigned its
checkpoint value (``Artefact.restore``; a SavedModel's too, from ``variables/variables``, so none
of the artefact's own restore, init or main ops run). Only the ancestors of the prediction outputs
(``outputs.prediction_outputs``) run. Inputs are random N(0, 1) batches shaped by their
placeholders (``inputs.random_inputs``), the mode inputs get the finder's
``prediction_feeds()`` and ``--feed`` overrides them. With every variable a run writes reset to its
restored value before each run, three runs give a ``Run``:

1. outputs on batch X, and the variables that changed (``changed``);
2. outputs on X again, and the outputs that differ (``differ``);
3. unless 2 found randomness, outputs on X with every sample but the first replaced, and the
   outputs whose first sample changed (``dependent``).

A SavedModel's signature then runs the same three times as a serving client runs it (a second
``Run``). What each ``Run`` means is said by the checks (``dynamic``); nothing here is a finding.
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph import artefacts, safety
from tf1_repro.graph import ops as graph_ops
from tf1_repro.graph.errors import one_line
from tf1_repro.tools.doctor.artefact import node_name
from tf1_repro.tools.doctor.base import WHERE, DoctorError
from tf1_repro.tools.doctor.inputs import random_inputs
from tf1_repro.tools.doctor.outputs import ancestor_names, in_cond_branch, prediction_outputs

PREDICTION = "with the prediction feeds"


@dataclasses.dataclass(frozen=True)
class Run:
    """The outcome of the three runs made one way (``how``, e.g. "with the prediction feeds")."""

    how: str
    changed: Tuple[str, ...]  # variables the first run changed
    differ: Tuple[str, ...]  # outputs that differ between two runs on the same batch
    dependent: Optional[Tuple[str, ...]]  # outputs whose sample 0 depends on the rest of its batch;
    # None when not checked (randomness found, or fewer than 2 samples)


@dataclasses.dataclass
class Execution:
    """What ran: the outputs, the inputs given random or ``--data`` batches, the feeds, the runs
    (``[]`` when a run failed: ``failed``)."""

    outputs: list
    inputs: list
    feeds: dict
    runs: list
    failed: bool = False


@dataclasses.dataclass
class Plan:
    """The outputs to run, the op names they need, the feeds and the batch (nothing ran yet)."""

    outputs: list
    needed: set
    feeds: dict
    batch: dict


def execute(doc, s, found, given):
    """``Execution`` of the runs, or None (with a note in ``found.notes``) when nothing can or
    may run. ``given``: the typed ``--feed`` values (``inputs.resolve_feeds``). A value TensorFlow
    refuses is a DoctorError; a run that fails leaves a note and ``failed``."""
    notes = found.notes
    if doc.art.checkpoint is None and \
            any(n.op in graph_ops.VARIABLE_OPS for n in doc.nodes.values()):
        notes.append("not run: the graph has variables but no checkpoint beside it (no values)")
        return None
    plan = make_plan(doc, s, found, given)
    if plan is None:
        return None
    graph = doc.graph
    done = Execution(plan.outputs, sorted(t.name for t in plan.batch),
                     {t.name: np.asarray(v).tolist() for t, v in plan.feeds.items()}, [])
    client = client_feeds(doc, plan.feeds, plan.batch, notes)
    sess = _open(doc)
    try:
        state = _State(graph, sess, plan.needed)
        fetch = [graph.get_tensor_by_name(n) for n in plan.outputs]
        statistics = {layer.statistic(r) for layer in found.layers
                      for r in ("moving_mean", "moving_variance") if layer.statistic(r)}
        first = three_runs(sess, fetch, plan.feeds, plan.batch, state, plan.outputs, PREDICTION,
                           notes, statistics)
        done.runs.append(first)
        if client is not None:
            client_feeds_, client_batch, left = client
            done.runs.append(three_runs(
                sess, fetch, client_feeds_, client_batch, state, plan.outputs,
                f"as a serving client runs the signature (only its inputs fed; {left} left at "
                "their defaults)", [], statistics))
        return done
    except ValueError as err:  # a fed value TensorFlow refuses (shape or dtype)
        raise DoctorError(f"{WHERE}: {doc.art.source}: the inputs do not fit "
                          f"({str(err).splitlines()[0][:200]}); check --data, --input-shape "
                          "and --feed") from None
    except tf.errors.OpError as err:
        notes.append(f"not run: running the outputs failed ({type(err).__name__}: "
                     f"{error_line(err.message)[:200]}); static checks only")
        done.runs, done.failed = [], True
        return done
    finally:
        sess.close()


def error_line(message):
    """The informative line of a TensorFlow error (``Retval[1] does not have value``), not its
    header (``Graph execution error:``), the ``Detected at node`` trace or the ``[[...]]`` tail
    (``graph.errors.one_line``, uncut, "" for no text)."""
    return one_line(message, limit=None, empty="")


def three_runs(sess, fetch, feeds, batch, state, outputs, how, notes, statistics):
    """The three runs (see the module docstring) as a ``Run``; state is reset after each.
    ``notes`` gets a line for variables changed that are not BN ``statistics`` and one when the
    batch is too small to check batch dependence."""
    state.reset()
    first = sess.run(fetch, {**feeds, **batch})
    after = state.read()
    changed = tuple(n for n in after
                    if not np.array_equal(after[n], state.initial[n], equal_nan=True))
    others = [n for n in changed if n not in statistics]
    if others:
        notes.append(f"a prediction run also changed {len(others)} variable(s) that are not BN "
                     f"statistics: {', '.join(others[:5])}")
    state.reset()
    second = sess.run(fetch, {**feeds, **batch})
    differ = tuple(name for name, a, b in zip(outputs, first, second) if not _same(a, b))
    if differ:
        state.reset()
        return Run(how, changed, differ, None)
    state.reset()
    n = next(iter(batch.values())).shape[0] if batch else 0
    if n < 2:
        notes.append("batch dependence not checked: the inputs hold fewer than 2 samples")
        return Run(how, changed, differ, None)
    other = sess.run(fetch, {**feeds, **{t: _replace_rest(v) for t, v in batch.items()}})
    state.reset()
    dependent = tuple(name for name, a, b in zip(outputs, first, other)
                      if np.ndim(a) and np.shape(a)[0] == n and not _same(a[:1], b[:1]))
    return Run(how, changed, differ, dependent)


def check_outputs(doc, outputs):
    """Refuse ``--outputs`` that name no tensor of the artefact's graph (``DoctorError``); an
    artefact without a graph takes none."""
    if not outputs:
        return
    if doc.graph_def is None:
        raise DoctorError(f"{WHERE}: --outputs needs a graph (a .meta, SavedModel or frozen "
                          f"graph), got {doc.format} {doc.source} without one")
    for name in outputs:
        op, _, port = name.partition(":")
        node = doc.nodes.get(op)
        if node is None or not port.isdigit():
            raise DoctorError(f"{WHERE}: --outputs must name tensors of the graph, got {name!r} "
                              f"({'no such node' if node is None else 'not a tensor name'})")


def make_plan(doc, s, found, given):  # pylint: disable=too-many-locals
    """``Plan`` from the graph alone (nothing runs); None with a note when there is nothing safe
    to run.

    A mode input the finder leaves unbound (a vanilla dropout's keep_prob Placeholder:
    prediction multiplies by its *training* value, which the graph does not hold) is never
    given 1.0: it is fed from ``--feed`` when given; otherwise the outputs that depend on it
    are not run, and the BN layers' outputs that do not are run in their place (the BN checks),
    with a note saying why."""
    graph, result, notes = doc.graph, found.result, found.notes
    mode_names = {m.name for m in result.mode_inputs} if result else set()
    for name in s.outputs:
        try:
            graph.get_tensor_by_name(name)
        except (KeyError, ValueError):
            raise DoctorError(f"{WHERE}: --outputs must name tensors of the graph, got {name!r} "
                              f"(its op has no such output)") from None
    outputs = list(s.outputs) or prediction_outputs(doc, found.layers, found.dropouts,
                                                    mode_names, notes)
    if not outputs:
        notes.append("not run: no prediction output found")
        return None
    unbound = result.unbound_mode_inputs() if result is not None and \
        hasattr(result, "unbound_mode_inputs") else []
    for m in unbound:
        fed = [v for t, v in given.items() if t.op.name == m.name]
        if fed:
            value = np.asarray(fed[0])
            shown = f"{value.item():g}" if value.size == 1 else value.tolist()
            notes.append(f"{m.name} fed {shown} from --feed: a vanilla "
                         "dropout's prediction multiplies by keep_prob's training value")
        elif m.op == "PlaceholderWithDefault":
            notes.append(f"{m.name} left at its default {m.default!r}: a vanilla dropout's "
                         "prediction multiplies by keep_prob's training value (--feed overrides it)")
    missing = {m.name for m in unbound if m.op == "Placeholder"} - {t.op.name for t in given}
    if missing:
        depends = [n for n in outputs if missing & ancestor_names(graph.get_tensor_by_name(n).op)]
        bn_outputs = [layer.output for layer in found.layers if layer.output and not (
            missing & ancestor_names(graph.get_tensor_by_name(layer.output).op)) and
            not in_cond_branch(graph.get_tensor_by_name(layer.output).op)]
        outputs = [n for n in outputs if n not in depends]
        outputs += [n for n in bn_outputs if n not in outputs]
        names = ", ".join(sorted(missing))
        why = (f"{names} is the keep_prob of a vanilla dropout: prediction multiplies by its "
               f"training value, which the graph does not hold (give it with --feed "
               f"{sorted(missing)[0]}=VALUE; 1.0 would be wrong)")
        if not outputs:
            notes.append(f"not run: {why}")
            return None
        notes.append(f"the dropout-dependent outputs ({', '.join(depends)}) were not run, and "
                     f"the checks ran on {', '.join(outputs)}: {why}")
    needed = set()
    for name in outputs:
        needed |= ancestor_names(graph.get_tensor_by_name(name).op)
    unsafe = _unsafe(doc, needed)
    if unsafe:
        notes.append(f"not run: the subgraph of the outputs holds {unsafe[0]} ({unsafe[1]}), "
                     "which touches files or runs Python; static checks only")
        return None
    feeds = {graph.get_tensor_by_name(k): v for k, v in
             (result.prediction_feeds().items() if result else []) if node_name(k) in needed}
    feeds.update(given)
    inputs = [graph.get_operation_by_name(n).outputs[0] for n in sorted(needed)
              if graph.get_operation_by_name(n).type == "Placeholder"]
    inputs = [t for t in inputs if t not in feeds]
    for t in [t for t in inputs if t.dtype.base_dtype.is_bool and not _given(t, s)]:
        feeds[t] = np.asarray(False)
        notes.append(f"bool placeholder {t.op.name} not recognised as a mode input: fed False")
        inputs.remove(t)
    return Plan(outputs, needed, feeds, random_inputs(inputs, s, doc.art.source))


def _unsafe(doc, names):
    """(op type, node name) of the first file/IO/Python op among ``names`` and the functions
    they call, else None."""
    functions = {f.signature.name: f for f in doc.graph_def.library.function} \
        if doc.graph_def is not None else {}
    return safety.first_unsafe([doc.nodes[n] for n in names if n in doc.nodes], functions)


def client_feeds(doc, feeds, batch, notes):
    """(feeds, batch, names left at their default) for running a SavedModel's signature as a
    client does: only the signature's inputs fed (its mode inputs with the prediction values),
    every PlaceholderWithDefault outside them at its default. None when that is the run
    already made, or when the signature cannot run (a Placeholder outside its inputs)."""
    if doc.art.format != "saved_model":
        return None
    signature = doc.signature_inputs()
    if not signature:
        return None
    left = sorted(t.op.name for t in feeds if t.name not in signature)
    if not left:
        return None
    outside = sorted(t.op.name for t in list(feeds) + list(batch)
                     if t.name not in signature and t.op.type == "Placeholder")
    if outside:
        notes.append(f"the signature was not run as a serving client: it needs {outside[0]}, "
                     "which is not among its inputs")
        return None
    notes.append(f"the signature also ran as a serving client runs it: only its inputs fed, "
                 f"{', '.join(left)} left at their defaults")
    return ({t: v for t, v in feeds.items() if t.name in signature},
            {t: v for t, v in batch.items() if t.name in signature}, ", ".join(left))


def _open(doc):
    """A session on the forward graph with every variable assigned its checkpoint value.

    A SavedModel is restored the same way (from ``variables/variables``), not through its
    loader, so none of its own restore, init or main ops run.
    """
    sess = tf.Session(graph=doc.graph)
    try:
        doc.art.restore(doc.graph, sess)
    except artefacts.ArtefactError as err:
        sess.close()
        raise DoctorError(f"{WHERE}: {err}") from None
    except Exception as err:  # pylint: disable=broad-except  (a truncated or corrupt checkpoint)
        sess.close()
        raise DoctorError(f"{WHERE}: {doc.art.checkpoint}: the checkpoint cannot be restored "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:160]})") from None
    return sess


def _given(t, s):
    return t.op.name in s.input_shapes or t.name in s.data or t.op.name in s.data


def _replace_rest(value):
    """The batch with every sample but the first changed (floats scaled and shifted)."""
    other = np.array(value, copy=True)
    if other.shape and other.shape[0] > 1 and other.dtype.kind == "f":
        other[1:] = other[1:] * 3.0 + 2.0
    return other


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return np.array_equal(a, b)
    scale = max(1.0, float(np.nanmax(np.abs(a))) if np.any(np.isfinite(a)) else 1.0)
    return bool(np.allclose(a, b, rtol=1e-4, atol=1e-5 * scale, equal_nan=True))


class _State:
    """Read and reset the variables that the outputs' subgraph writes."""

    def __init__(self, graph, sess, ancestors):
        self.sess = sess
        self.vars = {}
        written = [op for op in (graph.get_operation_by_name(n) for n in ancestors)
                   if op.type in graph_ops.WRITE_OPS and op.inputs]
        with graph.as_default():
            for w in written:
                var = _variable_of(w.inputs[0].op)
                if var is None or var.name in self.vars:
                    continue
                ref = var.outputs[0]
                if var.type == "VarHandleOp":
                    read = tf.raw_ops.ReadVariableOp(resource=ref, dtype=var.get_attr("dtype"))
                    ph = tf.placeholder(var.get_attr("dtype"), name=f"doctor_reset/{var.name}")
                    assign = tf.raw_ops.AssignVariableOp(resource=ref, value=ph)
                else:
                    read = ref
                    ph = tf.placeholder(ref.dtype.base_dtype, name=f"doctor_reset/{var.name}")
                    assign = tf.assign(ref, ph, validate_shape=False)
                self.vars[var.name] = (read, ph, assign)
        self.initial = self.read()

    def read(self):
        if not self.vars:
            return {}
        names = sorted(self.vars)
        return dict(zip(names, self.sess.run([self.vars[n][0] for n in names])))

    def reset(self):
        if self.vars:
            self.sess.run([v[2] for v in self.vars.values()],
                          {v[1]: self.initial[n] for n, v in self.vars.items()})


def _variable_of(op, depth=0):
    if op.type in graph_ops.VARIABLE_OPS:
        return op
    if depth < 16 and op.inputs and op.type in ("Identity", "RefIdentity", "Switch", "RefSwitch",
                                               "Enter", "RefEnter"):
        return _variable_of(op.inputs[0].op, depth + 1)
    return None
