"""What users give the tools besides the model: ``--feed NAME=VALUE`` and ``--data FILE.npz``."""

import json

import numpy as np

from tf1_repro.graph.errors import InputError, exception_line


def parse_feed(text):
    """``NAME=VALUE`` -> (NAME, value) with VALUE ``true``/``false``, an integer, a float or a
    JSON list; ``ValueError`` saying what is allowed and what was received."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise ValueError(f"--feed must be NAME=VALUE (e.g. training=false), got {text!r}")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    for cast in (int, float):
        try:
            return name, cast(value)
        except ValueError:
            pass
    try:
        return name, np.asarray(json.loads(value))
    except ValueError:
        raise ValueError(f"--feed {name}: VALUE must be true, false, a number or a JSON list, "
                         f"got {value!r}") from None



UNREADABLE_NPZ = "{where}: {what} {path}: not a readable .npz file ({reason})"


def load_npz(path, where, what="--data", unreadable=UNREADABLE_NPZ, allow_empty=False):
    """``{name: array}`` from an ``.npz`` file (no pickles); ``InputError`` naming ``what`` and
    the file when it cannot be read or holds no array. ``where`` opens the message (the tool).

    ``unreadable`` is the whole message for a file that cannot be read (a ``.npy`` file included:
    one array, no names), a ``str.format`` template with the fields ``where``, ``what``, ``path``,
    ``reason`` (``exception_line`` of the error), ``error_type`` (its type name), ``message``
    (its text) and ``first_line`` (its text's first line); a tool whose message predates the
    shared one passes its own. ``allow_empty`` returns ``{}`` for an archive with no array instead
    of refusing it (for a caller that names the missing arrays itself)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(f"a single {type(loaded).__name__}, not an archive of named arrays")
        with loaded as npz:
            arrays = {key: np.asarray(npz[key]) for key in npz.files}
    except (OSError, ValueError, EOFError) as err:
        lines = str(err).splitlines()
        raise InputError(unreadable.format(
            where=where, what=what, path=path, reason=exception_line(err, 160),
            error_type=type(err).__name__, message=err, first_line=lines[0] if lines else "")) from None
    if not arrays and not allow_empty:
        raise InputError(f"{where}: {what} must hold at least one array, got {path!r} (empty)")
    return arrays


def unbound_mode_inputs(findings):
    """``{placeholder name: what it drives}`` of the mode inputs a user must give (``--feed`` or
    ``--data``): those whose prediction value the graph does not hold, as the finder says
    (``Findings.unbound_mode_inputs()``: the keep_prob of a vanilla dropout, whose prediction
    multiplies by its training value). ``what`` is ``"vanilla dropout NAME"`` for a dropout's
    keep_prob, else ``"ROLE input"``."""
    drops = {(d.keep_prob or {}).get("name"): d.name for d in findings.dropouts}
    return {m.name: f"vanilla dropout {drops[m.name]}" if m.name in drops else f"{m.role} input"
            for m in findings.unbound_mode_inputs()}
