"""The stages every recalibration shares, whatever its format: the settings' checks, the plan of
the passes over a graph whose moving statistics are variables (``plan_run``) and the refusal of a
failed check."""

from tf1_repro.graph import safety
from tf1_repro.graph.control_flow import tf2_control_flow
from tf1_repro.tools.recalibrate.common import WHERE, RecalibrateError, tensor_named
from tf1_repro.tools.recalibrate.feeds import plan_feeds
from tf1_repro.tools.recalibrate.plan import build, depths, prepare_layers


def plan_run(graph, reader, found, meta, data, feeds, labels, predictions, notes):
    """``(layers by depth, predictions tensor or None, feeds plan)``: the layers to recalibrate,
    their ops added to our copy of the graph, and what each pass feeds; RecalibrateError for TF2
    control flow, no BN layer, file/IO/Python ops above the BN inputs or what cannot be fed."""
    control_flow = tf2_control_flow(graph, found)
    if control_flow:
        raise RecalibrateError(f"{WHERE}: {control_flow}; nothing written")
    if not found.bn_layers:
        raise RecalibrateError(f"{WHERE}: PATH must hold a graph with BN layers, got none in {meta}")
    layers = prepare_layers(graph, reader, found, notes)
    level = depths(graph, [layer.info for layer in layers])
    for layer in layers:
        layer.depth = level[layer.info.name]
    layers.sort(key=lambda l: (l.depth, l.info.name))
    predictions_tensor = tensor_named(graph, predictions, "--predictions") if predictions else None
    build(graph, layers)
    fetch_tensors = [graph.get_tensor_by_name(name) for l in layers for site in l.sites
                     for name in site] + \
        ([predictions_tensor] if predictions_tensor is not None else [])
    unsafe = safety.unsafe_to_run(graph, fetch_tensors)
    if unsafe:
        raise RecalibrateError(f"{WHERE}: {safety.refusal(unsafe, 'the BN inputs')}")
    return layers, predictions_tensor, plan_feeds(graph, data, found, feeds, fetch_tensors, labels)


def refuse_failed_check(report):
    """RecalibrateError naming the first layer whose check failed (nothing is written then)."""
    if not report["checks_ok"]:
        worst = next(l for l in report["layers"] if not l["check"]["holds"])
        raise RecalibrateError(
            f"{WHERE}: the check failed for BN layer {worst['name']} (output mean off by "
            f"{worst['check']['mean_error']:.3g}, tolerance {worst['check']['mean_tolerance']:.3g}; variance "
            f"off by {worst['check']['variance_error']:.3g}, tolerance "
            f"{worst['check']['variance_tolerance']:.3g}); "
            f"nothing written")


def check_settings(batch_size, max_samples, labels, predictions):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RecalibrateError(f"{WHERE}: --batch-size must be a positive integer, got {batch_size!r}")
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples < 2):
        raise RecalibrateError(f"{WHERE}: --max-samples must be an integer >= 2 (a variance needs two "
                               f"values), got {max_samples!r}")
    if bool(labels) != bool(predictions):
        raise RecalibrateError(f"{WHERE}: --labels and --predictions go together, got only "
                               f"{'--labels' if labels else '--predictions'}")
