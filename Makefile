# make test: build .venv from pyproject.toml if needed, then run the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-pg lint lab report clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest

# The same suite with the PostgreSQL variants too, on a throwaway local cluster.
test-pg: $(STAMP)
	.ci/postgres.sh $(MAKE) test

lint: $(STAMP)
	$(BIN)/ruff check qanalytics tests benchmarks
	$(BIN)/mypy

lab: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,lab]'
	$(BIN)/jupyter lab notebooks/

report: $(STAMP)
	mkdir -p reports
	$(BIN)/qanalytics report --db data/sample.db --since 7d --now latest -o reports/sample-report.html

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
