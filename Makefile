# Two commands do everything on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Without a GPU, install the CPU build of torch first (a plain `torch` requirement pulls the ~5 GB CUDA build).
# Elsewhere, add PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu to fetch the CPU wheel.
TORCH_CPU ?= torch==2.13.0
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
ARGS ?=
EXPERIMENT ?= mnist_lstm

.PHONY: install dev train test test-all lint format bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifneq ($(HAS_GPU),1)
	$(PY) -m pip install -q $(TORCH_CPU)
endif
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

## Train the default experiment (mnist_lstm); EXPERIMENT=... picks another, ARGS="..." adds Hydra overrides.
train: install
	$(PY) -m seqlab.train experiment=$(EXPERIMENT) $(ARGS)

## The fast test suite (CPU, under 4 minutes on 2 idle cores). `make test ARGS="-m slow"` runs the slow tests.
test: dev
	$(PY) -m pytest -q $(ARGS)

## Every test, fast and slow (what CI runs; about 45 to 55 minutes on 2 cores).
test-all: dev
	$(PY) -m pytest -q -m "slow or not slow" $(ARGS)

lint: dev
	$(VENV)/bin/ruff check src tests scripts examples
	$(VENV)/bin/ruff format --check src tests scripts examples

format: dev
	$(VENV)/bin/ruff format src tests scripts examples
	$(VENV)/bin/ruff check --fix src tests scripts examples

## Every scripts/bench/bench_*.py, then bench/results.json and bench/results.md (BENCH_ARGS="..." passes options).
bench: install
	mkdir -p bench
	for s in scripts/bench/bench_*.py; do $(PY) $$s --json bench/$$(basename $$s .py).json $(BENCH_ARGS) || exit 1; done
	$(PY) scripts/bench/report_bench.py bench

clean:
	rm -rf outputs multirun bench .pytest_cache .ruff_cache
