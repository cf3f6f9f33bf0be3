#!/usr/bin/env bash
# Install a single-node Slurm (Debian 12: Slurm 22.05) + munge, for tests/slurm_cluster.py.
# Non-interactive, idempotent, quiet. Needs root (or sudo). Does not start any daemon:
# tests/slurm_cluster.py starts slurmctld/slurmd/munged itself, without systemd.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PKGS=(slurmctld slurmd slurm-client munge)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # The packages' maintainer scripts try to start services; on a machine without
    # systemd/init that fails harmlessly, but forbid it explicitly via policy-rc.d.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod +x "$policy"
        created_policy=1
    fi
    trap 'if [ "$created_policy" = 1 ]; then $SUDO rm -f "$policy"; fi' EXIT
    log=$(mktemp)
    if ! { $SUDO apt-get update -qq &&
           $SUDO apt-get install -y -qq --no-install-recommends \
               -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
               "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "install_slurm.sh: apt-get failed" >&2
        exit 1
    fi
    rm -f "$log"
fi

for c in slurmctld slurmd munged sbatch squeue scontrol sinfo; do
    command -v "$c" >/dev/null || { echo "install_slurm.sh: $c not found after install" >&2; exit 1; }
done
echo "install_slurm.sh: $(slurmctld -V) and munge $(munged --version 2>&1 | head -1) ready"
