"""The artefact as the doctor reads it: nodes, collections, variable values, its imported graph.

``Artefact`` wraps ``tf1_repro.graph.artefacts.Artefact`` (checkpoint, ``.meta``, SavedModel or
frozen GraphDef, opened read-only). ``import_graph`` imports its whole graph into a ``tf.Graph`` of
its own (devices cleared) for the finder and the runs; nothing is written anywhere.
"""

import re

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph import artefacts, walk
from tf1_repro.tools.doctor.base import WHERE, DoctorError

GRADIENTS = re.compile(r"(^|/)gradients(_\d+)?/")


def node_name(name):
    """``^x`` or ``x:1`` -> ``x``."""
    return name.split(":")[0].lstrip("^")


def load(path, signature=None):
    """``Artefact`` of the file or directory at ``path`` (``signature``: the SavedModel signature
    to read, default ``serving_default``); DoctorError when it cannot be read or has no such
    signature."""
    from tf1_repro.tools import tf2_findings  # pylint: disable=import-outside-toplevel
    try:
        art = artefacts.load(path, signature=signature)
        tf2_findings.check_signature(art, signature)
        doc = Artefact(art)
        doc.chosen_signature = signature
        return doc
    except artefacts.ArtefactError as err:
        raise DoctorError(f"{WHERE}: {err}") from None


class Artefact:
    """The loaded artefact with its graph's nodes, collections and variable values."""

    def __init__(self, art):
        self.art = art
        self.meta = art.meta_graph
        self.graph_def = self.meta.graph_def if self.meta is not None else art.graph_def
        self.nodes = {n.name: n for n in self.graph_def.node} if self.graph_def is not None else {}
        self.variables = dict(art.variables()) if art.checkpoint else {}
        if art.checkpoint and art.checkpoint_keys:  # a TF2 SavedModel read without loading it
            self.variables = {name: self.variables[key] for name, key in
                              art.checkpoint_keys.items() if key in self.variables}
        self.collections = self.meta.collection_def if self.meta is not None else {}
        self._inputs = None
        self._values = {}  # variable name -> its checkpoint value, read once
        self.graph = None  # the imported tf.Graph, once there is one (import_graph)
        self.training_only = set()  # gradient ops and what depends on them (import_graph)
        self.chosen_signature = None  # --signature (a TF1 SavedModel's; TF2 ones are frozen)

    @property
    def format(self):
        return self.art.format

    @property
    def source(self):
        return self.art.source

    def value(self, name):
        """A variable's checkpoint value, or a Const's value; None when neither."""
        if not name:
            return None
        if name in self._values:
            return self._values[name]
        if name in self.variables:
            try:
                self._values[name] = np.asarray(self.art.read(name))
                return self._values[name]
            except artefacts.ArtefactError as err:
                raise DoctorError(f"{WHERE}: {err}") from None
            except Exception as err:  # pylint: disable=broad-except  (a truncated or corrupt file)
                raise DoctorError(f"{WHERE}: {self.art.checkpoint}: variable {name} is unreadable "
                                  f"({type(err).__name__}: {str(err).splitlines()[0][:160]})") from None
        node = self.nodes.get(node_name(name))
        if node is not None and node.op == "Const":
            return tf.make_ndarray(node.attr["value"].tensor)
        return None

    def collection_names(self, key):
        """Node names in a meta graph collection (node lists and VariableDefs)."""
        if key not in self.collections:
            return []
        col = self.collections[key]
        kind = col.WhichOneof("kind")
        if kind == "node_list":
            return [node_name(v) for v in col.node_list.value]
        if kind == "bytes_list":
            from tensorflow.core.framework import variable_pb2  # pylint: disable=import-outside-toplevel
            names = []
            for raw in col.bytes_list.value:
                var = variable_pb2.VariableDef()
                try:
                    var.ParseFromString(raw)
                except Exception:  # pylint: disable=broad-except  (not a VariableDef collection)
                    return names
                names.append(node_name(var.variable_name))
            return names
        return []

    def variable_defs(self):
        """``{variable node name: VariableDef}`` of the ``variables`` collection."""
        from tensorflow.core.framework import variable_pb2  # pylint: disable=import-outside-toplevel
        out = {}
        if "variables" in self.collections:
            for raw in self.collections["variables"].bytes_list.value:
                var = variable_pb2.VariableDef()
                var.ParseFromString(raw)
                out[node_name(var.variable_name)] = var
        return out

    def inputs_of(self):
        """node name -> list of input node names (data and control), built once."""
        if self._inputs is None:
            self._inputs = {name: [node_name(i) for i in n.input] for name, n in self.nodes.items()}
        return self._inputs

    def ancestors(self, names):
        """Names of the nodes ``names`` depend on (themselves included), data and control, in the
        imported graph (``graph.walk``)."""
        ops = [self.graph.get_operation_by_name(node_name(n)) for n in names]
        return {op.name for op in walk.ancestors(ops)}

    def global_step(self):
        """The global step's value (``global_step`` collection or variable), None when absent."""
        names = self.collection_names("global_step") or ["global_step"]
        for name in names:
            value = self.value(name)
            if value is not None and value.size == 1:
                return int(value.reshape(()))
        return None

    def static_value(self, tensor_name, depth=0):
        """The value of a tensor computed from Consts by Identity/Fill/Cast only; else None."""
        node = self.nodes.get(node_name(tensor_name))
        if node is None or depth > 16:
            return None
        if node.op == "Const":
            return tf.make_ndarray(node.attr["value"].tensor)
        if node.op in ("Identity", "Cast", "Snapshot") and node.input:
            return self.static_value(node.input[0], depth + 1)
        if node.op == "Fill" and len(node.input) == 2:
            dims, value = self.static_value(node.input[0], depth + 1), \
                self.static_value(node.input[1], depth + 1)
            if dims is not None and value is not None:
                return np.full(tuple(int(d) for d in dims), value)
        if node.op in ("ZerosLike",):
            return np.zeros(())
        return None

    # ---- a SavedModel's signature

    @property
    def is_tf2(self):
        """A TF2 SavedModel or Keras file: its signature frozen, inputs and outputs known."""
        return self.format in ("saved_model_tf2", "keras", "keras_h5")

    def signature(self):
        """The SignatureDef a serving client calls (``--signature``, else ``serving_default``,
        else the first), or None."""
        if self.meta is None or not self.meta.signature_def:
            return None
        chosen = self.chosen_signature
        key = chosen if chosen is not None and chosen in self.meta.signature_def else \
            "serving_default" if "serving_default" in self.meta.signature_def else \
            sorted(self.meta.signature_def)[0]
        return self.meta.signature_def[key]

    def signature_outputs(self):
        """Sorted tensor names of the signature's outputs ([] without a signature); a TF2
        artefact's frozen function's outputs."""
        if self.is_tf2:
            return sorted(self.art.outputs.values())
        signature = self.signature()
        return sorted(t.name for t in signature.outputs.values()) if signature is not None else []

    def signature_inputs(self):
        """Tensor names a client feeds through the signature (``x:0``)."""
        if self.is_tf2:
            return {t if ":" in t else f"{t}:0" for t in self.art.inputs.values()}
        signature = self.signature()
        return {t.name if ":" in t.name else f"{t.name}:0" for t in signature.inputs.values()} \
            if signature is not None else set()

    def serving_defaults(self):
        """The PlaceholderWithDefault nodes a serving client leaves at their default: in a
        SavedModel those not among the signature's inputs, in a frozen graph every one."""
        pwd = {n for n, node in self.nodes.items() if node.op == "PlaceholderWithDefault"}
        if self.format == "saved_model":
            return pwd - {node_name(t) for t in self.signature_inputs()}
        return pwd if self.format == "frozen_graph" else set()


