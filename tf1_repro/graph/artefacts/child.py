"""Loading TF2 SavedModels and Keras files in a child process, and freezing what they serve.

The command line and the tests run TensorFlow with TF1 behaviour, under which a TF2 SavedModel
or a Keras 3 model cannot be loaded, so the readers call ``freeze(task, params, source)``: it
writes the parameters to a temporary folder (never next to the user's file) and runs
``python -m tf1_repro.graph.artefacts.child TASK DIR`` in a fresh interpreter with TF2
behaviour (tf-keras for ``keras_h5``, Keras 3 otherwise), which loads the artefact, traces the
function it serves, freezes it with ``convert_variables_to_constants_v2`` into one inlined
GraphDef and writes ``frozen.pb`` and ``out.json``; the parent reads them and deletes the
folder. The child never runs the function; it only reads the variables.

``out.json``: ``inputs``/``outputs`` ({key: tensor name in the frozen graph}),
``variable_paths`` ({Const name: variable path}), ``checkpoint_keys`` ({Const name: key}),
``writes`` (the variable writes the function makes, left out of the frozen graph: see
``_freeze_function``).
A failure in the child is an ``ArtefactError`` whose line is the child's own (``refused``
when the child's check of Keras classes refused the file).
"""

import json
import os
import subprocess
import sys
import tempfile

from tf1_repro.graph.artefacts.artefact import ArtefactError

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def freeze(task, params, source, what, timeout=600):
    """``(GraphDef, out dict)`` from the child's ``task``; ``ArtefactError`` naming ``source``
    and ``what`` could not be loaded when it fails."""
    from tensorflow.core.framework import graph_pb2  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory(prefix="tf1_repro_artefact_") as folder:
        with open(os.path.join(folder, "in.json"), "w", encoding="utf-8") as f:
            json.dump(params, f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore",
                   CUDA_VISIBLE_DEVICES="-1",  # reading needs no accelerator
                   PYTHONPATH=os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p))
        env.pop("TF_USE_LEGACY_KERAS", None)
        if task == "keras_h5":
            env["TF_USE_LEGACY_KERAS"] = "1"
        try:
            done = subprocess.run([sys.executable, "-m", "tf1_repro.graph.artefacts.child", task, folder],
                                  capture_output=True, text=True, timeout=timeout, env=env,
                                  check=False, cwd=folder)
        except subprocess.TimeoutExpired:
            raise ArtefactError(f"{source}: {what} could not be loaded within {timeout} s") from None
        error_file = os.path.join(folder, "error.json")
        if os.path.isfile(error_file):
            with open(error_file, encoding="utf-8") as f:
                error = json.load(f)
            if error.get("refused"):
                raise ArtefactError(f"{source}: {error['line']}")
            raise ArtefactError(f"{source}: {what} cannot be loaded ({error['line']})")
        if done.returncode != 0 or not os.path.isfile(os.path.join(folder, "out.json")):
            last = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise ArtefactError(f"{source}: {what} cannot be loaded (the loading process ended with "
                                f"status {done.returncode}: {last[-1][:200] if last else 'no message'})")
        graph_def = graph_pb2.GraphDef()
        with open(os.path.join(folder, "frozen.pb"), "rb") as f:
            graph_def.ParseFromString(f.read())
        with open(os.path.join(folder, "out.json"), encoding="utf-8") as f:
            out = json.load(f)
    return named_by_variable_paths(graph_def, out)


