"""``saved_model_tf2``: the recalibrated SavedModel is the directory ``--out``.

Everything but ``variables/`` and ``fingerprint.pb`` is copied byte for byte (``saved_model.pb``
with its signatures and object graph, ``assets/``, ``keras_metadata.pb``...). ``variables/`` is
written anew (one ``SaveV2``, ``write.save_tensors``) with the source checkpoint's keys: the BN
moving statistics' keys (``Artefact.checkpoint_keys``, e.g.
``layer_with_weights-1/moving_mean/.ATTRIBUTES/VARIABLE_VALUE``) take the new values, every other
key (``_CHECKPOINTABLE_OBJECT_GRAPH``, the optimizer's slots...) the source's bytes.
``fingerprint.pb`` is recomputed by TensorFlow's own fingerprinting for the new directory: its
``checkpoint_hash`` covers ``variables.index``, which changed; its hashes of the graph,
signatures and object graph are checked equal to the source's.
"""

import os
import shutil

import tensorflow.compat.v1 as tf

from tf1_repro.graph.artefacts.artefact import first_line
from tf1_repro.tools.recalibrate.common import WHERE, RecalibrateError
from tf1_repro.tools.recalibrate.write import save_tensors, verify_tensors
from tf1_repro.tools.recalibrate.writers.common import check_out as check_out_dir
from tf1_repro.tools.recalibrate.writers.common import move_in, same_bytes, staging

FORMAT = "saved_model_tf2"
VARIABLES = "variables"
FINGERPRINT = "fingerprint.pb"
SAME_FINGERPRINT = ("saved_model_checksum", "graph_def_program_hash", "signature_def_hash",
                    "saved_object_graph_hash")


def target(source, out):  # pylint: disable=unused-argument
    return out


def check_out(source, out, force):
    check_out_dir(source, out, force, ["saved_model.pb", VARIABLES])


def keys_of(art, new_values):
    """{checkpoint key: value} of ``new_values`` ({frozen Const name: value})."""
    missing = sorted(set(new_values) - set(art.checkpoint_keys))
    if missing:
        raise RecalibrateError(f"{WHERE}: {art.source}: the checkpoint key of {missing[0]} is unknown "
                               f"(its variable is not in the SavedModel's object graph); nothing written")
    return {art.checkpoint_keys[const]: value for const, value in new_values.items()}


def write(art, out, new_values, force=False):
    check_out(art.source, out, force)
    source = art.source
    prefix = os.path.join(source, VARIABLES, VARIABLES)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as err:  # pylint: disable=broad-except
        raise RecalibrateError(f"{WHERE}: {source}: unreadable variables/ ({first_line(err)})") from None
    values = keys_of(art, new_values)
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    for key, value in values.items():
        if key not in shapes or tuple(shapes[key]) != value.shape or \
                dtypes[key].as_numpy_dtype != value.dtype:
            raise RecalibrateError(f"{WHERE}: {source}: variables/ holds {key} as "
                                   f"{shapes.get(key)} {dtypes.get(key)}, not {list(value.shape)} "
                                   f"{value.dtype}; nothing written")
    tmp = staging(out)
    fingerprint = None
    try:
        staged = os.path.join(tmp, "saved_model")
        shutil.copytree(source, staged, ignore=lambda folder, names: [VARIABLES, FINGERPRINT] if
                        os.path.samefile(folder, source) else [])
        os.makedirs(os.path.join(staged, VARIABLES))
        save_tensors(reader, os.path.join(staged, VARIABLES, VARIABLES), values)
        if os.path.isfile(os.path.join(source, FINGERPRINT)):
            fingerprint = _fingerprint(source, staged)
        move_in(staged, out, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    copied = verify_tensors(reader, os.path.join(out, VARIABLES, VARIABLES), values)
    files = _verify_files(source, out)
    return {"path": out, "format": FORMAT, "replaced": sorted(values), "copied_bit_for_bit": copied,
            "files_copied": files, "fingerprint": fingerprint}


def _fingerprint(source, staged):
    """Write ``fingerprint.pb`` for ``staged``; its graph hashes must equal the source's."""
    from tensorflow.core.protobuf import fingerprint_pb2  # pylint: disable=import-outside-toplevel
    try:
        from tensorflow.python.saved_model.pywrap_saved_model import (  # pylint: disable=import-outside-toplevel
            fingerprinting)
        new = fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(staged))
    except Exception as err:  # pylint: disable=broad-except  # no fingerprinting: keep the source's
        shutil.copyfile(os.path.join(source, FINGERPRINT), os.path.join(staged, FINGERPRINT))
        return f"copied (TensorFlow could not compute a new one: {first_line(err)})"
    old = fingerprint_pb2.FingerprintDef()
    with open(os.path.join(source, FINGERPRINT), "rb") as f:
        old.ParseFromString(f.read())
    for field in SAME_FINGERPRINT:
        if getattr(old, field) and getattr(old, field) != getattr(new, field):
            raise RecalibrateError(f"{WHERE}: the copied SavedModel's {field} differs from the source's "
                                   f"({getattr(new, field)} != {getattr(old, field)}); nothing written")
    with open(os.path.join(staged, FINGERPRINT), "wb") as f:
        f.write(new.SerializeToString())
    return "recomputed (checkpoint_hash of the new variables/; graph, signature and object-graph hashes " \
           "equal to the source's)"


def _verify_files(source, out):
    """Every file of the source outside ``variables/`` and the fingerprint is in ``out``, same bytes."""
    count = 0
    for folder, dirs, names in os.walk(source):
        rel = os.path.relpath(folder, source)
        if rel == ".":
            dirs[:] = [d for d in dirs if d != VARIABLES]
            names = [n for n in names if n != FINGERPRINT]
        for name in names:
            copy = os.path.normpath(os.path.join(out, rel, name))
            if not os.path.isfile(copy) or not same_bytes(os.path.join(folder, name), copy):
                raise RecalibrateError(f"{WHERE}: verification failed: {copy} differs from the source's")
            count += 1
    return count
