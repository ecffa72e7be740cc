"""The ``Artefact`` a format reader returns, and ``ArtefactError``.

An ``Artefact`` holds what was read without running anything: the graph (``graph_def``; for
TF2 SavedModels and Keras files, the chosen signature frozen into one graph whose variables are
Consts), the TF1 meta graph and checkpoint prefix where there are some. ``open()`` imports the
graph into a new ``tf.Graph`` and restores the variables into a new Session. The restore
assigns each variable from the checkpoint through ops this module adds to the imported graph,
so none of the user's own save/restore ops run (a TF1 SavedModel whose variables are not found
by name is restored by the SavedModel loader, which runs its restore op). Nothing is ever
written.
"""

import os

import numpy as np

from tf1_repro.graph.errors import InputError, first_line  # noqa: F401  (the readers import it from here)

class ArtefactError(InputError):
    """An unreadable artefact: one line naming the file and what is wrong (exit status 2)."""


class Artefact:
    """A loaded artefact; see ``load``."""

    # pylint: disable=too-many-instance-attributes,too-many-arguments
    def __init__(self, fmt, source, graph_def=None, meta_graph=None, checkpoint=None, tags=None):
        self.format = fmt
        self.source = source
        self.graph_def = graph_def
        self.meta_graph = meta_graph
        self.checkpoint = checkpoint
        self.tags = tags
        # TF2 SavedModels and Keras files (see their readers): the frozen signature's facts
        self.signature_defs = None   # {name: SignatureDef} when there is no TF1 meta graph
        self.signature = None        # the signature frozen into graph_def
        self.inputs = {}             # {signature input key: tensor name in graph_def}
        self.outputs = {}            # {signature output key: tensor name in graph_def}
        self.variable_paths = {}     # {frozen Const node name: object path of its variable}
        self.checkpoint_keys = {}    # {frozen Const node name: key in variables/ or weights file}
        self.bn_configs = []         # Keras files: [{name, class_name, momentum, epsilon, axis}]
        # the variable writes the frozen function makes, left out of graph_def (it cannot hold
        # them): [{"node": write op, "op": its type, "variable": path, "value": tensor written}]
        self.writes = []
        self.keras_layers = None     # Keras config, read statically (JSON only), when there is
        #                              one: [{name, class_name, config}] (readers.keras_config)
        self.notes = []              # what the reader could not do, and why
        self._reader = None
        self._consts = None

    def __repr__(self):
        return f"Artefact({self.format!r}, {self.source!r}, checkpoint={self.checkpoint!r})"

    @property
    def signatures(self):
        """``{name: SignatureDef}`` of a SavedModel (or a meta graph that has them)."""
        if self.signature_defs is not None:
            return dict(self.signature_defs)
        return dict(self.meta_graph.signature_def) if self.meta_graph is not None else {}

    @property
    def signature_names(self):
        """The signature names, sorted (``__saved_model_init_op`` is not a signature)."""
        return sorted(k for k in self.signatures if k != "__saved_model_init_op")

    def variable_values(self):
        """``{object path: np.ndarray}`` of the frozen graph's variables (TF2 and Keras)."""
        return {path: np.asarray(self.read(const)) for const, path in self.variable_paths.items()}

    # ---- checkpoint values

    def _checkpoint_reader(self):
        import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
        if self._reader is None:
            if self.checkpoint is None:
                return None
            try:
                self._reader = tf.train.load_checkpoint(self.checkpoint)
            except Exception as err:  # pylint: disable=broad-except
                raise ArtefactError(f"{self.checkpoint}: unreadable checkpoint "
                                    f"({first_line(err)})") from None
        return self._reader

    def variables(self):
        """``{name: shape}`` of the checkpoint's variables (empty without a checkpoint)."""
        reader = self._checkpoint_reader()
        if reader is None:
            return {}
        return {k: tuple(v) for k, v in sorted(reader.get_variable_to_shape_map().items())}

    def read(self, name):
        """One variable's value from the checkpoint, or a Const's value from a frozen graph."""
        reader = self._checkpoint_reader()
        if reader is not None and reader.has_tensor(name):
            return reader.get_tensor(name)
        key = self.checkpoint_keys.get(name)  # a TF2 variable's name -> its object-based key
        if reader is not None and key and reader.has_tensor(key):
            return reader.get_tensor(key)
        if self.graph_def is not None:
            from tensorflow.python.framework import tensor_util  # pylint: disable=import-outside-toplevel
            if self._consts is None:
                self._consts = {n.name: n for n in self.graph_def.node if n.op == "Const"}
            if name in self._consts:
                return tensor_util.MakeNdarray(self._consts[name].attr["value"].tensor)
        raise KeyError(f"{self.source}: no variable or Const named {name!r}")

    # ---- graphs

    def import_graph(self):
        """A new ``tf.Graph`` holding the artefact's graph under its own names (nothing runs)."""
        import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
        graph = tf.Graph()
        with graph.as_default():
            try:
                if self.meta_graph is not None:
                    tf.train.import_meta_graph(self.meta_graph, clear_devices=True)
                elif self.graph_def is not None:
                    tf.import_graph_def(self.graph_def, name="")
            except Exception as err:  # pylint: disable=broad-except
                raise ArtefactError(f"{self.source}: the graph cannot be imported into TensorFlow "
                                    f"{tf.__version__} ({first_line(err)})") from None
        return graph

    def find(self):
        """The structural finder's ``Findings`` for the artefact's graph (empty without a graph)."""
        from tf1_repro.tools import finder  # pylint: disable=import-outside-toplevel
        if self.graph_def is None and self.meta_graph is None:
            return finder.Findings([], [], [])
        return finder.find(self.import_graph())

    def open(self):
        """``(graph, session)``: the graph imported and its variables restored. Close the session."""
        import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
        if self.format == "saved_model" and self.checkpoint is not None:
            # import the meta graph and assign the variables by name: the SavedModel's own
            # main_op / init ops (which may do anything) never run
            graph = self.import_graph()
            sess = tf.Session(graph=graph)
            try:
                restored = self.restore(graph, sess)
            except Exception:
                sess.close()
                raise
            wanted = [op.name for op in graph.get_operations()
                      if op.type in ("VariableV2", "VarHandleOp") and
                      not op.name.startswith("tf1_repro_restore")]
            if set(wanted) <= set(restored):
                return graph, sess
            sess.close()  # object-based (TF2) variable keys: let the SavedModel loader map them
        if self.format == "saved_model":
            graph = tf.Graph()
            sess = tf.Session(graph=graph)
            try:
                with graph.as_default():
                    tf.saved_model.loader.load(sess, self.tags, os.path.dirname(self.source)
                                               if os.path.isfile(self.source) else self.source)
            except Exception as err:  # pylint: disable=broad-except
                sess.close()
                raise ArtefactError(f"{self.source}: the SavedModel cannot be loaded "
                                    f"({first_line(err)})") from None
            return graph, sess
        if self.graph_def is None and self.meta_graph is None:
            raise ArtefactError(f"{self.source}: a checkpoint without its .meta graph has no graph "
                                f"to run")
        graph = self.import_graph()
        sess = tf.Session(graph=graph)
        try:
            self.restore(graph, sess)
        except Exception:
            sess.close()
            raise
        return graph, sess

    def restore(self, graph, sess, names=None):
        """Assign every variable of ``graph`` found in the checkpoint (or ``names`` only)."""
        import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
        reader = self._checkpoint_reader()
        if reader is None:
            return []
        available = reader.get_variable_to_shape_map()
        feeds, assigns, restored = {}, [], []
        with graph.as_default(), tf.name_scope(finder_restore_scope()):
            for op in graph.get_operations():
                if op.type not in ("VariableV2", "VarHandleOp", "Variable") or op.name not in available:
                    continue
                if names is not None and op.name not in names:
                    continue
                value = reader.get_tensor(op.name)
                dtype = op.get_attr("dtype")
                declared = tf.TensorShape(op.get_attr("shape"))
                if declared.rank is not None and not declared.is_compatible_with(value.shape):
                    raise ArtefactError(f"{self.checkpoint}: variable {op.name} has shape "
                                        f"{list(value.shape)} in the checkpoint but "
                                        f"{declared.as_list()} in the graph")
                ph = tf.placeholder(dtype, value.shape)
                if op.type == "VarHandleOp":
                    assigns.append(tf.raw_ops.AssignVariableOp(resource=op.outputs[0], value=ph))
                else:
                    assigns.append(tf.assign(op.outputs[0], ph, validate_shape=False).op)
                feeds[ph] = value
                restored.append(op.name)
        if assigns:
            sess.run(assigns, feeds)
        return restored


def writes_note(writes):
    """The note of an Artefact whose serving function writes variables."""
    names = sorted({w["variable"] for w in writes})
    return (f"the serving function writes {len(names)} variable(s) on every call "
            f"({', '.join(names)}); the frozen graph leaves the writes out (Artefact.writes)")


def finder_restore_scope():
    from tf1_repro.tools import finder  # pylint: disable=import-outside-toplevel
    return finder.RESTORE_SCOPE


def values_of(art, names):
    """``{name: np.ndarray}`` for the given variable/Const names (missing ones left out)."""
    out = {}
    for name in names:
        if not name:
            continue
        try:
            out[name] = np.asarray(art.read(name))
        except KeyError:
            pass
    return out
