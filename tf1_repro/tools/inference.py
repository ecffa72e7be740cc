"""to-inference: a TF1 training graph made into a verified prediction graph, pass by pass.

Every pass takes a ``GraphDef`` and returns a new one (the input is never
changed); node names are kept, so input placeholders and output tensors keep
their names. ``convert`` runs them in this order:

1. ``bind_placeholders``: each mode placeholder the finder found becomes a
   ``Const`` of its prediction value (training False, keep_prob 1.0, rate 0,
   learning phase 0; ``feeds`` override).
2. ``replace_with_identity`` for each dropout that is the identity at that
   value (keep_prob 1 / rate 0): its output becomes ``Identity(input)``.
3. ``simplify``: ``prune`` to the outputs, then ``fold_constants`` and
   ``resolve_switches`` until nothing changes. A stateless node whose data
   inputs are constant becomes a ``Const`` (evaluated by TensorFlow); a
   ``Switch`` whose predicate is a ``Const`` becomes an ``Identity`` of its data
   on the live port, everything fed by the dead port is dead (a ``Merge`` only
   when all its inputs are) and disappears, the EMA/assign ops of the training
   branch with it; a ``Merge`` with one live input becomes an ``Identity``.
4. Control inputs are dropped once no Switch is left (they only ordered side
   effects; update ops they ran at prediction are named in the report), then
   ``freeze_variables`` (``convert_variables_to_constants`` on the pruned graph:
   on the unpruned training graph it keeps the assigns and the import fails),
   ``simplify`` again and ``remove_identities``.
5. ``fold_batch_norm`` for each BN: ``affine_chain`` walks back from the BN's
   output through per-channel affine ops with constant operands and composes
   them in float64 into ``y = x * s + o``; when ``x`` is a MatMul/Conv2D/
   DepthwiseConv2dNative with a constant kernel read by nothing else, the
   kernel's output channel c is scaled by ``s[c]`` and ``o`` becomes a BiasAdd;
   otherwise the BN stays one Mul and one AddV2 with constant ``s`` and ``o``.

``to_inference`` loads the artefact, converts, writes the formats
(``tf1_repro.tools.formats``), verifies each against the original graph run
with the prediction feeds and times the variants.
"""

import collections
import re

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.tools import finder
from tf1_repro.graph import feeds, safety, walk
from tf1_repro.graph.errors import InputError
from tf1_repro.graph.ops import (FUSED_BN_OPS, GLOBAL_BN_OP, MERGE_OPS, PLACEHOLDER_OPS,
                                 STATEFUL_RANDOM_OPS, SWITCH_OPS, VARIABLE_OPS, WRITE_OPS)

# Never evaluated at conversion time, whatever their inputs.
NOT_FOLDABLE = SWITCH_OPS + MERGE_OPS + VARIABLE_OPS + PLACEHOLDER_OPS + (
    "Enter", "RefEnter", "Exit", "RefExit", "NextIteration", "RefNextIteration", "LoopCond",
    "Const", "NoOp", "ControlTrigger")
MAX_FOLDED_ELEMENTS = 1 << 22


def node_name(name):
    """``"scope/op:0"``, ``"scope/op"`` or ``"^scope/op"`` -> ``"scope/op"``."""
    return name.lstrip("^").split(":")[0]


def tensor_name(name):
    """``"scope/op"`` -> ``"scope/op:0"``; a name with a port is returned as is."""
    return name if ":" in name else f"{name}:0"


def _port(name):
    parts = name.lstrip("^").split(":")
    return int(parts[1]) if len(parts) > 1 else 0


def _is_control(name):
    return name.startswith("^")


def _with_nodes(graph_def, nodes):
    out = tf.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    out.node.extend(nodes)
    return out


def nodes_by_name(graph_def):
    return {n.name: n for n in graph_def.node}


def consumers(graph_def):
    """``{node name: [(consumer node name, input string)]}``, control inputs included."""
    found = collections.defaultdict(list)
    for node in graph_def.node:
        for inp in node.input:
            found[node_name(inp)].append((node.name, inp))
    return found


def op_counts(graph_def):
    """``{op type: count}``, sorted by type."""
    return dict(sorted(collections.Counter(n.op for n in graph_def.node).items()))


def topological_order(graph_def):
    """Node names, every node after all of its inputs (Kahn's algorithm; NextIteration
    back edges are ignored)."""
    by_name = nodes_by_name(graph_def)
    pending = {}
    users = collections.defaultdict(list)
    for node in graph_def.node:
        ins = {node_name(i) for i in node.input if node_name(i) in by_name}
        if node.op in ("Merge", "RefMerge"):
            ins = {i for i in ins if by_name[i].op not in ("NextIteration", "RefNextIteration")}
        pending[node.name] = len(ins)
        for i in ins:
            users[i].append(node.name)
    ready = collections.deque(n.name for n in graph_def.node if pending[n.name] == 0)
    order = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for user in users[name]:
            pending[user] -= 1
            if pending[user] == 0:
                ready.append(user)
    return order


def make_const(name, value, dtype=None, device=""):
    """A ``Const`` NodeDef holding ``value`` (numpy)."""
    value = np.asarray(value)
    dtype = tf.as_dtype(dtype or value.dtype)
    node = tf.NodeDef(name=name, op="Const", device=device)
    node.attr["dtype"].type = dtype.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value.astype(dtype.as_numpy_dtype), dtype))
    return node


def const_value(node):
    return tf.make_ndarray(node.attr["value"].tensor)


def make_identity(name, source, dtype, control=()):
    node = tf.NodeDef(name=name, op="Identity", input=[source] + [f"^{c}" for c in control])
    node.attr["T"].type = dtype
    return node


def tensor_dtypes(graph_def, tensors):
    """{tensor name: DataType enum} read from the graph imported into a scratch tf.Graph."""
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        return {t: graph.get_tensor_by_name(tensor_name(t)).dtype.base_dtype.as_datatype_enum
                for t in tensors}


def _output_dtype(node):
    for key in ("T", "dtype"):
        if key in node.attr and node.attr[key].type:
            return node.attr[key].type
    return tf.float32.as_datatype_enum


# ---- 1. bind ----------------------------------------------------------------------------

def bind_placeholders(graph_def, values):
    """Replace each placeholder named in ``values`` ({node or tensor name: value}) by a
    ``Const`` of that value, same name, its dtype and (when known) shape.

    Raises ValueError naming a value that is not a placeholder of the graph.
    """
    by_name = nodes_by_name(graph_def)
    wanted = {node_name(k): v for k, v in values.items()}
    for name in wanted:
        if name not in by_name or by_name[name].op not in PLACEHOLDER_OPS:
            got = by_name[name].op if name in by_name else "no such node"
            raise ValueError(f"bind_placeholders: values must name placeholders of the graph, got "
                             f"{name!r} ({got})")
    nodes = []
    for node in graph_def.node:
        if node.name in wanted:
            dtype = tf.as_dtype(node.attr["dtype"].type)
            value = np.asarray(wanted[node.name], dtype=dtype.as_numpy_dtype)
            nodes.append(make_const(node.name, value, dtype, node.device))
        else:
            nodes.append(node)
    return _with_nodes(graph_def, nodes)


# ---- 2. prune -----------------------------------------------------------------------------

def prune(graph_def, outputs):
    """Only the nodes the ``outputs`` (node or tensor names) need, through data and
    control inputs, in their original order."""
    by_name = nodes_by_name(graph_def)
    keep, stack = set(), [node_name(o) for o in outputs]
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        if name not in by_name:
            raise ValueError(f"prune: outputs must be nodes of the graph, got {name!r}")
        keep.add(name)
        stack.extend(node_name(i) for i in by_name[name].input)
    return _with_nodes(graph_def, [n for n in graph_def.node if n.name in keep])


# ---- 3. constants and switches ------------------------------------------------------------

def _is_stateful(op_type):
    from tensorflow.python.framework import op_def_registry  # pylint: disable=import-outside-toplevel
    op_def = op_def_registry.get(op_type)
    return op_def is None or op_def.is_stateful


def _may_be_dead(graph_def):
    """Nodes downstream of a Switch (through data or control inputs): only they can be dead."""
    by_name = nodes_by_name(graph_def)
    dead = set()
    for name in topological_order(graph_def):
        node = by_name[name]
        if node.op in SWITCH_OPS or any(node_name(i) in dead for i in node.input):
            dead.add(name)
    return dead


