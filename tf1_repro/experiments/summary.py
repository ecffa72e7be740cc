"""What ``experiment`` prints and writes around the experiments' own results: the list of
experiments (``--list``) and the summary of a run of all of them (``--all [--out-dir DIR]``).

``format_list()`` and ``format_summary(payloads)`` return the text the command prints;
``write_summary(payloads, out_dir)`` writes ``NAME.json`` per experiment, ``summary.json`` and
``summary.md`` into ``out_dir`` and returns the line that says so.
"""

import json
import os

from tf1_repro import experiments

HEADERS = ["experiment", "claim", "measured", "expected", "tolerance", "holds"]


def format_list():
    """Every experiment with its claim and its parameters' defaults, two lines each."""
    width = max(len(n) for n in experiments.NAMES)
    lines = []
    for name in experiments.NAMES:
        e = experiments.get(name)
        params = ", ".join(f"{p.name}={p.default}" for p in e.params)
        lines.append(f"{name:<{width}}  {e.claim}\n{'':<{width}}  params: {params}")
    return "\n".join(lines)


def _held(rows):
    return sum(r[-1] == "✓" for r in rows)


def format_summary(payloads):
    """``Summary: H/N claims hold`` and the table of every claim of ``payloads``."""
    rows = experiments.summary_rows(payloads)
    return (f"Summary: {_held(rows)}/{len(rows)} claims hold\n"
            + experiments.format_table(HEADERS, rows))


def write_summary(payloads, out_dir):
    """Write out_dir/NAME.json (one per payload), summary.json and summary.md; returns the line
    that names them."""
    rows = experiments.summary_rows(payloads)
    os.makedirs(out_dir, exist_ok=True)
    for payload in payloads:
        _write_json(os.path.join(out_dir, payload["experiment"] + ".json"), payload)
    _write_json(os.path.join(out_dir, "summary.json"),
                {"claims_total": len(rows), "claims_holding": _held(rows),
                 "rows": [dict(zip(HEADERS, r)) for r in rows]})
    with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as f:
        f.write("| " + " | ".join(HEADERS) + " |\n|" + "---|" * len(HEADERS) + "\n")
        for r in rows:
            f.write("| " + " | ".join(experiments.format_value(v) for v in r) + " |\n")
    return f"wrote {out_dir}/summary.md, summary.json and one JSON per experiment"


def _write_json(path, payload):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
