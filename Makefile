# Quickstart: `make run` (the main job) and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is pinned here (not in pyproject) to the CPU wheel that lies on this kind of machine's disk.
TORCH  ?= torch==2.13.0

.PHONY: run test bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

run: $(STAMP)
	$(VENV)/bin/magerl play --agent random --agent engine:easy --games 24 --seed 1

test: $(STAMP)
	scripts/install-test-tools.sh
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/engine_speed.py
	$(PY) bench/telemetry_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info
