"""The to-inference report as text (``format_report``, unchanged by the rewrite) and the
passes' records as text (``format_passes``, what ``--verbose`` prints)."""

def _ops_line(counts, width=100):
    text = ", ".join(f"{op} {n}" for op, n in counts.items())
    return text if len(text) <= width else text[:width - 3] + "..."


def _keyed(tensors, keys):
    """``head (Identity:0)`` for a TF2 signature's tensor (its key first), else the tensor."""
    keys = keys or {}
    return ", ".join(f"{keys[t]} ({t})" if t in keys else t for t in tensors)


def format_report(report):
    """The report as text (what the command prints)."""
    lines = [f"to-inference {report['source']}: inputs "
             f"{_keyed(report['inputs'], report.get('input_keys'))} -> outputs "
             f"{_keyed(report['outputs'], report.get('output_keys'))}",
             "  prediction feeds bound: " + (", ".join(f"{k}={v}" for k, v in report['feeds'].items())
                                             or "none"),
             f"  ops before ({sum(report['ops_before'].values())}): {_ops_line(report['ops_before'])}",
             f"  ops after  ({sum(report['ops_after'].values())}): {_ops_line(report['ops_after'])}"]
    if report.get("signatures"):
        lines.insert(1, f"  {report['format']}: signature {report['signature']} (signatures: "
                        f"{', '.join(report['signatures'])})")
    elif report.get("format") in ("keras", "keras_h5"):
        lines.insert(1, f"  {report['format']}: model(x, training=False)")
    lines += _fix_lines(report)
    for bn in report["bn_layers"]:
        state = f"folded into {bn.get('into')}" if bn["folded"] else f"kept: {bn['reason']}"
        lines.append(f"  BN {bn['name']} ({bn['kind']}): {state}")
    if report["dropouts_removed"]:
        lines.append(f"  dropouts removed (identity at prediction): "
                     f"{', '.join(report['dropouts_removed'])}")
    for d in report.get("dropouts_scaled", []):
        lines.append(f"  dropout {d['name']} (vanilla): prediction multiplies by keep_prob="
                     f"{d['keep_prob']}")
    for d in report["dropouts_kept"]:
        lines.append(f"  dropout {d['name']} kept: {d['reason']}")
    if report["update_ops_dropped"]:
        lines.append(f"  ! update ops that ran at prediction were dropped: "
                     f"{', '.join(report['update_ops_dropped'])}")
    if report["training_ops_left"]:
        lines.append(f"  ! training-only ops left: {', '.join(report['training_ops_left'][:8])}")
    lines.append(f"  artefacts (vs the {'repaired' if report.get('fix_checks') else 'original'} "
                 f"graph, batch 1 and 16; tolerance "
                 f"{report['tolerance']:g} x max(1, |output|)):")
    for name, a in report["artefacts"].items():
        if a.get("error"):
            lines.append(f"    {name:<12} FAILED   {a['error']} (not written)")
            continue
        verdict = "ok" if a["within_tolerance"] and a["batch_independent"] and a["deterministic"] \
            else "DIFFERS" if report.get("original_deterministic", True) else "UNVERIFIED"
        lines.append(f"    {name:<12} {verdict:<8} max |diff| {_diff_text(a):<22} batch "
                     f"independent {str(a['batch_independent']):<5} deterministic "
                     f"{str(a['deterministic']):<5} {a['bytes']:>10,} bytes  {a['path']}")
    for name, hint in report["skipped"].items():
        lines.append(f"    {name:<12} skipped  ({hint})")
    if report["latency_ms"]:
        lines.append(f"  latency, median of {report['latency_runs']} runs, one variant at a time (ms):")
        lines.append(f"    {'variant':<16} {'batch 1':>9} {'batch 64':>9}")
        for variant, t in report["latency_ms"].items():
            if t is None:
                lines.append(f"    {variant:<16} {'-':>9} {'-':>9}  "
                             f"{report.get('latency_errors', {}).get(variant, 'cannot run')}")
                continue
            lines.append(f"    {variant:<16} {t['1']:>9.3f} {t['64']:>9.3f}")
    if not report["original_finite"]:
        lines.append("  ! the original graph's outputs are not finite (NaN/inf) on the check inputs")
    if report.get("constant_outputs"):
        keys = report.get("output_keys") or {}
        named = [f"{keys[o]} ({o})" if o in keys else o for o in report["constant_outputs"]]
        advice = ("these were the --data rows: try rows that should give other outputs"
                  if report.get("check_inputs") == "--data" else
                  "verify with real inputs: --data FILE.npz")
        lines.append(f"  ! {', '.join(named)}: one value (within the tolerance) for every check "
                     f"input, so comparing {'it' if len(named) == 1 else 'them'} shows little "
                     f"(an artefact that gave that value whatever its input would pass); {advice}")
    lines += _fix_check_lines(report.get("fix_checks"))
    failed = [n for n, a in report["artefacts"].items() if a.get("error")]
    hint = report.get("training_mode_hint")
    if report.get("original_batch_dependent") and not failed:
        lines.append(f"FAILED: the original depends on its batch (sample 0 moves by "
                     f"{report['original_batch_shift']:.3g} when run alone), so no artefact can "
                     f"match it" + (f": {hint}" if hint else "") + " (exit 1)")
    elif not report.get("original_deterministic", True):
        lines.append("FAILED: cannot verify: the original graph's output is random (not "
                     "deterministic): the same batch run twice gives other values" + (
                         f"; {', '.join(failed)} could not run either" if failed else "") +
                     (f"; {hint}" if hint else "") + " (exit 1)")
    elif failed:
        lines.append(f"FAILED: {', '.join(failed)} could not be verified and "
                     f"{'was' if len(failed) == 1 else 'were'} not written (exit 1)")
    elif report.get("latency_errors"):
        lines.append(f"FAILED: {', '.join(report['latency_errors'])} cannot run (latency above; exit 1)")
    elif report.get("not_fixed"):
        lines.append(f"FAILED: --fix-training-mode could not repair "
                     f"{', '.join(e['layer'] for e in report['not_fixed'])} (exit 1)")
    elif report.get("fix_checks"):
        lines.append("verified: every artefact matches the repaired graph, independent of the batch, "
                     "and the repair checks pass" if report["ok"] else
                     "FAILED: an artefact or a repair check differs (exit 1)")
    else:
        lines.append("verified: every artefact matches the original" if report["ok"] else
                     "FAILED: an artefact differs from the original (exit 1)")
    return "\n".join(lines)


