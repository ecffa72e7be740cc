"""``saved_model``: a TF1 SavedModel (``SavedModelBuilder``, ``simple_save``): a directory with
``saved_model.pb`` (or ``.pbtxt``) whose MetaGraphDef has no object graph, and its
``variables/`` checkpoint, read by variable name.

Recognised by content: a directory holding ``saved_model.pb``/``.pbtxt`` (or that file itself)
that the TF2 reader (tried first) did not take, i.e. one whose chosen MetaGraphDef has no object
graph, or that does not parse (the read then says "not a SavedModel"). The meta graph tagged
``serve`` is read (else the first); a missing ``variables/`` is a SavedModel without variables.
"""

import os

from tf1_repro.graph.artefacts.artefact import Artefact
from tf1_repro.graph.artefacts.readers import saved_model_pb

FORMAT = "saved_model"


def recognise(path):
    return saved_model_pb.locate(path) is not None


def read(path, signature=None):  # pylint: disable=unused-argument
    directory, pb_path = saved_model_pb.locate(path)
    chosen = saved_model_pb.chosen_meta_graph(saved_model_pb.parse(pb_path))
    tags = list(chosen.meta_info_def.tags)
    prefix = os.path.join(directory, "variables", "variables")
    return Artefact(FORMAT, directory, chosen.graph_def, chosen,
                    prefix if os.path.isfile(prefix + ".index") else None, tags)
