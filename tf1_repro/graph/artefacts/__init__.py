"""Open what training left behind, read-only: TF1 checkpoints (with their ``.meta``), ``.meta``
graphs, TF1 SavedModels and frozen GraphDefs, and TF2 SavedModels and Keras files.

``load(path)`` asks each format reader of ``readers.READERS``, in that order, whether it
recognises ``path`` (by its content where the content tells: see each reader's docstring) and
lets the first that does read it into an ``Artefact``. Nothing of the user's runs in this
process and nothing is written next to the user's file; TF2 SavedModels and Keras files are
loaded in a child process with TF2 behaviour (``child``) after their graphs or configs were
checked statically. What cannot be read is an ``ArtefactError``: one line naming the file and
what is wrong (exit status 2).
"""

import os

from tf1_repro.graph.artefacts.artefact import (  # noqa: F401
    Artefact, ArtefactError, finder_restore_scope, first_line, values_of)
from tf1_repro.graph.artefacts.readers import READERS
from tf1_repro.graph.artefacts.readers.checkpoint import latest_checkpoint  # noqa: F401

FORMATS = tuple(reader.FORMAT for reader in READERS)


def load(path, signature=None):
    """The artefact at ``path``; ``ArtefactError`` (one line) when it cannot be read.

    ``signature`` picks the signature a TF2 SavedModel reader freezes (default
    ``serving_default``); the other readers ignore it."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"artefacts.load: path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    for reader in READERS:
        if reader.recognise(path):
            return reader.read(path, signature=signature)
    if path.endswith(".meta") and not os.path.exists(path):
        raise ArtefactError(f"{path}: no such file")
    if not os.path.exists(path):
        raise ArtefactError(f"{path}: no such file or checkpoint prefix")
    raise ArtefactError(f"{path}: not a checkpoint, .meta, SavedModel or frozen graph (.pb/.pbtxt), "
                        f"nor a Keras .keras or .h5 model")
