# The two commands a new user needs: `make demo` and `make test`. Both create a local
# virtual environment and install the project with the pins in constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALL := $(PY) -m pip install --quiet -c constraints.txt
STAMP := $(VENV)/.installed
TEST_ARGS ?=
CONFORMANCE_ARGS ?= --derandomize

.PHONY: demo test bench bench-full gpu-check lint install clean conformance

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(INSTALL) -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gradbridge compare --backends numpy,jax,torch

test: $(STAMP)
	$(PY) -m pytest $(TEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check gradbridge tests benchmarks conformance
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(INSTALL) -e '.[bench]'
	$(PY) benchmarks/run.py --quick

bench-full: $(STAMP)
	$(INSTALL) -e '.[bench]'
	$(PY) benchmarks/run.py

# The external Array API suite (../shared/array-api-tests) on every backend x dtype and the
# anchor namespaces, with fixed hypothesis examples (stable ids for the xfails file); summary
# and failing ids in conformance/local/ (CONFORMANCE_ARGS=--help for the options).
conformance: $(STAMP)
	$(PY) conformance/run.py $(CONFORMANCE_ARGS)

# On a machine with an NVIDIA GPU and the frameworks installed (no venv, no install): the gpu
# tests, compare on cpu and cuda, and the GPU benchmark rows, into docs/results/gpu-<name>/.
gpu-check:
	PYTHONPATH=. $(PYTHON) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
