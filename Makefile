# The two commands a new user needs are `make demo` and `make test`;
# both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-py313 lint tox bench bench-quick clean

# One line of progress instead of a silent quarter minute while pip runs (first use only).
$(STAMP): setup.py
	@echo "installing greenworks and its test, docs and packaging tools into $(VENV) (first run only) ..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -U pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test,cron]' ruff
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m greenworks demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest

# The suite on Python 3.13 (Debian trixie's python3) in a debootstrap chroot, with the oldest
# supported gevent as well: root, and a few minutes more on first use (.ci/other-python --help).
test-py313:
	bash .ci/other-python trixie --gevent-min

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
	rm -rf $(VENV) .tox build dist *.egg-info .pytest_cache .hypothesis docs/_build

# mypy --strict on greenworks/, configured by mypy.ini (zero errors is the rule).
.PHONY: typecheck
typecheck: $(STAMP)
	$(PY) -m mypy

# HTML into docs/_build/html with warnings as errors, then every link inside the docs checked
# (docs/_ext/check_links.py: the built pages cannot reach the internet, so only local links).
.PHONY: docs
docs: $(STAMP)
	rm -rf docs/_build/html
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	$(PY) docs/_ext/check_links.py docs/_build/html

# Build the sdist and the wheel into a temporary directory, check them with twine, remove them.
.PHONY: dist
dist: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		$(PY) -m build --outdir "$$tmp" . >"$$tmp/build.log" 2>&1 || { cat "$$tmp/build.log"; exit 1; } && \
		ls "$$tmp"/*.whl "$$tmp"/*.tar.gz && $(PY) -m twine check --strict "$$tmp"/*.whl "$$tmp"/*.tar.gz
