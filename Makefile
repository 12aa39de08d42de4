# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-spark bench bench-query bench-analysis clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hptrack demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-spark: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	$(BIN)/python -m pytest -q -m spark

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_write.py

bench-query: $(STAMP)
	$(BIN)/python benchmarks/bench_query.py

bench-analysis: $(STAMP)
	$(BIN)/python benchmarks/bench_analysis.py

clean:
	rm -rf $(VENV) .hptrack build *.egg-info

.PHONY: lint
lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/mypy
