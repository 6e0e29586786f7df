# Each target installs what it needs into a local venv (.venv) first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test test-fast lint format demo bench clean

# Everything, as CI runs it: browsers, real runpushy processes, the bench smoke.
test: $(VENV)/.installed
	$(PY) -m pytest

# The inner loop (under a minute): unit and in-process tests only, no browser,
# no runpushy process, no benchmark. A test file joins by being named
# *_unit.py or by being listed in FAST_TESTS; keep it in-process and quick.
FAST_TESTS = $(wildcard tests/*_unit.py tests/gateway/*_unit.py) \
	tests/test_conf.py tests/test_settings_table.py tests/test_checks.py \
	tests/test_deploy_checks.py tests/test_site_checks.py tests/test_docs.py \
	tests/test_messages.py tests/test_object_urls.py tests/test_visibility_fields.py \
	tests/test_authorization.py tests/test_site_get.py \
	tests/test_publishing.py tests/test_publish_refusals.py \
	tests/test_versions_publish.py tests/test_versions_epochs.py \
	tests/test_live_tag.py tests/test_live_admin.py tests/test_testing_helpers.py \
	tests/test_bench_client.py tests/test_bench_report.py

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not browser and not slow" $(FAST_TESTS)

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
