# Each target installs what it needs into a local venv (.venv) first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test lint format demo bench clean

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

$(VENV)/.installed: setup.py requirements-test.txt sample_site/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e . -r requirements-test.txt
	touch $@

# The benchmark (issues 6 and 12): pushy's gateway against four peers (node.js ws,
# a minimal gevent floor, Django Channels with defaults and tuned); the node.js
# peer's packages are installed by the harness on first use (npm ci).
# Writes bench/results/: RESULTS.md, results.json and results.png.
# Options go in BENCH_ARGS, e.g. make bench BENCH_ARGS="--servers floor,pushy".
bench: $(VENV)/.installed $(VENV)/.bench-installed
	$(PY) -m bench $(BENCH_ARGS)

$(VENV)/.bench-installed: bench/requirements.txt
	$(PY) -m pip install --quiet -r bench/requirements.txt
	touch $@

# The live demo (README): Redis (started if none answers), the sample site and
# runpushy; prints the URL to open; Ctrl-C stops everything.
demo: $(VENV)/.installed $(VENV)/.demo-installed
	$(PY) sample_site/demo.py

$(VENV)/.demo-installed: sample_site/requirements.txt
	$(PY) -m pip install --quiet -r sample_site/requirements.txt
	touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info
