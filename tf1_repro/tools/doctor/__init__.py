"""Doctor: diagnose a saved TF1 model for batch-norm and dropout mistakes, without the user's code.

``diagnose(path)`` reads a checkpoint (prefix or directory, with its ``.meta``
when present), a ``.meta`` file, a SavedModel directory or a frozen GraphDef
(``.pb``/``.pbtxt``) through ``tf1_repro.graph.artefacts``, finds its BN layers
and dropouts with ``tf1_repro.tools.finder`` (or, for a checkpoint without a
graph, from variable names and shapes with ``naming.layers_from_names``) and
returns a report whose ``findings`` have the fixed ids of ``FINDINGS``.

Layout: each finding id is a check of its own in ``doctor/checks/`` (its id, severity, fix
and detection; ``base.Check``, registered in ``base.REGISTRY`` in the report's order); the
shared machinery is ``artefact`` (reading the artefact, importing its graph), ``layers`` (the
BN layers and dropouts as dataclasses), ``outputs`` (what runs), ``inputs`` (the feeds and
batches), ``runs`` (the plan and the three runs), ``context`` (what the checks read),
``settings`` (the arguments) and ``report`` (asking the checks, merging, printing). The rules
below are each check's docstring, gathered.

**Static checks** (nothing runs; values come from the checkpoint or from the
frozen graph's Consts):

* ``stats-never-updated``: moving mean all 0 and moving variance all 1 (or all
  0, zero-initialised shadows) while training happened: gamma != 1 or beta != 0
  somewhere, or global step > 0.
* ``update-ops-not-in-train-op``: a train op exists (the ``train_op`` collection,
  or else the sinks of the ops that apply gradients) and an update of a moving
  statistic (a writer the finder found, or a member of ``UPDATE_OPS``) is not
  among its data or control ancestors. A layer shared by several calls is judged
  call by call: only the updates of the calls the train op runs count
  (``tools.calls.trained_update_ops``; an unused call's never run).
* ``stats-not-finite`` / ``variance-not-positive``: NaN/inf in a statistic /
  a moving variance < 0, or 0 on every channel.
* ``dead-channel`` (warning): a moving variance exactly 0 on some channels only (a
  dead unit: its input was constant in the data, e.g. a ReLU upstream that never
  fires; ``recalibrate`` stores 0 there, which is right).
* ``stats-trainable`` (warning): a moving statistic is in ``trainable_variables``.
* ``ema-zero-bias`` (warning): both shadows start at 0 and are not debiased (the
  finder's ``zero_debias``, read from the update's structure) and
  ``global_step < 3 / (1 - decay)``: after k updates the shadow holds only a
  fraction ``1 - decay**k`` of the average (``1 - 0.9**30 = 0.958``).
* ``mode-placeholder-without-default`` (info): a bool training ``Placeholder``.
* ``inference-batch-dependent`` when the finder shows prediction uses batch
  statistics (a frozen ``FusedBatchNorm`` with ``is_training`` true, training
  fixed True); ``dropout-at-inference`` when a SavedModel or frozen graph has
  keep_prob a Const < 1 or rate a Const > 0.
* In a serving artefact, the mode ``PlaceholderWithDefault``s a client leaves at
  their default (a SavedModel's that are not among its signature's inputs; every
  one in a frozen graph): keep_prob defaulting to != 1 or rate to != 0 ->
  ``dropout-at-inference``; training (or the learning phase) defaulting to True ->
  ``inference-batch-dependent``. One among the signature's inputs is the client's
  to feed, and a learning phase defaulting to 0/False is prediction mode.
* ``--feed`` values are checked (the tensor exists; its dtype and shape take the
  value) whether or not anything runs.

**Dynamic checks** (``run=True`` and a graph): the graph is imported into a
``tf.Graph`` of its own (the finder reads the same graph, gradients and train op
included, so it reports what ``finder.find`` on the artefact does) and every variable is
assigned its checkpoint value (``Artefact.restore``; a SavedModel's too, from
``variables/variables``, so none of the artefact's own restore, init or main ops
run). Only
the ancestors of the prediction outputs run: a SavedModel's signature outputs,
a frozen graph's sinks, or, in a training graph, the tensors the loss takes
from the network (those that depend on the inputs but not on the labels, outside
``gradients/``); with BN layers shared by several calls, those downstream of the calls that
serve prediction (``tools.calls``: an evaluation tower's, not a training tower's), with a note;
``outputs`` (``--outputs``) replaces them. Inputs are random N(0, 1) batches shaped by their placeholders
(an unknown batch dimension is 4), the mode inputs get
``prediction_feeds()`` (training False, keep_prob 1.0, rate 0, learning phase 0)
and ``feeds`` override them. With every variable a run writes reset to its
restored value before each run, three runs give:

1. outputs on batch X; a moving statistic that changed -> ``updates-on-inference``;
2. outputs on X again; any output that differs -> ``dropout-at-inference``;
3. outputs on X with every sample but the first replaced; the first sample's
   outputs differ -> ``inference-batch-dependent`` (skipped when 2 found
   randomness).

A SavedModel's signature then runs the same three times as a serving client runs
it: only the signature's inputs fed (its mode inputs with their prediction
values), every other ``PlaceholderWithDefault`` at its default.

A vanilla dropout's keep_prob ``Placeholder`` (``Findings.unbound_mode_inputs``:
prediction multiplies by keep_prob's *training* value) is never fed 1.0: it is
fed from ``feeds`` when given; otherwise the outputs that depend on it are not
run, the BN layers' outputs that do not are run instead, and a note says why.

The outputs are never an update's result: a tensor inside a tf.cond branch (read from the
graph's Switch/Merge structure, since an imported GraphDef has no control-flow contexts), one
with a write (or an If/call whose function writes) among its data ancestors, or a read that
waits on a write (``assign_moving_average``'s ``ReadVariableOp_1``); and, when another
output does not, never one whose run performs a write outside every cond branch (the loss
of DCGAN's training tower, whose ``tf.identity`` waits on ``ema.apply``). A run that fails
leaves a note with the error's informative line (``Retval[1] does not have value``).

The finder's notes are the report's notes: ``Findings.notes`` (TF2 control flow: If/While
branch functions it does not read) and those of each layer whose prediction mode it could not
read (``statistics_used_at_prediction`` None), which gets no mode finding; its value checks
still run. An assign of a Const (a one-off ``mv.assign([...])`` saved in the graph) is not
a BN update for ``update-ops-not-in-train-op``.

Before anything runs, the subgraph of the outputs (and any function it calls)
is searched for ops that touch files or run Python (``UNSAFE_OPS``, ``Save*``,
``Restore*``, readers, ``PrintV2`` to a file); if one is there the dynamic
checks are skipped and a note says which op. Nothing is written anywhere.
"""

from tf1_repro.graph import safety
from tf1_repro.tools.doctor.base import (ERROR, INFO, REGISTRY, UPDATE_OPS_FIX, WARNING, WHERE,
                                         Check, DoctorError, Finding, register)
from tf1_repro.tools.doctor.report import diagnose, format_report
from tf1_repro.tools.doctor.inputs import DEFAULT_BATCH
from tf1_repro.tools.doctor.runs import error_line as _error_line
from tf1_repro.tools.doctor.settings import (Settings, load_data, parse_feed, parse_input_shape,
                                             settings)

# id -> (severity, fix), in the registry's order (the checks themselves hold them)
FINDINGS = {fid: (check.severity, check.fix) for fid, check in REGISTRY.items()}
UNSAFE_OPS = safety.UNSAFE_OPS

__all__ = ["Check", "DEFAULT_BATCH", "DoctorError", "ERROR", "FINDINGS", "Finding", "INFO",
           "REGISTRY", "Settings", "UNSAFE_OPS", "UPDATE_OPS_FIX", "WARNING", "WHERE", "diagnose",
           "format_report", "load_data", "parse_feed", "parse_input_shape", "register", "settings"]