def named_by_variable_paths(graph_def, out):
    """The frozen graph with each variable's Const renamed to its variable's path (``unknown_3``
    -> ``batch_normalization/moving_mean``; a ``:0`` suffix dropped), so that every tool names
    layers, gamma, beta and the moving statistics as the user knows them; ``out``'s
    ``variable_paths`` and ``checkpoint_keys`` follow. A path that is not a valid node name or
    clashes with a node keeps the generated name."""
    from tf1_repro.graph import graphdef  # pylint: disable=import-outside-toplevel
    paths = out.get("variable_paths", {})
    wanted = {const: path.split(":")[0] for const, path in paths.items()}
    graph_def, applied = graphdef.rename_nodes(graph_def, wanted)
    out = dict(out)
    out["variable_paths"] = {applied.get(k, k): v for k, v in paths.items()}
    out["checkpoint_keys"] = {applied.get(k, k): v for k, v in out.get("checkpoint_keys", {}).items()}
    out["writes"] = [dict(w, value=_renamed(w["value"], applied)) for w in out.get("writes", [])]
    return graph_def, out


def _renamed(tensor, applied):
    node, _, index = tensor.partition(":")
    return f"{applied.get(node, node)}:{index or 0}"


# ---- the child's side (TF2 behaviour) ----------------------------------------------------

class Refused(Exception):
    """The child's check refused the file (the message is the whole line)."""


WRITE_OPS = ("AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp")


def _without_writes(graph_def, captured_names):
    """``(GraphDef, writes)``: the inlined function graph without the ops that write a captured
    variable (``convert_variables_to_constants_v2`` cannot freeze them: its Const would be fed to
    an op expecting a resource), every control input on them dropped; ``writes``:
    ``[{"node", "op", "placeholder", "value"}]`` (the value tensor stays in the graph)."""
    by_name = {n.name: n for n in graph_def.node}

    def source(inp):
        name = inp.lstrip("^").split(":")[0]
        while name in by_name and by_name[name].op == "Identity" and by_name[name].input:
            name = by_name[name].input[0].lstrip("^").split(":")[0]
        return name
    writes, removed = [], set()
    for node in graph_def.node:
        if node.op in WRITE_OPS and source(node.input[0]) in captured_names:
            removed.add(node.name)
            writes.append({"node": node.name, "op": node.op, "placeholder": source(node.input[0]),
                           "value": node.input[1] if ":" in node.input[1] else node.input[1] + ":0"})
    if not removed:
        return graph_def, []
    kept = [n for n in graph_def.node if n.name not in removed]
    for node in kept:
        inputs = [i for i in node.input if not (i.startswith("^") and i[1:] in removed)]
        del node.input[:]
        node.input.extend(inputs)
    del graph_def.node[:]
    graph_def.node.extend(kept)
    return graph_def, writes


