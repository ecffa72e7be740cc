"""The report: each layer's check against the closed form (``layer_report``) and the text the
command prints (``format_report``)."""

import numpy as np

from tf1_repro.tools.recalibrate.common import CHECK_ULPS, UNIT_ROUNDOFF


def _site_check(layer, moments, out_moments, stored_mean, stored_var):
    """The check of one call: its output's per-channel mean and variance against the closed form."""
    denom = np.sqrt(stored_var + layer.epsilon)
    expected_mean = layer.beta + layer.gamma * (moments.mean - stored_mean) / denom
    expected_var = layer.gamma ** 2 * moments.variance(0) / (stored_var + layer.epsilon)
    scale = np.abs(layer.gamma) * (moments.absmax + np.abs(stored_mean)) / denom + np.abs(layer.beta)
    mean_tol = CHECK_ULPS * UNIT_ROUNDOFF * scale
    var_tol = 2 * mean_tol * np.sqrt(expected_var) + mean_tol ** 2
    mean_err = np.abs(out_moments.mean - expected_mean)
    var_err = np.abs(out_moments.variance(0) - expected_var)
    return {"mean_error": float(mean_err.max()), "mean_tolerance": float(mean_tol[np.argmax(mean_err)]),
            "variance_error": float(var_err.max()), "variance_tolerance": float(var_tol[np.argmax(var_err)]),
            "holds": bool(np.all(mean_err <= mean_tol) and np.all(var_err <= var_tol))}


def relative_change(old, new):
    """(largest |new - old| / |old| over the channels with a finite old != 0, or None; number of
    channels that changed from 0). Channels whose old value is NaN/inf are left out (see
    ``non_finite``)."""
    old, new = np.asarray(old, np.float64), np.asarray(new, np.float64)
    finite = np.isfinite(old)
    nonzero = (old != 0) & finite
    from_zero = int(np.sum((old == 0) & (new != 0)))
    rel = np.abs(new[nonzero] - old[nonzero]) / np.abs(old[nonzero])
    return (float(rel.max()) if rel.size else None), from_zero


def non_finite(values):
    """The channels (indices) whose value is NaN or inf."""
    return [int(i) for i in np.flatnonzero(~np.isfinite(np.asarray(values, np.float64)))]


