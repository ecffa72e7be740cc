"""Writers and runners of serving artefacts made from a frozen prediction GraphDef (moved from
``tf1_repro.tools.formats`` into the to-inference package by the rewrite).

Each writer takes the frozen GraphDef, the input and output tensor names
("x:0") and a path; each ``open_*`` returns ``run(feeds) -> [arrays]`` where
``feeds`` is ``{input tensor name: array}``, plus a ``close()``.

* SavedModel: the graph imported as is (weights are constants), signature
  ``serving_default`` on the inputs and outputs (keys: the tensor names with
  ``/`` and ``:`` replaced, unless given).
* frozen GraphDef: the serialised ``GraphDef``.
* ONNX: ``tf2onnx.convert.from_graph_def`` (opset 17), run by ONNX Runtime.
* TFLite: ``tf.compat.v1.lite.TFLiteConverter.from_frozen_graph`` with the batch
  dimension 1 (the interpreter resizes it), builtin ops only; run by LiteRT's interpreter
  (``ai_edge_litert``), TensorFlow's deprecated ``tf.lite.Interpreter`` when it is not installed.

A missing optional package raises ``FormatUnavailable`` with a one-line hint;
an op a converter cannot take raises ``UnsupportedOp`` naming the op and format;
any other converter failure raises ``FormatError`` with one line.
"""

import contextlib
import gc
import importlib
import os
import re
import sys
import tempfile
import warnings

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph.errors import error_word_line

FORMATS = ("saved_model", "frozen", "onnx", "tflite")
FILE_NAMES = {"saved_model": "saved_model", "frozen": "frozen_graph.pb", "onnx": "model.onnx",
              "tflite": "model.tflite"}
ONNX_OPSET = 17
INSTALL_HINT = {
    "onnx": "onnx: skipped: tf2onnx and onnxruntime are not installed "
            "(pip install tf2onnx==1.17.0 onnxruntime==1.32.0, or make)",
    "tflite": "tflite: skipped: this TensorFlow has no tf.lite (install tensorflow==2.21.0)",
}


class FormatUnavailable(Exception):
    """The package a format needs is missing (message: a one-line install hint)."""


class FormatError(ValueError):
    """A converter failed on the graph (message: one line naming the format and why)."""


class UnsupportedOp(FormatError):
    """A format has no conversion for an op of the graph (message names the op and format)."""


def signature_key(name):
    return re.sub(r"[^A-Za-z0-9_]", "_", name.split(":")[0] if name.endswith(":0") else name)


def _node(name):
    return name.split(":")[0]


