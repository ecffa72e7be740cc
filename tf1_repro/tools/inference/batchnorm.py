"""Batch norm at prediction as an affine map: the rule the ``fold_batch_norms`` pass applies.

``affine_chain`` walks back from a BN's output through per-channel affine ops with constant
operands and composes them in float64 into ``y = x * s + o``; when ``x`` is a MatMul/Conv2D/
DepthwiseConv2dNative with a constant kernel read by nothing else, ``fold_batch_norm`` scales the
kernel's output channel c by ``s[c]`` and ``o`` becomes a BiasAdd; otherwise the BN stays one Mul
and one AddV2 with constant ``s`` and ``o``. (Moved unchanged from ``tools/inference.py``.)
"""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph.graphdef import (const_value, consumers, is_control, make_const, node_name,
                                      nodes_by_name, output_dtype, port, with_nodes)
from tf1_repro.graph.ops import FUSED_BN_OPS, GLOBAL_BN_OP, PLACEHOLDER_OPS

LINEAR_OPS = ("MatMul", "Conv2D", "DepthwiseConv2dNative")
ELEMENTWISE = ("Add", "AddV2", "BiasAdd", "Sub", "Mul", "RealDiv", "Neg", "Identity", "Snapshot")


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
        if src is None or src.op != "Const" or port(inp) != 0:
            return None
        return _per_channel(const_value(src))
    data = [i for i in node.input if not is_control(i)]
    if node.op in ("Identity", "Snapshot"):
        return data[0], lambda s, o: (s, o)
    if node.op == "Neg":
        return data[0], lambda s, o: (-s, -o)
    if node.op in FUSED_BN_OPS + (GLOBAL_BN_OP,):
        return _bn_op_step(node, data, const)
    if node.op not in ELEMENTWISE or len(data) != 2:
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
        if (src in stop or len(users.get(src, [])) != 1 or port(inp) != 0
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
    if port(x) != 0 or len(users.get(node.name, [])) != 1:
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
    dtype = output_dtype(out_node)
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
    return with_nodes(graph_def, nodes), {"folded": linear is not None, "reason": reason,
                                           "linear": linear.name if linear is not None else None}
