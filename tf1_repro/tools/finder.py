"""Find every batch-norm layer and every dropout in a TF1 graph by structure, not by name.

``find(graph)`` takes a ``tf.Graph``, a ``GraphDef`` or a ``MetaGraphDef`` (its
collections are used) and returns a ``Findings`` with ``bn_layers``, ``dropouts``
and ``mode_inputs``. Nothing is run: the graph is read, and small constant
subgraphs (epsilon, decay, keep_prob, a predicate) are evaluated in NumPy.

**Batch norm.** A normalisation op is one of

* ``FusedBatchNorm``/``V2``/``V3`` (epsilon, ``is_training`` from its attributes);
* ``BatchNormWithGlobalNormalization`` (``variance_epsilon``);
* ``rsqrt(var + eps)`` or ``sqrt(var + eps)`` with the centred input: what
  ``tf.nn.batch_normalization`` builds (``x*inv + (beta - mean*inv)``,
  ``inv = rsqrt(var + eps)*gamma``) and the hand-written
  ``(x - mean) / sqrt(var + eps) * gamma + beta`` forms.

Each statistic is traced back through the ops that only move it (Identity,
Switch/Merge, reads of variables, Squeeze/Reshape/ExpandDims, Enter, Cast) to
its sources, branch by branch of any ``tf.cond``: a variable or a Const (the
*moving* statistic), or a computation on the batch (the *batch* statistic).
Normalisation ops that share a variable are one layer (the two branches of a
fused ``tf.cond``, or a layer built twice with Python bools). Its name is the
longest scope its variables share.

The **update ops** of a moving statistic are the ops that write it, other than
its initializer and a checkpoint restore. The decay is read from the update:
``AssignSub(s, (s - v) * (1 - d))`` (``assign_moving_average``,
``ExponentialMovingAverage``, tf.layers and Keras) or ``s <- d*s + (1-d)*v``,
with ``tf.cond``-selected constants taken in training mode. Where an update lives
(``update_location``):

* ``"output"``: it runs whenever the layer's output runs (an ancestor of the
  output, as in the article: inside the true branch of its ``tf.cond``);
* ``"UPDATE_OPS"`` / ``"collection:NAME"``: it feeds a member of that collection;
* ``"separate-op:NAME"``: only the op ``NAME`` runs it (a two-stage "assigner",
  a Keras layer's updates in a TF1 graph, ``ema.apply`` kept aside);
* ``None``: no update op (a frozen graph, or statistics never updated).

**Mode.** The predicate of the ``tf.cond`` that selects the statistics (or the
input of the fused ops) is traced to a bool ``Placeholder``, a
``PlaceholderWithDefault`` or a ``Const``; a layer built twice (train and
predict) without a switch has mode ``python_bool``; a frozen FusedBatchNorm's
mode is its ``is_training`` attribute.

**Dropout.** From every random op forward to the op that applies the mask to
the data (``SelectV2(mask, x*scale, 0)`` of ``tf.nn.dropout``/Keras, or
``x * floor(keep_prob + uniform)`` of TF 1.x and hand-written code), then back
through any scaling: ``x / keep_prob`` or ``x * 1/(1 - rate)`` is the
*inverted* convention, none is *vanilla*. ``keep_prob`` (or ``rate``) is traced
to its placeholder or Const.
"""

import dataclasses

import numpy as np

from tf1_repro.graph import walk
from tf1_repro.graph.ops import IF_OPS, RANDOM_DRAW_OPS, VARIABLE_OPS, WRITE_OPS

FUSED = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
GLOBAL = "BatchNormWithGlobalNormalization"
RANDOM_OPS = RANDOM_DRAW_OPS
# Ops that pass a statistic on unchanged (for finding where it comes from).
TRANSPARENT = ("Identity", "Snapshot", "StopGradient", "Squeeze", "Reshape", "ExpandDims",
               "Enter", "RefEnter", "Cast", "PreventGradient", "CheckNumerics", "IdentityN")
SKIP_COLLECTIONS = {"variables", "trainable_variables", "local_variables", "model_variables",
                    "moving_average_variables", "cond_context", "while_context", "savers",
                    "summaries", "queue_runners", "global_step", "losses", "regularization_losses",
                    "metric_variables", "_SUMMARY_WRITER_INIT_OP", "init_op", "local_init_op",
                    "ready_op", "ready_for_local_init_op", "table_initializer", "asset_filepaths",
                    "saved_model_main_op", "saved_model_train_op", "saved_model_assets"}
RESTORE_SCOPE = "tf1_repro_restore"  # where artefacts.Artefact.restore adds its assign ops
PREDICTION_VALUES = {"training": False, "keep_prob": 1.0, "rate": 0.0, "learning_phase": 0}


@dataclasses.dataclass
class ModeInput:
    """A tensor that switches between training and prediction.

    ``op`` is ``"Placeholder"``, ``"PlaceholderWithDefault"``, ``"Const"`` or
    ``"python_bool"`` (no tensor: the graph was built once per mode);
    ``prediction_value`` is what prediction feeds it.
    """

    name: str
    role: str
    op: str
    default: object = None
    prediction_value: object = None

    @property
    def tensor(self):
        return f"{self.name}:0"

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class BNLayer:
    """One batch-norm layer. Variable fields hold node names (a variable op or a Const)."""

    name: str
    kind: str
    input: str
    output: str
    gamma: str = None
    beta: str = None
    moving_mean: str = None
    moving_variance: str = None
    epsilon: float = None
    decay: float = None
    decay_cap: float = None
    update_ops: list = dataclasses.field(default_factory=list)
    update_location: str = None
    updates_at_prediction: bool = None
    zero_debias: bool = None
    mode: ModeInput = None
    statistics_used_at_prediction: bool = None
    variance_estimator: str = None
    stat_shape: tuple = None
    channel_axis: int = -1
    call_sites: list = dataclasses.field(default_factory=list)
    bn_ops: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["mode"] = self.mode.to_dict() if self.mode else None
        d["stat_shape"] = list(self.stat_shape) if self.stat_shape is not None else None
        return d


@dataclasses.dataclass
class Dropout:
    """One dropout: ``keep_prob`` is ``{"param", "source", "name", "value"}``."""

    name: str
    kind: str
    input: str
    output: str
    keep_prob: dict
    convention: str = None
    mode: ModeInput = None
    scales_at_prediction: bool = False
    random_ops: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["mode"] = self.mode.to_dict() if self.mode else None
        return d


@dataclasses.dataclass
class Findings:
    bn_layers: list
    dropouts: list
    mode_inputs: list
    notes: list = dataclasses.field(default_factory=list)

    def prediction_feeds(self):
        """``{tensor name: value}`` that puts every layer in prediction mode (Consts left out, and
        the inputs whose prediction value the graph cannot tell: ``unbound_mode_inputs``)."""
        return {m.tensor: m.prediction_value for m in self.mode_inputs
                if m.op in ("Placeholder", "PlaceholderWithDefault") and m.prediction_value is not None}

    def unbound_mode_inputs(self):
        """Mode placeholders a user must feed: the keep_prob of a vanilla dropout, whose
        prediction multiplies by keep_prob's *training* value (the graph does not hold it)."""
        return [m for m in self.mode_inputs
                if m.op in ("Placeholder", "PlaceholderWithDefault") and m.prediction_value is None]

    def to_dict(self):
        return {"bn_layers": [b.to_dict() for b in self.bn_layers],
                "dropouts": [d.to_dict() for d in self.dropouts],
                "mode_inputs": [m.to_dict() for m in self.mode_inputs], "notes": list(self.notes)}


def find(graph, collections=None):
    """Every BN layer, dropout and mode input of ``graph`` (tf.Graph, GraphDef or MetaGraphDef).

    ``collections`` (``{name: [op or tensor names]}``) adds to or replaces the
    graph's own collections (a GraphDef has none).
    """
    graph = _as_graph(graph)
    return _Finder(graph, collections).run()


def _as_graph(graph):
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    from tensorflow.core.protobuf import meta_graph_pb2  # pylint: disable=import-outside-toplevel

    if isinstance(graph, tf.Graph):
        return graph
    if isinstance(graph, meta_graph_pb2.MetaGraphDef):
        g = tf.Graph()
        with g.as_default():
            tf.train.import_meta_graph(graph, clear_devices=True)
        return g
    if isinstance(graph, tf.GraphDef):
        g = tf.Graph()
        with g.as_default():
            tf.import_graph_def(graph, name="")
        return g
    raise TypeError(f"finder.find: graph must be a tf.Graph, GraphDef or MetaGraphDef, "
                    f"got {type(graph).__name__}")


