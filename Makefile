# The two quick-start commands: `make run` and `make test`.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv/bin

.PHONY: setup run test lint format bench clean

$(UV):
	python3 -m pip install --quiet --target .tools/lib uv==$(UV_VERSION)
	mkdir -p .tools/bin && ln -sf ../lib/bin/uv .tools/bin/uv

setup: $(UV)
	$(UV) sync --frozen --compile-bytecode

run: setup
	$(VENV)/jewelry-forecast demo
	exec $(VENV)/jewelry-forecast serve

test: setup lint
	$(VENV)/pytest

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

format:
	$(VENV)/ruff check --fix .
	$(VENV)/ruff format .

bench: setup
	$(VENV)/python bench/bench_fit.py

clean:
	rm -rf .venv .tools data .pytest_cache .ruff_cache .hypothesis