def import_graph(doc):
    """(tf.Graph, collections): the artefact's whole graph imported (devices cleared), with the
    meta graph's node-list collections for the finder; sets ``doc.graph`` and
    ``doc.training_only``.

    The finder sees the same graph and collections as ``finder.find`` on the artefact
    (``python -m tf1_repro find``), so both report the same ``update_location``: an update
    wired by ``control_dependencies`` into a train op that hangs below the gradients is in
    ``collection:train_op`` only when the train op is there. ``doc.training_only`` holds the
    gradient ops and everything below them (apply ops, the train op), which are never
    prediction outputs and never run.
    """
    inputs = doc.inputs_of()
    dropped = {n for n in doc.nodes if GRADIENTS.search(n + "/")}
    if dropped:
        consumers = {}
        for name, ins in inputs.items():
            for i in ins:
                consumers.setdefault(i, []).append(name)
        stack = list(dropped)
        while stack:
            for c in consumers.get(stack.pop(), ()):
                if c not in dropped:
                    dropped.add(c)
                    stack.append(c)
    doc.training_only = dropped
    graph_def = tf.GraphDef()
    graph_def.CopyFrom(doc.graph_def)
    for node in graph_def.node:
        node.device = ""
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.import_graph_def(graph_def, name="")
        except (ValueError, TypeError, tf.errors.OpError) as err:
            raise DoctorError(f"{WHERE}: {doc.art.source}: the graph cannot be imported "
                              f"({str(err).splitlines()[0][:200]})") from None
    collections = {}
    for key in doc.collections:
        names = [n for n in doc.collection_names(key) if n in doc.nodes]
        if names and doc.collections[key].WhichOneof("kind") == "node_list":
            collections[key] = names
    doc.graph = graph
    return graph, collections