def _is_gradient(name):
    """An op ``tf.gradients`` made (scope ``gradients``, ``gradients_1``, ... at any depth)."""
    return any(part == "gradients" or (part.startswith("gradients_") and part[10:].isdigit())
               for part in name.split("/")[:-1])


def _scope(name):
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _common_scope(names):
    parts = [n.split("/")[:-1] for n in names]
    if not parts:
        return ""
    prefix = []
    for items in zip(*parts):
        if all(i == items[0] for i in items):
            prefix.append(items[0])
        else:
            break
    return "/".join(prefix)


class _Source:
    """Where a traced tensor comes from: ``kind`` variable/const/batch/tensor, with its branch path."""

    def __init__(self, kind, op, output, branches):
        self.kind, self.op, self.output, self.branches = kind, op, output, branches

    def __repr__(self):
        return f"_Source({self.kind}, {self.op.name}:{self.output}, {self.branches})"


class _Finder:
    def __init__(self, graph, collections):
        self.g = graph
        self.ops = [op for op in graph.get_operations() if not _is_gradient(op.name)]
        self.consumers = {}
        self.ctrl_consumers = {}
        for op in self.ops:
            if _is_gradient(op.name):
                continue  # backprop reads every forward tensor; it is not part of a layer
            for t in op.inputs:
                self.consumers.setdefault(t.op.name, []).append(op)
            for c in op.control_inputs:
                self.ctrl_consumers.setdefault(c.name, []).append(op)
        self.collections = self._collections(collections)
        self._ancestor_cache = {}
        self.notes = []
        self.modes = {}
        self.debiased = set()
        self.decay_caps = {}

    # ---- graph helpers

    def _collections(self, extra):
        out = {}
        for key in self.g.get_all_collection_keys():
            if key in SKIP_COLLECTIONS:
                continue
            names = []
            for item in self.g.get_collection(key):
                op = getattr(item, "op", None)
                if op is not None and hasattr(op, "name"):
                    names.append(op.name)
                elif hasattr(item, "name") and hasattr(item, "node_def"):
                    names.append(item.name)
            if names:
                out[key] = names
        for key, names in (extra or {}).items():
            out[key] = [n.split(":")[0] for n in names]
        return out

    def op(self, name):
        try:
            return self.g.get_operation_by_name(name)
        except KeyError:
            return None

    def ancestors(self, op):
        """All ops ``op`` depends on, through data and control inputs (``op`` included)."""
        if op.name not in self._ancestor_cache:
            self._ancestor_cache[op.name] = {o.name for o in walk.ancestors([op])}
        return self._ancestor_cache[op.name]

    def _descendants(self, op, limit=100000):
        seen, stack = set(), [op]
        while stack and len(seen) < limit:
            o = stack.pop()
            if o.name in seen:
                continue
            seen.add(o.name)
            stack.extend(self.consumers.get(o.name, []))
            stack.extend(self.ctrl_consumers.get(o.name, []))
        return seen

    # ---- tracing statistics to their sources

    def trace(self, tensor, stop=None, branches=(), depth=0):
        """Sources of ``tensor``: a list of ``_Source`` with the (predicate, port) path taken."""
        op = tensor.op
        if depth > 64:
            return [_Source("tensor", op, tensor.value_index, branches)]
        if op.type in VARIABLE_OPS:
            return [_Source("variable", op, tensor.value_index, branches)]
        if op.type == "Const":
            return [_Source("const", op, tensor.value_index, branches)]
        if op.type in ("ReadVariableOp",) or (op.type in TRANSPARENT and op.inputs):
            if op.type == "IdentityN":
                return self.trace(op.inputs[tensor.value_index], stop, branches, depth + 1)
            return self.trace(op.inputs[0], stop, branches, depth + 1)
        if op.type in ("Switch", "RefSwitch"):
            pred = op.inputs[1]
            return self.trace(op.inputs[0], stop, branches + ((pred, tensor.value_index),), depth + 1)
        if op.type in IF_OPS:
            # TF2 control flow: each branch function returns one of the If's inputs (through
            # Identity / ReadVariableOp) or computes something the finder does not read
            pred, out = op.inputs[0], []
            for port, attr in ((1, "then_branch"), (0, "else_branch")):
                arg = self._function_returns_arg(op.get_attr(attr).name, tensor.value_index)
                if arg is None:
                    out.append(_Source("tensor", op, tensor.value_index, branches + ((pred, port),)))
                else:
                    out += self.trace(op.inputs[1 + arg], stop, branches + ((pred, port),), depth + 1)
            return out
        if op.type in ("Merge", "RefMerge"):
            out = []
            for t in op.inputs:
                out += self.trace(t, stop, branches, depth + 1)
            return out
        if op.type in FUSED and tensor.value_index in (1, 2):
            # batch_mean / batch_variance: the batch's in training, the inputs' otherwise
            if op.get_attr("is_training"):
                return [_Source("batch", op, tensor.value_index, branches)]
            return self.trace(op.inputs[2 + tensor.value_index], stop, branches, depth + 1)
        if op.type == "Placeholder" or op.type == "PlaceholderWithDefault":
            return [_Source("tensor", op, tensor.value_index, branches)]
        return [_Source("batch" if self._computes_from_data(op) else "tensor", op,
                        tensor.value_index, branches)]

    def _functions(self):
        """``{name: FunctionDef}`` of the graph's library (TF2 control flow branches)."""
        if not hasattr(self, "_function_defs"):
            self._function_defs = {f.signature.name: f for f in self.g.as_graph_def().library.function} \
                if any(op.type in IF_OPS for op in self.ops) else {}
        return self._function_defs

    def _function_returns_arg(self, name, index):
        """The input-argument index that output ``index`` of function ``name`` passes through
        unchanged (Identity, ReadVariableOp), else None."""
        fdef = self._functions().get(name)
        if fdef is None or index >= len(fdef.signature.output_arg):
            return None
        args = [a.name for a in fdef.signature.input_arg]
        nodes = {n.name: n for n in fdef.node_def}
        ref = fdef.ret.get(fdef.signature.output_arg[index].name, "")
        for _ in range(16):
            base = ref.split(":")[0].lstrip("^")
            if base in args:
                return args.index(base)
            node = nodes.get(base)
            if node is None or node.op not in ("Identity", "ReadVariableOp", "Snapshot") or not node.input:
                return None
            ref = node.input[0]
        return None

    def _function_writes_arg(self, name, index):
        """Whether function ``name`` assigns to its input argument ``index`` (a variable handle)."""
        fdef = self._functions().get(name)
        if fdef is None or index >= len(fdef.signature.input_arg):
            return False
        arg = fdef.signature.input_arg[index].name
        return any(n.op in WRITE_OPS and n.input and n.input[0].split(":")[0] == arg
                   for n in fdef.node_def)

    def _computes_from_data(self, op):
        """A statistic computed here from a placeholder/data tensor (not from variables alone)."""
        for name in self.ancestors(op):
            a = self.g.get_operation_by_name(name)
            if a.type in ("Placeholder", "PlaceholderWithDefault", "IteratorGetNext",
                          "QueueDequeueV2", "QueueDequeueManyV2") and a.outputs and \
                    a.outputs[0].dtype.base_dtype.is_floating:
                return True
        return False

    # ---- evaluating small constant subgraphs

    def const_value(self, tensor, assume=None, depth=0):
        """NumPy value of ``tensor`` if it is built from Consts only (Merges resolved by ``assume``,
        ``{predicate tensor name: bool}``, else by taking their training branch); else None."""
        op = tensor.op
        if depth > 32:
            return None
        try:
            if op.type == "Const":
                from tensorflow.python.framework import tensor_util  # pylint: disable=import-outside-toplevel
                return tensor_util.MakeNdarray(op.get_attr("value"))
            if op.type in ("Identity", "Snapshot", "StopGradient", "Cast", "Enter") or \
                    (op.type in ("Switch", "RefSwitch")):
                v = self.const_value(op.inputs[0], assume, depth + 1)
                if v is not None and op.type == "Cast":
                    v = v.astype(op.outputs[0].dtype.as_numpy_dtype)
                return v
            if op.type == "PlaceholderWithDefault" and assume and op.name in assume:
                return np.asarray(assume[op.name])
            if op.type == "Placeholder" and assume and op.name in assume:
                return np.asarray(assume[op.name])
            if op.type == "Merge":
                chosen = self._merge_branch(op, assume)
                if chosen is not None:
                    return self.const_value(op.inputs[chosen], assume, depth + 1)
                return None
            args = [self.const_value(t, assume, depth + 1) for t in op.inputs]
            if any(a is None for a in args):
                return None
            fns = {"Sub": np.subtract, "Add": np.add, "AddV2": np.add, "Mul": np.multiply,
                   "RealDiv": np.divide, "Div": np.divide, "Maximum": np.maximum,
                   "Minimum": np.minimum, "Equal": np.equal, "NotEqual": np.not_equal,
                   "LogicalAnd": np.logical_and, "LogicalOr": np.logical_or,
                   "Greater": np.greater, "Less": np.less, "GreaterEqual": np.greater_equal}
            if op.type in fns:
                return fns[op.type](args[0], args[1])
            unary = {"Neg": np.negative, "Reciprocal": np.reciprocal, "Sqrt": np.sqrt,
                     "Rsqrt": lambda a: 1 / np.sqrt(a), "Square": np.square,
                     "LogicalNot": np.logical_not}
            if op.type in unary:
                return unary[op.type](args[0])
        except Exception:  # pylint: disable=broad-except
            return None
        return None

    def _merge_branch(self, merge, assume):
        """Index of the Merge input taken under ``assume`` (or in training when no assumption)."""
        for i, t in enumerate(merge.inputs):
            for pred, port in self._switch_path(t):
                value = self.const_value(pred, assume) if assume else None
                if value is None:
                    mode = self.mode_of(pred)
                    value = None
                    if mode is not None and assume is None:
                        value = self._pred_in_training(pred, mode)
                if value is not None and bool(value) == bool(port):
                    return i
        return None

    def _switch_path(self, tensor, depth=0):
        """The (predicate, port) of the nearest Switch above ``tensor`` in its branch."""
        op = tensor.op
        if depth > 64:
            return []
        if op.type in ("Switch", "RefSwitch"):
            return [(op.inputs[1], tensor.value_index)]
        if op.type in ("Merge", "RefMerge", "Placeholder", "VariableV2", "VarHandleOp"):
            return []
        for t in op.inputs:
            found = self._switch_path(t, depth + 1)
            if found:
                return found
        for c in op.control_inputs:
            if c.type == "Identity" and c.inputs and c.inputs[0].op.type == "Switch":
                return [(c.inputs[0].op.inputs[1], c.inputs[0].value_index)]
            found = self._switch_path(c.outputs[0], depth + 1) if c.outputs else []
            if found:
                return found
        return []

    # ---- modes

    def mode_of(self, pred):
        """The ModeInput behind a cond predicate, or None when it is computed from other data."""
        root = self._pred_root(pred)
        if root is None:
            return None
        if root.name in self.modes:
            return self.modes[root.name]
        role = "learning_phase" if "learning_phase" in root.name else "training"
        default = None
        if root.type == "PlaceholderWithDefault":
            default = self.const_value(root.inputs[0])
        elif root.type == "Const":
            default = self.const_value(root.outputs[0])
        if default is not None:
            default = default.item() if np.ndim(default) == 0 else default.tolist()
        if isinstance(default, (bool, np.bool_)):
            default = bool(default)
        prediction = 0 if (role == "learning_phase" and not root.outputs[0].dtype.is_bool) else False
        mode = ModeInput(root.name, role, root.type, default, prediction)
        self.modes[root.name] = mode
        return mode

    def _pred_root(self, tensor, depth=0):
        op = tensor.op
        if depth > 32:
            return None
        if op.type in ("Placeholder", "PlaceholderWithDefault") or (
                op.type == "Const" and op.outputs[0].dtype.is_bool):
            return op
        if op.type in ("Identity", "LogicalNot", "Cast", "Switch", "Equal", "NotEqual", "Squeeze",
                       "Reshape", "Enter", "Greater", "GreaterEqual", "Less", "LessEqual"):
            roots = [self._pred_root(t, depth + 1) for t in op.inputs
                     if t.op.type != "Const" or op.type in ("Identity", "Cast", "Switch")]
            roots = [r for r in roots if r is not None]
            return roots[0] if len(roots) == 1 else (roots[0] if roots and op.type == "Switch" else None)
        return None

    def _pred_in_training(self, pred, mode):
        """The predicate's value when ``mode`` is fed training (True / learning phase 1)."""
        value = True if mode.op != "Const" else mode.default
        if mode.role == "learning_phase" and not isinstance(mode.prediction_value, bool):
            value = 1
        out = self.const_value(pred, {mode.name: value})
        return None if out is None else bool(out)

    def _pred_in_prediction(self, pred, mode):
        value = mode.default if mode.op == "Const" else mode.prediction_value
        out = self.const_value(pred, {mode.name: value})
        return None if out is None else bool(out)

    # ---- normalisation units

    def run(self):
        units = []
        for op in self.ops:
            try:
                unit = self._unit(op)
            except Exception as err:  # pylint: disable=broad-except
                # an odd graph must not stop the tools: say which op could not be read
                self.notes.append(f"{op.name} ({op.type}) looks like a normalisation op but could "
                                  f"not be read: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
                continue
            if unit:
                units.append(unit)
        layers = [self._layer(group) for group in self._group(units)]
        layers.sort(key=lambda l: self._order.get(l.bn_ops[0], 0))
        dropouts = self._dropouts()
        modes = {}
        for item in layers + dropouts:
            if item.mode is not None and item.mode.op != "python_bool":
                modes[item.mode.name] = item.mode
        for d in dropouts:
            src = d.keep_prob
            if src["source"] in ("placeholder", "placeholder_with_default") and src["name"] not in modes:
                op = self.g.get_operation_by_name(src["name"])
                default = self.const_value(op.inputs[0]) if op.inputs else None
                modes[src["name"]] = ModeInput(src["name"], src["param"], op.type,
                                               None if default is None else float(default),
                                               PREDICTION_VALUES[src["param"]])
            if src["source"] in ("placeholder", "placeholder_with_default") and d.scales_at_prediction:
                # vanilla dropout: prediction computes x * keep_prob, so 1.0 would be wrong
                modes[src["name"]].prediction_value = None
        for op in self.ops:
            if op.type in ("Placeholder", "PlaceholderWithDefault") and \
                    op.name.split("/")[-1].startswith("keras_learning_phase") and op.name not in modes:
                default = self.const_value(op.inputs[0]) if op.inputs else None
                modes[op.name] = ModeInput(op.name, "learning_phase", op.type,
                                           None if default is None else default.item(),
                                           False if op.outputs[0].dtype.is_bool else 0)
        self._note_hidden_layers(layers)
        for layer in layers:
            if any(note.startswith("TF2 control flow") for note in layer.notes):
                self.notes.append(f"TF2 control flow: BN layer {layer.name}'s updates run inside "
                                  f"If branch functions; its decay is not read")
        return Findings(layers, dropouts, list(modes.values()), self.notes)

    def _note_hidden_layers(self, layers):
        """Normalisation ops inside TF2 control-flow functions (a fused BN under an If) are not
        analysed: say so, naming the If ops, instead of reporting nothing."""
        functions = self._functions()
        if not functions:
            return
        seen = {n for layer in layers for n in layer.bn_ops}
        for op in self.ops:
            if op.type not in IF_OPS:
                continue
            kinds = set()
            for attr in ("then_branch", "else_branch"):
                fdef = functions.get(op.get_attr(attr).name)
                kinds |= {n.op for n in (fdef.node_def if fdef else [])
                          if n.op in FUSED + (GLOBAL,)}
            if kinds and op.name not in seen:
                self.notes.append(
                    f"TF2 control flow: If op {op.name} holds {', '.join(sorted(kinds))} in its "
                    f"branch functions; BN layers inside TF2 control flow are not analysed (build "
                    f"the graph under tf.compat.v1.disable_v2_behavior(), or call "
                    f"tf.compat.v1.disable_control_flow_v2(), and save it again)")

    @property
    def _order(self):
        if not hasattr(self, "_order_cache"):
            self._order_cache = {op.name: i for i, op in enumerate(self.ops)}
        return self._order_cache

    def _unit(self, op):
        """A dict describing one normalisation op, or None."""
        if op.type in FUSED:
            x, scale, offset, mean, var = op.inputs[:5]
            training = bool(op.get_attr("is_training"))
            factor = op.get_attr("exponential_avg_factor") if op.type == "FusedBatchNormV3" else 1.0
            unit = dict(op=op, kind="fused", x=x, y=op.outputs[0], eps=float(op.get_attr("epsilon")),
                        mean_ignored=self.trace(mean), var_ignored=self.trace(var),
                        scale=self.trace(scale), offset=self.trace(offset),
                        mean=[] if training and factor == 1.0 else self.trace(mean),
                        var=[] if training and factor == 1.0 else self.trace(var),
                        batch=training, fused_factor=factor,
                        mean_batch=[_Source("batch", op, 1, ())] if training else [],
                        var_batch=[_Source("batch", op, 2, ())] if training else [])
            return unit
        if op.type == GLOBAL:
            t, m, v, beta, gamma = op.inputs[:5]
            scaled = bool(op.get_attr("scale_after_normalization"))
            return dict(op=op, kind="global_normalization", x=t, y=op.outputs[0],
                        eps=float(op.get_attr("variance_epsilon")), scale=self.trace(gamma) if scaled else [],
                        offset=self.trace(beta), mean=self.trace(m), var=self.trace(v), batch=False)
        if op.type in ("Rsqrt", "Sqrt", "Pow") and op.inputs[0].op.type in ("Add", "AddV2"):
            return self._rsqrt_unit(op)
        return None

    def _root_kind(self, op):
        """``Rsqrt`` for rsqrt and ``pow(., -0.5)``, ``Sqrt`` for sqrt and ``pow(., 0.5)``."""
        if op.type != "Pow":
            return op.type
        exponent = self.const_value(op.inputs[1])
        if exponent is None or np.size(exponent) != 1:
            return None
        return {-0.5: "Rsqrt", 0.5: "Sqrt"}.get(float(np.ravel(exponent)[0]))

    def _rsqrt_unit(self, root):
        kind = self._root_kind(root)
        if kind is None:
            return None
        add = root.inputs[0].op
        eps, var = None, None
        for i in (0, 1):
            value = self.const_value(add.inputs[i])
            if value is not None and np.size(value) >= 1 and np.all(value == np.ravel(value)[0]):
                eps, var = float(np.ravel(value)[0]), add.inputs[1 - i]
        if var is None or not 0 < eps < 1:
            return None
        inv, gamma = root.outputs[0], None
        cons = self.consumers.get(root.name, [])
        # tf.nn.batch_normalization: inv = rsqrt * gamma, then x*inv and mean*inv
        if kind == "Rsqrt" and len(cons) == 1 and cons[0].type == "Mul":
            other = self._other(cons[0], inv)
            if not self._is_centred(other) and self._stat_like(other):
                gamma, inv = other, cons[0].outputs[0]
        users = self.consumers.get(inv.op.name, [])
        muls = [u for u in users if u.type == "Mul"]
        x = mean = y = None
        offset, rescaled = None, 0
        if kind == "Rsqrt" and len(muls) == 2:
            tails = {}
            for m in muls:
                nxt = self.consumers.get(m.name, [])
                tails[m.name] = nxt
            xm = [m for m in muls if any(n.type in ("Add", "AddV2") for n in tails[m.name])]
            mm = [m for m in muls if any(n.type in ("Sub", "Neg") for n in tails[m.name])]
            negated = [m for m in muls if self._other(m, inv).op.type == "Neg"]
            if not mm and len(negated) == 1 and len(xm) == 2:
                # center=False: x*inv + (-mean)*inv
                mm, xm = negated, [m for m in xm if m is not negated[0]]
            if len(xm) == 1 and len(mm) == 1 and xm[0] is not mm[0]:
                x, mean = self._other(xm[0], inv), self._other(mm[0], inv)
                subs = [n for n in tails[mm[0].name] if n.type in ("Sub", "Neg")]
                if subs:
                    offset = subs[0].inputs[0] if subs[0].type == "Sub" else None
                else:
                    mean = mean.op.inputs[0]  # the Neg's input
                y_ops = [n for n in tails[xm[0].name] if n.type in ("Add", "AddV2")]
                y = y_ops[0].outputs[0]
        if x is None:
            # (x - mean) * rsqrt(var + eps) or (x - mean) / sqrt(var + eps), then * gamma + beta
            for u in users:
                if (kind == "Rsqrt" and u.type == "Mul") or (kind == "Sqrt" and u.type in ("RealDiv", "Div")
                                                                   and u.inputs[1].name == inv.name):
                    centred = self._other(u, inv) if u.type == "Mul" else u.inputs[0]
                    if centred.op.type == "Mul" and not self._is_centred(centred):
                        # gamma * (x - mean) / sqrt(var + eps): gamma before the division
                        a, b = centred.op.inputs
                        for first, second in ((a, b), (b, a)):
                            if self._is_centred(second) and self._stat_like(first):
                                gamma, centred = first, second
                                break
                    if self._is_centred(centred) and not self._stat_like(centred.op.inputs[0]):
                        x, mean = centred.op.inputs[0], centred.op.inputs[1]
                        y, gamma2, offset, rescaled = self._affine_tail(u.outputs[0])
                        gamma = gamma if gamma is not None else gamma2
                        break
        if x is None:
            return None
        mean_src, var_src = self.trace(mean), self.trace(var)
        batch = any(s.kind == "batch" for s in mean_src + var_src)
        return dict(op=root, kind="batch_normalization", x=x, y=y, eps=eps,
                    scale=self.trace(gamma) if gamma is not None else [],
                    offset=self.trace(offset) if offset is not None else [],
                    mean=mean_src, var=var_src, batch=batch, rescaled=rescaled,
                    mean_batch=[s for s in mean_src if s.kind == "batch"],
                    var_batch=[s for s in var_src if s.kind == "batch"])

    @staticmethod
    def _other(op, tensor):
        a, b = op.inputs[0], op.inputs[1]
        return b if a.name == tensor.name else a

    @staticmethod
    def _is_centred(t):
        return t.op.type == "Sub" and len(t.op.inputs) == 2

    def _stat_like(self, t):
        """A per-channel parameter: from variables/Consts only, or shaped (C,) / (1, ..., 1, C)."""
        if all(src.kind in ("variable", "const") for src in self.trace(t)):
            return True
        try:
            dims = t.shape.as_list()
        except ValueError:
            return False
        return None not in dims and sum(d != 1 for d in dims) <= 1

    def _affine_tail(self, t):
        """After the normalised tensor, a chain of per-channel ``* p`` / ``+ p`` ops: gamma is the
        first multiplier read from a variable or Const, beta the first such addend (batch
        renormalisation's ``* r + d`` sit between them)."""
        gamma = offset = None
        rescaled = 0
        while True:
            cons = self.consumers.get(t.op.name, [])
            if len(cons) != 1 or cons[0].type not in ("Mul", "Add", "AddV2", "BiasAdd"):
                return t, gamma, offset, rescaled
            other = self._other(cons[0], t)
            if other.name == t.name or not self._stat_like(other):
                return t, gamma, offset, rescaled
            from_vars = all(src.kind in ("variable", "const") for src in self.trace(other))
            if cons[0].type == "Mul" and gamma is None and from_vars:
                gamma = other
            elif cons[0].type != "Mul" and offset is None and from_vars:
                offset = other
            else:
                rescaled += 1
            t = cons[0].outputs[0]

    # ---- grouping units into layers

    def _variables_of(self, unit):
        names = set()
        for key in ("scale", "offset", "mean", "var"):  # Consts too: a frozen graph's parameters
            names |= {s.op.name for s in unit[key] if s.kind in ("variable", "const")}
        for key in ("mean", "var"):
            names |= set(self._linked(unit, key))
        return names

    def _linked(self, unit, key):
        """Variables that EMA writes fill from this unit's batch ``key`` statistic (a moving
        statistic that training updates even where this unit never reads it)."""
        cache = unit.setdefault("linked", {})
        if key in cache:
            return cache[key]
        found = []
        frontier, seen = [], set()
        for src in unit.get(key + "_batch") or []:
            # only the consumers of this output (a fused op's mean and variance are outputs 1, 2)
            frontier += [c for c in self.consumers.get(src.op.name, [])
                         if any(t.op.name == src.op.name and t.value_index == src.output
                                for t in c.inputs)]
        frontier = [c for c in frontier if c.type not in WRITE_OPS] + \
            [c for c in frontier if c.type in WRITE_OPS]
        pending = list(frontier)
        frontier = []
        for c in pending:
            seen.add(c.name)
            if c.type in WRITE_OPS:
                target = self.trace(c.inputs[0])
                if target and target[0].kind == "variable" and \
                        self._decay(c, target[0].op.name)[0] is not None:
                    found.append(target[0].op.name)
            elif c.type in ("Identity", "Switch", "Sub", "Mul", "Squeeze", "Reshape", "Enter",
                            "StopGradient", "RealDiv", "Merge"):
                frontier.append(c)
        while frontier:
            o = frontier.pop()
            for c in self.consumers.get(o.name, []):
                if c.name in seen:
                    continue
                seen.add(c.name)
                if c.type in WRITE_OPS:
                    target = self.trace(c.inputs[0])
                    if target and target[0].kind == "variable" and self._decay(c, target[0].op.name)[0] is not None:
                        found.append(target[0].op.name)
                elif c.type in ("Identity", "Switch", "Sub", "Mul", "Squeeze", "Reshape", "Enter",
                                "StopGradient", "RealDiv"):
                    frontier.append(c)
        cache[key] = sorted(set(found))
        return cache[key]

    def _group(self, units):
        groups = []
        for u in units:
            names = self._variables_of(u)
            joined = [g for g in groups if names & g["vars"]] if names else []
            if not joined:
                groups.append({"units": [u], "vars": set(names)})
                continue
            first = joined[0]
            first["units"].append(u)
            first["vars"] |= names
            for g in joined[1:]:
                first["units"] += g["units"]
                first["vars"] |= g["vars"]
                groups.remove(g)
        return [g["units"] for g in groups]

    # ---- one layer

    def _layer(self, units):
        units.sort(key=lambda u: self._order.get(u["op"].name, 0))
        first = units[0]
        notes = []

        def pick(key, moving_only=False):
            found = []
            for u in units:
                for s in u[key]:
                    if s.kind in ("variable", "const") and s.op.name not in found:
                        found.append(s.op.name)
            if len(found) > 1:
                notes.append(f"{key}: more than one source ({', '.join(found)}); reporting the first")
            return found[0] if found else None

        gamma, beta = pick("scale"), pick("offset")
        for key in ("scale", "offset"):
            if (gamma if key == "scale" else beta) is None:
                behind = self._parameter_behind(units, key)
                if behind:
                    notes.append(f"{'gamma' if key == 'scale' else 'beta'} {behind} reaches the "
                                 f"normalisation through a per-channel correction (batch "
                                 f"renormalisation or similar)")
                    if key == "scale":
                        gamma = behind
                    else:
                        beta = behind
        moving_mean, moving_var = pick("mean"), pick("var")
        unread = []
        if moving_mean is None and moving_var is None:
            linked_mean = sorted({n for u in units for n in self._linked(u, "mean")})
            linked_var = sorted({n for u in units for n in self._linked(u, "var")})
            moving_mean = linked_mean[0] if linked_mean else None
            moving_var = linked_var[0] if linked_var else None
            if moving_mean is None and moving_var is None:  # a fused op in training mode
                moving_mean = next((s.op.name for u in units for s in u.get("mean_ignored", [])
                                    if s.kind in ("variable", "const")), None)
                moving_var = next((s.op.name for u in units for s in u.get("var_ignored", [])
                                   if s.kind in ("variable", "const")), None)
            unread = [n for n in (moving_mean, moving_var) if n]
        var_names = [n for n in (gamma, beta, moving_mean, moving_var) if n]
        const_only = all(self.g.get_operation_by_name(n).type == "Const" for n in var_names) and var_names
        name = _common_scope(var_names) if var_names and not const_only else ""
        if not name:
            name = _common_scope([u["op"].name for u in units]) or _scope(first["op"].name)
            for suffix in ("/batchnorm", "/cond", "/FusedBatchNorm"):
                if name.endswith(suffix):
                    name = name[: -len(suffix)]
        if const_only and var_names:
            name = _common_scope(var_names) or name
        if not name:
            name = first["op"].name  # an unscoped layer: named by its normalisation op

        sites = self._call_sites(units)
        chosen = next((site for site in sites if any(not u["batch"] for u in site)), sites[0])
        x = self._strip_switch(chosen[0]["x"])
        output = self._layer_output(chosen)
        call_sites = [[self._strip_switch(site[0]["x"]).name, self._layer_output(site).name]
                      for site in sites]
        if len(sites) > 1:
            notes.append(f"the variables are shared by {len(sites)} calls (inputs "
                         f"{', '.join(c[0] for c in call_sites)}): input and output are those of "
                         f"the call on {x.name}; call_sites lists all")
        eps_values = sorted({u["eps"] for u in units})
        if len(eps_values) > 1:
            notes.append(f"the normalisation ops use different epsilons {eps_values}; reporting the "
                         f"prediction path's")
        mode, used, batch_only = self._layer_mode(units)
        eps = eps_values[0]
        if mode is not None and len(eps_values) > 1:
            pred_units = [u for u in units if not u["batch"]]
            eps = pred_units[0]["eps"] if pred_units else eps
        kind = first["kind"]

        stats = [n for n in (moving_mean, moving_var) if n]
        upd = self._updates(stats, units, output, moving_var, mode)
        notes += upd["notes"]
        if upd.get("output") is not None:
            output = upd["output"]
        if kind == "batch_normalization" and upd["location"] == "output" and mode is not None and \
                not upd["at_prediction"] and used and \
                mode.op != "python_bool" and any(u["batch"] for u in units) and moving_mean and \
                any(s.kind == "batch" for u in units for s in u["mean"]):
            kind = "article"
        if any(u.get("rescaled") for u in units):
            kind = "batch_normalization"
            notes.append("the training output is rescaled by per-channel factors computed from the "
                         "batch and moving statistics (batch renormalisation)")
        if batch_only and unread:
            notes.append(f"moving statistics {', '.join(unread)} are updated in training but never "
                         f"read: the layer normalises with the batch's statistics in every mode")
            used = False
        elif batch_only:
            notes.append("no moving statistics: the layer normalises with the batch's statistics "
                         "in every mode")
        if any(u.get("fused_factor", 1.0) != 1.0 for u in units):
            notes.append("fused kernel with exponential_avg_factor: the kernel updates the "
                         "statistics itself")
        shape = None
        for n in stats:
            shape = self._variable_shape(self.g.get_operation_by_name(n))
            break
        if shape is not None and len(shape) > 1:
            notes.append(f"moving statistics shaped {shape} (broadcast to the channel axis)")
        return BNLayer(name=name, kind=kind, input=x.name, output=output.name, gamma=gamma, beta=beta,
                       moving_mean=moving_mean, moving_variance=moving_var, epsilon=eps,
                       decay=upd["decay"], update_ops=upd["ops"], update_location=upd["location"],
                       updates_at_prediction=upd["at_prediction"], zero_debias=upd["zero_debias"],
                       decay_cap=upd.get("decay_cap"),
                       mode=mode, statistics_used_at_prediction=used,
                       variance_estimator=upd["estimator"],
                       stat_shape=shape, channel_axis=self._channel_axis(units, x),
                       call_sites=call_sites,
                       bn_ops=[u["op"].name for u in units], notes=notes)

    def _call_sites(self, units):
        """Units grouped by the tensor they normalise: one group per call of a shared layer (two
        towers reusing one BN), while a cond's two branches or a train/predict pair built on the
        same input stay one call."""
        sites = {}
        for u in units:
            sites.setdefault(self._strip_switch(u["x"]).name, []).append(u)
        return list(sites.values())

    @staticmethod
    def _channel_axis(units, x):
        """The axis the statistics run along: 1 for a fused op with ``data_format`` NC..., else
        the one non-1 axis of the statistics as the normalisation broadcasts them (``(1, C, 1)``
        against a rank-3 input is axis 1), else -1 (channels last)."""
        for u in units:
            if u["op"].type in FUSED:
                fmt = u["op"].get_attr("data_format")
                fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
                return 1 if fmt.startswith("NC") else -1
        rank = x.shape.rank
        for u in units:
            if u["op"].type in ("Rsqrt", "Sqrt", "Pow"):
                try:
                    dims = u["op"].outputs[0].shape.as_list()
                except ValueError:
                    continue
                if rank and len(dims) == rank and sum(d != 1 for d in dims) == 1 and None not in dims:
                    axis = next(i for i, d in enumerate(dims) if d != 1)
                    return -1 if axis == rank - 1 else axis
        return -1

    @staticmethod
    def _variable_shape(op):
        """A variable's or Const's declared shape (a resource handle's own shape is ())."""
        try:
            if op.type in ("VarHandleOp", "VariableV2", "Variable"):
                dims = [d.size for d in op.get_attr("shape").dim]
            else:
                dims = op.outputs[0].shape.as_list()
        except (ValueError, TypeError):
            return None
        return None if any(d is None or d < 0 for d in dims) else tuple(dims)

    def _parameter_behind(self, units, key):
        """A variable a computed scale/offset is made from through Mul/Add (renorm's gamma * r)."""
        for u in units:
            for src in u[key]:
                if src.kind not in ("batch", "tensor"):
                    continue
                frontier = [src.op]
                for _ in range(4):
                    nxt = []
                    for o in frontier:
                        if o.type not in ("Mul", "Add", "AddV2", "Identity", "Switch", "Merge",
                                          "ReadVariableOp"):
                            continue
                        for t in o.inputs:
                            for s2 in self.trace(t):
                                if s2.kind == "variable" and not self._writes(s2.op.name) and \
                                        s2.op.name not in self._all_stats(units):
                                    return s2.op.name
                            nxt.append(t.op)
                    frontier = nxt
        return None

    def _all_stats(self, units):
        return {s.op.name for u in units for s in u["mean"] + u["var"]}

    def _strip_switch(self, t):
        while t.op.type in ("Switch", "RefSwitch", "Identity") and t.op.inputs and \
                (t.op.type != "Identity" or t.op.inputs[0].op.type in ("Switch", "RefSwitch")):
            t = t.op.inputs[0]
        return t

    def _layer_output(self, units):
        ys = [u["y"] for u in units]
        if len(ys) == 1:
            y = ys[0]
            # a single unit inside a cond branch whose other branch is not a BN (rare): keep y
            return y
        merges = {}
        for y in ys:
            for c in self.consumers.get(y.op.name, []):
                if c.type == "Merge" and y.name in [i.name for i in c.inputs]:
                    merges.setdefault(c.name, []).append(y)
        for name, members in merges.items():
            if len(members) == len(ys):
                return self.g.get_operation_by_name(name).outputs[0]
        # built twice (Python bools): the last one built is usually the prediction path
        pred = [u["y"] for u in units if not u["batch"]]
        return (pred or ys)[-1]

    def _layer_mode(self, units):
        """(ModeInput or None, statistics used at prediction, no moving statistics at all)."""
        has_moving = any(s.kind in ("variable", "const") for u in units for s in u["mean"] + u["var"])
        batch_only = not has_moving
        preds = []
        for u in units:
            for s in u["mean"] + u["var"]:
                preds += [p for p, _ in s.branches]
            if u["kind"] == "fused" and len(units) > 1:
                preds += [p for p, _ in self._switch_path(u["x"])]
        mode = None
        for p in preds:
            mode = self.mode_of(p)
            if mode is not None:
                break
        if mode is None and len(units) > 1:
            kinds = {u["batch"] for u in units}
            if kinds == {True, False}:
                return ModeInput("", "training", "python_bool", None, False), True, batch_only
        if mode is None and len(units) == 1 and units[0]["kind"] == "fused":
            op = units[0]["op"]
            training = bool(op.get_attr("is_training"))
            return (ModeInput(op.name, "training", "attr:is_training", training, None),
                    not training, batch_only)
        if mode is None:
            # one path only: a frozen or prediction graph, or a batch-statistics-only layer
            used = None if batch_only else not any(u["batch"] for u in units)
            if batch_only:
                used = False
            return None, used, batch_only
        # which statistics does the prediction branch read?
        used = None
        for u in units:
            if u["kind"] == "fused" and len(units) > 1:
                path = self._switch_path(u["x"])
                if path:
                    taken = self._pred_in_prediction(path[0][0], mode)
                    if taken is not None and bool(taken) == bool(path[0][1]):
                        used = not u["batch"]
                continue
            for s in u["mean"] + u["var"]:
                ok = True
                for p, port in s.branches:
                    taken = self._pred_in_prediction(p, mode)
                    if taken is None or bool(taken) != bool(port):
                        ok = False
                if ok:
                    used = (used or False) or s.kind in ("variable", "const")
                    if s.kind == "batch" and used is None:
                        used = False
        if mode.op == "Const" and used is None:
            used = not any(u["batch"] for u in units)
        return mode, used, batch_only

    # ---- updates

    def _writes(self, var_name):
        """Ops that write variable ``var_name``, other than its initializer and a restore."""
        var = self.g.get_operation_by_name(var_name)
        targets, frontier, out = {var_name}, [var], []
        while frontier:
            o = frontier.pop()
            for c in self.consumers.get(o.name, []):
                if c.type in IF_OPS:  # an update inside a TF2 control-flow branch function
                    index = [i for i, t in enumerate(c.inputs) if t.op.name in targets]
                    if c not in out and any(
                            self._function_writes_arg(c.get_attr(attr).name, i - 1)
                            for i in index if i > 0 for attr in ("then_branch", "else_branch")):
                        out.append(c)
                    continue
                if not c.inputs or c.inputs[0].op.name not in targets:
                    continue
                if c.type in WRITE_OPS:
                    if not self._is_init_or_restore(c, var_name):
                        out.append(c)
                elif c.type in ("RefSwitch", "Switch", "Identity", "RefIdentity", "Enter", "RefEnter") \
                        and c.name not in targets and (c.outputs[0].dtype._is_ref_dtype  # pylint: disable=protected-access
                                                       or c.outputs[0].dtype.name == "resource"):
                    targets.add(c.name)
                    frontier.append(c)
        return out

    def _is_init_or_restore(self, write, var_name):
        """The variable's initializer, or an assign from a checkpoint restore."""
        if write.name == f"{var_name}/Assign" or write.name.startswith(RESTORE_SCOPE + "/"):
            return True  # the initializer, or artefacts.restore's own assign
        value = write.inputs[1].op
        kinds = {self.g.get_operation_by_name(a).type for a in self.ancestors(value)}
        if kinds & {"RestoreV2", "Restore", "RestoreSlice"}:
            return True
        return f"{var_name}/Initializer/" in value.name + "/"

    def _updates(self, stats, units, output, moving_var, mode):
        """Update ops of the moving statistics: a dict with ``ops``, ``location``, ``decay``,
        ``estimator``, ``at_prediction`` (an update runs when the prediction output runs),
        ``zero_debias`` and ``notes``."""
        info = dict(ops=[], location=None, decay=None, estimator=None, at_prediction=None,
                    zero_debias=None, notes=[])
        writes = []
        for name in stats:
            if self.g.get_operation_by_name(name).type != "Const":
                writes += [(name, w) for w in self._writes(name)]
        if not writes:
            if stats and all(self.g.get_operation_by_name(n).type != "Const" for n in stats):
                info["at_prediction"] = False
            return info
        locations, at_prediction = [], False
        pred_out = self.ancestors(output.op)
        unit_outs = set()
        for u in units:
            unit_outs |= self.ancestors(u["y"].op)
        for _, w in writes:
            if w.name in unit_outs or w.name in pred_out:
                locations.append("output")
                if w.name in pred_out and self._runs_at_prediction(w, mode):
                    at_prediction = True
                continue
            below = self._descendants(w)
            loc = None
            for key, members in self.collections.items():
                if any(m in below for m in members):
                    loc = "UPDATE_OPS" if key == "update_ops" else f"collection:{key}"
                    if key == "update_ops":
                        break
            if loc is None:
                sink = self.g.get_operation_by_name(self._sink(w))
                if self._passes_through(sink, output):
                    # contrib's updates_collections=None: y = tf.cond(training, force_updates, y)
                    info["output"] = sink.outputs[0]
                    locations.append("output")
                    continue
                loc = f"separate-op:{sink.name}"
            locations.append(loc)
        location = locations[0]
        separate = sorted({loc.split(":", 1)[1] for loc in locations if loc.startswith("separate-op:")})
        if location.startswith("separate-op:"):
            location = "separate-op:" + ",".join(separate)
        if len({loc.split(":")[0] for loc in locations}) > 1:
            info["notes"].append(f"update ops live in more than one place: {sorted(set(locations))}")
            for preferred in ("output", "UPDATE_OPS"):
                if preferred in locations:
                    location = preferred
                    break
        if any(w.type in IF_OPS for _, w in writes):
            info["notes"].append("TF2 control flow: the update runs inside the branch function of "
                                 f"{', '.join(sorted({w.name for _, w in writes if w.type in IF_OPS}))}"
                                 "; its decay is not read (build the graph under "
                                 "tf.compat.v1.disable_v2_behavior() to have it read)")
        decays = []
        for stat, w in writes:
            if w.type in IF_OPS:
                continue
            d, value = self._decay(w, stat)
            if d is not None:
                decays.append(d)
            if stat == moving_var and value is not None:
                info["estimator"] = self._estimator(value) or info["estimator"]
        if decays:
            info["decay"] = float(np.float32(decays[0]))
            if any(abs(d - decays[0]) > 1e-6 for d in decays):
                info["notes"].append(f"the statistics use different decays {sorted(set(decays))}")
        elif writes:
            caps = sorted({self.decay_caps[stat] for stat, _ in writes if stat in self.decay_caps})
            if caps:
                info["decay_cap"] = caps[-1]
                info["notes"].append(f"the decay is a schedule, min({caps[-1]:g}, (1 + step) / "
                                     f"(10 + step)) (ExponentialMovingAverage with num_updates): "
                                     f"decay reports None, decay_cap {caps[-1]:g}")
            else:
                info["notes"].append("the update ops do not show a constant decay (a tensor or a "
                                     "schedule): decay unknown")
        info["zero_debias"] = bool(self.debiased & set(stats)) if decays else None
        info.update(ops=[w.name for _, w in writes], location=location, at_prediction=at_prediction)
        return info

    def _passes_through(self, merge, output):
        """A cond Merge each of whose branches is ``output`` itself (through Identity/Switch): the
        updates ride on the layer's output, as ``updates_collections=None`` builds them."""
        if merge.type != "Merge" or not merge.inputs:
            return False
        return all(self._strip_switch(t).name == output.name or
                   (t.op.type == "Identity" and self._strip_switch(t.op.inputs[0]).name == output.name)
                   for t in merge.inputs)

    def _runs_at_prediction(self, write, mode):
        """An update that is an ancestor of the output runs at prediction unless a tf.cond
        branch that prediction does not take holds it."""
        path = self._switch_path(write.inputs[0]) or self._switch_path(write.inputs[1])
        if not path or mode is None or mode.op == "python_bool":
            return True
        pred, port = path[0]
        taken = self._pred_in_prediction(pred, mode)
        return taken is None or bool(taken) == bool(port)

    def _sink(self, op):
        """What a user must run to run the update ``op``: the ``NoOp`` that groups it (e.g.
        ``ema.apply``), else, inside a ``tf.cond``, the cond's ``Merge`` (a branch's ops cannot be
        fetched), else the op itself."""
        frontier, seen, merge = [op], set(), None
        in_cond = bool(self._switch_path(op.inputs[0]) or
                       (len(op.inputs) > 1 and self._switch_path(op.inputs[1])))
        while frontier:
            o = frontier.pop()
            if o.name in seen:
                continue
            seen.add(o.name)
            nxt = self.consumers.get(o.name, []) + self.ctrl_consumers.get(o.name, [])
            if not nxt and o.type == "NoOp" and o is not op:
                return o.name
            if o.type == "Merge" and merge is None:
                merge = o
            frontier.extend(nxt)
        return merge.name if in_cond and merge is not None else op.name

    def _decay(self, write, stat):
        """(decay, value tensor) of an EMA write, or (None, None).

        A zero-debiased average (``assign_moving_average(..., zero_debias=True)``)
        writes ``biased / (1 - d^t)`` where ``biased`` is itself an EMA: its decay
        is the inner one's, and ``self.debiased`` records the statistic.
        """
        value = write.inputs[1]
        if write.type in ("Assign", "AssignVariableOp") and value.op.type in ("RealDiv", "Div"):
            inner = value.op.inputs[0].op
            while inner.type in ("Identity", "ReadVariableOp") and inner.inputs:
                inner = inner.inputs[0].op
            if inner.type in ("AssignSub", "AssignSubVariableOp") and \
                    any(o.type == "Pow" for o in self._ops_above(value.op.inputs[1].op, 4)):
                biased = self.trace(inner.inputs[0])
                d, v = self._decay(inner, biased[0].op.name if biased else None)
                if d is not None:
                    self.debiased.add(stat)
                    return d, v
        if write.type in ("AssignSub", "AssignSubVariableOp") and value.op.type == "Mul":
            for i in (0, 1):
                cap = self._schedule_cap(value.op.inputs[i])
                if cap is not None:
                    self.decay_caps[stat] = cap
                factor = self.const_value(value.op.inputs[i])
                diff = value.op.inputs[1 - i]
                if factor is not None and np.size(factor) == 1 and diff.op.type == "Sub":
                    src = [s.op.name for s in self.trace(diff.op.inputs[0])]
                    if stat in src or self._reads(diff.op.inputs[0], stat):
                        return 1.0 - float(np.ravel(factor)[0]), diff.op.inputs[1]
                    src = [s.op.name for s in self.trace(diff.op.inputs[1])]
                    if stat in src or self._reads(diff.op.inputs[1], stat):  # (v - s) * (1 - d) with AssignAdd
                        return None, None
        if write.type in ("Assign", "AssignVariableOp") and value.op.type in ("Add", "AddV2"):
            terms = [value.op.inputs[0], value.op.inputs[1]]
            decay = other = None
            for t in terms:
                if t.op.type == "Mul":
                    for i in (0, 1):
                        c = self.const_value(t.op.inputs[i])
                        if c is not None and np.size(c) == 1:
                            if self._reads(t.op.inputs[1 - i], stat):
                                decay = float(np.ravel(c)[0])
                            else:
                                other = t.op.inputs[1 - i]
            if decay is not None:
                return decay, other
        if write.type in ("Assign", "AssignVariableOp"):
            return None, value
        return None, None

    def _schedule_cap(self, factor):
        """The cap of an ``ExponentialMovingAverage(decay, num_updates=step)`` schedule, whose
        factor is ``1 - min(decay, (1 + step) / (10 + step))``; else None."""
        op = factor.op
        while op.type in ("Identity", "Cast", "Switch") and op.inputs:
            op = op.inputs[0].op
        if op.type != "Sub" or self.const_value(op.inputs[0]) is None:
            return None
        inner = op.inputs[1].op
        while inner.type in ("Identity", "Cast", "Switch") and inner.inputs:
            inner = inner.inputs[0].op
        if inner.type != "Minimum":
            return None
        for t in inner.inputs:
            value = self.const_value(t)
            if value is not None and np.size(value) == 1:
                return float(np.ravel(value)[0])
        return None

    def _ops_above(self, op, depth):
        """``op`` and its data ancestors up to ``depth`` steps."""
        out, frontier = [op], [op]
        for _ in range(depth):
            frontier = [t.op for o in frontier for t in o.inputs]
            out += frontier
        return out

    def _reads(self, tensor, stat):
        return any(s.op.name == stat for s in self.trace(tensor))

    def _estimator(self, value):
        """What the moving variance averages: the ``biased`` batch variance (``tf.nn.moments``),
        the ``unbiased`` one (the fused kernel in training, or ``var * n / (n - 1)``), else None."""
        for src in self.trace(value):
            if src.kind != "batch":
                continue
            op = src.op
            if op.type in FUSED:
                return "unbiased" if src.output == 2 else None
            if op.type == "Mean":
                return "biased"
            if op.type in ("RealDiv", "Div") and self._is_bessel(op):
                return "unbiased"
        return None

    def _is_bessel(self, div):
        """``(v * n) / (n - 1)`` or ``v * (n / (n - 1))``: the Bessel correction."""
        num, den = div.inputs
        if den.op.type != "Sub" or self.const_value(den.op.inputs[1]) is None or \
                not np.all(self.const_value(den.op.inputs[1]) == 1):
            return False
        n = den.op.inputs[0]
        return n in list(num.op.inputs) or num is n

    # ---- dropout

    def _dropouts(self):
        found, seen = [], set()
        for op in self.ops:
            if op.type not in RANDOM_OPS:
                continue
            d = self._dropout_from(op)
            if d is not None and d.output not in seen:
                seen.add(d.output)
                found.append(d)
        return found

    def _dropout_from(self, rand):
        """Follow the random op to the op that applies the mask to the data."""
        mask_ops = ("Add", "AddV2", "Floor", "GreaterEqual", "Greater", "Less", "LessEqual", "Cast",
                    "Mul", "Sub", "RealDiv", "Identity", "Merge", "Switch")
        frontier, seen = [rand], set()
        mask_region = {rand.name}
        while frontier:
            o = frontier.pop(0)
            for c in self.consumers.get(o.name, []):
                if c.name in seen:
                    continue
                seen.add(c.name)
                if c.type in ("SelectV2", "Select") and c.inputs[0].op.name in mask_region:
                    return self._make_dropout(rand, c, c.inputs[1], "select")
                if c.type == "Mul":
                    other = [t for t in c.inputs if t.op.name not in mask_region]
                    if other and self._is_data(other[0]) and \
                            any(t.op.name in mask_region for t in c.inputs):
                        return self._make_dropout(rand, c, other[0], "mul")
                if c.type in mask_ops:
                    mask_region.add(c.name)
                    frontier.append(c)
        return None

    def _is_data(self, t, depth=0):
        """A tensor with a batch dimension (not a scalar keep_prob, rate or scale)."""
        if t.shape.rank is not None:
            return t.shape.rank >= 2
        if depth > 8 or t.op.type in ("Const", "Placeholder", "PlaceholderWithDefault"):
            return False
        return any(self._is_data(i, depth + 1) for i in t.op.inputs)

    def _make_dropout(self, rand, apply_op, data, how):
        notes = []
        scale_by = None
        x = data
        # inverted: x / keep_prob, x * (1 / keep_prob), x * scale
        if x.op.type in ("RealDiv", "Div") and self._is_data(x.op.inputs[0]) and not self._is_data(x.op.inputs[1]):
            scale_by, x = ("div", x.op.inputs[1]), x.op.inputs[0]
        elif x.op.type == "Mul":
            a, b = x.op.inputs
            if self._is_data(a) and not self._is_data(b):
                scale_by, x = ("mul", b), a
            elif self._is_data(b) and not self._is_data(a):
                scale_by, x = ("mul", a), b
        convention = "inverted" if scale_by else "vanilla"
        x = self._strip_switch(x)
        keep = self._keep_prob_source(rand, apply_op, scale_by)
        output = apply_op.outputs[0]
        mode = None
        merge = [c for c in self.consumers.get(apply_op.name, []) if c.type == "Merge"]
        for p, _ in self._switch_path(data):
            mode = self.mode_of(p)
            if mode:
                break
        if merge:
            output = merge[0].outputs[0]
        scales_at_prediction = False
        if convention == "vanilla" and merge:
            others = [t for t in merge[0].inputs if t.op.name != apply_op.name]
            scales_at_prediction = any(
                t.op.type == "Mul" and keep["name"] is not None and any(
                    (self._scalar_source(i) or ("", None, False))[1] is not None and
                    self._scalar_source(i)[1].name == keep["name"] for i in t.op.inputs)
                for t in others)
            notes.append("no scaling in training: prediction " + (
                "multiplies by keep_prob (the article's first way): prediction needs keep_prob's "
                "training value fed, not 1.0" if scales_at_prediction else
                "should multiply by keep_prob (the article's first way)"))
        kind = "hand-written"
        if how == "select":
            kind = "keras" if mode is not None else "tf.nn.dropout"
        elif "dropout" in apply_op.name and convention == "inverted" and \
                any(t.op.type == "Floor" for t in apply_op.inputs):
            kind = "tf.nn.dropout"
        name = _scope(apply_op.name) or apply_op.name
        if mode is not None and name.endswith("/dropout") and "/cond" in name:
            name = name.split("/cond")[0]
        return Dropout(name=name, kind=kind, input=x.name, output=output.name, keep_prob=keep,
                       convention=convention, mode=mode, random_ops=[rand.name], notes=notes,
                       scales_at_prediction=scales_at_prediction)

    def _keep_prob_source(self, rand, apply_op, scale_by):
        """Trace keep_prob/rate: the mask's threshold, else the scale."""
        candidates = []
        below = self._descendant_ops_until(rand, apply_op)
        for c in below:
            if c.type in ("GreaterEqual", "Greater", "Less", "LessEqual"):
                others = [t for t in c.inputs if rand.name not in self.ancestors(t.op)]
                if others:
                    # uniform >= rate keeps with probability 1 - rate; uniform < keep_prob keeps
                    candidates.append(("rate" if c.type in ("GreaterEqual", "Greater") else "keep_prob",
                                       others[0]))
        for c in below:
            if c.type == "Floor" and c.inputs[0].op.type in ("Add", "AddV2"):
                add = c.inputs[0].op
                others = [t for t in add.inputs if rand.name not in self.ancestors(t.op)]
                if others:
                    candidates.append(("keep_prob", others[0]))
        if scale_by:
            candidates.append(("keep_prob" if scale_by[0] == "div" else "scale", scale_by[1]))
        for param, t in candidates:
            src = self._scalar_source(t)
            if src is not None:
                kind, op, inverse = src
                value = self.const_value(t)
                if param == "rate" and inverse:
                    param = "keep_prob"
                if param == "scale":
                    param = "keep_prob"
                    value = None if value is None else 1.0 / float(np.ravel(value)[0])
                elif param == "rate" and value is not None:
                    value = float(np.ravel(value)[0])
                elif value is not None:
                    value = float(np.ravel(value)[0])
                if param == "keep_prob" and inverse and value is not None and candidates[0][0] == "rate":
                    value = 1.0 - value
                if kind != "const" and value is None:
                    value = None
                return {"param": param, "source": kind, "name": op.name,
                        "value": None if kind in ("placeholder", "tensor") else value}
        return {"param": "keep_prob", "source": "tensor", "name": None, "value": None}

    def _descendant_ops_until(self, start, stop):
        out, frontier, seen = [], [start], set()
        while frontier:
            o = frontier.pop(0)
            for c in self.consumers.get(o.name, []):
                if c.name in seen or c is stop:
                    continue
                seen.add(c.name)
                out.append(c)
                if len(out) < 50:
                    frontier.append(c)
        return out

    def _scalar_source(self, t, depth=0, inverse=False):
        """(source kind, op, whether the tensor is 1 - source) for a keep_prob/rate tensor."""
        op = t.op
        if depth > 16:
            return None
        if op.type == "Placeholder":
            return "placeholder", op, inverse
        if op.type == "PlaceholderWithDefault":
            return "placeholder_with_default", op, inverse
        if op.type == "Const":
            return "const", op, inverse
        if op.type in ("Identity", "Cast", "Switch", "Enter", "Reshape", "Squeeze"):
            return self._scalar_source(op.inputs[0], depth + 1, inverse)
        if op.type == "Sub":
            a = self.const_value(op.inputs[0])
            if a is not None and np.all(a == 1):
                return self._scalar_source(op.inputs[1], depth + 1, not inverse)
        if op.type in ("RealDiv", "Div"):
            a = self.const_value(op.inputs[0])
            if a is not None and np.all(a == 1):
                return self._scalar_source(op.inputs[1], depth + 1, inverse)
        consts = [self.const_value(i) for i in op.inputs]
        if op.inputs and all(c is not None for c in consts):
            return "const", op, inverse
        return "tensor", op, inverse


def describe(findings):
    """A short text table of the layers and dropouts found."""
    lines = []
    for b in findings.bn_layers:
        mode = "-" if b.mode is None else (b.mode.op if b.mode.op == "python_bool" else
                                           f"{b.mode.name} ({b.mode.op})")
        lines.append(f"  BN {b.name or '(unnamed)'} [{b.kind}] eps={b.epsilon:g} "
                     f"decay={'-' if b.decay is None else f'{b.decay:g}'} mode={mode} "
                     f"updates={b.update_location or '-'} "
                     f"moving stats at prediction={b.statistics_used_at_prediction}")
    for d in findings.dropouts:
        kp = d.keep_prob
        lines.append(f"  dropout {d.name} [{d.kind}, {d.convention}] {kp['param']} from "
                     f"{kp['source']} {kp['name']}" + (f" = {kp['value']:g}" if kp["value"] is not None else ""))
    return "\n".join(lines) if lines else "  no BN layer or dropout found"


__all__ = ["find", "describe", "Findings", "BNLayer", "Dropout", "ModeInput"]
