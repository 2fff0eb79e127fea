#!/usr/bin/env bash
# System packages the test suite uses: Debian's chromium (report rendered in a real browser)
# and slurm-wlm + munge (one-node SLURM integration test). Installed only when absent and
# only as root; without root the tests that need them skip and say why.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium chromium-driver)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v slurmctld >/dev/null || missing+=(slurm-wlm)
command -v munged >/dev/null || missing+=(munge)
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "[system_deps] not root: skipping apt-get install ${missing[*]} (browser/SLURM tests will skip)" >&2
    exit 0
fi
echo "[system_deps] apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
opts=(-y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends)
apt-get install "${opts[@]}" "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install "${opts[@]}" "${missing[@]}" >/dev/null; }
