"""The variable writes a TF2 function makes, and freezing a function that makes some.

A serving function that runs BN in training mode writes the moving statistics
(``AssignVariableOp``, ``AssignSubVariableOp``... in the functions its signature calls).
``convert_variables_to_constants_v2`` cannot freeze such a function (a write's resource input
would become a Const), and a frozen graph could not show the write anyway. So the child process
(``child._freeze_function``) inlines the function's calls (Grappler's function inlining, control
flow lowered), records each write with the variable it writes (``recorded``), and freezes the
rest itself (``freeze``): each captured variable becomes a Const named like its placeholder,
each read of it an Identity of that Const, the writes (and the control edges to them) are left
out and the graph is cut to what the outputs need (a written variable's Const stays, unused,
so that its value can still be checked). The Artefact keeps the writes
(``Artefact.writes``): ``doctor`` reports a write of a moving statistic as
``updates-on-inference``.
"""

import re

_WRITE = re.compile(r"(Assign(Add|Sub)?VariableOp|Resource(Sparse)?Apply\w+|ResourceScatter\w+|"
                    r"ResourceStridedSliceAssign)$")
_PASS = ("Identity", "Enter", "Switch", "RefIdentity")


def is_write(op_type):
    """A resource write: an assign, an optimizer apply or a scatter."""
    return bool(_WRITE.match(op_type))


def _node_of(name):
    return name.lstrip("^").split(":")[0]


class _Roots:
    """The captured variable placeholder a resource tensor comes from (through Identity, Enter
    and Switch), or None."""

    def __init__(self, graph_def, placeholders):
        self.nodes = {n.name: n for n in graph_def.node}
        self.placeholders = placeholders
        self.cache = {}

    def __call__(self, tensor, depth=0):
        name = _node_of(tensor)
        if name in self.cache:
            return self.cache[name]
        node = self.nodes.get(name)
        root = None
        if name in self.placeholders:
            root = name
        elif node is not None and node.op in _PASS and node.input and depth < 64 and \
                node.attr["T"].type == 20:  # DT_RESOURCE
            root = self(node.input[0], depth + 1)
        self.cache[name] = root
        return root


def recorded(graph_def, placeholders):
    """``[{"variable": path, "op": type, "node": name}]``: each write in the inlined
    ``graph_def`` whose resource is a captured variable (``placeholders``: {placeholder name:
    variable path}), sorted; a write of something else is listed with ``variable`` None."""
    roots = _Roots(graph_def, placeholders)
    out = []
    for node in graph_def.node:
        if is_write(node.op) and node.input:
            root = roots(node.input[0])
            out.append({"variable": placeholders.get(root), "op": node.op, "node": node.name})
    return sorted(out, key=lambda w: (w["variable"] or "", w["node"]))


def freeze(graph_def, values, outputs):
    """The inlined ``graph_def`` with its captured variables (``values``: {placeholder name:
    np.ndarray}) as Consts and its writes left out, cut to the ``outputs`` (node names).
    ValueError when a variable is used otherwise than read (a gather, a shape...)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    roots = _Roots(graph_def, set(values))
    dropped = {n.name for n in graph_def.node if is_write(n.op)}
    dropped |= {n.name for n in graph_def.node if n.name not in values and n.op in _PASS and
                n.input and roots(n.name)}
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.name in dropped:
            continue
        new = out.node.add()
        if node.name in values:
            value = values[node.name]
            new.name, new.op = node.name, "Const"
            new.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
            new.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            continue
        new.CopyFrom(node)
        del new.input[:]
        data = [i for i in node.input if not i.startswith("^")]
        control = [i for i in node.input if i.startswith("^") and _node_of(i) not in dropped]
        if node.op == "ReadVariableOp" and roots(data[0]):
            new.op = "Identity"
            new.attr.clear()
            new.attr["T"].CopyFrom(node.attr["dtype"])
            new.input.extend([roots(data[0])] + control)
            continue
        for i in data:
            if roots(i):
                raise ValueError(f"{node.op} node {node.name} uses variable input {i} otherwise "
                                 "than by reading it: cannot freeze the function without its "
                                 "writes")
        new.input.extend(data + control)
    cut = tf.compat.v1.graph_util.extract_sub_graph(out, outputs)
    kept = {n.name for n in cut.node}
    written = {roots(n.input[0]) for n in graph_def.node if is_write(n.op) and n.input}
    for node in out.node:  # a written variable stays, unused, so its value can be read
        if node.name in written and node.name not in kept:
            cut.node.add().CopyFrom(node)
    return cut
