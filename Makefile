# One command each (see README.md):
#   make demo  - create .venv, install vdnodes, run the main example graph
#   make test  - create .venv, install vdnodes with its dev extras and the example plugins, run the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints-cpu.txt | $(BIN)/python
	$(PIP) install -q -c constraints-cpu.txt -e .
	$(PIP) install -q --no-deps open_clip_torch
	touch $@

# The example plugins are installed too, so the tests meet them the way users do (entry points).
$(VENV)/.installed-dev: $(VENV)/.installed plugins/minimal/pyproject.toml plugins/palette/pyproject.toml
	$(PIP) install -q -c constraints-cpu.txt -e '.[dev]'
	$(PIP) install -q --no-deps -e plugins/minimal -e plugins/palette
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/vdnodes run graphs/text_to_image.json --out out/demo

test: $(VENV)/.installed-dev
	bash scripts/run_tests.sh $(BIN)/python

clean:
	rm -rf $(VENV) out .pytest_cache
