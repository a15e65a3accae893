# Two commands for a fresh clone: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 4141
KEEP ?= 3

export KEDRO_DISABLE_TELEMETRY := 1
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo demo-data test lint viz serve mlflow notebook clean-outputs prune-versions

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[demo,serve,test,tracking,export]"
	touch $@

install: $(BIN)/.installed

# The demo dataset and a batch of new demo contacts are generated offline once;
# delete data/01_raw/* to remake them.
data/01_raw/labels.csv: | $(BIN)/.installed
	$(BIN)/kedro run --pipelines demo_data

data/01_raw/incoming/labels.csv: | data/01_raw/labels.csv
	$(BIN)/kedro run --pipelines demo_data --namespaces demo_incoming

demo-data: data/01_raw/labels.csv data/01_raw/incoming/labels.csv

# Train and evaluate on the demo data, then score the new batch with the model
# package; outputs go to data/local/ (the `local` environment).
demo: install demo-data
	$(BIN)/kedro run
	$(BIN)/kedro run --pipelines inference
	@cat "$$(ls -d data/local/08_reporting/summary.md/*/ | tail -n 1)summary.md"
	@cat "$$(ls -d data/local/08_reporting/drift_summary.md/*/ | tail -n 1)drift_summary.md"
	@echo "All outputs: data/local/ (versioned under <name>/<timestamp>/). Lineage: make viz"

# Two pytest-xdist workers: the suite is mostly one process at a time otherwise
# (tests/conftest.py keeps each shared project on one worker).
test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

viz: install
	$(BIN)/kedro viz run --no-browser --host 127.0.0.1 --port $(PORT)

# Serves the newest model package of the local environment on 127.0.0.1:$(PORT),
# 8000 unless PORT=... is given (tokens from MF_SERVE_TOKENS; without them, add
# ARGS=--insecure-local), with its Keras network or FORMAT=litert|onnx|<format>
# (from `kedro run --pipelines export`).
serve: PORT = 8000
serve: install
	$(BIN)/python -m multimodal_fusion serve --port $(PORT) $(ARGS) \
		--format $(or $(FORMAT),keras) \
		--package "$$(ls -d data/local/06_models/model_package/*/model_package | tail -n 1)"

# MLflow's UI on http://127.0.0.1:$(PORT) (5000 unless PORT=...), on the store of
# conf/<ENV>/mlflow.yml (ENV=local by default): every tracked `kedro run`. One
# server worker (MLflow starts 4, too many for 2 cores).
mlflow: PORT = 5000
mlflow: install
	PATH="$(abspath $(BIN)):$$PATH" MLFLOW_WORKERS=$${MLFLOW_WORKERS:-1} \
		$(BIN)/kedro mlflow ui --env $(or $(ENV),local) --host 127.0.0.1 --port $(PORT)

# JupyterLab on http://127.0.0.1:$(PORT) (8888 unless PORT=...), no browser, in
# notebooks/; installs the `notebooks` extra the first time.
notebook: PORT = 8888
notebook: $(BIN)/.notebooks
	$(BIN)/jupyter lab --no-browser --ip 127.0.0.1 --port $(PORT) \
		--ServerApp.root_dir=notebooks

$(BIN)/.notebooks: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e ".[notebooks]"
	touch $@

# Removes what the pipelines wrote in every environment (not the raw data).
clean-outputs:
	find data -mindepth 1 -maxdepth 1 ! -name 01_raw ! -name .gitkeep -exec rm -rf {} +

# Keeps the newest KEEP versions of every versioned output under data/ (every
# environment's).
prune-versions: install
	$(BIN)/python -m multimodal_fusion.prune --keep $(KEEP) data
