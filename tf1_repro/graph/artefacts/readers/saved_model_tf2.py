"""``saved_model_tf2``: an object-based SavedModel (``tf.saved_model.save``, tf-keras
``model.save(dir, save_format="tf")``, Keras 3 ``model.export``), read as a SavedModel (never
through Keras).

Recognised by content: a directory holding ``saved_model.pb`` (or that file) whose MetaGraphDef
(tagged ``serve``, else the first) has an object graph with nodes and a function library.

Read, for one signature (``serving_default`` by default, else the only one; the Artefact's
``signature_names`` lists all):

1. Statically, before anything is loaded: the ops the signature's outputs reach, through the
   graph and the functions they call, plus the SavedModel's init op and its resources'
   create/initialize functions (which loading runs), are checked with
   ``graph.safety.first_unsafe``. When one is unsafe (PyFunc, WriteFile...) nothing is loaded:
   the Artefact holds the SavedModel's own graph (functions not inlined) and a note saying why;
   its variables' values are read from ``variables/`` by name (``static_variables``), never run.
2. A missing ``variables/`` folder, when the object graph has variables, is an ArtefactError.
3. A child process (``child``) loads it with ``tf.saved_model.load``, freezes the signature's
   concrete function with ``convert_variables_to_constants_v2`` into one inlined GraphDef (the
   Artefact's ``graph_def``) and maps each frozen Const to its variable's object path (the
   object graph's ``SavedVariable.name``, e.g. ``batch_normalization/moving_mean``) in
   ``variable_paths`` and to its checkpoint key in ``checkpoint_keys``; the variable writes the
   signature makes are recorded in ``writes`` (``child._freeze_function``: a signature with BN
   training=True baked in writes its statistics).
4. A tf-keras SavedModel's ``keras_metadata.pb`` is read as JSON (never through Keras) for its
   BatchNormalization and Dropout layers' configs (``keras_layers``).
"""

import os

from tf1_repro.graph.artefacts.artefact import Artefact, ArtefactError, writes_note
from tf1_repro.graph.artefacts.readers import keras_config, saved_model_pb
from tf1_repro.graph.safety import first_unsafe

FORMAT = "saved_model_tf2"
INIT_OP = "__saved_model_init_op"
LOAD_TIME_FUNCTIONS = ("_create_resource", "_initialize")


def recognise(path):
    located = saved_model_pb.locate(path)
    if located is None:
        return False
    try:
        sm = saved_model_pb.parse(located[1])
    except ArtefactError:
        return False  # the TF1 reader names what is wrong
    return saved_model_pb.is_object_based(saved_model_pb.chosen_meta_graph(sm))


def read(path, signature=None):
    from tf1_repro.graph.artefacts import child  # pylint: disable=import-outside-toplevel
    directory, pb_path = saved_model_pb.locate(path)
    mg = saved_model_pb.chosen_meta_graph(saved_model_pb.parse(pb_path))
    names = sorted(k for k in mg.signature_def if k != INIT_OP)
    if signature is None:
        signature = "serving_default" if "serving_default" in names or not names else \
            (names[0] if len(names) == 1 else None)
        if signature is None:
            raise ArtefactError(f"{directory}: no serving_default signature; choose one of "
                                f"{', '.join(names)}")
    art = Artefact(FORMAT, directory, tags=list(mg.meta_info_def.tags))
    art.signature_defs = dict(mg.signature_def)
    art.keras_layers = keras_config.saved_model_layer_specs(directory)  # tf-keras: JSON only
    if signature not in mg.signature_def:
        if names:
            raise ArtefactError(f"{directory}: no signature {signature!r}; it has "
                                f"{', '.join(names)}")
        return _static(art, mg, "the SavedModel has no signature: its functions are read as "
                                "saved, not frozen")
    art.signature = signature
    found = unsafe_in(mg, signature)
    if found:
        op_type, node = found
        return _static(art, mg, f"not loaded: signature {signature!r} (or what loading runs) reaches "
                                f"{op_type} (node {node}), an op that touches files or runs Python; "
                                f"the graph is the SavedModel's own, not frozen; the values are "
                                f"read from variables/")
    n_variables = sum(1 for n in mg.object_graph_def.nodes if n.WhichOneof("kind") == "variable")
    prefix = os.path.join(directory, "variables", "variables")
    if n_variables and not os.path.isfile(prefix + ".index"):
        raise ArtefactError(f"{directory}: a TF2 SavedModel without its variables/ folder "
                            f"({n_variables} variables in its object graph)")
    graph_def, out = child.freeze("saved_model", {
        "directory": os.path.abspath(directory), "pb_path": os.path.abspath(pb_path),
        "signature": signature, "tags": list(mg.meta_info_def.tags)}, directory, "the SavedModel")
    art.graph_def = graph_def
    art.inputs, art.outputs = out["inputs"], out["outputs"]
    art.variable_paths, art.checkpoint_keys = out["variable_paths"], out["checkpoint_keys"]
    art.writes = out.get("writes", [])
    if art.writes:
        art.notes.append(writes_note(art.writes))
    return art


