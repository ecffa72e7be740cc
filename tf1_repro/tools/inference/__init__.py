"""to-inference: a TF1 training graph made into a verified prediction graph, pass by pass.

The package (rewrite of ``tools/inference.py``, "One house for the tools"):

* ``passes/``: one serving pass per file, each ``run(graph_def, ctx) -> PassResult`` registered
  by name with the op types it rewrites (``passes.REGISTRY``);
* ``pipeline``: runs passes in a declared order (``Repeat`` for fixpoints), imports the graph
  after each and records ``PassRecord(name, ops_before, ops_after, changed)``;
* ``convert``: the stages in order (``convert.STAGES``) and what they report;
* ``batchnorm``: the BN folding rule; ``plan``: decisions from the finder's findings;
* ``command`` (``to_inference``), ``formats`` (writers and runners), ``verify``, ``latency``,
  ``report`` (``format_report``, ``format_passes``).

Every name other code used from ``tools/inference.py`` is importable from here.
"""

from tf1_repro.graph.graphdef import (consumers, make_const, node_name, nodes_by_name, op_counts,
                                      prune, tensor_name, topological_order)
from tf1_repro.tools.inference.batchnorm import CHANNELS_FIRST, affine_chain, fold_batch_norm
from tf1_repro.tools.inference.command import open_model, parse_feed, to_inference
from tf1_repro.tools.inference.context import PassContext, PassResult, PassState
from tf1_repro.tools.inference.convert import STAGES, convert, simplify
from tf1_repro.tools.inference.errors import InferenceError
from tf1_repro.tools.inference.latency import VARIANTS, measure_latency
from tf1_repro.tools.inference.passes.bind_placeholders import bind_placeholders
from tf1_repro.tools.inference.passes.fold_constants import fold_constants
from tf1_repro.tools.inference.passes.resolve_switches import resolve_switches
from tf1_repro.tools.inference.pipeline import PassError, PassRecord, Repeat
from tf1_repro.tools.inference.plan import FORBIDDEN_OPS, likely_outputs, training_only_ops
from tf1_repro.tools.inference.report import format_passes, format_report
from tf1_repro.tools.inference.verify import make_batches, verify

__all__ = ["CHANNELS_FIRST", "FORBIDDEN_OPS", "InferenceError", "PassContext", "PassError",
           "PassRecord", "PassResult", "PassState", "Repeat", "STAGES", "VARIANTS", "affine_chain",
           "bind_placeholders", "consumers", "convert", "fold_batch_norm", "fold_constants",
           "format_passes", "format_report", "likely_outputs", "make_batches", "make_const",
           "measure_latency", "node_name", "nodes_by_name", "op_counts", "open_model",
           "parse_feed", "prune", "resolve_switches", "simplify", "tensor_name", "to_inference",
           "topological_order", "training_only_ops", "verify"]
