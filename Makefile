# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each builds its own venv and installs the versions CI tested (constraints.txt).
PYTHON ?= python3
LOCK := constraints.txt
# make test: hptrack with every integration, the test and the lint tools
VENV := .venv
BIN := $(VENV)/bin
# make demo: the core and Optuna, nothing else
DEMO_VENV := .venv-demo
# make test-core: the core and the test runner, no integration's library
CORE_VENV := .venv-core

.PHONY: demo test test-core lint test-slow test-spark bench bench-query bench-analysis bench-report bench-plan bench-warm bench-refine constraints clean

# $(call install,VENV,EXTRAS): a venv holding hptrack (editable) with those extras, at the locked versions
define install
	test -d $(1) || $(PYTHON) -m venv $(1)
	$(1)/bin/pip install --quiet --upgrade pip
	$(1)/bin/pip install --quiet -c $(LOCK) -e '.[$(2)]'
	touch $(1)/.installed
endef

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(call install,$(VENV),dev)

$(DEMO_VENV)/.installed: pyproject.toml $(LOCK)
	$(call install,$(DEMO_VENV),demo)

$(CORE_VENV)/.installed: pyproject.toml $(LOCK)
	$(call install,$(CORE_VENV),test)

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/hptrack demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

test-core: $(CORE_VENV)/.installed
	$(CORE_VENV)/bin/python -m pytest -q -rs tests/core

test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m slow

test-spark: $(VENV)/.installed
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[dev,spark]'
	$(BIN)/python -m pytest -q -m spark

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_write.py

bench-query: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_query.py

bench-analysis: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_analysis.py

# 200 searches and a 100,000-trial search, beside optuna.visualization on the same trials
bench-report: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_report.py

# cost planning: record small searches, plan bigger ones, run them, estimated vs actual time
bench-plan: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_plan.py

# trials to a target, cold vs warm-started TPE; fold fits of an extended and a killed grid with skip_done
bench-warm: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_warm.py

# coarse-then-refined against more coarse search, 10 seeds on 5 scikit-learn tasks (10-15 minutes)
bench-refine: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_refine.py

# after a dependency change: the versions of a passing `make test` venv become the lock
constraints: $(VENV)/.installed
	{ sed -n '1,/^# Regenerate/p' $(LOCK); $(BIN)/pip freeze --exclude-editable | grep -iv '^hptrack' | sort -f; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) $(DEMO_VENV) $(CORE_VENV) .hptrack build *.egg-info

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/mypy
