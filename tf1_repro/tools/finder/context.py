"""The read-only graph context every finder unit reads: ops, consumers, collections and memoised
walks. Nothing in it changes the graph; its caches only remember answers that depend on the graph
alone (so asking twice gives the same answer, once computed)."""

import functools

from tf1_repro.graph import walk
from tf1_repro.graph.ops import IF_OPS, MERGE_OPS, SWITCH_OPS, WRITE_OPS
from tf1_repro.tools.finder import consts, modes, trace
from tf1_repro.tools.finder.names import is_gradient

# Collections that never say where a BN update runs.
SKIP_COLLECTIONS = {"variables", "trainable_variables", "local_variables", "model_variables",
                    "moving_average_variables", "cond_context", "while_context", "savers",
                    "summaries", "queue_runners", "global_step", "losses", "regularization_losses",
                    "metric_variables", "_SUMMARY_WRITER_INIT_OP", "init_op", "local_init_op",
                    "ready_op", "ready_for_local_init_op", "table_initializer", "asset_filepaths",
                    "saved_model_main_op", "saved_model_train_op", "saved_model_assets"}
# How deep the search for the Switch above a tensor goes.
SWITCH_SEARCH_DEPTH = 64


class GraphContext:
    """A ``tf.Graph`` as the finder reads it: its forward ops (backprop's left out, in graph
    order), who consumes each op, the collections that may hold update ops, and memoised walks
    (ancestors, the Switch above a tensor, TF2 branch functions, mode inputs)."""

    def __init__(self, graph, collections=None):
        self.graph = graph
        self.ops = [op for op in graph.get_operations() if not is_gradient(op.name)]
        self._extra_collections = collections
        self._ancestor_cache = {}
        self._switch_cache = {}
        self.mode_cache = {}  # modes.mode_of's memo: {root op name: ModeInput}

    # ---- structure

    @functools.cached_property
    def order(self):
        """``{op name: position}`` in graph order."""
        return {op.name: i for i, op in enumerate(self.ops)}

    @functools.cached_property
    def _consumer_maps(self):
        consumers, ctrl = {}, {}
        for op in self.ops:  # backprop reads every forward tensor; it is not part of a layer
            for t in op.inputs:
                consumers.setdefault(t.op.name, []).append(op)
            for c in op.control_inputs:
                ctrl.setdefault(c.name, []).append(op)
        return consumers, ctrl

    @property
    def consumers(self):
        """``{op name: [forward ops reading one of its outputs]}``."""
        return self._consumer_maps[0]

    @property
    def ctrl_consumers(self):
        """``{op name: [forward ops with a control input on it]}``."""
        return self._consumer_maps[1]

    @functools.cached_property
    def collections(self):
        """``{collection: [op names]}``: the graph's own (but SKIP_COLLECTIONS), then the caller's."""
        out = {}
        for key in self.graph.get_all_collection_keys():
            if key in SKIP_COLLECTIONS:
                continue
            names = []
            for item in self.graph.get_collection(key):
                op = getattr(item, "op", None)
                if op is not None and hasattr(op, "name"):
                    names.append(op.name)
                elif hasattr(item, "name") and hasattr(item, "node_def"):
                    names.append(item.name)
            if names:
                out[key] = names
        for key, names in (self._extra_collections or {}).items():
            out[key] = [n.split(":")[0] for n in names]
        return out

    def op(self, name):
        """The op named ``name`` (a graph op, backprop's included)."""
        return self.graph.get_operation_by_name(name)

    def ancestors(self, op):
        """Names of all ops ``op`` depends on, through data and control inputs (``op`` included)."""
        if op.name not in self._ancestor_cache:
            self._ancestor_cache[op.name] = {o.name for o in walk.ancestors([op])}
        return self._ancestor_cache[op.name]

    def descendants(self, op, limit=100000):
        """Names of ``op`` and the forward ops that depend on it (data and control)."""
        seen, stack = set(), [op]
        while stack and len(seen) < limit:
            o = stack.pop()
            if o.name in seen:
                continue
            seen.add(o.name)
            stack.extend(self.consumers.get(o.name, []))
            stack.extend(self.ctrl_consumers.get(o.name, []))
        return seen

    # ---- TF1 control flow

    def switch_path(self, tensor, depth=0):
        """``[(predicate, port)]`` of the nearest Switch above ``tensor`` in its branch, or ``[]``.

        Memoised on (tensor, depth): the same answers as the plain recursive search, without
        its repeated walks of shared subgraphs (two towers of one layer)."""
        key = (tensor.name, depth)
        if key not in self._switch_cache:
            self._switch_cache[key] = self._switch_path(tensor, depth)
        return self._switch_cache[key]

    def _switch_path(self, tensor, depth):
        op = tensor.op
        if depth > SWITCH_SEARCH_DEPTH:
            return []
        if op.type in SWITCH_OPS:
            return [(op.inputs[1], tensor.value_index)]
        if op.type in MERGE_OPS + ("Placeholder", "VariableV2", "VarHandleOp"):
            return []
        for t in op.inputs:
            found = self.switch_path(t, depth + 1)
            if found:
                return found
        for c in op.control_inputs:
            if c.type == "Identity" and c.inputs and c.inputs[0].op.type == "Switch":
                return [(c.inputs[0].op.inputs[1], c.inputs[0].value_index)]
            found = self.switch_path(c.outputs[0], depth + 1) if c.outputs else []
            if found:
                return found
        return []

    @staticmethod
    def strip_switch(t):
        """``t`` above the Switch (and a branch's Identity of it) a tf.cond put in front of it."""
        while t.op.type in SWITCH_OPS + ("Identity",) and t.op.inputs and \
                (t.op.type != "Identity" or t.op.inputs[0].op.type in SWITCH_OPS):
            t = t.op.inputs[0]
        return t

    # ---- TF2 control flow: the branch functions of If ops

    @functools.cached_property
    def functions(self):
        """``{name: FunctionDef}`` of the graph's library (read only when an If op is there)."""
        if not any(op.type in IF_OPS for op in self.ops):
            return {}
        return {f.signature.name: f for f in self.graph.as_graph_def().library.function}

    def function_returns_arg(self, name, index):
        """The input-argument index that output ``index`` of function ``name`` passes through
        unchanged (Identity, ReadVariableOp), else None."""
        fdef = self.functions.get(name)
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

    def function_writes_arg(self, name, index):
        """Whether function ``name`` assigns to its input argument ``index`` (a variable handle)."""
        fdef = self.functions.get(name)
        if fdef is None or index >= len(fdef.signature.input_arg):
            return False
        arg = fdef.signature.input_arg[index].name
        return any(n.op in WRITE_OPS and n.input and n.input[0].split(":")[0] == arg
                   for n in fdef.node_def)

    # ---- the finder's readings, as methods for the pattern units

    def trace(self, tensor):
        """Sources of ``tensor`` (see ``trace.trace``)."""
        return trace.trace(self, tensor)

    def const_value(self, tensor, assume=None):
        """NumPy value of a Const-only ``tensor``, else None (see ``consts.evaluate``)."""
        return consts.evaluate(self, tensor, assume)

    def mode_of(self, pred):
        """The ModeInput behind a cond predicate (see ``modes.mode_of``)."""
        return modes.mode_of(self, pred)

    @staticmethod
    def other(op, tensor):
        """The input of the two-input ``op`` that is not ``tensor``."""
        a, b = op.inputs[0], op.inputs[1]
        return b if a.name == tensor.name else a

    @staticmethod
    def is_centred(t):
        """``t`` is ``a - b``."""
        return t.op.type == "Sub" and len(t.op.inputs) == 2

    def stat_like(self, t):
        """A per-channel parameter: from variables/Consts only, or shaped (C,) / (1, ..., 1, C)."""
        if all(src.kind in ("variable", "const") for src in self.trace(t)):
            return True
        try:
            dims = t.shape.as_list()
        except ValueError:
            return False
        return None not in dims and sum(d != 1 for d in dims) <= 1
