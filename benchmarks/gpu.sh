#!/usr/bin/env bash
# Both speed benchmarks on a machine with a GPU, in one go: a short check that the torch
# DPGMM fits on the GPU agree with the same fits on the CPU, then benchmarks/dpgmm_speed.py
# and benchmarks/extract_speed.py with --device cuda. Each step has its own time limit and
# a failing step does not stop the next. benchmarks/RESULTS.md records what it printed.
# About 11 minutes on an H200 with 16 CPU cores, scikit-learn's fits most of it (~2 min each
# on the planted mixture, its threads gaining nothing from the cores): more than one 10-minute
# call of a lent device, so name the steps to run (default: all three), e.g. "agree dpgmm" in
# one call and "extract" in the next; DPGMM_ARGS adds options to dpgmm_speed.py (say
# "--repeats 2", or "--no-sklearn" for the torch fits alone; "--no-sklearn --block-elems
# 4194304" also fits torch with the CPU's block size, interleaved with the GPU's larger default).
#
#   bash benchmarks/gpu.sh [OUTDIR [STEP...]]   # logs: OUTDIR/gpu_*.txt (default: .)
set -u
out=${1:-.}
shift $(($# > 0 ? 1 : 0))
steps=${*:-agree dpgmm extract}
for s in $steps; do
  case $s in
    agree | dpgmm | extract) ;;
    *) echo "gpu.sh: unknown step '$s' (choose from: agree dpgmm extract)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 |
  tee "$out/gpu_smi.txt"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cores"

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to OUTDIR/gpu_NAME.txt
  local name=$1 limit=$2
  shift 2
  [[ " $steps " == *" $name "* ]] || return 0
  echo "== $name (limit ${limit} s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$out/gpu_$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}

step agree 60 "$py" - <<'EOF'
"""The same fits on the GPU and the CPU: labels and bounds must agree."""
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from convdp.dpgmm import TorchBayesianGaussianMixture

rng = np.random.default_rng(0)
y = rng.integers(0, 6, 8000)
X = rng.normal(0, 5, (6, 16))[y] + rng.normal(size=(8000, 16)) @ rng.normal(size=(16, 16)) / 4
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
for cov in ("full", "diag"):
    fits = {}
    for dev in ("cpu", "cuda"):
        t0 = time.perf_counter()
        est = TorchBayesianGaussianMixture(n_components=20, covariance_type=cov, random_state=0,
                                           merge=True, delete_below=0.01, device=dev).fit(X)
        fits[dev] = (est, time.perf_counter() - t0)
    (c, tc), (g, tg) = fits["cpu"], fits["cuda"]
    ari = adjusted_rand_score(c.predict(X), g.predict(X))
    print(f"{cov}: cpu {tc:.2f} s, cuda {tg:.2f} s; lb/sample cpu {c.lower_bound_ / len(X):.5f} "
          f"cuda {g.lower_bound_ / len(X):.5f}; ARI cuda-cpu labels {ari:.4f}; ARI to truth "
          f"{adjusted_rand_score(y, g.predict(X)):.4f}; iterations {c.n_iter_} / {g.n_iter_}")
EOF
# shellcheck disable=SC2086  # DPGMM_ARGS: words on purpose
step dpgmm 480 "$py" benchmarks/dpgmm_speed.py --device cuda --activations none ${DPGMM_ARGS:-}
step extract 150 "$py" benchmarks/extract_speed.py --device cuda