def _foldable(graph_def):
    """Names of nodes whose value is known now: Consts, and stateless ops (not in
    NOT_FOLDABLE) whose data inputs are all foldable. A control input counts only when it
    comes from a node downstream of a Switch (it may carry deadness); other control inputs
    only order side effects, and folding drops them (see ``fold_constants``)."""
    by_name = nodes_by_name(graph_def)
    may_be_dead = _may_be_dead(graph_def)
    foldable = set()
    for name in topological_order(graph_def):
        node = by_name[name]
        inputs = [node_name(i) for i in node.input
                  if not _is_control(i) or node_name(i) in may_be_dead]
        if node.op == "Const":
            if all(i in foldable for i in inputs):
                foldable.add(name)
            continue
        if node.op in NOT_FOLDABLE or _is_stateful(node.op) or not node.input:
            continue
        if all(i in foldable for i in inputs):
            foldable.add(name)
    return foldable


def fold_constants(graph_def, keep=()):
    """Evaluate every foldable non-Const node that a non-foldable node (or ``keep``) reads,
    and replace it by a ``Const`` of its value (same name; control inputs dropped: all of
    them were constants). Only nodes whose users read output 0 are replaced.

    Returns (new GraphDef, number of nodes folded, control inputs dropped by folding).
    """
    foldable = _foldable(graph_def)
    by_name = nodes_by_name(graph_def)
    users = consumers(graph_def)
    keep = {node_name(k) for k in keep}
    targets = []
    for name in foldable:
        node = by_name[name]
        if node.op == "Const":
            continue
        uses = users.get(name, [])
        needed = name in keep or any(u not in foldable for u, _ in uses)
        if needed and all(_port(i) == 0 and not _is_control(i) for _, i in uses):
            targets.append(name)
    if not targets:
        return graph_def, 0, []
    values = _evaluate(graph_def, targets)
    nodes, folded, dropped = [], 0, []
    for node in graph_def.node:
        value = values.get(node.name)
        if value is not None and value.size <= MAX_FOLDED_ELEMENTS:
            nodes.append(make_const(node.name, value, value.dtype, node.device))
            dropped += [node_name(i) for i in node.input if _is_control(i)]
            folded += 1
        else:
            nodes.append(node)
    return _with_nodes(graph_def, nodes), folded, dropped


def _evaluate(graph_def, names):
    """{name: value of output 0} computed by TensorFlow in a scratch graph (data inputs only)."""
    needed = _with_nodes(graph_def, [_without_controls(n) for n in graph_def.node])
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(prune(needed, names), name="")
        fetches = [graph.get_tensor_by_name(f"{n}:0") for n in names]
        with tf.Session(graph=graph) as sess:
            values = sess.run(fetches)
    return {n: np.asarray(v) for n, v in zip(names, values)}


def _without_controls(node):
    fixed = tf.NodeDef()
    fixed.CopyFrom(node)
    del fixed.input[:]
    fixed.input.extend(i for i in node.input if not _is_control(i))
    return fixed


def resolve_switches(graph_def):
    """Resolve every Switch/RefSwitch whose predicate is a Const, and what that decides.

    A resolved Switch becomes an ``Identity`` of its data input; readers of the live
    port read it, readers of the dead port are dead. A node is dead when a data or
    control input is dead, except a Merge, which is dead when all its data inputs are;
    a Merge with exactly one live data input becomes an ``Identity`` of it (its
    ``value_index`` output must be unread). Dead nodes are removed.

    Returns (new GraphDef, number of Switches resolved).
    """
    by_name = nodes_by_name(graph_def)
    live_port = {}
    for node in graph_def.node:
        if node.op in SWITCH_OPS:
            pred = by_name.get(node_name(node.input[1]))
            if pred is not None and pred.op == "Const" and _port(node.input[1]) == 0:
                live_port[node.name] = 1 if bool(const_value(pred)) else 0
    if not live_port:
        return graph_def, 0
    users = consumers(graph_def)
    dead_tensors, dead_nodes = set(), set()
    replaced = {}
    for name in topological_order(graph_def):
        node = by_name[name]
        data = [i for i in node.input if not _is_control(i)]
        controls = [node_name(i) for i in node.input if _is_control(i)]

        def is_dead(inp):
            return node_name(inp) in dead_nodes or (node_name(inp), _port(inp)) in dead_tensors
        if node.op in MERGE_OPS:
            live = [i for i in data if not is_dead(i)]
            if not live or any(c in dead_nodes for c in controls):
                dead_nodes.add(name)
            elif len(live) == 1 and not any(_port(i) == 1 for _, i in users.get(name, [])):
                replaced[name] = make_identity(name, live[0], node.attr["T"].type,
                                               [c for c in controls])
            continue
        if any(is_dead(i) for i in data) or any(c in dead_nodes for c in controls):
            dead_nodes.add(name)
            continue
        if name in live_port:
            dead_tensors.add((name, 1 - live_port[name]))
            replaced[name] = make_identity(name, node.input[0], node.attr["T"].type, controls)
    nodes = []
    for node in graph_def.node:
        if node.name in dead_nodes:
            continue
        node = replaced.get(node.name, node)
        fixed = tf.NodeDef()
        fixed.CopyFrom(node)
        del fixed.input[:]
        for inp in node.input:
            src = node_name(inp)
            if src in live_port and src not in dead_nodes and not _is_control(inp):
                inp = src  # the live port of a resolved Switch is output 0 of its Identity
            fixed.input.append(inp)
        nodes.append(fixed)
    return _with_nodes(graph_def, nodes), len(live_port)


def simplify(graph_def, outputs, keep=()):
    """``prune``, then ``fold_constants`` and ``resolve_switches`` until nothing changes,
    then ``prune`` again. Returns (GraphDef, {"folded": n, "switches_resolved": n,
    "control_inputs_dropped": [node names]})."""
    graph_def = prune(graph_def, outputs)
    totals = {"folded": 0, "switches_resolved": 0, "control_inputs_dropped": []}
    while True:
        graph_def, folded, dropped = fold_constants(graph_def, keep=list(outputs) + list(keep))
        totals["control_inputs_dropped"] += dropped
        graph_def, resolved = resolve_switches(graph_def)
        graph_def = prune(graph_def, outputs)
        totals["folded"] += folded
        totals["switches_resolved"] += resolved
        if not folded and not resolved:
            return graph_def, totals


def strip_control_inputs(graph_def, keep_ops=()):
    """Drop control inputs (``^name``) from every node, except those whose source op type is in
    ``keep_ops``. Only meaningful once no Switch is left (then a control edge only orders)."""
    by_name = nodes_by_name(graph_def)
    nodes = []
    for node in graph_def.node:
        fixed = tf.NodeDef()
        fixed.CopyFrom(node)
        del fixed.input[:]
        fixed.input.extend(i for i in node.input
                           if not _is_control(i) or by_name[node_name(i)].op in keep_ops)
        nodes.append(fixed)
    return _with_nodes(graph_def, nodes)


# ---- 4. freeze ----------------------------------------------------------------------------

def freeze_variables(graph_def, sess, outputs):
    """Every variable the (pruned) graph still reads becomes a ``Const`` of its value in
    ``sess`` (whose graph holds nodes of the same names). Returns (GraphDef, variable names)."""
    names = [n.name for n in graph_def.node if n.op in VARIABLE_OPS]
    if not names:
        return graph_def, []
    frozen = tf.graph_util.convert_variables_to_constants(
        sess, graph_def, [node_name(o) for o in outputs], variable_names_whitelist=names)
    return frozen, names


# ---- 5. small rewrites --------------------------------------------------------------------

def replace_with_identity(graph_def, output, source):
    """Node ``output`` becomes ``Identity(source)`` (same name; its dtype kept)."""
    dtype = tensor_dtypes(graph_def, [source])[source]
    nodes = []
    for node in graph_def.node:
        if node.name == node_name(output):
            node = make_identity(node.name, source, dtype)
        nodes.append(node)
    return _with_nodes(graph_def, nodes)


