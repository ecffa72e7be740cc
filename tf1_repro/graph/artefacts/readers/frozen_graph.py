"""``frozen_graph``: a serialized ``GraphDef`` (binary ``.pb`` or text ``.pbtxt``/``.txt``),
its variables already Consts.

Recognised by extension (``.pb``, ``.pbtxt``, ``.txt``, other than ``saved_model.pb``), or,
for a file with another name, by content: it parses as a binary ``GraphDef`` whose nodes all
have a name and an op. HDF5 and zip files are the Keras readers' (they come first). The read
parses the file ("not a GraphDef" when it does not parse, "a GraphDef with no nodes" when
empty).
"""

import os

from tf1_repro.graph.artefacts.artefact import Artefact, ArtefactError, first_line

FORMAT = "frozen_graph"
EXTENSIONS = (".pb", ".pbtxt", ".txt")
_SNIFF_LIMIT = 64 << 20  # a file of another name is parsed to recognise it only below this size


def recognise(path):
    if not os.path.isfile(path) or os.path.basename(path) in ("saved_model.pb", "saved_model.pbtxt"):
        return False
    if path.endswith(EXTENSIONS):
        return True
    if os.path.getsize(path) > _SNIFF_LIMIT:
        return False
    try:
        graph_def = _parse(path)
    except Exception:  # pylint: disable=broad-except
        return False
    return bool(graph_def.node) and all(n.name and n.op for n in graph_def.node)


def read(path, signature=None):  # pylint: disable=unused-argument
    try:
        graph_def = _parse(path)
    except Exception as err:  # pylint: disable=broad-except
        raise ArtefactError(f"{path}: not a GraphDef ({first_line(err)})") from None
    if not graph_def.node:
        raise ArtefactError(f"{path}: a GraphDef with no nodes")
    return Artefact(FORMAT, path, graph_def)


def _parse(path):
    from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
    from tensorflow.core.framework import graph_pb2  # pylint: disable=import-outside-toplevel
    graph_def = graph_pb2.GraphDef()
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith((".pbtxt", ".txt")):
        text_format.Parse(data.decode("utf-8"), graph_def)
    else:
        graph_def.ParseFromString(data)
    return graph_def
