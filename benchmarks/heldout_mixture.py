"""A held-out Gaussian mixture for ``dpgmm_speed.py --data`` (issue 18's third check): a
mixture the project's own benchmark does not plant, remade from its seed on any machine.

N × D samples of K clusters with Dirichlet(2) weights; each cluster a random rotation
(``scipy.stats.special_ortho_group``) with axis scales log-uniform in 0.05–3 and a mean drawn
from N(0, 4²) per axis. Writes an ``.npz`` with ``X`` (N, D) float64 and the true labels ``y``.

Usage::

    python benchmarks/heldout_mixture.py 20261204 heldout.npz
    python benchmarks/dpgmm_speed.py --data heldout.npz --components 20 --no-paper
"""

from __future__ import annotations

import argparse

import numpy as np


def heldout_mixture(seed: int, n: int = 30_000, d: int = 48, k: int = 6):
    """(X (n, d), y (n,)) of the mixture of ``seed``."""
    from scipy.stats import special_ortho_group

    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, rng.dirichlet([2.0] * k))
    X, y = [], []
    for c in range(k):
        rotation = special_ortho_group.rvs(d, random_state=rng.integers(2**31))
        scales = np.exp(rng.uniform(np.log(0.05), np.log(3), d))
        mean = rng.normal(0, 4, d)
        X.append(mean + (rng.standard_normal((counts[c], d)) * scales) @ rotation.T)
        y += [c] * counts[c]
    order = rng.permutation(n)
    return np.concatenate(X)[order], np.array(y)[order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seed", type=int)
    parser.add_argument("out", help="the .npz to write (X, y)")
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--d", type=int, default=48)
    parser.add_argument("--clusters", type=int, default=6)
    args = parser.parse_args()
    X, y = heldout_mixture(args.seed, args.n, args.d, args.clusters)
    np.savez(args.out, X=X, y=y)
    print(f"{args.out}: {X.shape[0]} x {X.shape[1]}, cluster sizes {np.bincount(y).tolist()}")


if __name__ == "__main__":
    main()
