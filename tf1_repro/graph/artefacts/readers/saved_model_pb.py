"""What both SavedModel readers share: where the ``saved_model.pb`` is, its parsed protobuf (one
parse per file version) and the MetaGraphDef a reader uses (the one tagged ``serve``, else the
first)."""

import functools
import os

from tf1_repro.graph.artefacts.artefact import ArtefactError, first_line

NAMES = ("saved_model.pb", "saved_model.pbtxt")


def locate(path):
    """``(directory, pb path)`` when ``path`` is a SavedModel directory or its
    ``saved_model.pb``/``.pbtxt``, else None."""
    if os.path.isdir(path):
        for name in NAMES:
            if os.path.isfile(os.path.join(path, name)):
                return path, os.path.join(path, name)
        return None
    if os.path.basename(path) in NAMES and os.path.isfile(path):
        return os.path.dirname(path) or ".", path
    return None


def parse(pb_path):
    """The ``SavedModel`` protobuf in ``pb_path``; ``ArtefactError`` when it does not parse or
    holds no meta graph."""
    stat = os.stat(pb_path)
    return _parse(pb_path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _parse(pb_path, size, mtime_ns):  # pylint: disable=unused-argument  (the cache key)
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
        raise ArtefactError(f"{pb_path}: not a SavedModel ({first_line(err)})") from None
    if not sm.meta_graphs:
        raise ArtefactError(f"{pb_path}: a SavedModel with no meta graph")
    return sm


def chosen_meta_graph(sm):
    """The MetaGraphDef tagged ``serve``, else the first."""
    for mg in sm.meta_graphs:
        if "serve" in mg.meta_info_def.tags:
            return mg
    return sm.meta_graphs[0]


def is_object_based(mg):
    """A TF2 (object-based) meta graph: an object graph with nodes and a function library."""
    return bool(mg.object_graph_def.nodes) and bool(mg.graph_def.library.function)
