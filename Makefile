# The two commands a new user needs are `make demo` and `make test`;
# both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint tox bench bench-quick clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,cron]' ruff
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m greenworks demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check greenworks tests examples benchmarks
	$(PY) -m ruff format --check greenworks tests examples benchmarks

tox: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check tox
	$(PY) -m tox -e py311-geventmin,py311-geventlatest,lint

# `make bench` also installs the peers it compares with and matplotlib (the `bench` extra);
# `make bench-quick` (CI) needs none of them.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP) setup.py
	$(PY) -m pip install -q --disable-pip-version-check -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) benchmarks/run.py --quick

clean:
	rm -rf $(VENV) .tox build dist *.egg-info .pytest_cache .hypothesis

# mypy --strict on greenworks/, configured by mypy.ini (zero errors is the rule).
.PHONY: typecheck
typecheck: $(STAMP)
	$(PY) -m mypy
