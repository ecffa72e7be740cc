"""Graph walks the tools share: every op a set of ops depends on, each once."""


def _walk_up(ops, control):
    """The given ops and every op they depend on, each once, nearest first (lazily)."""
    seen, stack = set(), list(ops)
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        yield op
        stack.extend(t.op for t in op.inputs)
        if control:
            stack.extend(op.control_inputs)


def ancestors(ops, control=True):
    """Every op the given ops depend on (themselves included), through data inputs and, when
    ``control``, control inputs."""
    return set(_walk_up(ops, control))


def any_ancestor(ops, predicate, control=True):
    """Whether ``predicate(op)`` holds for one of the given ops or an op they depend on; stops at
    the first (cheaper than ``ancestors`` on a large graph)."""
    return any(predicate(op) for op in _walk_up(ops, control))
