"""Pass ``resolve_switches``: a Switch whose predicate is a Const becomes an ``Identity`` of its
data input; everything fed by its dead port is dead and removed (a Merge only when all its data
inputs are; a Merge with one live input becomes an ``Identity`` of it), the training branch's
EMA/assign ops with it. Targets: Switch, RefSwitch (and the Merge, RefMerge they decide).
changed: the Switches resolved."""

from tf1_repro.graph.graphdef import (const_value, consumers, is_control, make_identity, node_name,
                                      nodes_by_name, port, topological_order, with_inputs, with_nodes)
from tf1_repro.graph.ops import MERGE_OPS, SWITCH_OPS
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.registry import register


def _live_ports(graph_def, by_name):
    """{Switch name: its live output port} for every Switch whose predicate is a Const."""
    live_port = {}
    for node in graph_def.node:
        if node.op in SWITCH_OPS:
            pred = by_name.get(node_name(node.input[1]))
            if pred is not None and pred.op == "Const" and port(node.input[1]) == 0:
                live_port[node.name] = 1 if bool(const_value(pred)) else 0
    return live_port


def resolve_switches(graph_def):
    """Resolve every Switch/RefSwitch whose predicate is a Const, and what that decides.

    A resolved Switch becomes an ``Identity`` of its data input; readers of the live
    port read it, readers of the dead port are dead. A node is dead when a data or
    control input is dead, except a Merge, which is dead when all its data inputs are;
    a Merge with exactly one live data input becomes an ``Identity`` of it (its
    ``value_index`` output must be unread). Dead nodes are removed.

    Returns (new GraphDef, names of the Switches resolved).
    """
    by_name = nodes_by_name(graph_def)
    live_port = _live_ports(graph_def, by_name)
    if not live_port:
        return graph_def, []
    users = consumers(graph_def)
    dead_tensors, dead_nodes = set(), set()
    replaced = {}

    def is_dead(inp):
        return node_name(inp) in dead_nodes or (node_name(inp), port(inp)) in dead_tensors
    for name in topological_order(graph_def):
        node = by_name[name]
        data = [i for i in node.input if not is_control(i)]
        controls = [node_name(i) for i in node.input if is_control(i)]
        if node.op in MERGE_OPS:
            live = [i for i in data if not is_dead(i)]
            if not live or any(c in dead_nodes for c in controls):
                dead_nodes.add(name)
            elif len(live) == 1 and not any(port(i) == 1 for _, i in users.get(name, [])):
                replaced[name] = make_identity(name, live[0], node.attr["T"].type, list(controls))
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
        # the live port of a resolved Switch is output 0 of its Identity
        nodes.append(with_inputs(node, [
            node_name(inp) if (node_name(inp) in live_port and node_name(inp) not in dead_nodes
                               and not is_control(inp)) else inp
            for inp in node.input]))
    return with_nodes(graph_def, nodes), list(live_port)


@register("resolve_switches", targets=SWITCH_OPS + MERGE_OPS)
def run(graph_def, ctx):
    """Resolve Switches with a constant predicate; changed: the Switches resolved."""
    graph_def, resolved = resolve_switches(graph_def)
    return PassResult(graph_def, resolved)