def remove_identities(graph_def, protected=()):
    """Readers of an ``Identity``/``Snapshot`` without control inputs read its input instead;
    protected node names (inputs, outputs) stay. Call ``prune`` afterwards."""
    by_name = nodes_by_name(graph_def)
    protected = {node_name(p) for p in protected}

    def source(inp):
        seen = 0
        while True:
            node = by_name.get(node_name(inp))
            if (node is None or node.op not in ("Identity", "Snapshot") or node.name in protected
                    or any(_is_control(i) for i in node.input) or _is_control(inp) or seen > 10000):
                return inp
            inp = node.input[0] if _port(inp) == 0 else inp
            seen += 1
    nodes = []
    for node in graph_def.node:
        fixed = tf.NodeDef()
        fixed.CopyFrom(node)
        del fixed.input[:]
        fixed.input.extend(source(i) for i in node.input)
        nodes.append(fixed)
    return _with_nodes(graph_def, nodes)


# ---- 6. batch norm: an affine chain, folded into the linear op before it or kept as x*s+o ----

LINEAR_OPS = ("MatMul", "Conv2D", "DepthwiseConv2dNative")
_ELEMENTWISE = ("Add", "AddV2", "BiasAdd", "Sub", "Mul", "RealDiv", "Neg", "Identity", "Snapshot")


def _per_channel(value):
    """A constant operand that acts per channel: a scalar or shape (1, ..., 1, C)."""
    value = np.asarray(value, np.float64)
    if value.ndim == 0 or all(d == 1 for d in value.shape[:-1]):
        return value.reshape(-1) if value.ndim else value
    return None


def _step(node, by_name):
    """How one node maps its non-constant input x to its output, as (x input string, f)
    with f(s, o) -> (s, o) for y = x*s + o, or None when it is not per-channel affine
    in one input with constant, per-channel other inputs.

    Rules (float64): Add/AddV2/BiasAdd(x, c): o + c; Sub(x, c): o - c; Sub(c, x): (-s, c - o);
    Mul(x, c): (s c, o c); RealDiv(x, c): (s / c, o / c); Neg: (-s, -o); Identity: as is.
    FusedBatchNorm* (is_training false, NHWC) and BatchNormWithGlobalNormalization:
    s' = gamma / sqrt(var + eps), o' = beta - mean * s'.
    """
    def const(inp):
        src = by_name.get(node_name(inp))
        if src is None or src.op != "Const" or _port(inp) != 0:
            return None
        return _per_channel(const_value(src))
    data = [i for i in node.input if not _is_control(i)]
    if node.op in ("Identity", "Snapshot"):
        return data[0], lambda s, o: (s, o)
    if node.op == "Neg":
        return data[0], lambda s, o: (-s, -o)
    if node.op in FUSED_BN_OPS + (GLOBAL_BN_OP,):
        return _bn_op_step(node, data, const)
    if node.op not in _ELEMENTWISE or len(data) != 2:
        return None
    if node.op == "BiasAdd" and node.attr["data_format"].s not in (b"", b"NHWC"):
        return None
    a, b = const(data[0]), const(data[1])
    if (a is None) == (b is None):
        return None
    if node.op in ("Add", "AddV2", "BiasAdd"):
        c, x = (b, data[0]) if b is not None else (a, data[1])
        return x, lambda s, o: (s, o + c)
    if node.op == "Mul":
        c, x = (b, data[0]) if b is not None else (a, data[1])
        return x, lambda s, o: (s * c, o * c)
    if node.op == "Sub":
        if b is not None:
            return data[0], lambda s, o: (s, o - b)
        return data[1], lambda s, o: (-s, a - o)
    if node.op == "RealDiv" and b is not None:
        return data[0], lambda s, o: (s / b, o / b)
    return None


def _bn_op_step(node, data, const):
    if node.op in FUSED_BN_OPS:
        if node.attr["is_training"].b or node.attr["data_format"].s not in (b"", b"NHWC"):
            return None
        params = [const(i) for i in data[1:5]]
        if any(p is None for p in params):
            return None
        gamma, beta, mean, var = params
        eps = node.attr["epsilon"].f
    else:
        params = [const(i) for i in data[1:5]]
        if any(p is None for p in params):
            return None
        mean, var, beta, gamma = params
        if not node.attr["scale_after_normalization"].b:
            gamma = np.ones_like(gamma)
        eps = node.attr["variance_epsilon"].f
    scale = gamma / np.sqrt(var + np.float64(np.float32(eps)))
    offset = beta - mean * scale
    return data[0], lambda s, o: (s * scale, o * scale + offset)


def affine_chain(graph_def, output, stop=()):
    """Walk back from node ``output`` through per-channel affine nodes (see ``_step``).

    A node before ``output`` joins the chain only when ``output``'s chain is its only reader
    and it is not in ``stop``. Returns (x input string, scale, offset, chain node names)
    with ``output = x * scale + offset`` (float64 arrays, shape () or (C,)), or None when
    ``output`` itself is not such a node.
    """
    by_name = nodes_by_name(graph_def)
    users = consumers(graph_def)
    stop = {node_name(s) for s in stop}
    steps, chain = [], []
    name = node_name(output)
    x = None
    while True:
        node = by_name[name]
        step = _step(node, by_name)
        if step is None:
            break
        inp, f = step
        steps.append(f)
        chain.append(name)
        x = inp
        src = node_name(inp)
        if (src in stop or len(users.get(src, [])) != 1 or _port(inp) != 0
                or by_name[src].op in PLACEHOLDER_OPS):
            break
        name = src
    if not chain:
        return None
    scale, offset = np.float64(1.0), np.float64(0.0)
    for f in reversed(steps):
        scale, offset = f(scale, offset)
    return x, scale, offset, chain


def _linear_before(graph_def, x):
    """(linear node, weight node, None) when ``x`` is output 0 of a MatMul/Conv2D/
    DepthwiseConv2dNative read only by the chain, with a Const weight read only by it;
    else (None, None, reason)."""
    by_name = nodes_by_name(graph_def)
    users = consumers(graph_def)
    node = by_name[node_name(x)]
    if node.op not in LINEAR_OPS:
        return None, None, f"no MatMul/Conv2D/DepthwiseConv2dNative before it (its input comes " \
                           f"from {node.op} {node.name})"
    if _port(x) != 0 or len(users.get(node.name, [])) != 1:
        return None, None, f"the output of {node.op} {node.name} is also read elsewhere"
    if node.op != "MatMul" and node.attr["data_format"].s not in (b"", b"NHWC"):
        return None, None, f"{node.op} {node.name} is NCHW"
    weight = by_name[node_name(node.input[1])]
    if weight.op != "Const":
        return None, None, f"the kernel of {node.op} {node.name} is not a constant " \
                           f"(from {weight.op} {weight.name})"
    if len(users.get(weight.name, [])) != 1:
        return None, None, f"the kernel {weight.name} is shared with another op"
    return node, weight, None


def _scaled_kernel(linear, kernel, scale):
    """The kernel with output channel c multiplied by scale[c] (float64, then its dtype)."""
    w = kernel.astype(np.float64)
    if linear.op == "MatMul":
        out_axis = 0 if linear.attr["transpose_b"].b else 1
        shape = [1, 1]
        shape[out_axis] = -1
        return (w * np.broadcast_to(scale, (w.shape[out_axis],)).reshape(shape)).astype(kernel.dtype)
    if linear.op == "Conv2D":
        return (w * np.broadcast_to(scale, (w.shape[3],))).astype(kernel.dtype)
    channels = w.shape[2] * w.shape[3]  # depthwise: output channel i*multiplier + m
    s = np.broadcast_to(scale, (channels,)).reshape(w.shape[2], w.shape[3])
    return (w * s).astype(kernel.dtype)


def _unique(by_name, name):
    candidate, i = name, 1
    while candidate in by_name:
        candidate, i = f"{name}_{i}", i + 1
    return candidate


CHANNELS_FIRST = ("channels-first layout (statistics along axis 1: a fused op with data_format "
                  "NCHW, or statistics shaped (1, C, 1, 1)): folding not implemented; left as the "
                  "graph computes it")


def _channels_first(node):
    """A FusedBatchNorm* or BiasAdd node with data_format NCHW."""
    return node.op in FUSED_BN_OPS + ("BiasAdd",) and node.attr["data_format"].s == b"NCHW"


