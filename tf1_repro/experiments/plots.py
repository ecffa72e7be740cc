"""PNG figures of an experiment: its claims, and each series next to its closed form.

Uses matplotlib's object API only (a ``Figure`` with the Agg canvas, no pyplot, no
global state), when matplotlib is installed (an optional extra).

* ``NAME-claims.png``: every claim of the experiment. Claims with a tolerance are
  drawn as (measured - expected) / tolerance, so the band [-1, 1] is where a claim
  holds; claims with a relation (>=, <=) as measured / expected on a log axis, with
  the side where it holds shaded. Each row says ✓ or ✗.
* ``NAME-SERIES.png``: one per series. Measured values as markers, closed forms
  (``Series.theory``) as lines with their tolerance band (``Series.band``),
  horizontal references (``Series.reference``), bars where x are categories
  (``Series.categories``), log axes where the series asks for them. The title
  states the claim the figure shows (``Series.claim``) and whether it held.
"""

import math
import os
import textwrap

INSTALL_HINT = ("plots need matplotlib, an optional extra: .venv/bin/pip install matplotlib "
                "(or pip install -r requirements-plots.txt)")
HOLDS, FAILS = "#2e7d32", "#c62828"


def available():
    try:
        import matplotlib  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        return False
    return True


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
    from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _mark(holds):
    return "✓ holds" if holds else "✗ fails"


def _claim_dict(claim):
    return claim if isinstance(claim, dict) else claim.to_dict()


def _number(value):
    return float(value) if not isinstance(value, str) else float("nan")


def _title(fig, name, statement, claim=None, subject=None):
    first = f"{name}: {statement}"
    lines = textwrap.wrap(first, 95)[:2]
    if claim is not None:
        lines.append(f"claim {claim['id']}: {_mark(claim['holds'])}")
    elif subject:
        lines.append(subject)
    fig.suptitle("\n".join(lines), fontsize=9.5, x=0.01, ha="left",
                 color=(HOLDS if claim["holds"] else FAILS) if claim is not None else "black")


def claims_figure(path, name, statement, claims):
    """The experiment's claims as one figure (see the module docstring); returns ``path``."""
    claims = [_claim_dict(c) for c in claims]
    bands = [c for c in claims if not c.get("relation")]
    relations = [c for c in claims if c.get("relation")]
    panels = [p for p in (bands, relations) if p]
    height = 1.4 + 0.45 * len(claims) + 0.5 * len(panels)
    fig = _figure(9, height)
    held = sum(c["holds"] for c in claims)
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [max(1, len(p)) for p in panels]})[:, 0]
    for ax, group in zip(axes, panels):
        labels = [f"{'✓' if c['holds'] else '✗'} {c['id']}" for c in group]
        ys = list(range(len(group)))[::-1]
        if group is bands:
            values = []
            for c in group:
                tol, measured, expected = (_number(c[k]) for k in ("tolerance", "measured", "expected"))
                values.append((measured - expected) / tol if tol > 0 else
                              (0.0 if measured == expected else math.copysign(2.0, measured - expected)))
            ax.axvspan(-1, 1, color=HOLDS, alpha=0.12, label="within tolerance")
            ax.axvline(0, color="black", lw=1, label="expected (closed form)")
            limit = max(1.5, *(abs(v) * 1.15 for v in values if math.isfinite(v)))
            ax.set_xlim(-limit, limit)
            ax.set_xlabel("(measured - expected) / tolerance")
            for y, v, c in zip(ys, values, group):
                ax.plot([v], [y], "o", color=HOLDS if c["holds"] else FAILS, ms=8)
                ax.annotate(f"{_number(c['measured']):.4g} vs {_number(c['expected']):.4g} "
                            f"± {_number(c['tolerance']):.2g}", (v, y), xytext=(8, 5),
                            textcoords="offset points", fontsize=7.5)
        else:
            ratios = [max(1e-12, abs(_number(c["measured"]))) / max(1e-12, abs(_number(c["expected"])))
                      for c in group]
            ax.set_xscale("log")
            lo = min(0.5, *(r / 3 for r in ratios))
            hi = max(2.0, *(r * 3 for r in ratios))
            ax.set_xlim(lo, hi)
            ax.axvline(1, color="black", lw=1, label="bound")
            for y, r, c in zip(ys, ratios, group):
                side = (1, hi) if c["relation"] == ">=" else (lo, 1)
                ax.fill_betweenx([y - 0.4, y + 0.4], *side, color=HOLDS, alpha=0.12)
                ax.plot([r], [y], "o", color=HOLDS if c["holds"] else FAILS, ms=8)
                ax.annotate(f"{_number(c['measured']):.4g} {c['relation']} {_number(c['expected']):.4g}",
                            (r, y), xytext=(8, 5), textcoords="offset points", fontsize=7.5)
            ax.set_xlabel("measured / bound (log; shaded: where the claim holds)")
        ax.set_yticks(ys)
        ax.set_yticklabels(labels, fontsize=8)
        for tick, c in zip(ax.get_yticklabels(), group):
            tick.set_color(HOLDS if c["holds"] else FAILS)
        ax.set_ylim(-0.7, len(group) - 0.3)
        ax.grid(axis="x", alpha=0.3)
    _title(fig, name, statement, subject=f"{held}/{len(claims)} claims hold")
    fig.tight_layout()
    fig.savefig(path)
    return path


