# Two commands do everything on a fresh machine with Python 3 and make:
#   make demo   — create .venv, install lora_np, run the demo
#   make test   — create .venv, install lora_np with its test tools, run every test and notebook
# make lab opens JupyterLab on the notebooks; make lint runs ruff; make test-min runs the unit tests
# with the oldest NumPy, matplotlib, tqdm and ipywidgets that pyproject.toml allows; make notebooks
# re-executes the notebooks and saves their outputs.
PYTHON ?= python3
# The models here are small: one BLAS thread is fastest for them, and it avoids threads
# fighting over the cores of a busy machine (which slowed runs 5-10x). Override if you like.
export OPENBLAS_NUM_THREADS ?= 1
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The minimum-versions environment: these packages are installed at exactly the version after
# ">=" in pyproject.toml (read from it, so the declared minimum is the tested one).
VENV_MIN   := .venv-min
MIN_PINNED := numpy matplotlib tqdm ipywidgets
MIN_STAMP  := $(VENV_MIN)/.installed

.PHONY: demo test lint test-min notebooks lab bench clean

# Re-installs whenever pyproject.toml changes (new or changed dependencies).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m lora_np demo

# Unit tests and every notebook, each in a fresh kernel (tests/test_notebooks.py).
test: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest tests

# ruff, configured in pyproject.toml ([tool.ruff]); the version is pinned in the test extra.
lint: $(STAMP)
	$(BIN)/ruff check lora_np tests benchmarks

# Re-installs when pyproject.toml (the minimums) or this file (MIN_PINNED) changes.
$(MIN_STAMP): pyproject.toml Makefile
	@test -x $(VENV_MIN)/bin/python || $(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install --quiet --upgrade pip
	@for p in $(MIN_PINNED); do \
	  pin=$$(grep -oE "\"$$p>=[^\",;]+" pyproject.toml | head -n 1 | tr -d '"' | sed 's/>=/==/'); \
	  test -n "$$pin" || { echo "pyproject.toml declares no '$$p>=...'" >&2; exit 1; }; \
	  echo "$$pin"; \
	done > $(VENV_MIN)/constraints.txt
	@echo "minimum versions: $$(tr '\n' ' ' < $(VENV_MIN)/constraints.txt)"
	$(VENV_MIN)/bin/python -m pip install --quiet --only-binary=numpy,matplotlib \
	  -c $(VENV_MIN)/constraints.txt -e '.[test]'
	@touch $(MIN_STAMP)

# The unit tests (not the notebooks: not tests/test_notebooks.py, nor the tests marked "notebook")
# with the minimum versions above.
test-min: $(MIN_STAMP)
	@$(VENV_MIN)/bin/python -m pip freeze | grep -iE "^($$(echo $(MIN_PINNED) | tr ' ' '|'))=="
	MPLBACKEND=Agg OPENBLAS_NUM_THREADS=1 $(VENV_MIN)/bin/python -m pytest tests --ignore=tests/test_notebooks.py \
	  -m "not notebook"

# Re-execute every notebook top to bottom and save its outputs and widget state (commit the result).
notebooks: $(STAMP)
	$(BIN)/python tests/notebook_runner.py notebooks/*.ipynb

# The training step against PyTorch's, the profile, memory and latency (benchmarks/bench.py; minutes).
# torch is optional: point BENCH_PYTHON at an interpreter that has torch, numpy and matplotlib
# (a venv outside the repo) to fill the torch columns, e.g. make bench BENCH_PYTHON=~/torch-venv/bin/python
BENCH_PYTHON ?= $(BIN)/python
bench: $(STAMP)
	PYTHONPATH=$(CURDIR) $(BENCH_PYTHON) benchmarks/bench.py

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf $(VENV) $(VENV_MIN) outputs .pytest_cache .hypothesis
