"""A TF2 SavedModel or Keras file as recalibrate runs it: its frozen serving graph with each BN
layer's moving statistics turned from Consts into variables, so the passes can load new values
into them layer by layer exactly as for a TF1 checkpoint.

``artefacts.load`` freezes the chosen signature (Keras files: ``model(x, training=False)``) in a
child process; every variable becomes a Const named by its variable path
(``bn/moving_mean``). ``open_frozen`` rewrites the moving-statistic Consts of the layers the
finder found into ``VariableV2`` nodes of the same name, dtype and shape (their readers are
unchanged: a ref input is read like a tensor), imports the graph and assigns each the Const's
value; every other variable stays a Const. ``ConstReader`` gives those values the checkpoint
reader's interface, so ``plan.prepare_layers`` reads gamma, beta and the old statistics from
the frozen graph. The data may be keyed by the signature's input keys (``input_1``) or by the
frozen graph's input tensor names (``input_0`` / ``input_0:0``): ``data_by_placeholder`` renames
the former.
"""

import dataclasses
import os

import numpy as np
import tensorflow.compat.v1 as tf
from tensorflow.core.framework import graph_pb2, tensor_shape_pb2
from tensorflow.python.framework import tensor_util

from tf1_repro.graph import artefacts
from tf1_repro.graph.artefacts.readers import keras, keras_h5, saved_model_pb, saved_model_tf2
from tf1_repro.tools.recalibrate.common import WHERE, RecalibrateError
from tf1_repro.tools.recalibrate.data import Data

TF2_READERS = (saved_model_tf2, keras, keras_h5)
TF2_FORMATS = tuple(reader.FORMAT for reader in TF2_READERS)


def recognise(path):
    """Whether ``path`` is a TF2 SavedModel, ``.keras`` or ``.h5`` (by content, as the readers
    tell); RecalibrateError for an unparsable ``saved_model.pb``."""
    return located(path) is not None


def located(path):
    """``(format, source)`` of a TF2 artefact: a SavedModel's directory (``path`` may name its
    ``saved_model.pb``) or the Keras file; None when no TF2 reader recognises ``path``.
    RecalibrateError for a ``saved_model.pb`` that cannot be parsed (rather than "no checkpoint")."""
    found = saved_model_pb.locate(path) if os.path.exists(path) else None
    if found is not None:
        try:
            saved_model_pb.parse(found[1])
        except artefacts.ArtefactError as err:
            raise RecalibrateError(f"{WHERE}: {err}; nothing written") from None
    for reader in TF2_READERS:
        if reader.recognise(path):
            if reader is saved_model_tf2:
                return reader.FORMAT, saved_model_pb.locate(path)[0]
            return reader.FORMAT, path
    return None


def load(path, signature):
    """The artefact, frozen; RecalibrateError when unreadable or when its signature was not loaded
    (an op that touches files or runs Python: nothing of it runs)."""
    try:
        art = artefacts.load(path, signature=signature)
    except artefacts.ArtefactError as err:
        raise RecalibrateError(f"{WHERE}: {err}") from None
    if art.format not in TF2_FORMATS:
        raise RecalibrateError(f"{WHERE}: {path} read as {art.format}, not a TF2 SavedModel or Keras file")
    if not art.variable_paths:
        why = "; ".join(art.notes) or "its signature has no variables"
        raise RecalibrateError(f"{WHERE}: {art.source}: nothing to recalibrate, the serving function was "
                               f"not frozen ({why}); nothing written")
    return art


class ConstReader:
    """The frozen graph's variable Consts behind ``tf.train.load_checkpoint``'s interface."""

    def __init__(self, art):
        self._nodes = {n.name: n for n in art.graph_def.node
                       if n.op == "Const" and n.name in art.variable_paths}

    def get_variable_to_shape_map(self):
        return {name: tensor_shape(node) for name, node in self._nodes.items()}

    def get_variable_to_dtype_map(self):
        return {name: tf.as_dtype(node.attr["dtype"].type) for name, node in self._nodes.items()}

    def has_tensor(self, name):
        return name in self._nodes

    def get_tensor(self, name):
        return tensor_util.MakeNdarray(self._nodes[name].attr["value"].tensor)


def tensor_shape(node):
    return [d.size for d in node.attr["value"].tensor.tensor_shape.dim]


