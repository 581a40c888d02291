# README's two commands. Each one first creates .venv, or refreshes it when it is
# missing or older than pyproject.toml / this file, and then runs:
#   make run     the main job: fine-tune a ViT on scikit-learn's digits, offline
#   make test    the test suite, once each under KERAS_BACKEND=jax, tensorflow and torch
# Extra arguments go through ARGS, e.g. `make run ARGS="--epochs 5 --overwrite"`.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: run test venv
run: $(INSTALLED)
	$(VENV)/bin/python examples/finetune.py $(ARGS)

test: $(INSTALLED)
	$(VENV)/bin/python tests/run_backends.py $(ARGS)

venv: $(INSTALLED)

# torch first, pinned to the CPU wheel: an unpinned torch pulls a multi-GB CUDA build.
$(INSTALLED): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[dev]"
	# keras-hub is the oracle of the keras-hub preset tests. Its own requirements would add
	# the full tensorflow and tensorflow-text beside tensorflow-cpu, and it imports without them.
	$(VENV)/bin/pip install -q --no-deps keras-hub==0.32.0
	touch $(INSTALLED)
