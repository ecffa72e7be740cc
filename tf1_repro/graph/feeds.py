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



def load_npz(path, where, what="--data", unreadable=None, allow_empty=False):
    """``{name: array}`` from an ``.npz`` file (no pickles); ``InputError`` naming ``what`` and
    the file when it cannot be read or holds no array. ``where`` opens the message (the tool).

    ``unreadable``, when given, is the whole message for a file that cannot be read, formatted
    with ``path`` and ``error`` (the exception); ``allow_empty`` returns ``{}`` for an archive with
    no array instead of refusing it (for a caller that names the missing arrays itself)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file: one array, no names
            raise ValueError(f"a single {type(loaded).__name__}, not an archive of named arrays")
        with loaded as npz:
            arrays = {key: np.asarray(npz[key]) for key in npz.files}
    except (OSError, ValueError, EOFError) as err:
        if unreadable:
            raise InputError(unreadable.format(path=path, error=err)) from None
        raise InputError(f"{where}: {what} {path}: not a readable .npz file "
                         f"({exception_line(err, 160)})") from None
    if not arrays and not allow_empty:
        raise InputError(f"{where}: {what} must hold at least one array, got {path!r} (empty)")
    return arrays
