"""Open what TF1 training left behind: a checkpoint (with its ``.meta``), a ``.meta`` graph, a
SavedModel or a frozen GraphDef, read-only.

``load(path)`` recognises the format and reads the graph (and the checkpoint's
index) without running anything; ``Artefact.open()`` imports the graph into a
new ``tf.Graph`` and restores the variables into a new Session. The restore
assigns each variable from the checkpoint through ops this module adds to the
imported graph, so none of the user's own save/restore ops run (a SavedModel
is restored by the SavedModel loader, which runs its restore op). Nothing is
ever written.
"""

import os

import numpy as np

from tf1_repro.graph.errors import InputError

FORMATS = ("checkpoint", "meta_graph", "saved_model", "frozen_graph")


class ArtefactError(InputError):
    """An unreadable artefact: one line naming the file and what is wrong (exit status 2)."""


class Artefact:
    """A loaded artefact; see ``load``."""

    def __init__(self, fmt, source, graph_def=None, meta_graph=None, checkpoint=None, tags=None):
        self.format = fmt
        self.source = source
        self.graph_def = graph_def
        self.meta_graph = meta_graph
        self.checkpoint = checkpoint
        self.tags = tags
        self._reader = None
        self._consts = None

    def __repr__(self):
        return f"Artefact({self.format!r}, {self.source!r}, checkpoint={self.checkpoint!r})"

    @property
    def signatures(self):
        """``{name: SignatureDef}`` of a SavedModel (or a meta graph that has them)."""
        return dict(self.meta_graph.signature_def) if self.meta_graph is not None else {}

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
                                    f"({_first_line(err)})") from None
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
                                    f"{tf.__version__} ({_first_line(err)})") from None
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
                                    f"({_first_line(err)})") from None
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


def finder_restore_scope():
    from tf1_repro.tools import finder  # pylint: disable=import-outside-toplevel
    return finder.RESTORE_SCOPE


def _first_line(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def load(path):
    """The artefact at ``path``; ``ArtefactError`` (one line) when it cannot be read."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"artefacts.load: path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in ("saved_model.pb", "saved_model.pbtxt"):
            if os.path.isfile(os.path.join(path, name)):
                return _saved_model(path, os.path.join(path, name))
        prefix = latest_checkpoint(path)
        if prefix is None:
            raise ArtefactError(f"{path}: a directory with no checkpoint (.index) and no "
                                f"saved_model.pb")
        return _checkpoint(prefix, path)
    if path.endswith(".meta"):
        if not os.path.isfile(path):
            raise ArtefactError(f"{path}: no such file")
        prefix = path[: -len(".meta")]
        meta = _read_meta(path)
        has_ckpt = os.path.isfile(prefix + ".index")
        return Artefact("meta_graph", path, meta.graph_def, meta, prefix if has_ckpt else None)
    if os.path.isfile(path + ".index"):
        return _checkpoint(path, path)
    if path.endswith((".index",)) and os.path.isfile(path):
        return _checkpoint(path[: -len(".index")], path)
    if not os.path.exists(path):
        raise ArtefactError(f"{path}: no such file or checkpoint prefix")
    if os.path.basename(path) in ("saved_model.pb", "saved_model.pbtxt"):
        return _saved_model(os.path.dirname(path) or ".", path)
    if path.endswith((".pb", ".pbtxt", ".txt")):
        return Artefact("frozen_graph", path, _read_graph_def(path))
    raise ArtefactError(f"{path}: not a checkpoint, .meta, SavedModel or frozen graph (.pb/.pbtxt)")


def latest_checkpoint(directory):
    """The newest checkpoint prefix in ``directory`` (its own files, even when the state file
    names another folder), or None."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    try:
        prefix = tf.train.latest_checkpoint(directory)
    except Exception:  # pylint: disable=broad-except
        prefix = None
    if prefix:
        # a copied directory's state file may still name the original folder: read this one's
        local = os.path.join(directory, os.path.basename(prefix))
        if os.path.isfile(local + ".index"):
            return local
        if os.path.isfile(prefix + ".index"):
            return prefix
    indexes = sorted((f for f in os.listdir(directory) if f.endswith(".index")),
                     key=lambda f: os.path.getmtime(os.path.join(directory, f)))
    return os.path.join(directory, indexes[-1][: -len(".index")]) if indexes else None


def _checkpoint(prefix, source):
    meta = _read_meta(prefix + ".meta") if os.path.isfile(prefix + ".meta") else None
    art = Artefact("checkpoint", source, meta.graph_def if meta else None, meta, prefix)
    art.variables()  # fails now, with one line, if the checkpoint is unreadable
    return art


def _read_meta(path):
    from tensorflow.core.protobuf import meta_graph_pb2  # pylint: disable=import-outside-toplevel
    meta = meta_graph_pb2.MetaGraphDef()
    try:
        with open(path, "rb") as f:
            meta.ParseFromString(f.read())
    except Exception as err:  # pylint: disable=broad-except
        raise ArtefactError(f"{path}: not a MetaGraphDef ({_first_line(err)})") from None
    return meta


def _read_graph_def(path):
    from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
    from tensorflow.core.framework import graph_pb2  # pylint: disable=import-outside-toplevel
    graph_def = graph_pb2.GraphDef()
    with open(path, "rb") as f:
        data = f.read()
    try:
        if path.endswith(".pb"):
            graph_def.ParseFromString(data)
        else:
            text_format.Parse(data.decode("utf-8"), graph_def)
    except Exception as err:  # pylint: disable=broad-except
        raise ArtefactError(f"{path}: not a GraphDef ({_first_line(err)})") from None
    if not graph_def.node:
        raise ArtefactError(f"{path}: a GraphDef with no nodes")
    return graph_def


def _saved_model(directory, pb_path):
    from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
    sm = saved_model_pb2.SavedModel()
    try:
        with open(pb_path, "rb") as f:
            data = f.read()
        if pb_path.endswith(".pbtxt"):
            text_format.Parse(data.decode("utf-8"), sm)
        else:
            sm.ParseFromString(data)
    except Exception as err:  # pylint: disable=broad-except
        raise ArtefactError(f"{pb_path}: not a SavedModel ({_first_line(err)})") from None
    if not sm.meta_graphs:
        raise ArtefactError(f"{pb_path}: a SavedModel with no meta graph")
    chosen = sm.meta_graphs[0]
    for mg in sm.meta_graphs:
        if "serve" in mg.meta_info_def.tags:
            chosen = mg
            break
    tags = list(chosen.meta_info_def.tags)
    prefix = os.path.join(directory, "variables", "variables")
    return Artefact("saved_model", directory, chosen.graph_def, chosen,
                    prefix if os.path.isfile(prefix + ".index") else None, tags)


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
