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

# INSTALLER=uv (the default): uv, installed into the venv by its pip (so nothing but Python 3.11 is
# needed), installs the same pins from the same places as pip would: scripts/uv_like_pip.py hands it
# pip's own index, extra indexes, find-links, constraint files, certificate and timeout, and afterwards
# puts in the wheel pip would have ranked first wherever uv took another index's wheel of the same
# version. It byte-compiles what it installs as pip does (--compile-bytecode: where
# PYTHONDONTWRITEBYTECODE is set, every process would otherwise compile torch and Airflow again). It
# downloads, unpacks and compiles in parallel, with about half pip's CPU time (benchmarks/setup_time.py
# times a fresh setup both ways side by side).
# INSTALLER=pip: plain pip, as before (`rm -rf .venv && make setup INSTALLER=pip`). Either way the venv
# is made by `python -m venv`, so `.venv/bin/python -m pip` works in it, and `pip check` must be clean.
INSTALLER ?= uv
UV_VERSION ?= 0.13.9
ifeq ($(INSTALLER),uv)
INSTALL = $(PY) scripts/uv_like_pip.py pip install --python $(PY) --compile-bytecode
else ifeq ($(INSTALLER),pip)
INSTALL = $(PY) -m pip install
else
$(error INSTALLER is uv or pip, not "$(INSTALLER)")
endif

# requirements-local.txt: the local SageMaker and the tests, on top of requirements.txt (the Airflow side)
# and requirements-synthetic-data.txt (what the local profile's Airflow tasks add)
# requirements-hf-inference.txt: the Hugging Face inference image's toolkit, beside the venv (see there)
$(VENV)/.installed: requirements.txt requirements-synthetic-data.txt requirements-local.txt constraints.txt requirements-hf-inference.txt scripts/uv_like_pip.py
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Python 3.11 is required (set PYTHON=...)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
ifeq ($(INSTALLER),uv)
	$(PY) -m pip install --quiet uv==$(UV_VERSION) || { echo "no uv $(UV_VERSION) from pip's index: make setup INSTALLER=pip"; exit 1; }
endif
	$(INSTALL) --quiet -r requirements-local.txt -c constraints.txt
	$(PY) -m pip check
	$(INSTALL) --quiet --no-deps --upgrade --target $(VENV)/hf-inference-toolkit -r requirements-hf-inference.txt
	touch $@

demo: setup
	$(PY) scripts/demo.py

# two workers (one a core on CI's two): a module stays on one worker, so its fixtures (a trained
# model, a whole-DAG run) are built once. Modules are handed out in collection order, longest first
# (tests/conftest.py), not xdist's default order by number of tests, which left the 6-minute cifar10
# module (3 tests) to run alone at the end: a full run's durations replayed both ways
# (scripts/replay_test_schedule.py) gave 2016 s against 2095 s
PYTEST_WORKERS ?= 2
PYTEST_XDIST = -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder
test: setup
	$(PY) -m pytest $(PYTEST_XDIST)

# everything but real training runs and whole-DAG runs: a quick loop while developing
test-fast: setup
	$(PY) -m pytest $(PYTEST_XDIST) -m "not slow and not e2e"

emulator: setup
	$(PY) -m include.emulator --port $(EMULATOR_PORT)

clean:
	rm -rf .emulator .airflow .demo .pytest_cache