def _static(art, mg, note):
    """The SavedModel's own graph, not frozen, with the variables' values readable by name from
    ``variables/`` (``checkpoint_keys``: {variable name: checkpoint key}, ``static_variables``)
    so that the checks on values still run on a signature that is not loaded."""
    art.graph_def = mg.graph_def
    art.notes.append(note)
    prefix = os.path.join(art.source, "variables", "variables")
    if os.path.isfile(prefix + ".index"):
        art.checkpoint = prefix
        art.checkpoint_keys = static_variables(mg)
    return art


def static_variables(mg):
    """``{variable name: checkpoint key}`` from the object graph alone (nothing loaded): the
    ``SavedVariable`` name (``bn/moving_mean``), or the object path where that name is bare, and
    the key ``PATH/.ATTRIBUTES/VARIABLE_VALUE`` (paths shortest first, as the keys are made)."""
    nodes = mg.object_graph_def.nodes
    out, seen, queue = {}, {0}, [(0, "")]
    while queue:
        node_id, path = queue.pop(0)
        proto = nodes[node_id]
        if proto.WhichOneof("kind") == "variable":
            name = proto.variable.name.split(":")[0]
            name = path if "/" not in name else name
            out.setdefault(name, f"{path}/.ATTRIBUTES/VARIABLE_VALUE")
        for ref in proto.children:
            if ref.node_id not in seen and ref.node_id < len(nodes):
                seen.add(ref.node_id)
                queue.append((ref.node_id, f"{path}/{ref.local_name}" if path else ref.local_name))
    return out


def unsafe_in(mg, signature):
    """(op type, node name) of an unsafe op the signature or loading would run, else None."""
    functions = {f.signature.name: f for f in mg.graph_def.library.function}
    by_name = {n.name: n for n in mg.graph_def.node}
    roots = []
    for name in (signature, INIT_OP):
        if name in mg.signature_def:
            roots.extend(t.name for t in mg.signature_def[name].outputs.values())
    roots.extend(mg.collection_def["saved_model_main_op"].node_list.value
                 if "saved_model_main_op" in mg.collection_def else [])
    nodes, stack = [], [r.lstrip("^").split(":")[0] for r in roots]
    seen = set()
    while stack:
        name = stack.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        nodes.append(by_name[name])
        stack.extend(i.lstrip("^").split(":")[0] for i in by_name[name].input)
    called = set()
    for proto in mg.object_graph_def.nodes:
        for ref in proto.children:
            if ref.local_name in LOAD_TIME_FUNCTIONS:
                target = mg.object_graph_def.nodes[ref.node_id]
                called.update(target.function.concrete_functions)
                if target.HasField("bare_concrete_function"):
                    called.add(target.bare_concrete_function.concrete_function_name)
    found = first_unsafe(nodes, functions)
    if found:
        return found
    for name in sorted(called):
        if name in functions:
            found = first_unsafe(functions[name].node_def, functions)
            if found:
                return found
    return None