def fold_batch_norm(graph_def, output, stop=(), fold=True, channels=None, channel_axis=-1):
    """Rewrite the BN whose last node is ``output`` (its name kept).

    A channels-first BN (``channel_axis`` 1, as the finder reports for NCHW fused ops and
    statistics that broadcast as (1, C, 1, 1), or an NCHW node at ``output``) is left as it
    is, with the reason ``CHANNELS_FIRST``: ``_step`` composes only per-last-axis operands.

    Folded: ``L(x, W) * s + o`` -> ``BiasAdd(L(x, W * s), o)`` (bias of a BiasAdd/Add before
    the BN is part of o). Kept: ``x * s + o`` as one Mul and one AddV2 with constant
    s and o. ``channels`` (C) shapes s and o when the chain has only scalars.

    Returns (GraphDef, {"folded": bool, "reason": str|None, "linear": name|None}); the
    GraphDef is unchanged, with reason, when ``output`` is not a per-channel affine chain
    with constant parameters (e.g. batch statistics at prediction).
    """
    if channel_axis not in (-1, None) or _channels_first(nodes_by_name(graph_def)[node_name(output)]):
        return graph_def, {"folded": False, "linear": None, "reason": CHANNELS_FIRST}
    chain = affine_chain(graph_def, output, stop)
    if chain is None:
        node = nodes_by_name(graph_def)[node_name(output)]
        return graph_def, {"folded": False, "linear": None,
                           "reason": f"not an affine map with constant parameters at prediction "
                                     f"({node.op} {node.name} has a non-constant operand: batch "
                                     f"statistics?)"}
    x, scale, offset, _ = chain
    by_name = nodes_by_name(graph_def)
    out_node = by_name[node_name(output)]
    dtype = _output_dtype(out_node)
    np_dtype = tf.as_dtype(dtype).as_numpy_dtype
    linear, weight, reason = _linear_before(graph_def, x) if fold else (None, None, "--no-fold")
    if linear is not None:
        kernel = const_value(weight)
        if linear.op == "MatMul":
            channels = kernel.shape[0 if linear.attr["transpose_b"].b else 1]
        else:
            channels = kernel.shape[3] if linear.op == "Conv2D" else kernel.shape[2] * kernel.shape[3]
    shape = (channels,) if channels else np.broadcast(scale, offset).shape
    s = np.broadcast_to(scale, shape)
    o = np.broadcast_to(offset, shape)
    bias_name = _unique(by_name, f"{out_node.name}/folded_bias" if linear is not None
                        else f"{out_node.name}/offset")
    new_nodes = {}
    if linear is not None:
        new_nodes[weight.name] = make_const(weight.name, _scaled_kernel(linear, kernel, s),
                                            kernel.dtype, weight.device)
        replacement = tf.NodeDef(name=out_node.name, op="BiasAdd", input=[x, bias_name],
                                 device=out_node.device)
        replacement.attr["T"].type = dtype
        replacement.attr["data_format"].s = b"NHWC"
        extra = [make_const(bias_name, o.astype(np_dtype), np_dtype)]
    else:
        scale_name = _unique(by_name, f"{out_node.name}/scale")
        mul_name = _unique(by_name, f"{out_node.name}/scale_mul")
        mul = tf.NodeDef(name=mul_name, op="Mul", input=[x, scale_name], device=out_node.device)
        mul.attr["T"].type = dtype
        replacement = tf.NodeDef(name=out_node.name, op="AddV2", input=[mul_name, bias_name],
                                 device=out_node.device)
        replacement.attr["T"].type = dtype
        extra = [make_const(scale_name, s.astype(np_dtype), np_dtype),
                 make_const(bias_name, o.astype(np_dtype), np_dtype), mul]
    new_nodes[out_node.name] = replacement
    nodes = [new_nodes.get(n.name, n) for n in graph_def.node] + extra
    return _with_nodes(graph_def, nodes), {"folded": linear is not None, "reason": reason,
                                           "linear": linear.name if linear is not None else None}


# ---- the whole conversion ----------------------------------------------------------------

FORBIDDEN_OPS = SWITCH_OPS + MERGE_OPS + VARIABLE_OPS + FUSED_BN_OPS + WRITE_OPS + (
    GLOBAL_BN_OP, "Rsqrt", "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal",
    "StatelessRandomUniform", "StatelessRandomUniformV2", "StatelessRandomNormal",
    "StatelessRandomNormalV2", "ReadVariableOp")
PREDICTION_OPS = (GLOBAL_BN_OP,)  # in FORBIDDEN_OPS (a folded BN leaves none) but has no training mode


class InferenceError(InputError):
    """Bad input to ``to_inference`` (one line; the CLI exits 2 with it)."""


def training_only_ops(graph_def):
    """Nodes a prediction graph must not hold: Switch/Merge, variables, assigns, random
    ops, FusedBatchNorm with is_training true, Rsqrt (constant statistics fold it away: one
    left normalises with batch statistics), and bool placeholders. Returns ["Op name", ...].
    A FusedBatchNorm with is_training false normalises with its constant statistics (a
    prediction op, left when it is not folded), as BatchNormWithGlobalNormalization does."""
    found = [f"{n.op} {n.name}" for n in graph_def.node if n.op in FORBIDDEN_OPS
             and n.op not in PREDICTION_OPS and not (n.op in FUSED_BN_OPS and not n.attr["is_training"].b)]
    found += [f"{n.op} {n.name} (bool)" for n in graph_def.node
              if n.op in PLACEHOLDER_OPS and n.attr["dtype"].type == tf.bool.as_datatype_enum]
    return found


def likely_outputs(graph_def, limit=8):
    """Tensors named like outputs (logits, predictions, softmax, ArgMax, ...: the last node of
    each such scope), then tensors no node reads; gradients/optimizer/saver scopes skipped."""
    users = consumers(graph_def)
    skip = re.compile(r"(^|/)(gradients|save|Adam|Momentum|GradientDescent|init|report_"
                      r"uninitialized|group_deps|train|tf1_repro_restore|loss|cross_entropy|"
                      r"SparseSoftmaxCrossEntropy|global_step)", re.I)
    named = re.compile(r"(logit|predict|output|prob|softmax|argmax|score)", re.I)
    plain = ("NoOp", "Const", "Assert", "SaveV2", "RestoreV2", "Placeholder") + VARIABLE_OPS + \
        WRITE_OPS
    candidates = [n for n in graph_def.node if n.op not in plain and not skip.search(n.name)]
    by_scope = {}
    for n in candidates:
        if named.search(n.name):
            by_scope[n.name.split("/")[0]] = n.name  # the last node of the scope
    leaves = [n.name for n in candidates if n.name not in users]
    found = list(dict.fromkeys(list(by_scope.values()) + leaves))
    return [f"{name}:0" for name in found[:limit]]


def _check_names(graph, names, what, graph_def):
    tensors = []
    for name in names:
        full = tensor_name(name)
        try:
            graph.get_tensor_by_name(full)
        except (KeyError, ValueError):
            hint = ", ".join(likely_outputs(graph_def)) if what == "--outputs" else ""
            raise InferenceError(
                f"{what}: no tensor {full!r} in the graph" +
                (f"; likely outputs: {hint}" if hint else "")) from None
        tensors.append(full)
    return tensors


def _vanilla_keep_probs(findings):
    """{placeholder node name: [dropout names]} for the keep_prob placeholders the finder leaves
    unbound (``unbound_mode_inputs``: a vanilla dropout, whose prediction computes
    ``x * keep_prob`` with keep_prob's *training* value, so binding it to 1.0 would serve
    outputs 1/keep_prob too large)."""
    unbound = {m.name for m in findings.unbound_mode_inputs()}
    found = {}
    for d in findings.dropouts:
        kp = d.keep_prob or {}
        if (d.convention == "vanilla" and kp.get("name") in unbound
                and kp.get("source") in ("placeholder", "placeholder_with_default")):
            found.setdefault(kp["name"], []).append(d.name)
    for name in unbound:
        found.setdefault(name, [])
    return found


def _refuse_unbound(findings, bound, inputs, needed):
    """InferenceError naming the first unbound mode placeholder the outputs need (see
    ``_vanilla_keep_probs``) that neither --feed nor --inputs gives."""
    present = nodes_by_name(needed)
    given = set(bound) | {node_name(i) for i in inputs}
    for name, dropouts in sorted(_vanilla_keep_probs(findings).items()):
        if name in given or name not in present:
            continue
        what = (f"drives the vanilla dropout {', '.join(dropouts)} (training multiplies by the 0/1 "
                f"mask, prediction by keep_prob)" if dropouts else
                "has no prediction value the graph can tell")
        raise InferenceError(
            f"--feed: placeholder {name} {what}, so keep_prob=1.0 would serve outputs 1/keep_prob "
            f"too large; pass its training value with --feed {name}=VALUE (e.g. --feed {name}=0.8)")


