# hookcast: `make run` serves from this checkout, `make test` runs the whole suite.
# Both create .venv on first use. The venv's Python is 3.12 or 3.13, whichever is
# found first (hookcast needs 3.12+: PyAV 19, which muxes recordings, requires it).

VENV   := .venv
BIN    := $(VENV)/bin
PYTHON ?= $(shell for p in python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) \
            python3.13 python3; do \
            $$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { echo $$p; break; }; \
          done)

.PHONY: run test lint bench bench-fanout bench-ingest bench-rest bench-hooks bench-recording bench-vod bench-pull bench-cluster bench-whip bench-outbox clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "make: no Python >= 3.12 found; install python3.12" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/hookcast serve --home $(CURDIR)

# The suite runs inside a private network namespace when it can (loopback only),
# so no test can reach any other address; tests/isolated.sh says when it cannot.
# What needs the network happens first: the Web SDK from npm, and the wheel built and
# installed into a fresh venv outside the checkout (tests/test_wheel.py serves from it).
test: $(VENV)/.test-installed
	sh tests/e2e/install-websdk.sh && sh tests/e2e/install-whep.sh
	sh tests/wheel/install.sh $(BIN)/python
	sh tests/isolated.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (bench/README.md), loopback only (the tests' namespace); they print
# figures and ratios measured side by side, they assert nothing. `make bench` runs all
# ten (about 50 minutes); BENCH_ARGS go to fanout, ingest, recording, vod, pull,
# cluster, whip and outbox ("--seconds 5").
bench: bench-fanout bench-ingest bench-rest bench-hooks bench-recording bench-vod bench-pull bench-cluster bench-whip bench-outbox

bench-fanout: $(VENV)/.run-installed
	sh tests/isolated.sh $(BIN)/python bench/fanout.py $(BENCH_ARGS)

bench-ingest: $(VENV)/.run-installed
	sh tests/isolated.sh $(BIN)/python bench/ingest.py $(BENCH_ARGS)

bench-rest: $(VENV)/.run-installed
	sh tests/isolated.sh $(BIN)/python bench/rest.py

bench-hooks: $(VENV)/.run-installed
	sh tests/isolated.sh $(BIN)/python bench/hooks.py

bench-recording: $(VENV)/.run-installed
	sh tests/isolated.sh $(BIN)/python bench/recording.py $(BENCH_ARGS)

bench-vod: $(VENV)/.run-installed
	sh tests/isolated.sh $(BIN)/python bench/vod.py $(BENCH_ARGS)

bench-pull: $(VENV)/.run-installed
	sh tests/isolated.sh $(BIN)/python bench/pull.py $(BENCH_ARGS)

bench-cluster: $(VENV)/.run-installed
	sh tests/isolated.sh $(BIN)/python bench/cluster.py $(BENCH_ARGS)

bench-whip: $(VENV)/.run-installed
	sh tests/isolated.sh $(BIN)/python bench/whip.py $(BENCH_ARGS)

bench-outbox: $(VENV)/.run-installed
	sh tests/isolated.sh $(BIN)/python bench/outbox.py $(BENCH_ARGS)

# mypy cannot follow the core/ -> hookcast mapping of the editable install, so it checks
# a tree of links laid out as the wheel installs it.
TYPECHECK := .cache/typecheck
lint: $(VENV)/.test-installed
	$(BIN)/ruff check core plugins tests bench setup.py
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/hookcast
	for f in core/*; do ln -s "$(CURDIR)/$$f" $(TYPECHECK)/hookcast/; done
	ln -s "$(CURDIR)/plugins" $(TYPECHECK)/hookcast/plugins
	cd $(TYPECHECK) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p hookcast

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(TYPECHECK) build
