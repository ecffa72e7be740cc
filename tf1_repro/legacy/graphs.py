"""Small graph and command-line helpers the legacy tools share."""

import json
import re

import numpy as np


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


# Ops that touch files, run Python or read/write outside the graph: a tool that runs a user's
# graph refuses a subgraph holding one (checkpoint restores are done by the tools themselves).
UNSAFE_OPS = frozenset({
    "ReadFile", "WriteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc", "MatchingFiles",
    "MergeV2Checkpoints", "ImmutableConst", "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2", "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset",
    "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "CreateSummaryFileWriter",
    "CreateSummaryDbWriter", "WriteSummary", "WriteScalarSummary", "WriteHistogramSummary",
    "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary", "WriteRawProtoSummary",
    "FlushSummaryWriter", "CloseSummaryWriter", "ImportEvent", "SaveDataset", "SaveDatasetV2",
    "LoadDataset", "DatasetToTFRecord", "SnapshotDataset", "SnapshotDatasetV2", "CacheDataset",
    "CacheDatasetV2", "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
    "DebugNumericSummary", "DebugNumericSummaryV2", "DecodeProtoV2", "LoadAndRemapMatrix"})
UNSAFE_PATTERN = re.compile(r"^(Save|Restore).*|.*Reader(V2)?$|^Reader.*")


def is_unsafe(node):
    """A NodeDef that touches files or runs Python (``PrintV2`` only when it prints to a file)."""
    if node.op in UNSAFE_OPS or UNSAFE_PATTERN.match(node.op):
        return True
    if node.op == "PrintV2":
        return not node.attr["output_stream"].s.decode().startswith(("stderr", "stdout", "log"))
    return False


def first_unsafe(nodes, functions):
    """(op type, node name) of the first unsafe NodeDef among ``nodes`` and the library
    ``functions`` ({name: FunctionDef}) they call, else None."""
    checked, stack = set(), list(nodes)
    while stack:
        node = stack.pop()
        if is_unsafe(node):
            return node.op, node.name
        called = [node.op] if node.op in functions else []
        for attr in node.attr.values():
            if attr.HasField("func"):
                called.append(attr.func.name)
            called.extend(f.name for f in attr.list.func)
        for name in called:
            if name in functions and name not in checked:
                checked.add(name)
                stack.extend(functions[name].node_def)
    return None


def unsafe_to_run(graph, fetches):
    """(op type, node name) of a file/IO/Python op that running ``fetches`` (tensors, ops or
    their names) in ``graph`` would run, else None."""
    ops = []
    for item in fetches:
        if isinstance(item, str):
            item = graph.as_graph_element(item)
        ops.append(getattr(item, "op", item))
    needed = ancestors(ops)
    functions = {}
    if any(attr.HasField("func") or attr.list.func for op in needed for attr in op.node_def.attr.values()):
        functions = {f.signature.name: f for f in graph.as_graph_def().library.function}
    return first_unsafe([op.node_def for op in needed], functions)


def refusal(found, what):
    """The one-line reason a tool will not run ``what``, for ``unsafe_to_run``'s result."""
    op_type, name = found
    return (f"the graph that computes {what} holds {op_type} (node {name}), an op that touches "
            f"files or runs Python: refusing to run it (doctor PATH --no-run reads it without "
            f"running anything)")
