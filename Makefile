# The two commands of the README: `make run` (set up + run the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
UI_PORT ?= 3000
MLFLOW_PORT ?= 5000
# Where links point (Dagster metadata -> MLflow run, MLflow run -> Dagster run, the CLI's output).
export PRUNE_DAGSTER_UI ?= http://$(HOST):$(UI_PORT)
export PRUNE_MLFLOW_UI ?= http://$(HOST):$(MLFLOW_PORT)

.PHONY: run test lint ui mlflow-ui docs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU wheel of torch first: left to itself pip would pick a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/prune-dagster run

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

ui: $(BIN)/.installed
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster dev -w workspace.yaml -h $(HOST) -p $(UI_PORT)

mlflow-ui: $(BIN)/.installed
	$(BIN)/mlflow ui --backend-store-uri $$($(BIN)/python -m prune_dagster.paths tracking-uri) -h $(HOST) -p $(MLFLOW_PORT)

docs: $(BIN)/.installed  # the step tables of README.md and docs/steps.md, from core/pipeline.py
	$(BIN)/python -m prune_dagster.core.pipeline_doc .

clean:
	rm -rf data
