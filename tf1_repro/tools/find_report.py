"""What ``find`` shows: a saved graph's BN layers, dropouts and mode placeholders, as text and JSON.

``read(path)`` opens the artefact (read-only: nothing runs, no user code is imported) and runs the
structural finder on its graph; ``format_find(art, found)`` is the text the command prints and
``payload(art, found)`` the JSON it writes with ``--json``.
"""

from tf1_repro.graph import artefacts
from tf1_repro.tools import finder


def read(path):
    """``(artefact, findings)`` for PATH; ``ArtefactError`` (one line, no tool name: the command
    line adds it) for an unreadable PATH or a checkpoint without its ``.meta`` graph."""
    art = artefacts.load(path)
    if art.graph_def is None:
        raise artefacts.ArtefactError(f"{path}: a checkpoint without its .meta graph: nothing to "
                                      f"read the structure from (try doctor, which reads the "
                                      f"variable names)")
    return art, art.find()


def format_find(art, found):
    """The report: format and source, the finder's description, the prediction feeds, the
    placeholders the user must feed and every note (the graph's, then each layer's)."""
    feeds = found.prediction_feeds()
    lines = [f"{art.format} {art.source}", finder.describe(found),
             "prediction feeds: " + (", ".join(f"{k}={v}" for k, v in feeds.items()) or "none")]
    for mode in found.unbound_mode_inputs():
        lines.append(f"  must be fed by you: {mode.tensor} ({mode.role} of a vanilla dropout: "
                     f"prediction multiplies by its training value)")
    lines += [f"  note: {note}" for note in found.notes]
    for layer in found.bn_layers + found.dropouts:
        lines += [f"  note ({layer.name}): {note}" for note in layer.notes]
    return "\n".join(lines)


def payload(art, found):
    """The findings as JSON (``--json``): the finder's dict with the source, the format, the
    prediction feeds and the mode inputs the user must feed."""
    return dict(found.to_dict(), source=art.source, format=art.format,
                prediction_feeds=found.prediction_feeds(),
                unbound_mode_inputs=[m.tensor for m in found.unbound_mode_inputs()])
