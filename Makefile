# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create the virtual environment on first use.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast bench suite bench-select bench-auto bench-continual bench-avalanche bench-multitask bench-torchjd clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first, at the versions this machine's pip cap allows.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/transferkit demo --overwrite

# lint-imports checks the layer contract of pyproject.toml ([tool.importlinter]); pytest runs one worker
# per core (pytest-xdist), each test file on one worker, one thread each (tests/conftest.py)
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n auto --dist loadfile --durations=15

test-fast: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n auto --dist loadfile -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/bench_loop.py
	TRANSFERKIT_DATA=$${TRANSFERKIT_DATA:-../shared/data} $(PY) benchmarks/bench_feature_cache.py

# The MNIST -> USPS transfer suite of BENCHMARKS.md (about 30 minutes on 2 CPU cores)
suite: $(STAMP)
	export TRANSFERKIT_DATA=$${TRANSFERKIT_DATA:-../shared/data}; \
	$(VENV)/bin/transferkit train examples/mnist_source.yaml --out runs/mnist_source --overwrite && \
	$(VENV)/bin/transferkit train examples/mnist_source.yaml --out runs/mnist_source_small --overwrite \
	  --set model.backbone_args.width=16 --set model.backbone_args.num_features=64 --set train.seed=1 && \
	$(VENV)/bin/transferkit compare examples/usps_suite.yaml --out runs/usps_suite --overwrite

# The model-zoo ranking benchmark (ten small_cnn sources, USPS and Omniglot targets, every score's
# weighted tau against fine-tuned accuracy; about 20 minutes on 2 CPU cores) and its text half
bench-select: $(STAMP)
	export TRANSFERKIT_DATA=$${TRANSFERKIT_DATA:-../shared/data} HF_HUB_OFFLINE=1; \
	$(PY) benchmarks/select/bench_zoo.py && $(PY) benchmarks/select/bench_zoo_text.py

# strategy auto's benchmark rows (MNIST -> USPS with unlabelled USPS, the Amazon pairs) and the sweep of its
# MCC weight (about 8 minutes on 2 CPU cores once the Amazon features are cached)
bench-auto: $(STAMP)
	export TRANSFERKIT_DATA=$${TRANSFERKIT_DATA:-../shared/data} HF_HUB_OFFLINE=1 \
	  PYTHONPATH=src:benchmarks/adapt:benchmarks/auto; \
	$(PY) benchmarks/auto/bench_auto_digits.py && $(PY) benchmarks/auto/bench_auto_text.py && \
	$(PY) benchmarks/auto/bench_mcc_weight.py && \
	$(PY) benchmarks/adapt/bench_deep.py --methods auto --epochs 10 --out benchmarks/results/auto_digits.jsonl

# The MNIST continual-learning protocols (Split/Permuted-MNIST, 8 strategies, 3 seeds; about 40 min
# on 2 CPU cores) and the replay-memory figures of BENCHMARKS.md
bench-continual: $(STAMP)
	export TRANSFERKIT_DATA=$${TRANSFERKIT_DATA:-../shared/data}; \
	$(PY) benchmarks/continual/bench_mammoth.py --out benchmarks/results/continual_mnist.csv && \
	$(PY) benchmarks/continual/bench_memory.py

# The multi-task benchmarks (MultiMNIST, Amazon reviews on MiniLM, Office-Caltech10; every weighter,
# 3 seeds, single-task baselines; about 40 minutes on 2 CPU cores)
bench-multitask: $(STAMP)
	TRANSFERKIT_DATA=$${TRANSFERKIT_DATA:-../shared/data} HF_HUB_OFFLINE=1 $(PY) benchmarks/multitask/bench_mtl.py

# The baselines' libraries (Avalanche, TorchJD) go into their own environment only
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml benchmarks/continual/requirements.txt benchmarks/multitask/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BENCH_VENV)/bin/python -m pip install -q -e . -r benchmarks/continual/requirements.txt \
	  -r benchmarks/multitask/requirements.txt
	touch $@

bench-avalanche: $(BENCH_VENV)/.installed
	TRANSFERKIT_DATA=$${TRANSFERKIT_DATA:-../shared/data} $(BENCH_VENV)/bin/python benchmarks/continual/bench_avalanche.py

# Per-step time and update of PCGrad, CAGrad, MGDA, IMTL-G and the plain sum against TorchJD
bench-torchjd: $(BENCH_VENV)/.installed
	TRANSFERKIT_DATA=$${TRANSFERKIT_DATA:-../shared/data} $(BENCH_VENV)/bin/python benchmarks/multitask/bench_torchjd.py

clean-venv:
	rm -rf $(VENV)
