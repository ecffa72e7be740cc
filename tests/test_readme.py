"""The README's import paths work: every ``from tf1_repro... import ...`` it shows in backticks or in a
Python block imports (a moved module would break a newcomer's first line)."""

import importlib
import importlib.util
import os
import re

import support

README = os.path.join(support.ROOT, "README.md")
IMPORT = re.compile(r"^from (tf1_repro[\w.]*) import ([\w, ]+)$")


def _imports():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    found = set(re.findall(r"`(from tf1_repro[\w.]* import [\w, ]+)`", text))
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        found.update(line.strip() for line in block.splitlines() if IMPORT.match(line.strip()))
    return sorted(found)


def test_the_readme_shows_the_tools_import_paths():
    shown = {IMPORT.match(line).group(1) for line in _imports()}
    assert {"tf1_repro.tools.finder", "tf1_repro.tools.doctor", "tf1_repro.tools.inference",
            "tf1_repro.tools.recalibrate", "tf1_repro.tools.migrate", "tf1_repro.graph",
            "tf1_repro.graph.errors"} <= shown


def test_every_import_the_readme_shows_works():
    lines = _imports()
    assert len(lines) >= 8
    for line in lines:
        module, names = IMPORT.match(line).groups()
        loaded = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(loaded, name) or importlib.util.find_spec(f"{module}.{name}"), line
