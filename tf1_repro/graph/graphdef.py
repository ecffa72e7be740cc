"""GraphDef helpers the tools share: names, readers, op counts, order, and new nodes.

Every helper reads a ``GraphDef`` (or a ``NodeDef``) and never changes it; the ones that build
return new protos. Before the rewrite ("One house for the tools") these lived in
``tools/inference.py``; they are here so that every tool that edits GraphDefs uses one copy.
"""

import collections
import re

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph.ops import MERGE_OPS


def node_name(name):
    """``"scope/op:0"``, ``"scope/op"`` or ``"^scope/op"`` -> ``"scope/op"``."""
    return name.lstrip("^").split(":")[0]


def tensor_name(name):
    """``"scope/op"`` -> ``"scope/op:0"``; a name with a port is returned as is."""
    return name if ":" in name else f"{name}:0"


def port(name):
    """The output index an input string reads (``"a:1"`` -> 1, ``"a"`` -> 0)."""
    parts = name.lstrip("^").split(":")
    return int(parts[1]) if len(parts) > 1 else 0


def is_control(name):
    """Whether an input string is a control input (``"^a"``)."""
    return name.startswith("^")


def with_nodes(graph_def, nodes):
    """A new GraphDef with ``graph_def``'s versions and function library and ``nodes``."""
    out = tf.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    out.node.extend(nodes)
    return out


LARGE_VALUE_BYTES = 1024


def without_large_values(graph_def, limit=LARGE_VALUE_BYTES):
    """A new GraphDef like ``graph_def`` in which each ``Const`` whose ``tensor_content`` is
    longer than ``limit`` bytes keeps its dtype and shape but not its bytes: what importing the
    graph checks (names, inputs, attributes, shapes, dtypes) without a copy of the weights (a
    shape inferred from a constant's value reads small constants only, which are kept)."""
    out = tf.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.op != "Const" or "value" not in node.attr or \
                len(node.attr["value"].tensor.tensor_content) <= limit:
            out.node.add().CopyFrom(node)
            continue
        stub = out.node.add(name=node.name, op=node.op, device=node.device, input=node.input)
        for key, value in node.attr.items():
            if key != "value":
                stub.attr[key].CopyFrom(value)
        tensor = node.attr["value"].tensor
        stub.attr["value"].tensor.dtype = tensor.dtype
        stub.attr["value"].tensor.tensor_shape.CopyFrom(tensor.tensor_shape)
    return out


def nodes_by_name(graph_def):
    """``{node name: NodeDef}``."""
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
        if node.op in MERGE_OPS:
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
    """The numpy value of a ``Const`` NodeDef."""
    return tf.make_ndarray(node.attr["value"].tensor)


def make_identity(name, source, dtype, control=()):
    """An ``Identity`` NodeDef reading ``source`` (DataType enum ``dtype``), with control inputs."""
    node = tf.NodeDef(name=name, op="Identity", input=[source] + [f"^{c}" for c in control])
    node.attr["T"].type = dtype
    return node


def without_controls(node):
    """A copy of ``node`` without its control inputs."""
    fixed = tf.NodeDef()
    fixed.CopyFrom(node)
    del fixed.input[:]
    fixed.input.extend(i for i in node.input if not is_control(i))
    return fixed


def with_inputs(node, inputs):
    """A copy of ``node`` whose inputs are ``inputs``."""
    fixed = tf.NodeDef()
    fixed.CopyFrom(node)
    del fixed.input[:]
    fixed.input.extend(inputs)
    return fixed


def tensor_dtypes(graph_def, tensors):
    """{tensor name: DataType enum} read from the graph imported into a scratch tf.Graph."""
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        return {t: graph.get_tensor_by_name(tensor_name(t)).dtype.base_dtype.as_datatype_enum
                for t in tensors}


def output_dtype(node):
    """The DataType enum a node's ``T`` (else ``dtype``) attribute names; float32 without one."""
    for key in ("T", "dtype"):
        if key in node.attr and node.attr[key].type:
            return node.attr[key].type
    return tf.float32.as_datatype_enum


def prune(graph_def, outputs, control=True):
    """Only the nodes the ``outputs`` (node or tensor names) need, through data and control
    inputs (``control=False``: data inputs only, each node copied without its control inputs),
    in their original order; ValueError naming an output (or data input) that is not a node."""
    by_name = nodes_by_name(graph_def)
    keep, stack = set(), [node_name(o) for o in outputs]
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        if name not in by_name:
            raise ValueError(f"prune: outputs must be nodes of the graph, got {name!r}")
        keep.add(name)
        stack.extend(node_name(i) for i in by_name[name].input if control or not is_control(i))
    kept = [n for n in graph_def.node if n.name in keep]
    return with_nodes(graph_def, kept if control else [without_controls(n) for n in kept])


_NODE_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/>]*$")


def rename_nodes(graph_def, names):
    """A copy of ``graph_def`` with the nodes ``{old name: new name}`` renamed and every input
    that reads them (``old``, ``old:N``, ``^old``) rewritten. A new name that is not a valid node
    name, or that another node (or another rename) already has, is left out; returns
    ``(new GraphDef, {old: new} actually applied)``."""
    taken = {node.name for node in graph_def.node}
    applied = {}
    for old, new in sorted(names.items()):
        if old in taken and new != old and _NODE_NAME.match(new or "") and new not in taken:
            applied[old] = new
            taken.add(new)
    out = graph_def.__class__()
    out.CopyFrom(graph_def)
    if not applied:
        return out, applied
    for node in out.node:
        if node.name in applied:
            node.name = applied[node.name]
        for i, name in enumerate(node.input):
            control = name.startswith("^")
            base, sep, rest = name.lstrip("^").partition(":")
            if base in applied:
                node.input[i] = ("^" if control else "") + applied[base] + sep + rest
    return out, applied
