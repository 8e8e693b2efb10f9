# Two entry points for a fresh machine: `make demo` and `make test`.
# Both install the locked, tested set of versions in requirements/lock.txt (every package,
# transitive ones included); `make lock` refreshes it, `make test-latest` tries the newest
# versions pyproject.toml allows.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
LOCK := requirements/lock.txt
MACHINE := requirements/machine-constraints.txt
LATEST ?= .venv-latest
# The torch wheel of this project's machines: a CPU build that lies on their disk (pip finds it).
TORCH := torch==2.13.0
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false ANONYMIZED_TELEMETRY=False

.PHONY: setup demo test bench lock lock-upgrade test-latest

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q uv==$(UV_VERSION)

# A new lock means a new venv: what is installed is exactly the lock, nothing left over.
$(VENV)/.installed: $(LOCK) pyproject.toml | $(UV)
	rm -rf $(VENV)
	python3 -m venv $(VENV)
	# torch first, alone, with pip: the CPU wheel on disk (uv does not look there; any other
	# torch is a CUDA build of several GB)
	$(PY) -m pip install -q $(TORCH)
	$(UV) pip install -q --python $(PY) -r $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps -e .
	$(PY) -c "import torch, sys; sys.exit('a CUDA torch was installed' if torch.version.cuda else 0)"
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(OFFLINE) $(PY) examples/demo.py

test: $(VENV)/.installed
	$(OFFLINE) $(PY) -m pytest -q

bench: $(VENV)/.installed
	$(OFFLINE) $(PY) benchmarks/run_all.py

# Regenerate the lock: the newest versions that pyproject.toml allows and this machine can install.
# `make lock` keeps every pin it can and adds what pyproject.toml now needs; `make lock-upgrade`
# moves everything to the newest allowed versions (then run `make test` before committing).
LOCK_COMPILE = $(UV) pip compile pyproject.toml --extra all --extra test --python-version 3.11 \
	$(FIND_LINKS) -c $(MACHINE) --annotation-style line --custom-compile-command "make lock" -o $(LOCK)

lock: | $(UV)
	$(LOCK_COMPILE)

lock-upgrade: | $(UV)
	$(LOCK_COMPILE) --upgrade

# Drift check (not part of CI): the newest allowed versions, in a venv of their own, then the tests.
test-latest: | $(UV)
	rm -rf $(LATEST)
	python3 -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q $(TORCH)
	$(UV) pip install -q --python $(LATEST)/bin/python $(FIND_LINKS) -c $(MACHINE) --upgrade -e '.[all,test]'
	$(UV) pip freeze --python $(LATEST)/bin/python > $(LATEST)/versions.txt
	@echo "== versions that differ from $(LOCK) =="
	@diff <(grep -o '^[^ ]*==[^ ]*' $(LOCK) | tr A-Z a-z | sed 's/_/-/g' | sort) \
	      <(grep -o '^[^ ]*==[^ ]*' $(LATEST)/versions.txt | tr A-Z a-z | sed 's/_/-/g' | grep -v '^pip==' | sort) \
	      | grep '^[<>]' || echo "(none)"
	$(OFFLINE) $(LATEST)/bin/python -m pytest -q -p no:cacheprovider