def statistics_consts(art, found):
    """The moving-statistic Consts of the BN layers found (those that are frozen variables)."""
    names = set()
    for layer in found.bn_layers:
        for name in (layer.moving_mean, layer.moving_variance):
            if name and name in art.variable_paths:
                names.add(name)
    return names


def as_variables(graph_def, names):
    """A copy of ``graph_def`` whose Consts ``names`` are ``VariableV2`` nodes, and their values."""
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph_def)
    values = {}
    for node in out.node:
        if node.name not in names:
            continue
        values[node.name] = tensor_util.MakeNdarray(node.attr["value"].tensor)
        dtype = node.attr["dtype"].type
        shape = tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in values[node.name].shape])
        node.op = "VariableV2"
        node.ClearField("attr")
        node.attr["dtype"].type = dtype
        node.attr["shape"].shape.CopyFrom(shape)
        node.attr["container"].s = b""
        node.attr["shared_name"].s = b""
    return out, values


def open_frozen(art, names):
    """``(graph, session)``: the frozen graph with the Consts ``names`` as variables holding their
    values (assigned through ops of our own)."""
    graph_def, values = as_variables(art.graph_def, names)
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.import_graph_def(graph_def, name="")
        except Exception as err:  # pylint: disable=broad-except
            raise RecalibrateError(f"{WHERE}: {art.source}: the frozen graph cannot be imported "
                                   f"({artefacts.first_line(err)})") from None
        with tf.name_scope("tf1_repro_recalibrate_init"):
            feeds, assigns = {}, []
            for name, value in sorted(values.items()):
                ref = graph.get_operation_by_name(name).outputs[0]
                ph = tf.placeholder(ref.dtype.base_dtype, value.shape)
                assigns.append(tf.assign(ref, ph))
                feeds[ph] = value
    sess = tf.Session(graph=graph)
    sess.run(assigns, feeds)
    return graph, sess


@dataclasses.dataclass
class InputKeys:
    """How the data's keys map to the frozen graph's inputs: {data key: placeholder name}."""
    renamed: dict


def data_by_placeholder(data, art):
    """``(Data keyed by placeholder name, InputKeys)``: a data key that is a signature input key
    (``input_1``) is renamed to its input tensor's op name (``input_0``) unless the data also has
    that name; tensor names (``input_0:0``) and op names are used as given."""
    renamed = {}
    for key, tensor in art.inputs.items():
        op = tensor.split(":")[0]
        if key != op and key != tensor:
            renamed[key] = op
    if data.kind == "generator":
        func = data.func

        def keyed():
            for item in func():
                if isinstance(item, dict):
                    item = {(renamed[k] if k in renamed and renamed[k] not in item else k): v
                            for k, v in item.items()}
                yield item
        return Data(data.spec, data.kind, func=keyed), InputKeys(renamed)
    if data.kind == "npy":
        return data, InputKeys({})
    arrays = dict(data.arrays)
    used = {}
    for key, op in renamed.items():
        if key in arrays and op not in arrays and op + ":0" not in arrays:
            arrays[op] = arrays.pop(key)
            used[key] = op
    return Data(data.spec, data.kind, arrays=arrays), InputKeys(used)


def check_data_keys(data, art):
    """Refuse an ``.npz`` that feeds none of the signature's inputs, naming them (key and tensor)."""
    if data.kind != "npz" or not art.inputs:
        return
    names = {name for key, tensor in art.inputs.items() for name in (key, tensor, tensor.split(":")[0])}
    if not names & set(data.arrays):
        wanted = ", ".join(f"{key!r} (tensor {tensor})" for key, tensor in sorted(art.inputs.items()))
        raise RecalibrateError(f"{WHERE}: --data must hold the signature's inputs, keyed by input key or "
                               f"tensor name: {wanted}; got keys {', '.join(sorted(map(str, data.arrays)))}")


def predictions_name(art, predictions):
    """``--predictions``: a signature output key, or a tensor name of the frozen graph."""
    if predictions and predictions in art.outputs:
        return art.outputs[predictions]
    return predictions


def output_values(sess, graph, art, plan, batch):
    """{output key: value} of the signature's outputs on one batch (prediction feeds included)."""
    fetches = {key: graph.get_tensor_by_name(name) for key, name in art.outputs.items()}
    feed = dict(plan.constant)
    for key, tensor in plan.data.items():
        feed[tensor] = np.asarray(batch[key]).astype(tensor.dtype.as_numpy_dtype)
    return sess.run(fetches, feed)
