"""What a tool will not run: file, I/O and Python ops in the subgraph it would run."""

import re

from tf1_repro.graph.walk import ancestors


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