def _dropout_plan(dropouts, bound):
    """(dropouts to replace by their input, [{name, reason}] kept). A dropout is the identity
    when its keep_prob is 1 (or its rate 0) once the mode placeholders are bound; a vanilla
    dropout never is (its prediction multiplies by keep_prob)."""
    remove, kept = [], []
    for d in dropouts:
        kp = d.keep_prob or {}
        value = kp.get("value")
        if kp.get("source") in ("placeholder", "placeholder_with_default") and kp.get("name"):
            value = bound.get(node_name(kp["name"]), value)
        if d.convention == "vanilla" and getattr(d, "scales_at_prediction", False):
            kept.append({"name": d.name, "vanilla": True, "keep_prob": value,
                         "reason": f"vanilla: prediction multiplies by keep_prob={value!r}"})
            continue
        identity = value is not None and (
            (kp.get("param") == "keep_prob" and float(value) == 1.0)
            or (kp.get("param") == "rate" and float(value) == 0.0))
        if identity:
            remove.append(d)
        else:
            kept.append({"name": d.name, "reason": f"{kp.get('param')} is {value!r} at prediction, "
                                                   f"not the identity"})
    return remove, kept


def _inputs_after_binding(graph_def, inputs):
    """The input tensor names: given, or every Placeholder still needed. A scalar, bool or
    unknown-rank placeholder left unnamed is ambiguous (InferenceError naming them all)."""
    left = [n for n in graph_def.node if n.op in PLACEHOLDER_OPS]
    if inputs:
        names = {node_name(i) for i in inputs}
        missing = [n.name for n in left if n.name not in names and n.op != "PlaceholderWithDefault"]
        if missing:
            raise InferenceError(
                f"--inputs: the outputs also need placeholder(s) {', '.join(missing)}; name them in "
                f"--inputs or give their value with --feed NAME=VALUE")
        return [tensor_name(i) for i in inputs]
    ambiguous, found = [], []
    for n in left:
        if n.op == "PlaceholderWithDefault":
            continue
        shape = n.attr["shape"].shape
        is_bool = n.attr["dtype"].type == tf.bool.as_datatype_enum
        if is_bool or shape.unknown_rank or len(shape.dim) == 0:
            dtype = tf.as_dtype(n.attr["dtype"].type).name
            ambiguous.append(f"{n.name} ({dtype}, {'scalar' if not shape.unknown_rank else 'any shape'})")
        else:
            found.append(f"{n.name}:0")
    if ambiguous:
        raise InferenceError(
            f"cannot tell what placeholder(s) {', '.join(ambiguous)} switch; give each a value "
            f"with --feed NAME=VALUE (e.g. training=false, keep_prob=1.0) or list the real "
            f"inputs with --inputs")
    if not found:
        raise InferenceError("--outputs: the outputs need no input placeholder; nothing to serve")
    return found


def _defaults_to_identity(graph_def, inputs):
    """A PlaceholderWithDefault that is not an input becomes an Identity of its default."""
    names = {node_name(i) for i in inputs}
    nodes = []
    for n in graph_def.node:
        if n.op == "PlaceholderWithDefault" and n.name not in names:
            n = make_identity(n.name, n.input[0], n.attr["dtype"].type)
        nodes.append(n)
    return _with_nodes(graph_def, nodes)


def convert(graph, sess, outputs, findings, inputs=None, feeds=None, fold=True):
    """The prediction graph of ``graph`` (variables in ``sess``), frozen, without training
    ops, BN folded (``fold``) or as multiply-adds.

    ``findings``: ``finder.find`` on the graph; ``feeds`` ({name: value}) override its
    prediction feeds. Returns a dict: ``folded`` and ``unfolded`` GraphDefs (the latter with
    every BN as x*s+o), ``inputs``, ``outputs``, ``feeds`` (bound), ``bn_layers``
    ([{name, kind, folded, reason}]), ``dropouts_removed``, ``dropouts_kept``,
    ``update_ops_dropped``, ``ops_before``, ``ops_after``, ``ops_unfolded``, ``training_ops_left``.
    """
    original = graph.as_graph_def()
    outputs = _check_names(graph, outputs, "--outputs", original)
    bound = {node_name(k): v for k, v in findings.prediction_feeds().items()}
    bound.update({node_name(k): v for k, v in (feeds or {}).items()})
    if inputs:
        inputs = _check_names(graph, inputs, "--inputs", original)
        for i in inputs:
            bound.pop(node_name(i), None)
    _refuse_unbound(findings, bound, inputs or [], prune(original, outputs))
    by_name = nodes_by_name(original)
    for name in bound:
        if name not in by_name or by_name[name].op not in PLACEHOLDER_OPS:
            got = by_name[name].op if name in by_name else "no such node"
            raise InferenceError(f"--feed: {name} must be a placeholder of the graph, got {got}")
    before = prune(original, outputs)
    graph_def = bind_placeholders(before, bound)
    remove, kept_dropouts = _dropout_plan(findings.dropouts, bound)
    for d in remove:
        if node_name(d.output) in nodes_by_name(graph_def):
            graph_def = replace_with_identity(graph_def, d.output, d.input)
    bn_outputs = [node_name(b.output) for b in findings.bn_layers]
    bound_graph = graph_def
    graph_def, totals = simplify(graph_def, outputs, keep=bn_outputs)
    controls = list(totals["control_inputs_dropped"])
    inputs = _inputs_after_binding(graph_def, inputs)
    graph_def = prune(_defaults_to_identity(graph_def, inputs), outputs)
    if not any(n.op in SWITCH_OPS + MERGE_OPS for n in graph_def.node):
        controls += [node_name(i) for n in graph_def.node for i in n.input if _is_control(i)]
        graph_def = prune(strip_control_inputs(graph_def), outputs)
    graph_def, _ = freeze_variables(graph_def, sess, outputs)
    graph_def, totals = simplify(graph_def, outputs, keep=bn_outputs)
    controls += totals["control_inputs_dropped"]
    dropped = _write_ops_of(bound_graph, controls, graph_def)
    protected = [node_name(i) for i in inputs] + [node_name(o) for o in outputs]
    graph_def = prune(remove_identities(graph_def, protected + bn_outputs), outputs)
    unfolded, _ = _rewrite_bns(graph_def, findings.bn_layers, protected, outputs, fold=False)
    folded, bn_report = _rewrite_bns(graph_def, findings.bn_layers, protected, outputs, fold=fold)
    folded = prune(remove_identities(folded, protected), outputs)
    unfolded = prune(remove_identities(unfolded, protected), outputs)
    gone = _dropouts_gone(findings.dropouts, remove, kept_dropouts, folded)
    vanilla = {k["name"] for k in kept_dropouts if k.get("vanilla")}
    return {"folded": folded, "unfolded": unfolded, "inputs": inputs, "outputs": outputs,
            "feeds": {f"{k}:0": _jsonable(v) for k, v in bound.items()},
            "bn_layers": bn_report,
            "dropouts_removed": [g for g in gone if g not in vanilla],
            "dropouts_scaled": [{"name": k["name"], "keep_prob": _jsonable(k["keep_prob"])}
                                for k in kept_dropouts if k["name"] in vanilla and k["name"] in gone],
            "dropouts_kept": [k for k in kept_dropouts if k["name"] not in gone],
            "update_ops_dropped": dropped, "ops_before": op_counts(before),
            "ops_after": op_counts(folded), "ops_unfolded": op_counts(unfolded),
            "training_ops_left": training_only_ops(folded)}


def _dropouts_gone(dropouts, removed, kept, final):
    """Names of the dropouts replaced by their input, and of those whose random ops no longer
    exist in ``final`` (a mode switch such as Keras' learning phase resolved them)."""
    left = nodes_by_name(final)
    kept_names = {k["name"] for k in kept}
    gone = [d.name for d in removed]
    gone += [d.name for d in dropouts if d.name in kept_names and d.random_ops
             and not any(node_name(r) in left for r in d.random_ops)]
    return gone


