"""Figures that show each claim: verdicts in the titles, closed forms with tolerance bands, bars
for categories, the gallery page, and matplotlib's object API without pyplot's global state."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tf1_repro.experiments import gallery, plots
from tf1_repro.experiments.core import Claim, Series
import support

CLAIMS = [Claim("close", "", measured=1.02, expected=1.0, tolerance=0.05),
          Claim("far", "", measured=1.5, expected=1.0, tolerance=0.05),
          Claim("above", "", measured=3.0, expected=2.0, relation=">=")]


def _png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _has_colour(pixels, rgb, atol=40):
    return bool((np.abs(pixels - np.array(rgb)).max(axis=2) <= atol).any())


def test_claims_figure_colours_each_verdict(tmp_path):
    path = plots.claims_figure(str(tmp_path / "c.png"), "demo", "a statement", CLAIMS)
    pixels = _png(path)
    green, red = (0x2E, 0x7D, 0x32), (0xC6, 0x28, 0x28)
    assert _has_colour(pixels, green) and _has_colour(pixels, red)  # "close"/"above" hold, "far" fails
    only_good = plots.claims_figure(str(tmp_path / "g.png"), "demo", "a statement", CLAIMS[:1])
    assert not _has_colour(_png(only_good), red)


def test_series_figures_lines_bands_and_bars(tmp_path):
    line = Series([1, 10, 100], {"measured": [1.0, 0.31, 0.1], "theory": [1.0, 0.316, 0.1]},
                  "n", "y", log_x=True, log_y=True, theory=["theory"],
                  band={"theory": ([0.9, 0.28, 0.09], [1.1, 0.35, 0.11])}, claim="close")
    bars = Series([0, 1], {"measured": [2.9, 1.0], "closed form": [3.0, 1.0]}, "", "variance",
                  theory=["closed form"], band={"closed form": ([2.8, 0.95], [3.2, 1.05])},
                  categories=["moving", "prediction"], claim="far")
    paths = plots.save(str(tmp_path), "demo", {"line": line, "bars": bars}, claims=CLAIMS,
                       statement="a statement")
    assert [os.path.basename(p) for p in paths] == ["demo-claims.png", "demo-line.png", "demo-bars.png"]
    for p in paths:
        assert _png(p).shape[0] > 300


def test_plots_use_the_object_api_without_pyplot():
    code = ("import sys, tempfile\nfrom tf1_repro.experiments import plots\nfrom tf1_repro.experiments.core "
            "import Claim\nplots.claims_figure(tempfile.mktemp(suffix='.png'), 'x', 's', [Claim('a', '', 1.0, "
            "1.0, 0.1)])\nprint('matplotlib.pyplot' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=support.ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_gallery_index_shows_every_figure_under_its_verdict(tmp_path):
    payloads = gallery.make(str(tmp_path), names=["batch-size"],
                            overrides={"batch-size": {"sizes": "1,4,16"}, "precise-bn": {"steps": "30"}},
                            digits=["precise-bn"])
    index = (tmp_path / "index.md").read_text()
    assert "## batch-size\n" in index and "## precise-bn on digits\n" in index
    assert "**3/3 claims hold**" in index
    figures = [p for payload in payloads for p in payload["plots"]]
    assert len(figures) == 3 + 2  # batch-size: claims + 2 series; precise-bn: claims + 1 series
    assert os.path.dirname(figures[-1]) == str(tmp_path / "digits")
    for path in figures:
        relative = os.path.relpath(path, tmp_path)
        assert f"]({relative})" in index and os.path.exists(path)