def series_figure(path, name, key, s, claim=None, statement=""):
    """One series as a figure (see the module docstring); returns ``path``."""
    fig = _figure(7, 4.6)
    ax = fig.subplots()
    measured = [label for label in s.lines if label not in s.theory]
    if s.categories:
        width = 0.8 / max(1, len(measured))
        for i, label in enumerate(measured):
            xs = [j + (i - (len(measured) - 1) / 2) * width for j in range(len(s.x))]
            ax.bar(xs, s.lines[label], width * 0.9, label=label, alpha=0.85)
        for label in s.theory:
            lower, upper = s.band.get(label, (None, None))
            yerr = None
            if lower is not None:
                values = s.lines[label]
                yerr = [[v - lo for v, lo in zip(values, lower)], [hi - v for v, hi in zip(values, upper)]]
            ax.errorbar(range(len(s.x)), s.lines[label], yerr=yerr, fmt="_", color="black", ms=30,
                        mew=2, capsize=8, label=label + (" (± tolerance)" if yerr else ""))
        ax.set_xticks(range(len(s.x)))
        ax.set_xticklabels(s.categories, fontsize=8)
    else:
        for label in s.theory:
            ax.plot(s.x, s.lines[label], "-", color="black", lw=1.5, label=label)
            if label in s.band:
                lower, upper = s.band[label]
                ax.fill_between(s.x, lower, upper, color="black", alpha=0.12,
                                label=f"{label}: tolerance")
        for label in measured:
            ax.plot(s.x, s.lines[label], "o-" if len(s.x) <= 40 else "-", ms=5, lw=1, alpha=0.9,
                    label=label)
        if s.log_x:
            ax.set_xscale("log", base=2 if all(float(v).is_integer() for v in s.x) else 10)
    for label, (y, half) in s.reference.items():
        ax.axhline(y, color="gray", ls="--", lw=1, label=label)
        if half:
            ax.axhspan(y - half, y + half, color="gray", alpha=0.12)
    if s.log_y:
        ax.set_yscale("log")
    elif s.symlog_y:
        ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel(s.x_label)
    ax.set_ylabel(s.y_label)
    ax.grid(alpha=0.3)
    if s.categories:  # below the axes: bars fill the whole height
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    else:
        ax.legend(fontsize=8)
    _title(fig, name, statement, claim=claim, subject=key.replace("_", " "))
    fig.tight_layout()
    fig.savefig(path)
    return path


def save(plot_dir, name, series, log=print, claims=None, statement=""):
    """The claims figure (when ``claims`` are given) and one PNG per series in ``plot_dir``.

    Returns the paths (empty, with a note, without matplotlib).
    """
    if not available():
        if log:
            log(INSTALL_HINT)
        return []
    os.makedirs(plot_dir, exist_ok=True)
    by_id = {c["id"]: c for c in (_claim_dict(c) for c in claims or [])}
    paths = []
    if claims:
        paths.append(claims_figure(os.path.join(plot_dir, f"{name}-claims.png"), name, statement,
                                   claims))
    for key, s in series.items():
        paths.append(series_figure(os.path.join(plot_dir, f"{name}-{key}.png"), name, key, s,
                                   by_id.get(s.claim), statement))
    return paths
