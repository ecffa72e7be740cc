"""``checkpoint``: a TF1 checkpoint (``PREFIX.index`` + ``PREFIX.data-*``), with its ``.meta``
graph when there is one.

Recognised: a directory without a ``saved_model.pb`` (its newest checkpoint is read, or the
error says there is none), a prefix whose ``.index`` exists, or the ``.index`` file itself.
The content check is the read: the index is opened with TensorFlow's checkpoint reader at
once, so a truncated or foreign file is an ``ArtefactError`` ("unreadable checkpoint").
"""

import os

from tf1_repro.graph.artefacts.artefact import Artefact, ArtefactError
from tf1_repro.graph.artefacts.readers.meta_graph import read_meta

FORMAT = "checkpoint"


def recognise(path):
    if os.path.isdir(path):
        return True  # the SavedModel readers come first
    if path.endswith(".meta"):
        return False
    return os.path.isfile(path + ".index") or (path.endswith(".index") and os.path.isfile(path))


def read(path, signature=None):  # pylint: disable=unused-argument
    if os.path.isdir(path):
        prefix = latest_checkpoint(path)
        if prefix is None:
            raise ArtefactError(f"{path}: a directory with no checkpoint (.index) and no "
                                f"saved_model.pb")
    elif os.path.isfile(path + ".index"):
        prefix = path
    else:
        prefix = path[: -len(".index")]
    meta = read_meta(prefix + ".meta") if os.path.isfile(prefix + ".meta") else None
    art = Artefact(FORMAT, path, meta.graph_def if meta else None, meta, prefix)
    art.variables()  # fails now, with one line, if the checkpoint is unreadable
    return art


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
