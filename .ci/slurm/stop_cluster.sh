#!/usr/bin/env bash
# Stop the daemons that start_cluster.sh started (by the PIDs it recorded; nothing else).
set -uo pipefail
state="${MLLLM_SLURM_DIR:-/tmp/mlllm-slurm}"
[[ -f "$state/pids" ]] || { echo "[stop_cluster] nothing recorded in $state/pids" >&2; exit 0; }
# Reverse order: slurmd, then slurmctld, then munged.
tac "$state/pids" | while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        echo "[stop_cluster] stopped $name ($pid)" >&2
    fi
done
: > "$state/pids"
