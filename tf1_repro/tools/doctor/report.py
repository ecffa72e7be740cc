"""The report: ``diagnose`` asks every registered check, in the registry's order, at each moment.

1. per BN layer: ``Check.layer`` (values and graph, nothing runs);
2. once, with a graph: ``Check.graph``;
3. per mode input a serving client leaves at its default: ``Check.serving_default``;
4. per set of runs (with the prediction feeds; then, for a SavedModel, as a serving client):
   ``Check.dynamic``. A serving client's run adds only the (id, layer) pairs the first did not
   give, and a dynamic finding without a layer whose id a static finding already has confirms it
   (its message gets "; confirmed by running: ...") instead of being listed again.
"""

import numpy as np

from tf1_repro.tools.doctor import checks  # noqa: F401  pylint: disable=unused-import  (registers)
from tf1_repro.tools.doctor import artefact, inputs, layers as found_layers, runs
from tf1_repro.tools.doctor.base import ERROR, INFO, REGISTRY, WARNING
from tf1_repro.tools.doctor.context import Context, serving_defaults
from tf1_repro.tools.doctor.settings import settings
from tf1_repro.tools.tf2_findings import KerasLayer, signature_line


def diagnose(path, feeds=None, input_shapes=None, data=None, run=True, signature=None,
             outputs=None):
    """The doctor's report on the artefact at ``path`` (see the package docstring).

    Returns a dict with source, format, bn_layers, dropouts, findings (id,
    severity, layer, message, fix), healthy (no error finding), ran (whether the
    dynamic checks ran) and notes. Raises DoctorError (one line) for an
    unreadable artefact or a bad argument. ``signature`` picks a SavedModel's signature (TF2
    ones: default ``serving_default``); TF2 SavedModels and Keras files add signature,
    signatures, keras_layers and writes (``tf2_findings``) and the reader's notes. ``outputs``
    (tensor names, or a comma-separated string) replaces the outputs the dynamic checks run.
    """
    s = settings(path, feeds, input_shapes, data, run, signature, outputs)
    doc = artefact.load(s.path, s.signature)
    found = found_layers.find(doc)
    runs.check_outputs(doc, s.outputs)
    given = inputs.resolve_feeds(doc, s)  # checked the same with and without a run
    notes = list(doc.art.notes) + found.notes
    found.notes = notes
    unsafe = doc.is_tf2 and any(n.startswith("not loaded") for n in doc.art.notes)
    report = {"source": doc.source, "format": doc.format, "bn_layers": [], "dropouts": [],
              "findings": [], "healthy": True, "ran": False, "notes": notes}
    ctx = context_of(doc, found)
    findings = static_findings(ctx)
    if s.run and unsafe:
        notes.append("dynamic checks skipped: the signature was not loaded (see the note above), "
                     "so nothing ran; static checks only")
    elif s.run and ctx.has_graph and found.result is not None:
        done = runs.execute(doc, s, found, given)
        if done is not None:
            report.update(outputs=done.outputs, inputs=done.inputs, feeds=done.feeds)
            if done.failed:
                report.pop("outputs")
        report["ran"] = "outputs" in report and not any(n.startswith("not run") for n in notes)
        findings += merge(findings, dynamic_findings(ctx, done.runs if done else []))
    elif not s.run:
        notes.append("not run (--no-run): static checks only")
    report["bn_layers"] = [_layer_report(doc, layer) for layer in found.layers]
    report["dropouts"] = [d.to_report() for d in found.dropouts]
    if doc.is_tf2 and found.view is not None:
        tf2_fixes(findings)
        report.update(found.view.to_dict())
        report.pop("reader_notes")  # they open the notes
    report["findings"] = [f.to_dict() for f in findings]
    report["summary"] = summarize(report["findings"])
    report["healthy"] = not any(f.severity == ERROR for f in findings)
    report["global_step"] = ctx.global_step
    return _jsonable(report)


def summarize(findings):
    """The findings grouped by id, in the order each id first appears: ``[{"id", "severity",
    "layers", "findings", "names", "example"}]``. ``layers``: how many distinct layers (or other
    named places: a dropout, a mode input) the id names (findings without one count none);
    ``findings``: how many findings the id has (``stats-trainable`` gives two on one layer);
    ``names``: those layers, in order; ``example``: the first finding's message."""
    groups = {}
    for f in findings:
        groups.setdefault(f["id"], []).append(f)
    out = []
    for fid, group in groups.items():
        names = list(dict.fromkeys(f["layer"] for f in group if f["layer"]))
        out.append({"id": fid, "severity": group[0]["severity"], "layers": len(names),
                    "findings": len(group), "names": names, "example": group[0]["message"]})
    return out


def tf2_fixes(findings):
    """Each finding's fix said for a TF2 SavedModel or Keras file (``Check.tf2_fix``), in place."""
    for f in findings:
        fix = getattr(REGISTRY.get(f.id), "tf2_fix", None)
        if fix:
            f.fix = fix


def context_of(doc, found):
    """The checks' ``Context`` of an artefact (``artefact.load``) and its ``layers.find``."""
    return Context(doc, found.layers, found.dropouts, found.result, doc.global_step(),
                   frozenset(doc.collection_names("trainable_variables")))


def static_findings(ctx):
    """Moments 1 to 3 (nothing runs): per layer, graph-wide, per serving default."""
    out = []
    for layer in ctx.layers:
        for check in REGISTRY.values():
            out += check.layer(ctx, layer)
    if ctx.has_graph:
        for check in REGISTRY.values():
            out += check.graph(ctx)
        for default in serving_defaults(ctx):
            for check in REGISTRY.values():
                out += check.serving_default(ctx, default)
    return out