def _json_values(values):
    """A list for JSON: NaN/inf as None (JSON has no such numbers)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, np.float64)]


def layer_report(layer):
    """Old/new statistics, the largest changes and the check of one layer (of each call when shared;
    ``check`` is the worst call's)."""
    stored_mean = layer.new_mean.astype(layer.dtype).astype(np.float64)
    stored_var = layer.new_var.astype(layer.dtype).astype(np.float64)
    checks = [_site_check(layer, m, out, stored_mean, stored_var)
              for m, out in zip(layer.site_moments, layer.out_moments)]
    worst = max(checks, key=lambda c: (not c["holds"], c["mean_error"] / max(c["mean_tolerance"], 1e-300),
                                       c["variance_error"] / max(c["variance_tolerance"], 1e-300)))
    std = np.sqrt(layer.moments.variance(0))
    finite_mean = np.isfinite(layer.old_mean)
    mean_change = np.abs(layer.old_mean[finite_mean] - layer.new_mean[finite_mean]) / \
        np.where(std[finite_mean] > 0, std[finite_mean], 1.0)
    var_change, from_zero = relative_change(layer.old_var, layer.new_var)
    n = layer.moments.count
    row = {
        "name": layer.info.name, "kind": layer.info.kind, "depth": layer.depth,
        "input": layer.info.input, "output": layer.info.output,
        "moving_mean": layer.mean_key, "moving_variance": layer.var_key,
        "values_per_channel": n, "channels": layer.channels, "epsilon": layer.epsilon,
        "variance_stored": "unbiased M2/(n-1)" if layer.ddof else "biased M2/n",
        "unbiased_over_biased": n / (n - 1),
        "old_mean": _json_values(layer.old_mean), "new_mean": layer.new_mean.tolist(),
        "old_variance": _json_values(layer.old_var), "new_variance": layer.new_var.tolist(),
        "largest_mean_change_in_std": float(mean_change.max()) if mean_change.size else None,
        "largest_variance_change_relative": var_change,
        "mean_was_non_finite": non_finite(layer.old_mean),
        "variance_was_non_finite": non_finite(layer.old_var),
        "variance_channels_changed_from_zero": from_zero,
        "check": dict(worst, holds=all(c["holds"] for c in checks)),
    }
    if len(layer.sites) > 1:
        row["calls"] = [{"input": x, "output": y, "values_per_channel": m.count, "check": c}
                        for (x, y), m, c in zip(layer.sites, layer.site_moments, checks)]
    return row


def format_report(report):
    """The report as text."""
    passes = report["passes"]
    source = report["source"] + (f" ({report['format']}, signature {report['signature']})"
                                 if report.get("format") else "")
    lines = [f"recalibrated {source} over {report['samples']:,} samples of {report['data']}",
             f"  {len(report['layers'])} BN layer(s), {passes['recalibration']} recalibration pass(es) "
             f"+ 1 check pass; {report['throughput']['samples_per_second_per_pass']:,.0f} samples/s "
             f"per recalibration pass",
             f"  {'layer':<28} {'kind':<20} {'depth':>5} {'values/ch':>10}  {'mean change':>11}  "
             f"{'var change':>10}  stored variance   check"]
    if report.get("feeds"):
        lines.insert(2, "  prediction feeds: " + ", ".join(
            f"{f['name']}={_feed_text(f['value'])}{' (--feed)' if f['source'] == '--feed' else ''}"
            for f in report["feeds"]))
    for row in report["layers"]:
        lines.append(f"  {row['name']:<28} {row['kind']:<20} {row['depth']:>5} {row['values_per_channel']:>10,}  "
                     f"{_mean_change_text(row):>11}  {_change_text(row):>10}  "
                     f"{row['variance_stored']:<17} {'✓' if row['check']['holds'] else '✗'} "
                     f"(mean {row['check']['mean_error']:.2g} ≤ {row['check']['mean_tolerance']:.2g}, "
                     f"var {row['check']['variance_error']:.2g} ≤ {row['check']['variance_tolerance']:.2g})")
        for call in row.get("calls", []):
            c = call["check"]
            lines.append(f"      call on {call['input']} ({call['values_per_channel']:,} values/ch): "
                         f"{'✓' if c['holds'] else '✗'} (mean {c['mean_error']:.2g} ≤ {c['mean_tolerance']:.2g}, "
                         f"var {c['variance_error']:.2g} ≤ {c['variance_tolerance']:.2g})")
        k = min(4, len(row["new_mean"]))
        lines.append(f"      mean {_few(row['old_mean'], k)} -> {_few(row['new_mean'], k)}   "
                     f"variance {_few(row['old_variance'], k)} -> {_few(row['new_variance'], k)}")
        for what, key in (("mean", "mean_was_non_finite"), ("variance", "variance_was_non_finite")):
            if row.get(key):
                lines.append(f"      moving {what} was non-finite (NaN/inf) in channel(s) "
                             f"{', '.join(map(str, row[key][:8]))}{', …' if len(row[key]) > 8 else ''}: "
                             f"replaced by the data's")
        if row["variance_stored"].startswith("unbiased"):
            lines.append(f"      fused kernel: stored M2/(n-1), the Bessel-corrected variance its EMA "
                         f"averages; M2/(n-1) = {row['unbiased_over_biased']:.7f} x M2/n")
    if report.get("accuracy"):
        acc = report["accuracy"]
        lines.append(f"  accuracy over the data: {acc['before']:.4f} before -> {acc['after']:.4f} after")
    lines.append(f"  check: prediction-mode outputs have per-channel mean beta and variance "
                 f"gamma^2 var/(var+eps) within {CHECK_ULPS} float32 ulps of the output scale")
    for note in report.get("notes", []):
        lines.append(f"  note: {note}")
    if report.get("written") and report["written"].get("format"):
        lines.extend(_written_tf2(report["written"]))
    elif report.get("written"):
        w = report["written"]
        lines.append(f"  wrote {w['prefix']} (+ .meta, checkpoint): {len(w['replaced'])} statistics "
                     f"replaced, {w['copied_bit_for_bit']} variables copied bit for bit (verified)")
    return "\n".join(lines)


def _mean_change_text(row):
    """The largest mean change in standard deviations, or "was non-finite" when a channel's old was."""
    if row.get("mean_was_non_finite"):
        return "was non-finite"
    change = row["largest_mean_change_in_std"]
    return "-" if change is None else f"{change:.3g}sd"


def _change_text(row):
    """The largest relative variance change |new - old| / |old|, "was non-finite" when a channel's
    old was NaN/inf, or "from 0" when a channel's old is 0."""
    if row.get("variance_was_non_finite"):
        return "was non-finite"
    if row.get("variance_channels_changed_from_zero"):
        return "from 0"
    change = row["largest_variance_change_relative"]
    return "-" if change is None else f"{change * 100:.3g}%"


def _feed_text(value):
    if isinstance(value, list):
        return f"[{len(value)} values]" if len(value) > 4 else str(value)
    return str(value)


def _few(values, k):
    text = ", ".join(("non-finite" if v is None else f"{v:.4g}") for v in values[:k])
    return f"[{text}{', ...' if len(values) > k else ''}]"


def _written_tf2(w):
    """The lines saying what was written for a TF2 SavedModel or Keras file, and how it was verified."""
    what = {"saved_model_tf2": "SavedModel", "keras": ".keras", "keras_h5": ".h5"}[w["format"]]
    lines = [f"  wrote {what} {w['path']}: {len(w['replaced'])} statistics replaced "
             f"({_few_names(w['replaced_variables'])}), {w['copied_bit_for_bit']} other weights copied bit "
             f"for bit (verified)"]
    if w.get("files_copied") is not None:
        lines.append(f"      {w['files_copied']} other files copied byte for byte (saved_model.pb: the same "
                     f"signatures and variable names); fingerprint.pb {w.get('fingerprint') or 'absent'}")
    if w.get("zip_entries_copied") is not None:
        lines.append(f"      {w['zip_entries_copied']} other zip entries copied byte for byte")
    r = w["reloaded"]
    ran = (f"; its outputs on {r['samples_run']} samples within {r['output_max_error']:.2g} of the "
           f"recalibrated graph's (≤ {r['output_tolerance']:.2g}; as served, statistics folded as "
           f"Consts: {r['output_as_served_max_error']:.2g})") if "output_max_error" in r else ""
    lines.append(f"      read back: {r['statistics_equal']} statistics equal the new values{ran}")
    return lines


def _few_names(names, k=4):
    return ", ".join(names[:k]) + (f", … ({len(names) - k} more)" if len(names) > k else "")
