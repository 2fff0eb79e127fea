#!/usr/bin/env bash
# The SLURM integration test: bring up the one-node cluster, run the tests marked `slurm`,
# always shut the daemons down. Without root (no cluster possible) the tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
    echo "[slurm_tests] not root: cannot start a local SLURM cluster; skipping" >&2
    exit 0
fi
trap '.ci/slurm/stop_cluster.sh || true' EXIT
.ci/slurm/start_cluster.sh
# slurm_test lives in the test-only config tree; sbatch --export=ALL hands this to every job
export MULTILABEL_LLM_CONFIG_PATH=tests/config
HF_HUB_OFFLINE=1 .venv/bin/pytest -q -m slurm tests/e2e/test_slurm.py