def dynamic_findings(ctx, done):
    """Moment 4: each ``runs.Run`` asked of every check; a later run adds only the (id, layer)
    pairs the first did not give."""
    out = []
    for i, run in enumerate(done):
        new = [f for check in REGISTRY.values() for f in check.dynamic(ctx, run)]
        if i:
            have = {(f.id, f.layer) for f in out}
            new = [f for f in new if (f.id, f.layer) not in have]
        out += new
    return out


def merge(static, dynamic):
    """Dynamic findings not already reported statically (a batch-dependence or dropout finding
    without a layer confirms the static ones of the same id)."""
    have = {f.id for f in static}
    out = []
    for f in dynamic:
        if f.layer is None and f.id in have:
            for g in static:
                if g.id == f.id and "confirmed by running" not in g.message:
                    g.message += "; confirmed by running: " + f.message
            continue
        out.append(f)
    return out


def _layer_report(doc, layer):
    """The layer's report dict with the value ranges of its statistics."""
    out = layer.to_report()
    for role in ("moving_mean", "moving_variance"):
        value = doc.value(layer.statistic(role))
        out[f"{role}_range"] = None if value is None or not value.size else \
            [float(np.min(value)), float(np.max(value))]
    return out


def _jsonable(value):
    """The report with NumPy scalars and arrays as Python numbers and lists (for json.dump)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def format_report(report, verbose=False):
    """The printed report: a table of the layers, then the findings, ruff/pylint style: one line
    per finding id (its severity, how many layers and the first few names, the first finding's
    message) and its fix once; ``verbose``: every finding on a line of its own, each with its fix.
    The last line counts finding ids per severity (the lines printed without ``verbose``) and,
    when there are more, the findings."""
    lines = [f"doctor: {report['source']} ({report['format']})"]
    if report["bn_layers"]:
        rows = [("BN layer", "kind", "decay", "mode", "updates", "moving mean", "moving variance")]
        for layer in report["bn_layers"]:
            rows.append((layer["name"], layer["kind"],
                         "-" if layer["decay"] is None else f"{layer['decay']:g}",
                         layer["mode"]["name"] if layer["mode"] else "-",
                         layer["update_location"] or "-",
                         _range(layer.get("moving_mean_range")),
                         _range(layer.get("moving_variance_range"))))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    else:
        lines.append("  no BN layer found")
    for d in report["dropouts"]:
        kp = d["keep_prob"] or {}
        value = "" if kp.get("value") is None else f" = {kp['value']:g}"
        lines.append(f"  dropout {d['name']}: {kp.get('param')} from {kp.get('source')} "
                     f"{kp.get('name')}{value}")
    if report.get("signatures"):
        lines.append(f"  signatures: {', '.join(report['signatures'])} (read: "
                     f"{report['signature']})")
    if report.get("signature_outputs"):
        lines.append(signature_line(report["signature"], report["signature_inputs"],
                                    report["signature_outputs"]))
    for k in report.get("keras_layers") or []:
        fields = {f: k[f] for f in ("name", "class_name", "momentum", "epsilon", "rate", "found",
                                    "moving_statistics_used")}
        lines.append(f"  keras: {KerasLayer(**fields).line()}")
    for note in report["notes"]:
        lines.append(f"  note: {note}")
    if not report["findings"]:
        lines.append("no findings")
    summary = report.get("summary") or summarize(report["findings"])
    if verbose:
        for f in report["findings"]:
            where = f" [{f['layer']}]" if f["layer"] else ""
            lines.append(f"{f['severity']}: {f['id']}{where}: {f['message']}")
            lines.append(f"    fix: {f['fix']}")
    else:
        fixes = {f["id"]: f["fix"] for f in report["findings"]}
        for group in summary:
            lines.append(summary_line(group))
            lines.append(f"    fix: {fixes[group['id']]}")
    count = {k: sum(g["severity"] == k for g in summary) for k in (ERROR, WARNING, INFO)}
    total = len(report["findings"])
    more = f" ({total} findings; --verbose lists each)" if total > len(summary) else ""
    lines.append(f"{'healthy' if report['healthy'] else 'NOT HEALTHY'}: {count[ERROR]} error(s), "
                 f"{count[WARNING]} warning(s), {count[INFO]} info(s){more}"
                 f"{'' if report['ran'] else ' (static checks only)'}")
    return "\n".join(lines)


SHOWN_NAMES = 3  # layer names a summary line shows before "..."


def summary_line(group):
    """One finding id's line: ``severity: id [layer]: message`` when it names one layer (as
    ``--verbose`` prints it), else ``severity: id: N layers (a, b, c, ...): message``, and
    `` (+K more)`` when the id has more findings (the last line says --verbose lists them)."""
    names = group["names"]
    if len(names) == 1:
        where = f" [{names[0]}]"
    elif names:
        shown = ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")
        where = f": {len(names)} layers ({shown})"
    else:
        where = ""
    more = group["findings"] - 1
    tail = f" (+{more} more)" if more else ""
    return f"{group['severity']}: {group['id']}{where}: {group['example']}{tail}"


def _range(bounds):
    if not bounds:
        return "-"
    low, high = bounds
    return f"{low:.3g}" if low == high else f"{low:.3g}..{high:.3g}"
