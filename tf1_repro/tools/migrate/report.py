"""The report of ``migrate`` as the command prints it."""

from tf1_repro.tools.migrate.common import TRAJECTORY_TOLERANCE


def format_report(report):
    """The report as the command prints it."""
    if report["to"] == "article":
        return "\n".join([
            f"migrated {report['source']} -> {report['checkpoint']} (article names)",
            f"  {len(report['layers'])} BN layer(s): {', '.join(report['layers'])}",
            f"  other weights: {', '.join(report['other_weights']) or 'none'}",
            f"  read back bitwise equal: {report['bitwise']}; layers found again by name: "
            f"{report['names_found_again']}",
            f"  {'OK' if report['ok'] else 'FAILED'}"])
    width = max([20] + [len(e["name"]) for e in report["layers"]])
    found_by = {"graph": "the structural finder (.meta graph)",
                "names": "checkpoint names (" + ("the .meta graph was not understood"
                                                 if report["graph"] else "no graph") + ")",
                "graph and names": "the structural finder (.meta graph) and, where it found "
                                   "none, checkpoint names"}[report["found_by"]]
    lines = [f"migrated {report['source']} -> {report['out']}/ ({', '.join(report['written'])})",
             f"  BN layers found by {found_by}; reference: {report['reference']}",
             f"  {'layer':<{width}} keras layer                momentum  epsilon   estimator  "
             "max |diff|  relative"]
    for e in report["layers"]:
        star = {key: "*" if key in e["assumed"] else " " for key in ("momentum", "epsilon")}
        lines.append(f"  {e['name']:<{width}} {e['keras_layer']:<26} {e['momentum']:<8g}"
                     f"{star['momentum']} {e['epsilon']:<8g}{star['epsilon']} "
                     f"{str(e['moving_variance_estimator']):<10} "
                     f"{e['max_abs_diff']:<10.3g}  {e['relative_diff']:.3g}"
                     f"{'' if e['ok'] else '  FAILED'}")
        if e["verified_against"] != "graph":
            lines.append(f"      checked against: {e['verified_against']}")
        for note in e["notes"]:
            lines.append(f"      note: {note}")
    if any(k in e["assumed"] for e in report["layers"] for k in ("epsilon", "momentum")):
        lines.append("  * assumed: " + ("no graph says it" if not report["graph"] else
                                        "not read from the graph (see the notes)")
                     + "; set with --epsilon / --momentum")
    demo = report["demo_model"]
    if demo:
        lines.append(f"  demo model (model.keras, ArticleBatchNormalization): predictions on "
                     f"{demo['prediction_samples']} held-out samples vs the TF1 checkpoint: max "
                     f"|diff| {demo['prediction_max_abs_diff']:.3g} (relative "
                     f"{demo['prediction_relative']:.3g}); reloaded model.keras identical: "
                     f"{demo['reloaded_identical']}")
        worst = demo["trajectory_max_relative_diff"]
        lines.append(f"  continued training from step {demo['step']}, {demo['train_steps']} steps "
                     f"(same batches, dropout off, Adam state from the checkpoint), moving "
                     f"statistics vs TF1's at every step:")
        lines.append(f"    every parameter trained: max relative diff {worst['all']:.3g}")
        if "pinned" in worst:
            names = ", ".join(f"{k} (|gradient| {g:.2g} vs {demo['largest_gradient']:.2g})"
                              for k, g in demo["gradient_free"].items())
            lines.append(f"    gradient-free parameters held in both ({names}; Adam divides "
                         f"their rounding noise by its own size): max relative diff "
                         f"{worst['pinned']:.3g}")
        lines.append(f"    checked: {demo['trajectory_checked']} (limit {TRAJECTORY_TOLERANCE:g})")
    if report.get("demo_skipped"):
        lines.append(f"  demo model not checked: {report['demo_skipped']}")
    self_checked = [e["name"] for e in report["layers"] if e["verified_against"] == "self-check"]
    lines.append(f"  {'OK' if report['ok'] else 'FAILED'} (limit {report['tolerance']:g} relative "
                 f"per layer" + (f"; only a self-check for {', '.join(self_checked)}"
                                 if self_checked else "") + ")")
    return "\n".join(lines)