def _write_ops_of(graph_def, sources, final):
    """Assign-like nodes of ``graph_def`` among ``sources`` and their ancestors, not in ``final``:
    updates that a control input ran at prediction and the conversion dropped."""
    if not sources:
        return []
    present = nodes_by_name(graph_def)
    ancestors = prune(graph_def, [s for s in set(sources) if s in present])
    left = nodes_by_name(final)
    return sorted(n.name for n in ancestors.node if n.op in WRITE_OPS and n.name not in left)


def _jsonable(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def _rewrite_bns(graph_def, bn_layers, protected, outputs, fold):
    """Each BN, in graph order, folded or made one multiply-add; the others' outputs stop
    each chain so that one BN never swallows another."""
    order = {name: i for i, name in enumerate(topological_order(graph_def))}
    layers = sorted(bn_layers, key=lambda b: order.get(node_name(b.output), -1))
    all_outputs = {node_name(b.output) for b in bn_layers}
    report = []
    for bn in layers:
        out = node_name(bn.output)
        entry = {"name": bn.name, "kind": bn.kind, "folded": False, "reason": None}
        if out not in nodes_by_name(graph_def):
            entry["reason"] = "not on the path to the outputs"
        else:
            stop = set(protected) | (all_outputs - {out})
            graph_def, result = fold_batch_norm(graph_def, out, stop=stop, fold=fold,
                                                channel_axis=getattr(bn, "channel_axis", -1))
            graph_def = prune(graph_def, outputs)
            entry.update(folded=result["folded"], reason=result["reason"])
            if result["linear"]:
                entry["into"] = result["linear"]
        report.append(entry)
    return graph_def, report


# ---- loading, verification, latency, the command ---------------------------------------

def open_model(path):
    """(graph, sess, findings) through ``tf1_repro.graph.artefacts``: a checkpoint prefix or
    directory (with its .meta), a .meta file with its checkpoint, a SavedModel or a frozen
    graph; the variables restored (only the restore runs). Caller closes sess."""
    from tf1_repro.graph import artefacts  # pylint: disable=import-outside-toplevel
    try:
        art = artefacts.load(path)
        if art.format == "meta_graph" and art.checkpoint is None:
            raise InferenceError(f"PATH: {path} has no checkpoint beside it (no "
                                 f"{path[:-len('.meta')]}.index): the variables have no values")
        if art.graph_def is None and art.meta_graph is None:
            raise InferenceError(f"PATH: checkpoint {path} has no .meta graph beside it; give the "
                                 f"graph as a .meta, SavedModel or frozen graph")
        findings = art.find()
        graph, sess = art.open()
    except artefacts.ArtefactError as err:
        raise InferenceError(f"PATH: {err}") from None
    return graph, sess, findings


def _input_shapes(graph, inputs):
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
                shape = [size] + _input_shapes(graph, [name])[name][1:]
                value = rng.normal(size=shape) if tensor.dtype.is_floating else rng.integers(0, 2, shape)
                batch[name] = value.astype(dtype)
        batches[size] = batch
    return batches


def verify(runner, reference, batches, tolerance=1e-4):
    """Compare a runner with the reference outputs ({size: [arrays]}) at every batch size.

    max_abs_diff: over sizes and outputs; ok when each output differs by at most
    ``tolerance * max(1, max |reference output|)``. batch_independent: each sample of
    the largest batch run alone equals its row in the batch (same tolerance);
    deterministic: the largest batch run twice gives the same bits.
    """
    diff, ok = 0.0, True
    outputs = {}
    for size, feeds in batches.items():
        outputs[size] = runner.run(feeds)
        for got, want in zip(outputs[size], reference[size]):
            d = _max_diff(got, want)
            diff = max(diff, d)
            ok &= d <= tolerance * _scale(want)
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
                tolerance * _scale(want)
    return {"max_abs_diff": diff, "within_tolerance": bool(ok),
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


def _scale(want):
    finite = np.asarray(want, np.float64)
    finite = finite[np.isfinite(finite)]
    return max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0


def measure_latency(runners, batches, runs=30, seed=0, progress=None, errors=None):
    """{variant: {str(size): median ms}} over ``runs`` interleaved rounds (new random order
    each round, after one warm-up run of each); ``progress`` (a progress factory) counts rounds.
    A variant whose warm-up run raises gets None, its reason in ``errors`` ({variant: line})."""
    import time  # pylint: disable=import-outside-toplevel
    from tf1_repro import progress as progress_display  # pylint: disable=import-outside-toplevel
    from tf1_repro.tools import formats as fmt  # pylint: disable=import-outside-toplevel
    errors = {} if errors is None else errors
    for v in runners:
        for s in batches:
            try:
                runners[v].run(batches[s])
            except Exception as err:  # pylint: disable=broad-except
                errors.setdefault(v, f"cannot run: {type(err).__name__}: {_run_error(err)}")
    live = {v: r for v, r in runners.items() if v not in errors}
    rng = np.random.default_rng(seed)
    times = {(v, s): [] for v in live for s in batches}
    keys = list(times)
    with progress_display.resolve(progress)("timing", runs, "round") as bar:
        for _ in range(runs):
            _timed_round(runners, batches, keys, times, rng, time)
            bar.update(1)
    return {v: None if v in errors else {str(s): float(np.median(times[(v, s)])) for s in batches}
            for v in runners}


def _run_error(err, limit=300):
    """The line of a runtime exception that says what went wrong: TF's graph errors open with
    "Graph execution error:" and the Python stack of the failing node, then the reason (e.g.
    "Return readvariableop -> ReadVariableOp:value:0 is not found.")."""
    text = getattr(err, "message", None) or str(err)
    lines = [line.strip() for line in str(text).splitlines()
             if line.strip() and not line.startswith((" ", "\t"))]
    skip = ("Graph execution error", "Detected at node", "[[", "File ")
    lines = [line for line in lines if not line.startswith(skip)] or lines or ["(no message)"]
    line = lines[0]
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _timed_round(runners, batches, keys, times, rng, time):
    """One run of every (variant, batch) pair in a new random order, times appended (ms)."""
    for i in rng.permutation(len(keys)):
        v, s = keys[i]
        start = time.perf_counter()
        runners[v].run(batches[s])
        times[(v, s)].append((time.perf_counter() - start) * 1e3)


VARIANTS = ("original", "frozen_unfolded", "folded", "onnxruntime", "tflite")


def _add_aliases(graph_def, aliases):
    """Identity nodes named ``aliases[tensor]`` on output tensors (e.g. output_logits)."""
    by_name = nodes_by_name(graph_def)
    dtypes = tensor_dtypes(graph_def, list(aliases))
    extra = []
    for tensor, alias in aliases.items():
        if alias in by_name:
            raise InferenceError(f"aliases: {alias!r} is already a node of the graph")
        extra.append(make_identity(alias, tensor, dtypes[tensor]))
    return _with_nodes(graph_def, list(graph_def.node) + extra)


def _check_formats(formats):
    from tf1_repro.tools import formats as fmt  # pylint: disable=import-outside-toplevel
    bad = [f for f in formats if f not in fmt.FORMATS]
    if bad or not formats:
        raise InferenceError(f"--formats must be a comma-separated subset of "
                             f"{','.join(fmt.FORMATS)}, got {','.join(formats) or 'nothing'}")
    return list(dict.fromkeys(formats))


def to_inference(path, outputs, out_dir, *, inputs=None, feeds=None, fold=True,
                 formats=("saved_model", "frozen", "onnx", "tflite"), data=None, latency_runs=30,
                 tolerance=1e-4, aliases=None, input_keys=None, output_keys=None, log=None,
                 progress=None):
    """Load ``path``, convert (see ``convert``), write the formats into a scratch directory,
    verify each there against the original graph run with the prediction feeds (batch 1 and
    16), time the variants (batch 1 and 64, ``latency_runs`` interleaved rounds; 0 skips),
    then move into ``out_dir`` every artefact that ran (verified or not: the report says);
    one that a converter or runtime failed on is reported with a one-line ``error`` and not
    written.

    Runs the user's graph (prediction feeds only: no training op). Returns the report
    (JSON-able); ``report["ok"]`` is False when an artefact differs or cannot run. Raises
    InferenceError for bad input or an op a format cannot take (nothing written then).
    ``progress``: a progress factory (``tf1_repro.progress.factory()``; None shows nothing)
    that starts once the input is checked: one unit per stage (reference run, each format
    written, each verified, moving), and a bar of timing rounds.
    """
    import tempfile  # pylint: disable=import-outside-toplevel
    from tf1_repro import progress as progress_display  # pylint: disable=import-outside-toplevel
    from tf1_repro.tools import formats as fmt  # pylint: disable=import-outside-toplevel
    log = log or (lambda line: None)
    formats = _check_formats(list(formats))
    if not outputs:
        raise InferenceError("--outputs must name at least one tensor")
    targets = _check_out(out_dir, formats, fmt)
    if data is not None:
        _check_data_arrays(data)
    graph, sess, findings = open_model(path)
    try:
        conv = convert(graph, sess, outputs, findings, inputs=inputs, feeds=feeds, fold=fold)
        unsafe = safety.unsafe_to_run(graph, conv["outputs"])
        if unsafe:
            raise InferenceError(safety.refusal(unsafe, ", ".join(conv["outputs"])))
        _check_inputs(graph, conv["inputs"], data)
        served_outputs = conv["outputs"]
        folded, unfolded = conv["folded"], conv["unfolded"]
        if aliases:
            aliases = {tensor_name(k): v for k, v in aliases.items()}
            folded = _add_aliases(folded, aliases)
            unfolded = _add_aliases(unfolded, aliases)
            served_outputs = [f"{aliases[o]}:0" if o in aliases else o for o in served_outputs]
        shapes = _input_shapes(graph, conv["inputs"]) if data is None else {
            i: [None] + list(np.asarray(data.get(i, data.get(node_name(i)))).shape[1:])
            for i in conv["inputs"]}
        # Every refusal of bad input comes before the display starts (its lines would precede
        # the one-line error); only an op a converter cannot take is found later.
        stages = 2 + 2 * len(formats)
        with progress_display.resolve(progress)("to-inference", stages, "stage") as bar:
            checks = make_batches(graph, conv["inputs"], data, (1, 16))
            timing = make_batches(graph, conv["inputs"], data, (1, 64), seed=1) if latency_runs else {}
            original = fmt.open_session(graph, sess, conv["outputs"], conv["feeds"])
            reference = {s: [np.asarray(v, np.float64) for v in original.run(b)]
                         for s, b in checks.items()}
            deterministic = not _random_ops(graph, conv["outputs"]) or _same_outputs(
                original.run(checks[max(checks)]), reference[max(checks)])
            bar.update(1, done="reference run")
            with tempfile.TemporaryDirectory() as tmp:
                staged, artefacts, skipped = _write_formats(
                    fmt, formats, folded, conv["inputs"], served_outputs, shapes, tmp, input_keys,
                    output_keys, log, bar)
                runners = {"original": original}
                for name, staged_path in staged.items():
                    artefacts[name] = _verify_artefact(fmt, name, staged_path, conv["inputs"],
                                                       served_outputs, reference, checks,
                                                       tolerance, runners if latency_runs else None)
                    bar.update(1, done=f"{name} " + (
                        "failed" if artefacts[name].get("error") else "compared"))
                bar.update(len(formats) - len(staged))  # skipped or failed: nothing to verify
                latency, latency_errors = {}, {}
                if latency_runs:
                    for variant, graph_def in (("frozen_unfolded", unfolded), ("folded", folded)):
                        try:
                            runners[variant] = fmt.open_graph_def(graph_def, served_outputs)
                        except Exception as err:  # pylint: disable=broad-except
                            latency_errors[variant] = (f"cannot run: {type(err).__name__}: "
                                                       f"{_run_error(err)}")
                    latency = measure_latency({v: runners[v] for v in VARIANTS if v in runners},
                                              timing, latency_runs, progress=progress,
                                              errors=latency_errors)
                    latency.update({v: None for v in latency_errors})
                for runner in runners.values():
                    runner.close()
                _move_verified(staged, artefacts, targets, out_dir)
                artefacts = {n: artefacts[n] for n in formats if n in artefacts}
                bar.update(1, done="moved")
    finally:
        sess.close()
    finite = all(np.all(np.isfinite(v)) for values in reference.values() for v in values)
    ok = finite and deterministic and all(not a.get("error") and a["within_tolerance"] and a["batch_independent"]
                        and a["deterministic"] for a in artefacts.values()) and not latency_errors
    return {"source": path, "inputs": conv["inputs"], "outputs": served_outputs,
            "feeds": conv["feeds"], "bn_layers": conv["bn_layers"],
            "dropouts_removed": conv["dropouts_removed"], "dropouts_kept": conv["dropouts_kept"],
            "dropouts_scaled": conv["dropouts_scaled"],
            "update_ops_dropped": conv["update_ops_dropped"],
            "ops_before": conv["ops_before"], "ops_after": conv["ops_after"],
            "ops_unfolded": conv["ops_unfolded"], "training_ops_left": conv["training_ops_left"],
            "artefacts": artefacts, "skipped": skipped, "latency_ms": latency,
            "latency_runs": latency_runs, "latency_errors": latency_errors,
            "tolerance": tolerance, "original_finite": bool(finite),
            "original_deterministic": bool(deterministic), "ok": bool(ok)}




def _random_ops(graph, outputs):
    """The stateful random ops the outputs depend on (data inputs): with one, the original
    graph's output may be random (a dropout always on); a graph whose output changes only
    because it updates variables at prediction has none."""
    ops = [graph.get_tensor_by_name(name).op for name in outputs]
    return sorted(op.name for op in walk.ancestors(ops, control=False) if op.type in STATEFUL_RANDOM_OPS)


def _same_outputs(got, want):
    """The same bits (NaN equal to NaN) in every output: a graph run twice on the same batch
    with no random op gives this."""
    return all(np.array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64), equal_nan=True)
               for a, b in zip(got, want))


