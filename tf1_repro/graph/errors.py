"""One error type for bad input, and the one-line messages every tool shows.

Every tool raises ``InputError`` (or a subclass) for input it refuses: an unreadable artefact,
a bad argument, data that does not fit. The message is one line that names the argument, what is
allowed and what was received; the command line prints it and exits with ``exit_status`` (2),
with no traceback. Nothing has been written when it is raised.
"""


class InputError(ValueError):
    """Bad input: one line naming the argument, what is allowed and what was received."""

    exit_status = 2


_HEADERS = ("Graph execution error", "Detected at node", "File ", "[[", "Node:", "Traceback",
            "Original stack trace", "(most recent call last)", "for ", "Error in")


def one_line(err, limit=300, empty="(no message)"):
    """The informative line of an exception or text, at most ``limit`` characters (None: uncut).

    For TensorFlow's runtime errors that is the reason (``Retval[1] does not have value``), not
    the header (``Graph execution error:``), the ``Detected at node`` trace, the Python stack or
    the ``[[...]]`` tail; for anything else, its first non-empty line; ``empty`` when there is
    no text."""
    text = getattr(err, "message", None) or str(err)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    told = [line for line in lines if not line.startswith(_HEADERS)]
    line = (told or lines or [empty])[0]
    return line if limit is None or len(line) <= limit else line[:limit - 3] + "..."


def exception_line(err, limit=300):
    """``Type: informative line`` of an exception (for errors from libraries and user code)."""
    return f"{type(err).__name__}: {one_line(err, limit)}"[:limit]
