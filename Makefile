# Two commands, each self-contained from a fresh clone:
#   make repro   set up .venv/ and run the whole DVC pipeline (dvc repro)
#   make test    set up .venv/ and run the test suite
# and the fault suite (kills, a full disk, queued experiments, interrupted transfers, corruption):
#   make faults  about 20 minutes on 2 cores
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stage commands call `python`: put the venv first so DVC runs them with it.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test faults

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

repro: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/python -m pytest

faults: setup
	$(BIN)/python -m pytest tests/faults
