# make help: the short list. The venv lives in .venv/ and is (re)built when pyproject.toml changes.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# On the project's machines the datasets sit beside the checkout; elsewhere the loader
# searches its cache and downloads.
export MNIST_BENCH_DATA_DIR ?= $(abspath $(wildcard ../shared/data))

.PHONY: help install demo test test-fast lint report ui reference speed audit gpu-wheels gpu-check gpu-import slurm-up slurm-down
help:            ## show this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# PyTorch as a CPU-only build, before the torch extra asks for it (PyPI's Linux build carries
# ~3 GB of CUDA libraries): the project's machines hold one in pip's find-links folder; elsewhere
# PyTorch's CPU index serves it. A plain `pip install 'mnist-bench[torch]'` is left as PyPI has it.
TORCH_CPU ?= torch==2.13.0+cpu
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '$(TORCH_CPU)' 2>/dev/null || \
	  $(PY) -m pip install -q torch --index-url $(TORCH_CPU_INDEX)
	$(PY) -m pip install -q -e '.[dev,all]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its test tools

demo: $(STAMP)   ## the main job: the fair comparison sweep, tracked in MLflow (ARGS="..." adds overrides)
	$(VENV)/bin/mnist-bench -m +experiment=compare $(ARGS)

test: $(STAMP)   ## the whole test suite, slow tests on full MNIST included
	$(PY) -m pytest -q

test-fast: $(STAMP) ## the fast tier only (no full-MNIST training)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)   ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

report: $(STAMP) ## write results/<name>/report.html for the latest sweep
	$(VENV)/bin/mnist-bench-report

audit: $(STAMP)  ## what the latest sweep is missing, and the command that fills the holes
	$(VENV)/bin/mnist-bench-audit

speed: $(STAMP)  ## the speed benchmark -> results/speed/speed.md (~10 min; reference copy: --out results/reference)
	$(VENV)/bin/mnist-bench-speed

REF_DB ?= results/reference.db
REF_OUT ?= results
REF := tracking.uri=sqlite:///$(REF_DB) tracking.artifact_root=$(REF_DB:.db=-artifacts) $(REF_ARGS)
TUTORIALS := keras_dense512,tape_sigmoid,relu_mcp,simple_network
reference: $(STAMP) ## regenerate results/reference: compare + every tutorial preset in every implementation (~35 min, 2 cores)
	rm -rf $(REF_DB) $(REF_DB:.db=-artifacts)
	$(VENV)/bin/mnist-bench -m +experiment=compare $(REF)
	$(VENV)/bin/mnist-bench -m +experiment=$(TUTORIALS) implementation=numpy,tf_tape,keras,jax,torch $(REF)
	$(VENV)/bin/mnist-bench-report --tracking-uri sqlite:///$(REF_DB) --all --name reference --out $(REF_OUT)

UI_STORE ?= sqlite:///results/mlflow.db
UI_PORT ?= 5000
ui: $(STAMP)     ## MLflow UI on http://127.0.0.1:5000 over the local store (prints the runs page's link)
	@$(PY) -m bench.commands.ui --tracking-uri $(UI_STORE) --ui http://127.0.0.1:$(UI_PORT)
	$(VENV)/bin/mlflow ui --backend-store-uri $(UI_STORE) --host 127.0.0.1 --port $(UI_PORT)

# The GPU check (docs/scaling-out.md): the wheels and data a lent GPU machine lacks travel in
# GPU_WHEELS (git-ignored); there, its own python3 runs the check into $(OUT); DRY_RUN=1 runs
# the same steps here on the CPU at tiny sizes (CI); gpu-import brings a check's files home
GPU_WHEELS ?= .gpu-wheels
OUT ?= results/gpu-check
gpu-wheels: $(STAMP) ## the wheels and MNIST a GPU machine lacks -> .gpu-wheels/ (prints their size)
	$(PY) -m bench.commands.gpu_wheels --out $(GPU_WHEELS)

gpu-check: $(if $(DRY_RUN),$(STAMP)) ## on a GPU machine: tests, GPU and CPU sweeps, GPU speed -> $(OUT); DRY_RUN=1: here
ifdef DRY_RUN
	$(PY) -m bench.commands.gpu_check --dry-run --out $(OUT)
else
	python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
	  --target /tmp/site $(GPU_WHEELS)/wheels/*.whl
	PYTHONPATH=/tmp/site MNIST_BENCH_DATA_DIR=$(abspath $(GPU_WHEELS)/data) \
	  python3 -m bench.commands.gpu_check --out $(OUT)
endif

gpu-import: $(STAMP) ## a GPU check's files (DIR=...) -> results/gpu/, for mnist-bench-report
	$(PY) -m bench.commands.gpu_check --import $(DIR) --results results/gpu

# A one-node SLURM cluster in SLURM_DIR for the submitit launcher (docs/slurm.md): Debian's
# slurm-wlm and munge, daemons as root, no systemd
SLURM_DIR ?= results/slurm
slurm-up: $(STAMP) ## a one-node SLURM cluster in $(SLURM_DIR); prints the SLURM_CONF to export
	$(PY) -m bench.sweep.slurm up $(SLURM_DIR)

slurm-down: $(STAMP) ## stop the cluster slurm-up started
	$(PY) -m bench.sweep.slurm down $(SLURM_DIR)
