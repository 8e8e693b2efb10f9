# Two entry points for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false ANONYMIZED_TELEMETRY=False

.PHONY: setup demo test bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, alone: the CPU wheel on disk (otherwise pip pulls a CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all,test]'
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(OFFLINE) $(PY) examples/demo.py

test: $(VENV)/.installed
	$(OFFLINE) $(PY) -m pytest -q

bench: $(VENV)/.installed
	$(OFFLINE) $(PY) benchmarks/run_all.py
