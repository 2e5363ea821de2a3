# Two commands on a fresh machine:  make demo   (the main job on the embedded default)
#                                   make test   (the whole test suite, slow real-model tests included)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: 2.13.0 is the CPU wheel available offline here; an unpinned
# torch would pull several GB of CUDA packages. On a GPU machine: make TORCH_SPEC="torch" ...
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup test-deps demo test test-fast report-sample bench bench-sae bench-compare bench-autointerp clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: setup
	$(BIN)/autointerp run

# Test-only tools: the llama.cpp OpenAI-compatible server (llama-cpp-python builds from source once, ~5 min;
# pip caches the wheel) and Chromium from Debian packages for the browser test of the HTML pages.
test-deps: $(VENV)/.test-deps

$(VENV)/.test-deps: $(VENV)/.installed scripts/install_chromium.sh
	$(BIN)/pip install --quiet -e ".[test,server]"
	bash scripts/install_chromium.sh
	touch $@

test: setup test-deps
	$(BIN)/pytest

test-fast: setup test-deps
	$(BIN)/pytest -m "not slow"

report-sample: setup   # regenerate the repository's sample report (reports/) from the embedded default run
	$(BIN)/autointerp run
	$(BIN)/autointerp report --out reports --no-pages

bench: setup
	$(BIN)/python benchmarks/harvest.py --compare-bf16

bench-sae: setup   # builds .venv-bench (eai-sparsify + sae-lens, torch pinned) on first use
	$(BIN)/python benchmarks/sae_train.py

bench-compare: setup
	$(BIN)/python benchmarks/compare.py

bench-autointerp: setup test-deps   # needs the llama.cpp server extra and a finished runs/default
	$(BIN)/python benchmarks/explain_llm.py

clean:
	rm -rf $(VENV) runs .pytest_cache
