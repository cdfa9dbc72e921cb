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

.PHONY: demo test lint test-min notebooks lab reset-notebooks gpu bench bench-gpt2 docs docs-serve test-browser clean

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
	$(BIN)/ruff check lora_np tests tests_browser benchmarks

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

# What a fine-tuning step of GPT-2 small costs here, full against LoRA (benchmarks/gpt2_cost.py; minutes,
# about 3 GiB of memory). GPT2_DIR=~/models/gpt2 measures the real checkpoint; without it, its shape.
# TORCH_PYTHON=~/torch-venv/bin/python (torch, transformers, peft) times PyTorch's step too.
bench-gpt2: $(STAMP)
	$(BIN)/python benchmarks/gpt2_cost.py $(if $(GPT2_DIR),--checkpoint $(GPT2_DIR)) \
	  $(if $(TORCH_PYTHON),--torch-python $(TORCH_PYTHON))

# make lab opens YOUR copy of the notebooks, workspace/ (git ignores it): the first run copies them there,
# later runs add only notebooks that are new, so your edits and outputs stay yours and git pull never
# conflicts. make reset-notebooks moves workspace/ aside (workspace-backup-<time>/) and copies them afresh.
# JupyterLab refuses to run as root without --allow-root (Docker, Codespaces): added when you are root.
# Pass JupyterLab's own options with LAB_ARGS, e.g. make lab LAB_ARGS="--no-browser --port 8899".
WORKSPACE := workspace
LAB_ARGS  ?=
ROOT_ARG  := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	@mkdir -p $(WORKSPACE)
	@for nb in notebooks/*.ipynb; do test -e "$(WORKSPACE)/$${nb##*/}" || cp "$$nb" $(WORKSPACE)/; done
	$(BIN)/jupyter lab $(ROOT_ARG) $(LAB_ARGS) $(WORKSPACE)

reset-notebooks:
	@if test -d $(WORKSPACE); then backup=$(WORKSPACE)-backup-$$(date +%Y%m%d-%H%M%S); \
	  mv $(WORKSPACE) $$backup && echo "your notebooks are kept in $$backup/"; fi
	@mkdir -p $(WORKSPACE) && cp notebooks/*.ipynb $(WORKSPACE)/
	@echo "$(WORKSPACE)/ holds fresh copies of the notebooks"

# The website (mkdocs.yml): make docs builds it into build/site in strict mode (a broken link, a missing
# reference or a warning fails it); make docs-serve previews it at http://127.0.0.1:8000.
DOCS_STAMP := $(VENV)/.docs-installed
export NO_MKDOCS_2_WARNING := 1

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict

docs-serve: $(DOCS_STAMP)
	$(BIN)/mkdocs serve

# make test-browser: notebook 02 in JupyterLab, in headless Chromium driven by Playwright
# (tests_browser/): Run All, move the rank slider with the keyboard, check the count and the redraw.
# Installs Playwright (the browser extra) into .venv; Chromium is the system's: installed with apt-get
# when it is missing and you are root, else it says what to install (or set LORA_NP_CHROMIUM).
BROWSER_STAMP := $(VENV)/.browser-installed

$(BROWSER_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[browser]'
	@touch $(BROWSER_STAMP)

test-browser: $(BROWSER_STAMP)
	@test -n "$$LORA_NP_CHROMIUM" || command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium with apt-get"; \
	    apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	  else echo "make test-browser needs Chromium: install your system's chromium package, or set" \
	            "LORA_NP_CHROMIUM to a Chromium binary" >&2; exit 2; fi; }
	$(BIN)/python -m pytest tests_browser -s

# CuPy for this machine's CUDA major version (from nvidia-smi), into .venv: the gpu extra for CUDA 12,
# gpu-cuda13 for CUDA 13. Without nvidia-smi it says what to choose and installs nothing.
gpu: $(STAMP)
	@cuda=$$(nvidia-smi 2>/dev/null | grep -o "CUDA Version: [0-9]*" | grep -o "[0-9]*$$"); \
	case "$$cuda" in \
	  12) extra=gpu ;; \
	  13) extra=gpu-cuda13 ;; \
	  "") echo "make gpu: nvidia-smi found no NVIDIA GPU here. On a GPU machine run make gpu there, or pick" \
	           "by hand: $(BIN)/pip install -e '.[gpu]' (CUDA 12) or -e '.[gpu-cuda13]' (CUDA 13)" >&2; exit 2 ;; \
	  *) echo "make gpu: CUDA $$cuda is not one CuPy's wheels here cover (12 or 13)" >&2; exit 2 ;; \
	esac; \
	echo "CUDA $$cuda: installing the $$extra extra into $(VENV)"; \
	$(BIN)/python -m pip install --quiet -e ".[$$extra]"

clean:
	rm -rf $(VENV) $(VENV_MIN) outputs .pytest_cache .hypothesis
