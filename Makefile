# Two commands on a fresh machine with Python 3.11 and make:
#   make run-demo    make test
# The first run creates .venv/, installs requirements.txt and the package itself
# (editable, so `.venv/bin/tf1-repro` exists); a stamp file makes later runs skip
# that step until requirements.txt or pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_WORKERS ?= 2  # pytest-xdist processes for make test (the suite is CPU-bound: one per core)

.PHONY: venv run-demo test experiments compare bench bench-recalibrate bench-doctor bench-inference clean tensorboard figures screenshots

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	@touch $(STAMP)

run-demo: $(STAMP)
	$(PY) scripts/run_demo.py

experiments: $(STAMP)
	$(PY) -m tf1_repro experiment --all --out-dir runs/experiments --logdir runs/tensorboard --plot runs/plots

tensorboard: $(STAMP)
	@test -d runs/tensorboard || $(MAKE) experiments
	$(VENV)/bin/tensorboard --logdir runs/tensorboard --host 127.0.0.1 --port 6006

figures: $(STAMP)
	$(PY) scripts/make_figures.py --out docs/figures

screenshots: $(STAMP)
	$(PY) scripts/tensorboard_screenshots.py --out docs

compare: $(STAMP)
	$(PY) -m tf1_repro compare --json runs/compare.json

bench: $(STAMP)
	$(PY) -m tf1_repro bench --json runs/bench.json

bench-inference: $(STAMP)
	$(PY) -m tf1_repro bench-inference --json runs/bench_inference.json

bench-recalibrate: $(STAMP)
	$(PY) -m tf1_repro.bench.recalibrate --json runs/bench_recalibrate.json

bench-doctor: $(STAMP)
	$(PY) -m tf1_repro.bench.doctor --json runs/bench_doctor.json

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf runs .pytest_cache
