"""Small graph and command-line helpers the legacy tools share."""

import json

import numpy as np


def ancestors(ops, control=True):
    """Every op the given ops depend on (themselves included), through data inputs and, when
    ``control``, control inputs."""
    seen, stack = set(), list(ops)
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack.extend(t.op for t in op.inputs)
        if control:
            stack.extend(op.control_inputs)
    return seen


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