def _check_out(out_dir, formats, fmt):
    """{format: target path} in ``out_dir``; InferenceError when ``out_dir`` is a file, lies
    under a file or an unwritable directory, or already holds one of the targets."""
    import os  # pylint: disable=import-outside-toplevel
    if not out_dir:
        raise InferenceError("--out must name a directory (new or without the artefacts' names), "
                             "got ''")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InferenceError(f"--out must be a directory (new or without the artefacts' names), "
                             f"got {out_dir!r}: an existing file")
    parent = os.path.abspath(out_dir)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InferenceError(f"--out must be a directory that can be created, got {out_dir!r}: "
                             f"{parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InferenceError(f"--out must be a directory that can be written, got {out_dir!r}: "
                             f"{parent} is not writable")
    targets = {f: os.path.join(out_dir, fmt.FILE_NAMES[f]) for f in formats}
    taken = [p for p in targets.values() if os.path.lexists(p)]
    if taken:
        raise InferenceError(f"--out: {taken[0]} exists already; give an empty directory")
    return targets


def _check_data_arrays(data):
    """InferenceError for a --data array with no rows, no batch axis or a non-numeric dtype."""
    for key, value in data.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] == 0:
            raise InferenceError(f"--data: array {key} must have at least one row (shape (N, ...) "
                                 f"with N >= 1), got shape {value.shape}")
        if value.dtype.kind not in "biuf":
            raise InferenceError(f"--data: array {key} must be numeric or bool, got dtype "
                                 f"{value.dtype}")


def _shape_text(dims):
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + \
        ("," if len(dims) == 1 else "") + ")"


def _check_inputs(graph, inputs, data):
    """InferenceError when an input has a fixed batch size (verification runs batches of 1 and
    16) or a --data array does not fit its placeholder's shape (rank and every known dimension
    after the batch)."""
    for name in inputs:
        shape = graph.get_tensor_by_name(name).shape
        dims = shape.as_list() if shape.rank is not None else None
        if dims and dims[0] is not None:
            raise InferenceError(f"--inputs: input {name} must have an unknown (None) batch "
                                 f"dimension (verification runs batches of 1 and 16), got shape "
                                 f"{_shape_text(dims)}")
        if data is None or dims is None:
            continue
        key = name if name in data else node_name(name)
        if key not in data:
            raise InferenceError(f"--data: no array named {node_name(name)} "
                                 f"(has {', '.join(sorted(data)) or 'none'})")
        got = np.asarray(data[key]).shape
        if len(got) != len(dims) or any(d is not None and d != g for d, g in zip(dims[1:], got[1:])):
            raise InferenceError(f"--data: array {key} must have shape {_shape_text([None] + dims[1:])} "
                                 f"to feed input {name}, got {_shape_text(list(got))}")