def _with_write_values(graph_def, converted, writes):
    """``graph_def`` (the frozen function, pruned to its outputs) with the nodes that compute the
    values the removed writes wrote added back from ``converted`` (the unpruned frozen graph), so
    that tools can tell which batch statistic updates which variable. Unchanged when the result
    cannot be imported."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not writes:
        return graph_def
    by_name = {n.name: n for n in converted.node}
    present = {n.name for n in graph_def.node}
    needed, stack = [], [w["value"].split(":")[0] for w in writes]
    while stack:
        name = stack.pop()
        if name in present or name not in by_name:
            continue
        present.add(name)
        needed.append(by_name[name])
        stack.extend(i.lstrip("^").split(":")[0] for i in by_name[name].input if not i.startswith("^"))
    if not needed:
        return graph_def
    merged = tf.compat.v1.GraphDef()
    merged.CopyFrom(graph_def)
    for node in needed:
        added = merged.node.add()
        added.CopyFrom(node)
        del added.input[:]
        added.input.extend(i for i in node.input if not i.startswith("^"))
    try:
        with tf.Graph().as_default():
            tf.compat.v1.import_graph_def(merged, name="")
    except Exception:  # pylint: disable=broad-except
        return graph_def
    return merged


def _freeze_function(concrete, path_of_handle, key_of_handle=None):
    """``(GraphDef, {Const: path}, {Const: key}, inputs, outputs, writes)`` of ``concrete``
    frozen. A serving function that writes variables (a BN in training mode updating its moving
    statistics, a Keras 3 dropout's seed) is frozen without the write ops; ``writes`` lists them
    (``[{"node", "op", "variable", "value"}]``: the write op's name, its type, the variable's
    path and the tensor it wrote, which stays in the graph)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tensorflow.python.framework import convert_to_constants as c2c  # pylint: disable=import-outside-toplevel
    captured = {id(ext): internal.op.name for ext, internal in concrete.graph.captures}
    data = c2c._FunctionConverterDataInEager(  # pylint: disable=protected-access
        func=concrete, lower_control_flow=True, aggressive_inlining=False)
    stripped, writes = _without_writes(data.graph_def, set(captured.values()))
    data._graph_def = stripped  # pylint: disable=protected-access
    converted, indices = c2c._replace_variables_by_constants(data)  # pylint: disable=protected-access
    frozen = c2c._construct_concrete_function(concrete, converted, indices)  # pylint: disable=protected-access
    graph_def = _with_write_values(frozen.graph.as_graph_def(), converted, writes)
    consts = {n.name for n in graph_def.node if n.op == "Const"}
    paths, keys = {}, {}
    for handle_id, placeholder in captured.items():
        if placeholder in consts and handle_id in path_of_handle:
            paths[placeholder] = path_of_handle[handle_id]
            if key_of_handle and handle_id in key_of_handle:
                keys[placeholder] = key_of_handle[handle_id]
    for write in writes:
        placeholder = write.pop("placeholder")
        write["variable"] = paths.get(placeholder, placeholder)
    inputs = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    outputs = [t.name for t in frozen.outputs]
    return graph_def, paths, keys, inputs, outputs, writes


def _object_graph_paths(loaded, object_graph):
    """``({id(handle): SavedVariable name or path}, {id(handle): checkpoint key})``, walking the
    object graph and the loaded objects together from the root (shortest path first, as the
    checkpoint keys are made). A bare name without a scope (``tf.Variable(name="gamma")`` in a
    ``tf.Module``, which another module may share) gives way to the object path (``bn/gamma``);
    Keras names (``bn/gamma``) stay."""
    paths, keys, seen, queue, walked = {}, {}, {0}, [(0, loaded, "")], {}
    while queue:
        node_id, obj, path = queue.pop(0)
        proto = object_graph.nodes[node_id]
        if proto.WhichOneof("kind") == "variable" and hasattr(obj, "handle"):
            name = proto.variable.name or path
            paths.setdefault(id(obj.handle), name[:-2] if name.endswith(":0") else name)
            walked.setdefault(id(obj.handle), path)
            keys.setdefault(id(obj.handle), f"{path}/.ATTRIBUTES/VARIABLE_VALUE")
        try:
            children = obj._trackable_children()  # pylint: disable=protected-access
        except Exception:  # pylint: disable=broad-except
            children = {}
        for ref in proto.children:
            child = children.get(ref.local_name)
            if ref.node_id not in seen and child is not None:
                seen.add(ref.node_id)
                queue.append((ref.node_id, child, f"{path}/{ref.local_name}" if path else ref.local_name))
    return {h: walked[h] if "/" not in name and walked.get(h) else name
            for h, name in paths.items()}, keys


def saved_model(params):
    """Load the SavedModel with ``tf.saved_model.load`` and freeze ``params['signature']``."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tf1_repro.graph.artefacts.readers import saved_model_pb  # pylint: disable=import-outside-toplevel
    loaded = tf.saved_model.load(params["directory"], tags=params.get("tags") or None)
    concrete = loaded.signatures[params["signature"]]
    mg = saved_model_pb.chosen_meta_graph(saved_model_pb.parse(params["pb_path"]))
    paths, keys = _object_graph_paths(loaded, mg.object_graph_def)
    for variable in concrete.graph.variables:  # anything the walk missed: its own name
        paths.setdefault(id(variable.handle), variable.name.split(":")[0])
    graph_def, const_paths, const_keys, inputs, outputs, writes = _freeze_function(concrete, paths, keys)
    _, kwargs = concrete.structured_input_signature
    input_keys = {spec.name or key: key for key, spec in kwargs.items()}
    out_keys = sorted(concrete.structured_outputs) if isinstance(concrete.structured_outputs, dict) \
        else [f"output_{i}" for i in range(len(outputs))]
    return graph_def, {
        "inputs": {input_keys.get(t.split(":")[0], t.split(":")[0]): t for t in inputs},
        "outputs": dict(zip(out_keys, outputs)),
        "variable_paths": const_paths, "checkpoint_keys": const_keys, "writes": writes}


def _check_classes(config, module):
    """Refuse a class that ``module`` (``keras`` or ``tf_keras``) does not define built in: one
    of its layers, initializers... modules has it, or (Keras 3) the Keras module the config
    names does."""
    import importlib  # pylint: disable=import-outside-toplevel
    from tf1_repro.graph.artefacts.readers import keras_config  # pylint: disable=import-outside-toplevel
    homes = [module.layers, module.initializers, module.regularizers, module.constraints,
             module.activations, module.models, module.losses, module.metrics]
    known = {"Functional", "Sequential", "Model", "TFOpLambda", "SlicingOpLambda"}
    for spec in keras_config.object_specs(config):
        name, cls = keras_config.spec_name(spec), spec["class_name"]
        if keras_config.is_data(cls) or cls in known or any(hasattr(h, cls) for h in homes):
            continue
        where = spec.get("module")
        if module.__name__ == "keras" and where and where.split(".")[0] == "keras":
            try:
                if hasattr(importlib.import_module(where), cls):
                    continue
            except ImportError:
                pass
        raise Refused(keras_config.custom_message(name, cls, spec.get("module")))


def keras(params):
    """Load a ``.keras`` (Keras 3, ``safe_mode=True``) or ``.h5`` (tf-keras) model and freeze
    its inference function, ``model(inputs, training=False)``."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if params["legacy"]:
        import tf_keras as module  # pylint: disable=import-outside-toplevel
    else:
        import keras as module  # pylint: disable=import-outside-toplevel
    _check_classes(params["config"], module)
    if params["legacy"]:
        model = module.models.load_model(params["path"], compile=False)
        variables = {id(v.handle): v.name.split(":")[0] for v in model.variables}
    else:
        model = module.saving.load_model(params["path"], compile=False, safe_mode=True)
        variables = {id(getattr(v, "value", v).handle): v.path for v in model.variables}
    specs = [tf.TensorSpec(t.shape, t.dtype, name=f"input_{i}") for i, t in enumerate(model.inputs)]
    names = [getattr(t, "name", None) or f"input_{i}" for i, t in enumerate(model.inputs)]

    def serve(*args):
        return model(list(args) if len(args) > 1 else args[0], training=False)
    concrete = tf.function(serve).get_concrete_function(*specs)
    graph_def, const_paths, _, inputs, outputs, writes = _freeze_function(concrete, variables)
    return graph_def, {"inputs": dict(zip(names, inputs)),
                       "outputs": {f"output_{i}": t for i, t in enumerate(outputs)},
                       "variable_paths": const_paths, "checkpoint_keys": {}, "writes": writes}


TASKS = {"saved_model": saved_model, "keras": keras, "keras_h5": keras}


def main(argv):
    task, folder = argv
    with open(os.path.join(folder, "in.json"), encoding="utf-8") as f:
        params = json.load(f)
    try:
        graph_def, out = TASKS[task](params)
    except Exception as err:  # pylint: disable=broad-except
        from tf1_repro.graph.errors import exception_line  # pylint: disable=import-outside-toplevel
        line = str(err) if isinstance(err, Refused) else exception_line(err)
        with open(os.path.join(folder, "error.json"), "w", encoding="utf-8") as f:
            json.dump({"line": line, "refused": isinstance(err, Refused)}, f)
        return 3
    with open(os.path.join(folder, "frozen.pb"), "wb") as f:
        f.write(graph_def.SerializeToString())
    with open(os.path.join(folder, "out.json"), "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
