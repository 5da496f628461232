# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create the virtual environment on first use.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first, at the versions this machine's pip cap allows.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/transferkit demo --overwrite

test: $(STAMP)
	$(PY) -m pytest -q --durations=10

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/bench_loop.py
	TRANSFERKIT_DATA=$${TRANSFERKIT_DATA:-../shared/data} $(PY) benchmarks/bench_feature_cache.py

clean-venv:
	rm -rf $(VENV)
