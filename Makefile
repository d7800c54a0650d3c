# The two quick-start commands: `make run` and `make test`.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv/bin

.PHONY: setup chromium run test lint format bench fuzz container-check clean

$(UV):
	python3 -m pip install --quiet --target .tools/lib uv==$(UV_VERSION)
	mkdir -p .tools/bin && ln -sf ../lib/bin/uv .tools/bin/uv

setup: $(UV)
	$(UV) sync --frozen --compile-bytecode

run: setup
	$(VENV)/jewelry-forecast demo
	exec $(VENV)/jewelry-forecast serve

# The dashboard's browser tests drive Debian's Chromium: Playwright's own browser download
# cannot run on machines that reach only package registries.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

chromium: $(CHROMIUM)

test: chromium setup lint
	$(VENV)/pytest

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

format:
	$(VENV)/ruff check --fix .
	$(VENV)/ruff format .

# A longer schemathesis campaign against a live server (2 workers, demo data, real keys).
FUZZ_PORT ?= 8765
FUZZ_EXAMPLES ?= 300
FUZZ_KEY := fuzz-admin-key-0123456789abcdef
fuzz: setup
	rm -rf .fuzz && mkdir -p .fuzz
	JEWELRY_DATA_DIR=.fuzz JEWELRY_ADMIN_API_KEY=$(FUZZ_KEY) $(VENV)/jewelry-forecast demo >/dev/null
	JEWELRY_DATA_DIR=.fuzz JEWELRY_ADMIN_API_KEY=$(FUZZ_KEY) $(VENV)/jewelry-forecast serve \
		--port $(FUZZ_PORT) --workers 2 2>.fuzz/server.log & echo $$! > .fuzz/pid
	for _ in $$(seq 1 100); do \
		curl -sf http://127.0.0.1:$(FUZZ_PORT)/health/ready >/dev/null && break; sleep 0.2; done
	JEWELRY_FUZZ_URL=http://127.0.0.1:$(FUZZ_PORT) JEWELRY_FUZZ_ADMIN_KEY=$(FUZZ_KEY) \
		JEWELRY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/pytest tests/fuzz -p no:cacheprovider -q; \
		status=$$?; kill $$(cat .fuzz/pid); \
		grep -c '"status":5' .fuzz/server.log | sed 's/^/5xx responses logged by the server: /'; \
		exit $$status

# Every benchmark under bench/ against references measured in the same run; writes
# bench/RESULTS.md. The load comes from wrk, Debian's package, installed like chromium above.
# A short run: make bench BENCH_ARGS=--quick (see python -m bench --help).
WRK := /usr/bin/wrk
BENCH_ARGS ?=

$(WRK):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk

bench: setup $(WRK)
	$(VENV)/python -m bench $(BENCH_ARGS)

# Build the image with buildah and run it with podman, as CI does: no Docker engine needed
# (root; installs the tools with apt-get; see tests/container/check.py).
container-check:
	python3 tests/container/check.py

clean:
	rm -rf .venv .tools .fuzz data .pytest_cache .ruff_cache .hypothesis
