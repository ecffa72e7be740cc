"""The figure gallery (``make figures``): every experiment's figures, from real runs.

``make(out_dir)`` runs each experiment with its defaults (seed 0) and writes its
figures (``plots.save``: the claims figure and one per series) into ``out_dir``;
the experiments that train a model run again with ``data=digits`` into
``out_dir/digits/``. It writes ``out_dir/index.md``, a Markdown page showing every
figure under its experiment's claim and verdict, and returns the payloads.
"""

import os

from tf1_repro import experiments, progress as progress_display

DIGITS = ("train-vs-inference", "variance-shift", "precise-bn", "mc-dropout")


def _relative(path, start):
    return os.path.relpath(path, start).replace(os.sep, "/")


def index_markdown(payloads, out_dir):
    """The gallery page: one section per run, its verdicts and figures (paths relative to out_dir)."""
    lines = ["# Figure gallery", "",
             "Made by `make figures` (`python scripts/make_figures.py --out docs/figures`) from real runs "
             "(seed 0, defaults). Each title states the claim and whether it held; closed forms are "
             "black lines or markers with their tolerance shaded.", ""]
    for payload in payloads:
        data = payload["params"].get("data")
        held = sum(c["holds"] for c in payload["claims"])
        heading = payload["experiment"] + (f" on {data}" if data == "digits" else "")
        lines += [f"## {heading}", "", f"{payload['claim']}: **{held}/{len(payload['claims'])} claims "
                  "hold**", ""]
        for path in payload.get("plots", []):
            lines.append(f"![{os.path.basename(path)}]({_relative(path, out_dir)})")
        lines.append("")
    return "\n".join(lines)


def make(out_dir, names=None, overrides=None, digits=DIGITS, seed=0, progress=None):
    """Run the experiments with figures into ``out_dir``; write index.md; return the payloads.

    ``names``: experiments to run (default all); ``overrides``: {name: {param: value}};
    ``digits``: experiments to run again with data=digits (into out_dir/digits).
    """
    names = list(experiments.NAMES if names is None else names)
    overrides = overrides or {}
    runs = [(n, dict(overrides.get(n, {})), out_dir) for n in names]
    runs += [(n, {**overrides.get(n, {}), "data": "digits"}, os.path.join(out_dir, "digits"))
             for n in digits]
    payloads = []
    with progress_display.resolve(progress)("figures", len(runs), "experiment") as bar:
        for name, settings, plot_dir in runs:
            payloads.append(experiments.run_experiment(name, settings, seed=seed, plot_dir=plot_dir,
                                                       log=bar.write))
            bar.update(1, last=name)
    with open(os.path.join(out_dir, "index.md"), "w", encoding="utf-8") as f:
        f.write(index_markdown(payloads, out_dir) + "\n")
    return payloads
