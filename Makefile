# Two commands do everything on a fresh machine with Python 3 and make:
#   make demo   — create .venv, install lora_np, run the demo
#   make test   — create .venv, install lora_np with its test tools, run every test and notebook
# make lab opens JupyterLab on the notebooks.
PYTHON ?= python3
# The models here are small: one BLAS thread is fastest for them, and it avoids threads
# fighting over the cores of a busy machine (which slowed runs 5-10x). Override if you like.
export OPENBLAS_NUM_THREADS ?= 1
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lab clean

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

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf $(VENV) outputs .pytest_cache .hypothesis