def _write_formats(fmt, formats, graph_def, inputs, outputs, shapes, tmp, input_keys, output_keys,
                   log, bar):
    """Convert into the scratch directory ``tmp``. Returns ({format: staged path},
    {format: failed artefact entry}, {format: install hint}). A missing package skips its format
    (logged); an op a format cannot take raises InferenceError (nothing is in --out yet); any
    other converter failure is that format's one-line ``error``."""
    import os  # pylint: disable=import-outside-toplevel
    staged, failed, skipped = {}, {}, {}
    for name in formats:
        path = os.path.join(tmp, fmt.FILE_NAMES[name])
        try:
            if name == "saved_model":
                fmt.write_saved_model(graph_def, inputs, outputs, path, input_keys, output_keys)
            elif name == "frozen":
                fmt.write_frozen(graph_def, path)
            elif name == "onnx":
                fmt.write_onnx(graph_def, inputs, outputs, path)
            else:
                fmt.write_tflite(graph_def, inputs, outputs, shapes, path)
        except fmt.FormatUnavailable as err:
            log(str(err))
            skipped[name] = str(err)
        except fmt.UnsupportedOp as err:
            raise InferenceError(str(err)) from None
        except fmt.FormatError as err:
            failed[name] = _failed_entry(f"cannot convert: {str(err).partition(': ')[2]}")
        except Exception as err:  # pylint: disable=broad-except
            failed[name] = _failed_entry(f"cannot convert: {type(err).__name__}: "
                                         f"{fmt.one_line(err)}")
        else:
            staged[name] = path
        bar.update(1, done=f"{name} written")
    return staged, failed, skipped


def _failed_entry(error):
    return {"path": None, "error": error, "max_abs_diff": None, "within_tolerance": False,
            "batch_independent": False, "deterministic": False, "bytes": 0}


def _verify_artefact(fmt, name, path, inputs, outputs, reference, checks, tolerance, runners):
    """The artefact's report entry: ``verify`` of its runner, or a one-line ``error`` when it
    cannot be opened or run. Its runner is kept in ``runners`` (for timing) when given."""
    try:
        runner = _open_artefact(fmt, name, path, inputs, outputs)
    except Exception as err:  # pylint: disable=broad-except
        return _failed_entry(f"cannot load: {type(err).__name__}: {fmt.one_line(err)}")
    try:
        result = verify(runner, reference, checks, tolerance)
    except Exception as err:  # pylint: disable=broad-except
        runner.close()
        return _failed_entry(f"cannot run: {type(err).__name__}: {_run_error(err)}")
    if name in ("onnx", "tflite") and runners is not None:
        runners["onnxruntime" if name == "onnx" else "tflite"] = runner
    else:
        runner.close()  # one model in memory at a time when nothing is timed
    return {"path": path, "error": None, **result, "bytes": fmt.file_size(path)}


def _move_verified(staged, artefacts, targets, out_dir):
    """Move each staged artefact that ran (no ``error``) into ``out_dir``; its entry's path
    becomes the target. Failed ones stay in the scratch directory (deleted with it)."""
    import os  # pylint: disable=import-outside-toplevel
    import shutil  # pylint: disable=import-outside-toplevel
    ran = [n for n in staged if not artefacts[n].get("error")]
    if ran:
        os.makedirs(out_dir, exist_ok=True)
    for name in ran:
        shutil.move(staged[name], targets[name])
        artefacts[name]["path"] = targets[name]


def _open_artefact(fmt, name, path, inputs, outputs):
    if name == "saved_model":
        return fmt.open_saved_model(path, inputs, outputs)
    if name == "frozen":
        return fmt.open_frozen(path, outputs)
    if name == "onnx":
        return fmt.open_onnx(path, outputs)
    return fmt.open_tflite(path, inputs, outputs)


def parse_feed(text):
    """``NAME=VALUE`` -> (NAME, value) (see ``feeds.parse_feed``); ``InferenceError`` otherwise."""
    try:
        return feeds.parse_feed(text)
    except ValueError as err:
        raise InferenceError(str(err)) from None


def _ops_line(counts, width=100):
    text = ", ".join(f"{op} {n}" for op, n in counts.items())
    return text if len(text) <= width else text[:width - 3] + "..."


def format_report(report):
    """The report as text (what the command prints)."""
    lines = [f"to-inference {report['source']}: inputs {', '.join(report['inputs'])} -> outputs "
             f"{', '.join(report['outputs'])}",
             f"  prediction feeds bound: " + (", ".join(f"{k}={v}" for k, v in report['feeds'].items())
                                             or "none"),
             f"  ops before ({sum(report['ops_before'].values())}): {_ops_line(report['ops_before'])}",
             f"  ops after  ({sum(report['ops_after'].values())}): {_ops_line(report['ops_after'])}"]
    for bn in report["bn_layers"]:
        state = f"folded into {bn.get('into')}" if bn["folded"] else f"kept: {bn['reason']}"
        lines.append(f"  BN {bn['name']} ({bn['kind']}): {state}")
    if report["dropouts_removed"]:
        lines.append(f"  dropouts removed (identity at prediction): "
                     f"{', '.join(report['dropouts_removed'])}")
    for d in report.get("dropouts_scaled", []):
        lines.append(f"  dropout {d['name']} (vanilla): prediction multiplies by keep_prob="
                     f"{d['keep_prob']}")
    for d in report["dropouts_kept"]:
        lines.append(f"  dropout {d['name']} kept: {d['reason']}")
    if report["update_ops_dropped"]:
        lines.append(f"  ! update ops that ran at prediction were dropped: "
                     f"{', '.join(report['update_ops_dropped'])}")
    if report["training_ops_left"]:
        lines.append(f"  ! training-only ops left: {', '.join(report['training_ops_left'][:8])}")
    lines.append(f"  artefacts (vs the original graph, batch 1 and 16; tolerance "
                 f"{report['tolerance']:g} x max(1, |output|)):")
    for name, a in report["artefacts"].items():
        if a.get("error"):
            lines.append(f"    {name:<12} FAILED   {a['error']} (not written)")
            continue
        verdict = "ok" if a["within_tolerance"] and a["batch_independent"] and a["deterministic"] \
            else "DIFFERS" if report.get("original_deterministic", True) else "UNVERIFIED"
        lines.append(f"    {name:<12} {verdict:<8} max |diff| {a['max_abs_diff']:<10.3g} batch "
                     f"independent {str(a['batch_independent']):<5} deterministic "
                     f"{str(a['deterministic']):<5} {a['bytes']:>10,} bytes  {a['path']}")
    for name, hint in report["skipped"].items():
        lines.append(f"    {name:<12} skipped  ({hint})")
    if report["latency_ms"]:
        lines.append(f"  latency, median of {report['latency_runs']} interleaved runs (ms):")
        lines.append(f"    {'variant':<16} {'batch 1':>9} {'batch 64':>9}")
        for variant, t in report["latency_ms"].items():
            if t is None:
                lines.append(f"    {variant:<16} {'-':>9} {'-':>9}  "
                             f"{report.get('latency_errors', {}).get(variant, 'cannot run')}")
                continue
            lines.append(f"    {variant:<16} {t['1']:>9.3f} {t['64']:>9.3f}")
    if not report["original_finite"]:
        lines.append("  ! the original graph's outputs are not finite (NaN/inf) on the check inputs")
    failed = [n for n, a in report["artefacts"].items() if a.get("error")]
    if not report.get("original_deterministic", True):
        lines.append("FAILED: cannot verify: the original graph's output is random (not "
                     "deterministic): the same batch run twice gives other values" + (
                         f"; {', '.join(failed)} could not run either" if failed else "") +
                     " (exit 1)")
    elif failed:
        lines.append(f"FAILED: {', '.join(failed)} could not be verified and "
                     f"{'was' if len(failed) == 1 else 'were'} not written (exit 1)")
    elif report.get("latency_errors"):
        lines.append(f"FAILED: {', '.join(report['latency_errors'])} cannot run (latency above; exit 1)")
    else:
        lines.append("verified: every artefact matches the original" if report["ok"] else
                     "FAILED: an artefact differs from the original (exit 1)")
    return "\n".join(lines)
