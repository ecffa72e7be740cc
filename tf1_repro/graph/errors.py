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


def first_line(err, limit=300):
    """``Type: first line`` of an exception, at most ``limit`` characters (for a library's error
    about a file: its first line is the reason)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:limit]


def flat_line(err, limit=300):
    """The whole text of an exception on one line (whitespace runs joined), at most ``limit``
    characters (for errors raised by a user's own code, whose every line may matter)."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def exception_line(err, limit=300):
    """``Type: informative line`` of an exception (for errors from libraries and user code)."""
    return f"{type(err).__name__}: {one_line(err, limit)}"[:limit]


# Two variants of ``one_line`` that to-inference's reports have always shown; they pick another
# line than ``one_line`` for some messages, so they stay as they are (the reports stay identical).

_RUN_HEADERS = ("Graph execution error", "Detected at node", "[[", "File ")


def run_error_line(err, limit=300):
    """The line of a runtime exception that says what went wrong, among its unindented lines:
    TF's graph errors open with "Graph execution error:" and the Python stack of the failing
    node, then the reason (e.g. "Return readvariableop -> ReadVariableOp:value:0 is not found.").
    Unlike ``one_line``, indented lines are never chosen and fewer headers are skipped."""
    text = getattr(err, "message", None) or str(err)
    lines = [line.strip() for line in str(text).splitlines()
             if line.strip() and not line.startswith((" ", "\t"))]
    lines = [line for line in lines if not line.startswith(_RUN_HEADERS)] or lines or ["(no message)"]
    line = lines[0]
    return line if len(line) <= limit else line[:limit - 3] + "..."


def error_word_line(text, limit=300):
    """The first line of ``text`` that says "error" (else its first line), at most ``limit``
    characters: what a report shows of a converter's or runtime's exception."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    line = (errors or lines or ["(no message)"])[0]
    return line if len(line) <= limit else line[:limit - 3] + "..."
