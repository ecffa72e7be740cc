"""One error type for bad input, and the one-line messages every tool shows.

Every tool raises ``InputError`` (or a subclass) for input it refuses: an unreadable artefact,
a bad argument, data that does not fit. The message is one line that names the argument, what is
allowed and what was received; the command line prints it and exits with ``exit_status`` (2),
with no traceback. Nothing has been written when it is raised.
"""

import re


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
    if str(text).startswith("Graph execution error") or "root error(s) found" in str(text):
        line = cause_line(text) or empty  # TensorFlow's wrapped cause
        return line if limit is None or len(line) <= limit else line[:limit - 3] + "..."
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


# TensorFlow's runtime errors wrap their cause: "Graph execution error:", the "Detected at node
# 'x' defined at (most recent call last):" trace, "Node: 'x'", then the cause ("You must feed a
# value for placeholder tensor 'ids' ..."), the "[[{{node x}}]]" tail and "Original stack trace";
# TF1-style ones say "2 root error(s) found." and list "(0) Invalid argument: CAUSE".

_CAUSE_SKIP = ("Graph execution error", "Detected at node", "Detected in the following",
               "Node:", "File ", "[[", "Traceback", "(most recent call last)",
               "Original stack trace", "Function call stack", "Errors may have originated")
_ROOT_COUNT = re.compile(r"^\d+ (root error\(s\) found|successful operations|derived errors ignored)\.?$")
_ROOT_PREFIX = re.compile(r"^\(\d+\) [A-Za-z_ ]+:\s*")

OWN_SCOPES = ("tf1_repro_restore",)  # our own ops in a user's graph (Artefact.restore's)
_OWN_NAME = re.compile(r"(?P<q>['\"]?)\b(?:%s)/[\w./:-]*(?P=q)" % "|".join(OWN_SCOPES))


def cause_line(err):
    """The first line of the cause TensorFlow detected (``You must feed a value for placeholder
    tensor 'images' with dtype float``), without the wrapper around it (``Graph execution
    error:``, the ``Detected at node`` trace, ``Node:``, ``[[...]]``, ``(0) INVALID_ARGUMENT:``);
    the first informative line of any other error; None when there is no text."""
    text = getattr(err, "message", None) or str(err)
    text = str(text).split("\nOriginal stack trace", 1)[0]
    lines = text.splitlines()
    # the cause follows the first "Node: 'x'" line when there is one
    start = next((i + 1 for i, line in enumerate(lines) if line.strip().startswith("Node:")), 0)
    kept = []
    for raw in lines[start:]:
        line = raw.strip()
        if not line or line.startswith(_CAUSE_SKIP) or _ROOT_COUNT.match(line):
            continue
        kept.append((raw[:1] in " \t" and not _ROOT_PREFIX.match(line), _ROOT_PREFIX.sub("", line)))
    # an indented line is a stack frame, unless nothing else is left
    line = next((line for indented, line in kept if not indented and line),
                next((line for _, line in kept if line), None))
    return line


def without_own_names(text):
    """``text`` with the names of our own machinery (``tf1_repro_restore/...``) left out: a
    listed one is dropped from its list, and the count of those left out is said once."""
    count = len(_OWN_NAME.findall(text))
    if not count:
        return text
    text = re.sub(r"(?:,\s*)?%s" % _OWN_NAME.pattern, "", text)  # "'a', 'own/x'" -> "'a'"
    text = re.sub(r"([\[(]\s*),\s*", r"\1", text)  # "[, 'a'" (an own name was first)
    text = re.sub(r"(?<=\S)  +(?=\S)", " ", text)  # "tensor  with" (a name in a sentence)
    return f"{text} ({count} name(s) of tf1_repro's own restore ops left out)"


def capped(line, limit=300):
    """``line`` cut to at most ``limit`` characters, saying how many were left out."""
    if limit is None or len(line) <= limit:
        return line
    cut = limit - len(" ... (+99999 characters)")
    return f"{line[:cut]} ... (+{len(line) - cut} characters)"


def run_error_line(err, limit=300):
    """The line of a runtime exception that says what went wrong: TensorFlow's detected cause
    (``cause_line``) without the ``Graph execution error:`` wrapper, no names of our own restore
    machinery (``without_own_names``), at most ``limit`` characters (``capped``)."""
    return capped(without_own_names(cause_line(err) or "(no message)"), limit)


def short_list(names, shown=6):
    """``'a', 'b', 'c' and 12 more``: a list of names for a one-line message."""
    names = list(names)
    text = ", ".join(repr(n) for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "") if names else "none"


def error_word_line(text, limit=300):
    """The first line of ``text`` that says "error" (else its first line), at most ``limit``
    characters: what a report shows of a converter's or runtime's exception."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    line = (errors or lines or ["(no message)"])[0]
    return line if len(line) <= limit else line[:limit - 3] + "..."
