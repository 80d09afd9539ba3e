# The two commands of the README:
#   make demo   - set everything up and run the main job (lumos demo)
#   make test   - set everything up and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[demo]"
	# ccexam declares torchvision (unused; its PyPI build pulls another torch): install it without dependencies
	$(BIN)/python -m pip install --quiet -c constraints.txt --no-deps "ccexam==1.0.0"
	# timm ships the ImageNet class names (read as data files, never imported); it declares torchvision: no deps
	$(BIN)/python -m pip install --quiet -c constraints.txt --no-deps "timm==1.0.31"
	$(BIN)/lumos demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	# zennit and pytorch-grad-cam declare torchvision, whose PyPI build pulls another torch: install them
	# without dependencies (benchmarks/specs.py lets torchvision's Python part load beside this torch)
	$(BIN)/python -m pip install --quiet --no-deps -r benchmarks/incumbents.txt
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) lumos-demo .pytest_cache .ruff_cache
