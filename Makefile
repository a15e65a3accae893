# Two commands for a fresh clone: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 4141

export KEDRO_DISABLE_TELEMETRY := 1
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo demo-data test lint viz clean-outputs

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[demo,test]"
	touch $@

install: $(BIN)/.installed

# The demo dataset is generated offline once; delete data/01_raw/* to remake it.
data/01_raw/labels.csv: | $(BIN)/.installed
	$(BIN)/kedro run --pipeline demo_data

demo-data: data/01_raw/labels.csv

demo: install demo-data
	$(BIN)/kedro run
	@cat "$$(ls -d data/08_reporting/summary.md/*/ | tail -n 1)summary.md"
	@echo "All outputs: data/ (versioned under <name>/<timestamp>/). Lineage: make viz"

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

viz: install
	$(BIN)/kedro viz run --no-browser --host 127.0.0.1 --port $(PORT)

clean-outputs:
	find data/02_intermediate data/03_primary data/04_feature data/05_model_input \
	  data/06_models data/07_model_output data/08_reporting -mindepth 1 \
	  ! -name .gitkeep -exec rm -rf {} +
