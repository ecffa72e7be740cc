"""``meta_graph``: a TF1 ``.meta`` file (a serialized ``MetaGraphDef``), with the checkpoint of
the same prefix when its ``.index`` is there.

Recognised by its ``.meta`` name (TF1 ``Saver`` writes no magic bytes); the content check is
the read: the bytes must parse as a ``MetaGraphDef`` ("not a MetaGraphDef" otherwise).
"""

import os

from tf1_repro.graph.artefacts.artefact import Artefact, ArtefactError, first_line

FORMAT = "meta_graph"


def recognise(path):
    return path.endswith(".meta") and os.path.isfile(path)


def read(path, signature=None):  # pylint: disable=unused-argument
    prefix = path[: -len(".meta")]
    meta = read_meta(path)
    has_ckpt = os.path.isfile(prefix + ".index")
    return Artefact(FORMAT, path, meta.graph_def, meta, prefix if has_ckpt else None)


def read_meta(path):
    """The ``MetaGraphDef`` in ``path``; ``ArtefactError`` when it does not parse."""
    from tensorflow.core.protobuf import meta_graph_pb2  # pylint: disable=import-outside-toplevel
    meta = meta_graph_pb2.MetaGraphDef()
    try:
        with open(path, "rb") as f:
            meta.ParseFromString(f.read())
    except Exception as err:  # pylint: disable=broad-except
        raise ArtefactError(f"{path}: not a MetaGraphDef ({first_line(err)})") from None
    return meta
