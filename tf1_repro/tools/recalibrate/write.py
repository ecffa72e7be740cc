"""Writing: the new checkpoint (every other variable copied bit for bit, the ``checkpoint``
state file, a copy of the ``.meta``), moved in from a temporary folder and verified."""

import glob
import os
import shutil
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph import paths
from tf1_repro.graph.errors import InputError
from tf1_repro.tools.recalibrate.common import WHERE, RecalibrateError


def _checkpoint_files(directory):
    state = os.path.join(directory, "checkpoint")
    return sorted(set(glob.glob(os.path.join(directory, "*.index"))) |
                  ({state} if os.path.isfile(state) else set()))


# recalibrate's --out messages predate the shared check; kept word for word (and the order: a
# checkpoint already there is named before writability is checked)
OUT_WORDING = paths.OutWording(
    is_source=("{what} must not be the source checkpoint's directory, got {out!r} (the source is "
               "never modified)"),
    holds="{what} {out!r} already holds a checkpoint ({name}); pass --force to replace it")


def check_out(out, prefix, force):
    """Refuse an --out that is a file, the source's directory, holds a checkpoint (unless force)
    or cannot be written."""
    try:
        paths.check_out_dir(
            out, WHERE, force=force, wording=OUT_WORDING, holds_before_writable=True,
            source_dir=os.path.dirname(os.path.abspath(prefix)),
            taken=lambda folder: [os.path.basename(f) for f in _checkpoint_files(folder)])
    except InputError as err:
        raise RecalibrateError(str(err)) from None


def write_checkpoint(source_prefix, meta, out, new_values, force=False):
    """Write a complete checkpoint in ``out``: ``new_values`` replace those keys, the rest bit for bit.

    Writes PREFIX.index/.data-* (the source's basename), the ``checkpoint`` state
    file and a copy of the ``.meta``, then re-reads everything and verifies it.
    The files are written into a temporary directory first and moved in at the end.
    """
    check_out(out, source_prefix, force)
    reader = tf.train.load_checkpoint(source_prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    unknown = sorted(set(new_values) - set(shapes))
    if unknown:
        raise RecalibrateError(f"{WHERE}: new values for {unknown[0]!r}, which the checkpoint does not hold")
    base = os.path.basename(source_prefix)
    parent = out if os.path.isdir(out) else os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".recalibrate-", dir=parent)
    try:
        save_tensors(reader, os.path.join(tmp, base), new_values)
        shutil.copyfile(meta, os.path.join(tmp, base + ".meta"))
        # an absolute folder keeps the paths in the state file relative to it ("model.ckpt-N"): a
        # relative one makes TensorFlow write them relative to the working directory
        tf.train.update_checkpoint_state(os.path.abspath(tmp), base, all_model_checkpoint_paths=[base])
        os.makedirs(out, exist_ok=True)
        if force:
            for old in glob.glob(os.path.join(out, base + ".data-*")):
                os.remove(old)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _verify_written(reader, os.path.join(out, base), meta, new_values, out)


def save_tensors(reader, prefix, new_values):
    """Write every key of the checkpoint ``reader`` reads to ``prefix`` (one ``SaveV2``):
    ``new_values`` for their keys, the source's values for all others (string tensors such as a
    TF2 checkpoint's ``_CHECKPOINTABLE_OBJECT_GRAPH`` included)."""
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    names = sorted(shapes)
    with tf.Graph().as_default() as graph:
        inputs = [tf.placeholder(dtypes[n], shapes[n]) for n in names]
        save = tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                                 shape_and_slices=[""] * len(names), tensors=inputs)
        with tf.Session(graph=graph) as sess:
            sess.run(save, {i: new_values[n] if n in new_values else reader.get_tensor(n)
                            for i, n in zip(inputs, names)})


def verify_tensors(source, prefix, new_values):
    """Re-read the checkpoint at ``prefix``: the same keys as ``source``, the replaced ones holding
    ``new_values``, all others the source's bytes. Returns how many were copied bit for bit."""
    written = tf.train.load_checkpoint(prefix)
    names = set(source.get_variable_to_shape_map())
    if set(written.get_variable_to_shape_map()) != names:
        raise RecalibrateError(f"{WHERE}: the written checkpoint {prefix} has other variables than the source")
    copied = 0
    for name in names:
        expected = new_values[name] if name in new_values else source.get_tensor(name)
        got = written.get_tensor(name)
        if np.asarray(got).dtype != np.asarray(expected).dtype or \
                np.asarray(got).tobytes() != np.asarray(expected).tobytes():
            raise RecalibrateError(f"{WHERE}: verification failed: {name} in {prefix} differs")
        copied += name not in new_values
    return copied


def _verify_written(source, prefix, meta, new_values, out):
    """Re-read the written checkpoint: replaced keys hold the new values, all others the source's bytes."""
    copied = verify_tensors(source, prefix, new_values)
    with open(meta, "rb") as a, open(prefix + ".meta", "rb") as b:
        if a.read() != b.read():
            raise RecalibrateError(f"{WHERE}: verification failed: {prefix}.meta differs from {meta}")
    latest = tf.train.latest_checkpoint(out)
    if latest is None or os.path.realpath(latest) != os.path.realpath(prefix):
        raise RecalibrateError(f"{WHERE}: verification failed: tf.train.latest_checkpoint({out}) is {latest}")
    return {"prefix": prefix, "replaced": sorted(new_values), "copied_bit_for_bit": copied,
            "latest_checkpoint": latest}
