#!/usr/bin/env bash
# Static checks run inside `make test`: ruff, snakefmt, import-linter, the envs' post-deploy scripts,
# snakemake --lint.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
$BIN/ruff check src tests workflow/scripts bench
$BIN/ruff format --check src tests workflow/scripts bench
$BIN/snakefmt --check Snakefile rules/
$BIN/lint-imports --no-cache  # stage layers and no import cycles (pyproject's [tool.importlinter])
# no library module over 700 lines: a longer one is two stages' worth, split it along meaning
long_modules=$(find src -name '*.py' -exec wc -l {} + | awk '$2 != "total" && $1 > 700 {print $2 " (" $1 " lines)"}')
if [ -n "$long_modules" ]; then echo "modules over 700 lines: $long_modules" >&2; exit 1; fi
for f in envs/*.post-deploy.sh; do bash -n "$f"; done  # conda envs' post-deploy scripts parse
HF_HUB_OFFLINE=1 $BIN/snakemake --lint --config experiment=demo
