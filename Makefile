# One venv in .venv; every target installs what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PROMPT ?= Rewrite this Python function with type hints and a docstring, keeping the logic:\n\ndef moving_average(values, window):\n    result = []\n    for i in range(len(values) - window + 1):\n        chunk = values[i:i + window]\n        result.append(sum(chunk) / window)\n    return result

.PHONY: install demo test test-fast lint bench-quick

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,lint]"
	touch $@

install: $(VENV)/.installed

# Pull the default model (once), then generate with prompt lookup and print speed and acceptance.
demo: install
	$(BIN)/decodekit models pull smollm2-135m
	@printf '$(PROMPT)' | $(BIN)/decodekit generate --method prompt-lookup --max-new-tokens 160 -

# Everything, real-model tests included (what CI runs).
test: install
	$(PY) -m pytest -q

# Skip the real-model tests.
test-fast: install
	$(PY) -m pytest -q -m "not slow"

# Style and types: ruff, then mypy checks the protocols (Backend, Drafter) against their implementations.
lint: install
	$(BIN)/ruff check decodekit tests
	$(BIN)/mypy

bench-quick: install
	$(BIN)/decodekit bench --quick