def _fix_lines(report):
    """What ``--fix-training-mode`` changed, layer by layer, and the writes left out."""
    lines = []
    if report.get("fix_training_mode"):
        if report["fixed"]:
            lines.append(f"  --fix-training-mode: {len(report['fixed'])} change(s), layer by layer:")
            lines += [f"    {e['layer']}: {e['what']}" for e in report["fixed"]]
        elif not report.get("not_fixed"):
            lines.append("  --fix-training-mode: nothing to fix (no BN in training mode, no dropout "
                         "on at inference, in the function served)")
        lines += [f"  ! not fixed {e['layer']}: {e['why']}" for e in report.get("not_fixed", [])]
    told = " ".join(e["what"] for e in report.get("fixed", []))
    left = [w for w in report.get("writes_left_out", []) if w not in told]
    if left:
        lines.append(f"  ! the serving function writes variables on every call; the served graph "
                     f"does not: {', '.join(left)}")
    return lines


def _fix_check_lines(checks):
    if not checks:
        return []
    lines = [f"  repair checks (the artefacts are compared with {checks['reference']}):"]
    for c in checks["bn_numpy"]:
        lines.append(f"    BN {c['layer']}: NumPy with its moving statistics, max |diff| "
                     f"{c['max_abs_diff']:.3g} {'ok' if c['ok'] else 'DIFFERS'}")
    keras = checks["keras"]
    if "skipped" in keras:
        lines.append(f"    Keras training=False: skipped ({keras['skipped']})")
    elif "error" in keras:
        lines.append(f"    Keras training=False: FAILED ({keras['error']})")
    else:
        lines.append(f"    Keras training=False (every layer in inference mode): max |diff| "
                     f"{keras['max_abs_diff']:.3g} {'ok' if keras['ok'] else 'DIFFERS'}")
    return lines


def _changed_text(changed, shown=4):
    if not changed:
        return "nothing changed"
    names = ", ".join(changed[:shown]) + (", …" if len(changed) > shown else "")
    return f"{len(changed)} changed: {names}"


def format_passes(passes):
    """One line per pass run (``report["passes"]``): name, node count before -> after, what
    changed (the first names). What ``to-inference --verbose`` prints."""
    lines = [f"  passes ({len(passes)} runs):"]
    for p in passes:
        lines.append(f"    {p['name']:<22} {p['ops_before']:>6} -> {p['ops_after']:<6} "
                     f"{_changed_text(p['changed'])}")
    return "\n".join(lines)


def _diff_text(entry):
    """``520 (rel 5.2e-04)``: an artefact's max |diff| and, beside it, that difference relative to
    the scale the tolerance uses, max(1, max |original output|) (``verify.verify``)."""
    rel = entry.get("max_rel_diff")
    if rel is None:
        return f"{entry['max_abs_diff']:.3g}"
    return f"{entry['max_abs_diff']:.3g} (rel {'0' if rel == 0 else f'{rel:.1e}'})"
