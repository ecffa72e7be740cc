"""What ``find`` shows: a saved graph's BN layers, dropouts and mode placeholders, as text and JSON.

``read(path)`` opens the artefact (read-only: nothing runs, no user code is imported) and runs the
structural finder on its graph; ``format_find(art, found)`` is the text the command prints and
``payload(art, found)`` the JSON it writes with ``--json``.
"""

from tf1_repro.graph import artefacts
from tf1_repro.tools import finder, tf2_findings


def read(path, signature=None):
    """``(artefact, findings)`` for PATH (a TF2 SavedModel's ``signature``, default
    ``serving_default``); ``ArtefactError`` (one line, no tool name: the command line adds it)
    for an unreadable PATH, an unknown signature or a checkpoint without its ``.meta`` graph.
    On TF2 SavedModels and Keras files the findings are completed (``tf2_findings``)."""
    art = artefacts.load(path, signature=signature)
    tf2_findings.check_signature(art, signature)
    if art.graph_def is None:
        raise artefacts.ArtefactError(f"{path}: a checkpoint without its .meta graph: nothing to "
                                      f"read the structure from (try doctor, which reads the "
                                      f"variable names)")
    return art, tf2_findings.complete(art, art.find()).findings


def format_find(art, found):
    """The report: format and source, the finder's description, the prediction feeds, the
    placeholders the user must feed and every note (the graph's, then each layer's); on TF2
    SavedModels and Keras files also the signatures, the Keras layers' settings (and a dropout
    Keras removed at inference), the serving function's writes and the reader's notes."""
    view = tf2_findings.complete(art, found)
    found = view.findings
    feeds = found.prediction_feeds()
    lines = [f"{art.format} {art.source}", finder.describe(found),
             "prediction feeds: " + (", ".join(f"{k}={v}" for k, v in feeds.items()) or "none")]
    for mode in found.unbound_mode_inputs():
        lines.append(f"  must be fed by you: {mode.tensor} ({mode.role} of a vanilla dropout: "
                     f"prediction multiplies by its training value)")
    lines += view.lines()
    lines += [f"  note: {note}" for note in found.notes]
    for layer in found.bn_layers + found.dropouts:
        lines += [f"  note ({layer.name}): {note}" for note in layer.notes]
    return "\n".join(lines)


def payload(art, found):
    """The findings as JSON (``--json``): the finder's dict with the source, the format, the
    prediction feeds and the mode inputs the user must feed; on TF2 SavedModels and Keras files
    also ``tf2_findings.View.to_dict`` (signature, signatures, keras_layers, writes,
    reader_notes)."""
    view = tf2_findings.complete(art, found)
    found = view.findings
    out = dict(found.to_dict(), source=art.source, format=art.format,
               prediction_feeds=found.prediction_feeds(),
               unbound_mode_inputs=[m.tensor for m in found.unbound_mode_inputs()])
    if art.format in tf2_findings.TF2_FORMATS:
        out.update(view.to_dict())
    return out
