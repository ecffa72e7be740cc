"""Named feed_dict experiments, one per claim of the article.

``run_experiment(name, overrides, seed)`` returns the JSON payload::

    {"experiment", "params", "seed", "claims": [{"id", "statement", "measured", "expected",
     "tolerance", "holds"[, "relation"]}], "series": {...}, "table": {...}, "notes": [...]}

``format_result(payload)`` prints the table first, then each claim with a tick
or a cross.
"""

import importlib
import time

from tf1_repro.experiments.core import REGISTRY, Claim, Experiment, Param, Result, Series

MODULES = ("ema_bias", "batch_size", "train_vs_inference", "dropout_scaling", "mc_dropout",
           "variance_shift", "precise_bn")
for _module in MODULES:
    importlib.import_module(f"tf1_repro.experiments.{_module}")

NAMES = list(REGISTRY)  # in MODULES order


def get(name):
    """The experiment called ``name``; ``ValueError`` listing the names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"experiment: NAME must be one of {', '.join(NAMES)}, got {name!r}")
    return REGISTRY[name]


def run_experiment(name, overrides=None, seed=0, bn=None, logdir=None, plot_dir=None, log=None):
    """Run one experiment; ``bn`` replaces the article's layer (it must make the same names)."""
    from tf1_repro.layers.bn import bn_layer  # pylint: disable=import-outside-toplevel
    experiment = get(name)
    params = experiment.resolve(overrides)
    started = time.perf_counter()
    result = experiment.run(params, seed, bn or bn_layer)
    payload = {
        "experiment": name,
        "claim": experiment.claim,
        "params": params,
        "seed": seed,
        "claims": [c.to_dict() for c in result.claims],
        "series": {k: s.to_dict() for k, s in result.series.items()},
        "table": {"headers": result.headers, "rows": [[_cell(v) for v in r] for r in result.rows]},
        "notes": result.notes,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if logdir:
        from tf1_repro.experiments import tensorboard  # pylint: disable=import-outside-toplevel
        payload["logdir"] = tensorboard.write_result(logdir, name, result)
    if plot_dir:
        from tf1_repro.experiments import plots  # pylint: disable=import-outside-toplevel
        payload["plots"] = plots.save(plot_dir, name, result.series, log=log, claims=result.claims,
                                      statement=experiment.claim)
    return payload


def _cell(value):
    if hasattr(value, "item"):
        value = value.item()
    return value


def format_value(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(headers, rows):
    cells = [[format_value(h) for h in headers]] + [[format_value(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_claim(c):
    relation = c.get("relation")
    if relation:
        rule = f"measured {c['measured']:.6g} {relation} expected {c['expected']:.6g}"
    else:
        rule = (f"measured {c['measured']:.6g}, expected {c['expected']:.6g} ± "
                f"{c['tolerance']:.3g}") if isinstance(c["measured"], float) else \
            f"measured {c['measured']}, expected {c['expected']} ± {c['tolerance']}"
    return f"{'✓' if c['holds'] else '✗'} {c['id']}: {rule}\n    {c['statement']}"


def format_result(payload):
    params = ", ".join(f"{k}={v}" for k, v in payload["params"].items())
    lines = [f"{payload['experiment']} ({params}; seed {payload['seed']}; "
             f"{payload['seconds']:.1f} s)", "", format_table(**payload["table"]), ""]
    lines += payload["notes"] + ([""] if payload["notes"] else [])
    lines += [format_claim(c) for c in payload["claims"]]
    return "\n".join(lines)


def summary_rows(payloads):
    """One row per claim: experiment, claim id, measured, expected, tolerance/relation, holds."""
    rows = []
    for p in payloads:
        for c in p["claims"]:
            rule = c.get("relation") or f"± {c['tolerance']:.3g}"
            rows.append([p["experiment"], c["id"], c["measured"], c["expected"], rule,
                         "✓" if c["holds"] else "✗"])
    return rows


__all__ = ["Claim", "Experiment", "Param", "Result", "Series", "NAMES", "get", "run_experiment",
           "format_result", "format_table", "format_value", "summary_rows"]
