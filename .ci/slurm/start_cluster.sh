#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on localhost (partitions "cpu" and "a100", two fake A100s)
# for tests/e2e/test_slurm.py. Idempotent: if the cluster answers already, it does nothing.
#
#   .ci/slurm/start_cluster.sh   # state, logs, job completion log in $MLLLM_SLURM_DIR
#   sinfo; sbatch ...; squeue     # (default /tmp/mlllm-slurm)
#   .ci/slurm/stop_cluster.sh
#
# The config goes to /etc/slurm/slurm.conf, the compiled-in default, and not to a private path
# named by $SLURM_CONF: the plugin's job step (snakemake-executor-plugin-slurm-jobstep) drops
# every SLURM_* variable before its nested srun, so srun on the node would not find a private
# config. An /etc/slurm/slurm.conf this script did not write (a real cluster) is never touched.
#
# Needs root (it installs Debian's slurm-wlm and munge when absent and runs the daemons as
# root, like a CI container). What it starts is recorded in $MLLLM_SLURM_DIR/pids so that
# stop_cluster.sh ends exactly those processes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${MLLLM_SLURM_DIR:-/tmp/mlllm-slurm}"
ctld_port="${MLLLM_SLURMCTLD_PORT:-6817}"
slurmd_port="${MLLLM_SLURMD_PORT:-6818}"
conf_dir=/etc/slurm
conf="$conf_dir/slurm.conf"
marker="# Rendered by start_cluster.sh"

log() { echo "[start_cluster] $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (installs packages, runs slurmctld/slurmd/munged)"; exit 2
fi

# An already running cluster (e.g. started by .ci/run before pytest) is reused.
if [[ -f "$conf" ]] && ! grep -q "^$marker" "$conf"; then
    log "$conf exists and was not written by this script (a real cluster?); not touching it"
    exit 2
fi
if [[ -f "$conf" ]] && timeout 5 scontrol ping 2>/dev/null | grep -q UP; then
    log "cluster already up ($conf)"; exit 0
fi

# 1. Packages: Debian's slurm-wlm (22.05 on bookworm) and munge, installed only when absent.
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    # Wait for a concurrent apt/dpkg (e.g. another setup step) instead of failing on its lock.
    apt_opts=(-y -qq -o DPkg::Lock::Timeout=600)
    apt-get install "${apt_opts[@]}" slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install "${apt_opts[@]}" slurm-wlm munge >/dev/null; }
fi

# Leftovers of an earlier, half-started cluster (recorded PIDs only) are stopped first.
[[ -f "$state/pids" ]] && MLLLM_SLURM_DIR="$state" "$here/stop_cluster.sh"
mkdir -p "$state/ctld" "$state/spool"
: > "$state/pids"

# 2. munge authenticates every SLURM message; it must run as the munge user.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [[ -f /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || { log "munged did not start"; exit 1; }
    # munged daemonizes itself; its pid file says which process we started.
    echo "munged $(cat /run/munge/munged.pid)" >> "$state/pids"
fi

# 3. Config: declare the node as slurmd sees it (declaring more CPUs/memory than exist drains
#    the node); keep 10% of the memory back for the machine itself.
hw="$(slurmd -C | head -1)"
cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")"
mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
mem=$(( mem * 9 / 10 ))
sed -e "s|@STATE_DIR@|$state|g" -e "s|@CPUS@|$cpus|g" -e "s|@REAL_MEMORY@|$mem|g" \
    -e "s|@NODE_GRES@|gpu:a100:2|g" \
    -e "s|@CTLD_PORT@|$ctld_port|g" -e "s|@SLURMD_PORT@|$slurmd_port|g" \
    "$here/slurm.conf.in" > "$state/slurm.conf"
mkdir -p "$conf_dir"
{ echo "$marker from $here/slurm.conf.in; state in $state"; cat "$state/slurm.conf"; } > "$conf"
{ echo "$marker from $here/gres.conf.in"; cat "$here/gres.conf.in"; } > "$conf_dir/gres.conf"
: > "$state/jobcomp.log"

# 4. Daemons in the foreground (-D) under nohup, output to files so callers' pipes close.
#    -N localhost: the machine's hostname is not the node name.
nohup slurmctld -D -i -f "$conf" >"$state/slurmctld.out" 2>&1 &
echo "slurmctld $!" >> "$state/pids"
ctld_pid=$!
for _ in $(seq 100); do
    kill -0 "$ctld_pid" 2>/dev/null || { log "slurmctld exited:"; tail -n 5 "$state/slurmctld.out" >&2; exit 1; }
    timeout 2 scontrol ping 2>/dev/null | grep -q UP && break
    sleep 0.2
done
nohup slurmd -D -N localhost -f "$conf" >"$state/slurmd.out" 2>&1 &
slurmd_pid=$!
echo "slurmd $slurmd_pid" >> "$state/pids"

# 5. Wait until the node is idle in both partitions.
for _ in $(seq 150); do
    kill -0 "$slurmd_pid" 2>/dev/null || { log "slurmd exited:"; tail -n 5 "$state/slurmd.out" >&2; break; }
    if [[ "$(timeout 2 sinfo -h -p a100 -o %T 2>/dev/null)" == idle* ]]; then
        log "cluster up: $(sinfo -h -o '%P %T %G' | tr '\n' ';') config $conf"
        exit 0
    fi
    sleep 0.2
done
log "node did not become idle; last lines of the logs:"
tail -n 20 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
sinfo -N -l >&2 || true
exit 1
