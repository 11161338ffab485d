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

# A short local training run: learner, one worker and the evaluator on loopback.
run: $(STAMP)
	$(VENV)/bin/magerl train --updates 12 --max-samples-per-batch 256 --checkpoint-every 4 \
	  --eval-every 4 --eval-games 4 --eval-opponent random --eval-opponent engine:easy

test: $(STAMP)
	scripts/install-test-tools.sh
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/engine_speed.py
	$(PY) bench/telemetry_overhead.py
	$(PY) bench/worker_overhead.py
	$(PY) bench/learner_ceiling.py
	$(PY) bench/decision_latency.py

clean:
	rm -rf $(VENV) build *.egg-info
