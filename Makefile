# One venv in .venv; every target installs what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PROMPT ?= Add type hints to this Python function. Keep the names, the docstring and the logic unchanged, and return the whole function:\n\ndef moving_average(values, window):\n    """Return the averages of every run of `window` consecutive values."""\n    result = []\n    for i in range(len(values) - window + 1):\n        chunk = values[i:i + window]\n        result.append(sum(chunk) / window)\n    return result

# The llama.cpp backend's library, built from source once per CPU-flag set and kept in a wheel
# cache (the build takes about 6 minutes on 2 cores); tools/llama-cmake-args picks the flags.
LLAMA_CPP_VERSION := 0.3.36
WHEELS ?= $(HOME)/.cache/decodekit/wheels

.PHONY: install llamacpp browser demo test test-fast lint bench-quick

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,lint]"
	touch $@

$(VENV)/.llamacpp: $(VENV)/.installed tools/llama-cmake-args
	@args="$$(tools/llama-cmake-args)"; \
	dir="$(WHEELS)/llama-cpp-python-$(LLAMA_CPP_VERSION)-$$(printf '%s' "$$args" | sha256sum | cut -c1-12)"; \
	if ! ls "$$dir"/*.whl >/dev/null 2>&1; then \
		echo "building llama-cpp-python $(LLAMA_CPP_VERSION) (about 6 minutes on 2 cores) with: $$args"; \
		rm -rf "$$dir.partial"; \
		CMAKE_ARGS="$$args" $(PY) -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
			"llama-cpp-python==$(LLAMA_CPP_VERSION)" -w "$$dir.partial" && mv "$$dir.partial" "$$dir"; \
	fi; \
	$(PY) -m pip install --quiet "$$dir"/*.whl && $(PY) -m pip install --quiet -e ".[llamacpp]"
	touch $@

# The transformers backend (always) and the llama.cpp backend.
install: $(VENV)/.installed $(VENV)/.llamacpp

llamacpp: $(VENV)/.llamacpp

# Debian's chromium and chromedriver, for the playground's browser test (tests/test_playground.py).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing Debian's chromium and chromium-driver for the playground's browser test"; \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$sudo apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
			{ $$sudo apt-get update -q >/dev/null && $$sudo apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	fi

# Pull the default model (once), then generate with prompt lookup and print speed and acceptance.
demo: install
	$(BIN)/decodekit models pull smollm2-135m
	@printf '$(PROMPT)' | $(BIN)/decodekit generate --method prompt-lookup --max-new-tokens 160 -

# Everything, real-model tests and the browser test included (what CI runs).
test: install browser
	$(PY) -m pytest -q

# Skip the real-model tests.
test-fast: install browser
	$(PY) -m pytest -q -m "not slow"

# Style and types: ruff, then mypy checks the protocols (Backend, Drafter) against their implementations.
lint: install
	$(BIN)/ruff check decodekit tests
	$(BIN)/mypy

bench-quick: install
	$(BIN)/decodekit bench --quick
