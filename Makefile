# Quickstart: `make demo` (sets up, then runs the CIFAR-10 pipeline on the local SageMaker) and
# `make test` (sets up, then runs every test). Both need only Python 3.11 on the machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
EMULATOR_PORT ?= 4566
export PYTHONPATH := $(CURDIR)

.PHONY: setup demo test test-fast emulator clean

setup: $(VENV)/.installed
	@$(PY) -m include.emulator.archives  # warns where tarfile's data filter is bypassable (CVE-2025-4517)

# requirements-local.txt: the local SageMaker and the tests, on top of requirements.txt (the Airflow side)
# and requirements-synthetic-data.txt (what the local profile's Airflow tasks add)
# requirements-hf-inference.txt: the Hugging Face inference image's toolkit, beside the venv (see there)
$(VENV)/.installed: requirements.txt requirements-synthetic-data.txt requirements-local.txt constraints.txt requirements-hf-inference.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Python 3.11 is required (set PYTHON=...)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-local.txt -c constraints.txt
	$(PY) -m pip check
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(VENV)/hf-inference-toolkit -r requirements-hf-inference.txt
	touch $@

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest

# everything but real training runs and whole-DAG runs: a quick loop while developing
test-fast: setup
	$(PY) -m pytest -m "not slow and not e2e"

emulator: setup
	$(PY) -m include.emulator --port $(EMULATOR_PORT)

clean:
	rm -rf .emulator .airflow .demo .pytest_cache
