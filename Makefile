# rewire: one command to regenerate every result, one to test everything (`make help` lists all).
#   make repro   set up .venv, prepare the data, say which stages are out of date and run them (`cpu` scale)
#   make retrain retrain every stage even when current (`dvc repro -f`; the time is printed first)
#   make test    set up .venv, prepare the data, unit tests + every stage and notebook at `smoke` scale
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

# Data source: an explicit archive wins; otherwise the offline copy beside the repository,
# if present; otherwise `rewire.data` downloads the official release (see README, "Data").
SHARED_ARCHIVE := $(abspath ../shared/datasets/cifar10-jpeg.tar.gz)
REWIRE_DATA_ARCHIVE ?= $(if $(wildcard $(SHARED_ARCHIVE)),$(SHARED_ARCHIVE),)
export REWIRE_DATA_ARCHIVE

.PHONY: help venv data repro retrain results repro-smoke test unit lint format lab benchmark robust-imagenet100 gpu-check gpu-evidence models docs clean-results

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(VENV)/.installed ## create or update .venv with the pinned dependencies and rewire (editable)

$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (rewire)" >/dev/null
	@touch $@

data: venv ## prepare the CIFAR-10 cache in data/cifar10 (cache > REWIRE_DATA_ARCHIVE > download)
	python -m rewire.data prepare --dataset cifar10 --root data
	@# The same data as data.dvc records (same hash): put it in DVC's local cache so `dvc status` is clean.
	@# Other data (e.g. the official release instead of the JPEG copy): leave data.dvc alone and say so.
	@if dvc status data.dvc | grep -q "modified"; then \
		echo "note: data/ differs from the copy data.dvc records (another source?); results will say which one they used"; \
	else dvc commit -q -f data.dvc; fi

repro: venv data ## run the stages that are out of date (`dvc repro`; says which first, or that all are current)
	python -m rewire.pipeline.status
	dvc repro
	python -m rewire.pipeline.report

retrain: venv data ## retrain every stage even when current (`dvc repro -f`; says how long first)
	python -m rewire.pipeline.status --force
	dvc repro -f
	python -m rewire.pipeline.report

results: venv ## the headline numbers of every stage and DVC experiment, one row each (fits 120 columns; plain `dvc exp show` cannot)
	python -m rewire.pipeline.summary --experiments

repro-smoke: venv data ## the whole pipeline at smoke scale in a DVC experiment; the checkout stays as it is
	dvc exp run --temp -S scale=smoke
	@echo "smoke pipeline done: \`make results\` lists it; the checkout's results are unchanged"

test: venv data ## unit tests, the DVC pipeline's stages and every notebook (`pytest --nbval`) at smoke scale (CI)
	TQDM_DISABLE=1 python -m pytest --nbval

unit: venv ## unit tests only (no data needed; without the smoke pipeline of tests/test_repro_smoke.py)
	TQDM_DISABLE=1 python -m pytest tests -m "not pipeline"

lint: venv ## ruff lint and format check (configured in pyproject.toml)
	ruff check .
	ruff format --check .

format: venv ## apply ruff's fixes and formatting
	ruff check --fix .
	ruff format .

# JupyterLab at the repository root (notebooks/, results/, params.yaml side by side).
# As root (containers, cloud machines) it needs --allow-root; extra options go in LAB_ARGS,
# e.g. `make lab LAB_ARGS="--no-browser --port 8890"`.
LAB_ARGS ?=
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: venv data ## JupyterLab on the venv's kernel, opened at the repository root (LAB_ARGS=... for options)
	jupyter lab --notebook-dir=. $(LAB_ROOT_FLAG) $(LAB_ARGS)

benchmark: venv data ## run the benchmarks in benchmarks/ and write their JSON results
	@for b in benchmarks/bench_*.py; do echo "== $$b"; python $$b || exit 1; done

robust-imagenet100: venv ## paper scale on GPUs: robust binary subnetworks on ImageNet-100 (needs data/raw/imagenet100)
	python -m rewire.pipeline notebooks/04_robust_binary.ipynb --stage robust_binary_imagenet100 --scale paper --out results/robust_binary_imagenet100

gpu-check: venv data ## on a CUDA machine: CUDA tests, every notebook at smoke scale, benchmarks -> reports/gpu_check.json
	python tools/gpu_check.py --out reports/gpu_check.json

gpu-evidence: venv data ## on a CUDA machine: the central claims and the benchmark at the gpu scale -> results/gpu/ (EVIDENCE_ARGS=--jobs 3)
	python -m rewire.pipeline.gpu_evidence $(EVIDENCE_ARGS)

models: venv ## export each stage's final checkpoints to models/<stage>/ as DVC-tracked data (then `dvc push`)
	python -m rewire.pipeline.models export

docs: venv ## the docs site in site/ (strict: no broken link); results pages and quoted numbers rewritten first
	python -m rewire.pipeline.report
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict
	@echo "open site/index.html (search needs a server: python -m http.server -d site)"

clean-results: ## delete untracked pipeline products (checkpoints/, failed runs); committed results stay
	rm -rf checkpoints results/failed