@contextlib.contextmanager
def _captured_stderr():
    """File descriptor 2 goes to a scratch file (the converters' C++ logs); yields a function
    returning what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield lambda: (captured.seek(0), captured.read().decode(errors="replace"))[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


# ---- writers ------------------------------------------------------------------------------

def write_frozen(graph_def, path):
    with open(path, "wb") as f:
        f.write(graph_def.SerializeToString())
    return path


def write_saved_model(graph_def, inputs, outputs, path, input_keys=None, output_keys=None):
    """A SavedModel with tag ``serve`` and signature ``serving_default``."""
    input_keys = input_keys or {i: signature_key(i) for i in inputs}
    output_keys = output_keys or {o: signature_key(o) for o in outputs}
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        with tf.Session(graph=graph) as sess:
            signature = tf.saved_model.signature_def_utils.predict_signature_def(
                inputs={input_keys[i]: graph.get_tensor_by_name(i) for i in inputs},
                outputs={output_keys[o]: graph.get_tensor_by_name(o) for o in outputs})
            builder = tf.saved_model.builder.SavedModelBuilder(path)
            builder.add_meta_graph_and_variables(
                sess, [tf.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": signature}, strip_default_attrs=True)
            builder.save()
    return path


def write_onnx(graph_def, inputs, outputs, path, opset=ONNX_OPSET):
    """ONNX through tf2onnx (``onnx_model``); FormatError naming the first op it could not
    convert."""
    try:
        import onnx  # pylint: disable=import-outside-toplevel
        importlib.import_module("tf2onnx")
    except ImportError:
        raise FormatUnavailable(INSTALL_HINT["onnx"]) from None
    import logging  # pylint: disable=import-outside-toplevel
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    try:
        with _captured_stderr():
            model = onnx_model(graph_def, list(inputs), list(outputs), opset)
    except Exception as err:  # pylint: disable=broad-except
        raise FormatError(f"onnx: tf2onnx cannot convert the graph: {str(err).splitlines()[0]}") from None
    for node in model.graph.node:
        if not onnx.defs.has(node.op_type, node.domain or ""):
            raise UnsupportedOp(f"onnx: op {node.op_type} ({node.name}) has no ONNX conversion "
                              f"(opset {opset})")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def onnx_model(graph_def, inputs, outputs, opset=ONNX_OPSET):
    """The ONNX ModelProto of a frozen GraphDef: the steps of ``tf2onnx.convert.from_graph_def``
    (tf2onnx 1.17) on a graph without variables (grappler's ``tf_optimize``,
    ``tfonnx.process_tf_graph`` with ``continue_on_error``, ``optimizer.optimize_graph`` with
    its errors caught, ``make_model``), with the same result, but with the garbage collected
    before each ONNX optimizer.

    Why: with errors caught, ``optimize_graph`` deep-copies the whole ONNX graph, every Const
    value with it, before each of its optimizers (12 per round, 2-3 rounds), and each
    discarded copy is a reference cycle (graph <-> node) that Python's collector reaches only
    when a full collection happens to run: on a TF-Slim ResNet-50 (94 MB of weights) the
    copies added up to 6.9 GB above the graph (measured), against ~1 GB collected this way.
    ``from_graph_def``'s ``freeze_session`` is skipped: its result is discarded there, and a
    frozen graph has no variable to freeze."""
    import gc  # pylint: disable=import-outside-toplevel
    from tf2onnx import optimizer, tf_loader  # pylint: disable=import-outside-toplevel
    from tf2onnx.tfonnx import process_tf_graph  # pylint: disable=import-outside-toplevel

    def collected(factory):
        def make():
            gc.collect()  # the copies of the optimizers before the previous one
            return factory()
        return make

    with tf.device("/cpu:0"):
        with tf.Graph().as_default() as tf_graph:
            tf.import_graph_def(graph_def, name="")
            # tf_loader.inputs_without_resource: resource inputs are not graph inputs
            inputs = [i for i in inputs if tf_graph.get_tensor_by_name(i).dtype != tf.resource]
            optimized = tf_loader.tf_optimize(inputs, outputs, graph_def)
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(optimized, name="")
        del optimized
        onnx_graph = process_tf_graph(tf_graph, continue_on_error=True, opset=opset,
                                      input_names=inputs, output_names=outputs)
        optimizers = {name: collected(factory)
                      for name, factory in optimizer._get_optimizers().items()}  # pylint: disable=protected-access
        # from_graph_def catches the optimizers' errors unless TF2ONNX_CATCH_ERRORS is set (any value)
        catch_errors = "TF2ONNX_CATCH_ERRORS" not in os.environ
        onnx_graph = optimizer.optimize_graph(onnx_graph, catch_errors=catch_errors,
                                              optimizers=optimizers)
        model = onnx_graph.make_model("converted from unknown")
    del onnx_graph
    gc.collect()
    return model


TFLITE_BATCHES = (None, 1)  # the batch dimension tried in turn: dynamic, else fixed to 1


def write_tflite(graph_def, inputs, outputs, input_shapes, path):
    """TFLite (builtin ops, float32) from the frozen graph, with a dynamic batch dimension (a
    batch fixed to 1 would be baked into reshapes, e.g. a Dense layer on a sequence); a batch of 1
    only when the converter refuses a dynamic one."""
    if not hasattr(tf, "lite"):
        raise FormatUnavailable(INSTALL_HINT["tflite"])
    with tempfile.TemporaryDirectory() as tmp:
        frozen = write_frozen(graph_def, os.path.join(tmp, "frozen.pb"))
        model, error = None, None
        for batch in TFLITE_BATCHES:
            shapes = {_node(i): [batch] + [int(d) for d in input_shapes[i][1:]] for i in inputs}
            converter = tf.lite.TFLiteConverter.from_frozen_graph(
                frozen, [_node(i) for i in inputs], [_node(o) for o in outputs], input_shapes=shapes)
            try:
                with _captured_stderr():
                    model = converter.convert()
                break
            except Exception as err:  # pylint: disable=broad-except
                error = err
        if model is None:
            reason, unsupported = _tflite_reason(str(error))
            raise (UnsupportedOp if unsupported else FormatError)(f"tflite: {reason}") from None
    with open(path, "wb") as f:
        f.write(model)
    return path


def _tflite_reason(text):
    """(one-line reason, whether it is an op TFLite has no builtin for)."""
    ops = re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)
    if ops:
        return "op " + ", ".join(sorted(set(ops))) + " is not a TFLite builtin op", True
    return one_line(text), False


# what a report shows of a converter's or runtime's exception (the first line saying "error")
one_line = error_word_line


# ---- runners ------------------------------------------------------------------------------

class Runner:
    """``run(feeds)`` -> list of output arrays, in the order of ``outputs``; ``close()`` closes
    what it opened, lets go of it and collects it (its ``run`` and ``close`` hold the graph and
    session, reference cycles that only a full collection frees), so that the next model opened
    does not sit beside it even while the caller still holds the runner; a closed runner cannot
    run."""

    def __init__(self, run, close=lambda: None):
        self.run = run
        self._close = close

    def close(self):
        close, self._close = self._close, lambda: None
        self.run = _closed
        close()
        gc.collect()


def _closed(feeds):
    raise RuntimeError("the runner is closed")


def open_session(graph, sess, outputs, extra_feeds=None):
    """A runner over a live session (the original graph): ``extra_feeds`` are added to every run."""
    fetches = [graph.get_tensor_by_name(o) for o in outputs]
    extra = dict(extra_feeds or {})

    def run(feeds):
        return sess.run(fetches, {**extra, **feeds})
    return Runner(run)


def open_graph_def(graph_def, outputs):
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    sess = tf.Session(graph=graph)
    return Runner(open_session(graph, sess, outputs).run, sess.close)


def open_frozen(path, outputs):
    graph_def = tf.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    return open_graph_def(graph_def, outputs)


def open_saved_model(path, inputs, outputs):
    """Loaded with ``tf.saved_model.loader.load``; fed and fetched through the signature."""
    graph = tf.Graph()
    sess = tf.Session(graph=graph)
    with graph.as_default():
        meta = tf.saved_model.loader.load(sess, [tf.saved_model.tag_constants.SERVING], path)
    signature = meta.signature_def["serving_default"]
    served = {v.name for v in signature.inputs.values()} | {v.name for v in signature.outputs.values()}
    missing = [n for n in list(inputs) + list(outputs) if n not in served]
    if missing:
        sess.close()
        raise FormatError(f"saved_model: serving_default lacks {', '.join(missing)}")
    fetches = [graph.get_tensor_by_name(o) for o in outputs]

    def run(feeds):
        return sess.run(fetches, feeds)
    return Runner(run, sess.close)


def open_onnx(path, outputs):
    try:
        import onnxruntime  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise FormatUnavailable(INSTALL_HINT["onnx"]) from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = os.cpu_count() or 1  # as TensorFlow's sessions use
    # Idle threads that spin steal the cores from whatever runs next (measured: 2 threads
    # spinning on a busy 2-core machine ran 1.6x slower than without spinning).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(feeds):
        return session.run(list(outputs), feeds)
    return Runner(run)


def _tflite_interpreter():
    """LiteRT's interpreter (``ai-edge-litert``, the maintained home of the TFLite runtime; pinned in
    requirements.txt), else TensorFlow's deprecated ``tf.lite.Interpreter``."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
    except ImportError:
        return tf.lite.Interpreter
    return Interpreter


def open_tflite(path, inputs, outputs):
    """The TFLite interpreter; resized (and re-allocated) when the batch size changes."""
    with _captured_stderr(), warnings.catch_warnings():  # XNNPACK info, LiteRT notice
        warnings.simplefilter("ignore")
        interpreter = _tflite_interpreter()(model_path=path, num_threads=os.cpu_count())
        interpreter.allocate_tensors()
    in_index = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    out_index = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    ins = {i: in_index.get(_node(i), in_index.get(i)) for i in inputs}
    outs = [out_index.get(_node(o), out_index.get(o)) for o in outputs]
    shapes = {}

    def run(feeds):
        for name, value in feeds.items():
            if shapes.get(name) != value.shape:
                interpreter.resize_tensor_input(ins[name], value.shape)
                shapes[name] = value.shape
                interpreter.allocate_tensors()
        for name, value in feeds.items():
            interpreter.set_tensor(ins[name], np.ascontiguousarray(value))
        interpreter.invoke()
        return [interpreter.get_tensor(i).copy() for i in outs]
    return Runner(run)


def file_size(path):
    """Bytes of a file, or of every file under a directory."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)
