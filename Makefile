# Two commands on a fresh machine with Python 3.11 and make:
#   make run-demo    make test
# The first run creates .venv/ and installs requirements.txt; a stamp file makes
# later runs skip that step until requirements.txt changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv run-demo test experiments compare bench clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

run-demo: $(STAMP)
	$(PY) scripts/run_demo.py

experiments: $(STAMP)
	$(PY) -m tf1_repro experiment --all --out-dir runs/experiments --logdir runs/tensorboard --plot runs/plots

compare: $(STAMP)
	$(PY) -m tf1_repro compare --json runs/compare.json

bench: $(STAMP)
	$(PY) -m tf1_repro bench --json runs/bench.json

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf runs .pytest_cache
