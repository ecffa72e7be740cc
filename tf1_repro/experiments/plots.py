"""PNG figures of an experiment's series, when matplotlib is installed (an optional extra)."""

import os

INSTALL_HINT = ("plots need matplotlib, an optional extra: .venv/bin/pip install matplotlib "
                "(or pip install -r requirements-plots.txt)")


def available():
    try:
        import matplotlib  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        return False
    return True


def save(plot_dir, name, series, log=print):
    """One PNG per series in ``plot_dir``; returns the paths (empty, with a note, without matplotlib)."""
    if not available():
        if log:
            log(INSTALL_HINT)
        return []
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    os.makedirs(plot_dir, exist_ok=True)
    paths = []
    for key, s in series.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, values in s.lines.items():
            ax.plot(s.x, values, label=label, marker="o" if len(s.x) <= 12 else None)
        ax.set_xlabel(s.x_label)
        ax.set_ylabel(s.y_label)
        if s.log_x:
            ax.set_xscale("log")
        if s.log_y:
            ax.set_yscale("log")
        ax.set_title(f"{name}: {key}")
        ax.legend()
        ax.grid(alpha=0.3)
        path = os.path.join(plot_dir, f"{name}-{key}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
