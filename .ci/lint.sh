#!/usr/bin/env bash
# Static checks run inside `make test`: ruff, snakefmt, the envs' post-deploy scripts,
# snakemake --lint.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
$BIN/ruff check src tests workflow/scripts bench
$BIN/ruff format --check src tests workflow/scripts bench
$BIN/snakefmt --check Snakefile rules/
for f in envs/*.post-deploy.sh; do bash -n "$f"; done  # conda envs' post-deploy scripts parse
HF_HUB_OFFLINE=1 $BIN/snakemake --lint --config experiment=demo
