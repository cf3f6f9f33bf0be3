"""The scores a reviewer compares the DPGMM scores with, on the same features.

- :func:`mmd2`: a label-free two-sample statistic, the unbiased squared maximum mean
  discrepancy (Gretton et al. 2012) with a Gaussian (RBF) kernel whose bandwidth is the median
  distance between the pooled samples (the median heuristic). 0 for samples from the same
  distribution; larger = the target's activations differ more from the source's.
- :func:`linear_cka`: linear centred kernel alignment (Kornblith et al. 2019) of two
  representations *of the same examples* (rows paired). It needs paired rows, so it is not a
  two-sample statistic between a source and a target made of different images; it is here for
  comparing two layers or two nets on one data set.
- :func:`logme`: LogME (You et al. 2021, "LogME: Practical Assessment of Pre-trained Models
  for Transfer Learning"), the log marginal likelihood (evidence) per sample of a Bayesian
  linear regression from the features to each one-hot label column, maximised over its two
  precisions by the paper's fixed-point iteration, averaged over the classes. Needs labels.
- :func:`hscore`: H-score (Bao et al. 2019), ``tr(cov(f)^-1 cov(E[f | y]))``. Needs labels.

:func:`baseline_scores` computes the label-free one on the same preprocessed samples the
DPGMM scores use, and the labelled ones on the spatially pooled features of the target's
images (the linear probe's features).
"""

from __future__ import annotations

import numpy as np

from convdp.draws import BASELINE_SAMPLES, mmd2_draw
from convdp.samples import n_samples, read_samples


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def median_bandwidth(x: np.ndarray, y: np.ndarray, max_points: int = 1000, seed: int = 0) -> float:
    """The median heuristic: the median Euclidean distance between distinct points of the
    pooled sample (at most ``max_points`` of it, seeded). Pairs of equal points (a flat
    background's positions, all one vector after a ReLU) are left out: where they are more
    than half the pairs the median of all pairs is 0, and the fallback of 1 (the
    preprocessed features span about 10) made the kernel blind to every other difference."""
    z = np.concatenate([x, y]).astype(np.float64)
    if len(z) > max_points:
        z = z[np.random.default_rng(seed).choice(len(z), max_points, replace=False)]
    # equal points by a distance at rounding level, not of 0: the expansion |a|² + |b|² - 2 a·b
    # of two equal non-zero vectors (a background after a conv's bias) rounds to ~1e-16 of
    # |a|² + |b|², not 0, and a median of those made the bandwidth ~1e-7 and the kernel blind
    iu = np.triu_indices(len(z), 1)
    norms = (z * z).sum(1)
    d = _sq_dists(z, z)[iu]
    d = d[d > 1e-12 * (norms[iu[0]] + norms[iu[1]])]
    med = float(np.sqrt(np.median(d))) if len(d) else 0.0
    return med if med > 0 else 1.0


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None, seed: int = 0) -> float:
    """Unbiased squared MMD between samples ``x`` (n, d) and ``y`` (m, d), RBF kernel
    ``exp(-|a - b|² / (2 σ²))``; σ by :func:`median_bandwidth` unless given. Can be slightly
    negative for samples from one distribution."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        return float("nan")
    s = bandwidth or median_bandwidth(x, y, seed=seed)
    g = -1.0 / (2.0 * s * s)
    kxx, kyy, kxy = (np.exp(g * _sq_dists(a, b)) for a, b in ((x, x), (y, y), (x, y)))
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
                 + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean())


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations (n, d1) and (n, d2) of the same n examples:
    ``|Yc' Xc|_F² / (|Xc' Xc|_F |Yc' Yc|_F)`` with column-centred Xc, Yc; in [0, 1], 1 for
    representations equal up to an orthogonal transform and isotropic scaling."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) != len(y):
        raise ValueError(f"linear CKA needs paired rows, got {len(x)} and {len(y)}")
    x, y = x - x.mean(0), y - y.mean(0)
    den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(np.linalg.norm(y.T @ x) ** 2 / den) if den > 0 else float("nan")


def _evidence(y: np.ndarray, f: np.ndarray, alpha: float, beta: float) -> float:
    """Log evidence per sample of ``y ~ N(f m, 1/β)``, ``m ~ N(0, 1/α)``, in closed form
    (used by the tests to check the fixed point against a direct maximisation)."""
    n, d = f.shape
    s = np.linalg.eigvalsh(f.T @ f)
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    res = float(((y - f @ m) ** 2).sum())
    return float(d / 2 * np.log(alpha) + n / 2 * np.log(beta) - alpha / 2 * (m @ m)
                 - beta / 2 * res - 0.5 * np.log(alpha + beta * s).sum()
                 - n / 2 * np.log(2 * np.pi)) / n


def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 2000, tol: float = 1e-8):
    """LogME of ``features`` (n, d) for class ``labels`` (n,): the mean over the classes of
    the maximised log evidence per sample (You et al. 2021, Algorithm 1). Higher = the
    features predict the labels better by a linear model. NaN for fewer than 2 classes."""
    f = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    n, d = f.shape
    if len(classes) < 2 or n < 2:
        return float("nan")
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s * s  # eigenvalues of F'F (those beyond rank n are 0 and add nothing)
    out = []
    for c in classes:
        y = (labels == c).astype(np.float64)
        uy = u.T @ y  # y's coordinates in F's column space
        y_out = float(y @ y - uy @ uy)  # the part of y no linear map of f reaches
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            w = beta * sigma / (alpha + beta * sigma)
            gamma = float(w.sum())
            mm = float((((beta * s / (alpha + beta * sigma)) * uy) ** 2).sum())
            res = float((((1 - w) * uy) ** 2).sum()) + y_out
            # |m|^2 scales as 1 / scale^2 of the features: an absolute floor (1e-12) capped
            # alpha for large features, where LogME does not depend on their scale
            alpha_new = gamma / max(mm, np.finfo(np.float64).tiny)
            beta_new = (n - gamma) / max(res, 1e-12)
            done = (abs(alpha_new - alpha) / alpha < tol and abs(beta_new - beta) / beta < tol)
            alpha, beta = alpha_new, beta_new
            if done:
                break
        w = beta * sigma / (alpha + beta * sigma)
        mm = float((((beta * s / (alpha + beta * sigma)) * uy) ** 2).sum())
        res = float((((1 - w) * uy) ** 2).sum()) + y_out
        ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - alpha / 2 * mm - beta / 2 * res
              - 0.5 * np.log(alpha + beta * sigma).sum() - 0.5 * (d - len(s)) * np.log(alpha)
              - n / 2 * np.log(2 * np.pi))
        out.append(ev / n)
    return float(np.mean(out))


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score: ``tr(pinv(cov(f)) cov(E[f | y]))`` (Bao et al. 2019); higher = the classes'
    means are further apart relative to the features' spread. NaN for fewer than 2 classes
    (as :func:`logme`: one class has no between-class spread, and its rounding read ~1e-62)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(labels) < 2:
        return float("nan")
    f = np.asarray(features, np.float64)
    f = f - f.mean(0)
    # (C, C) also for one feature (a binary net's single logit, a one-map layer), where
    # np.cov gives a 0-d array that pinv refuses
    cov = np.atleast_2d(np.cov(f, rowvar=False))
    g = np.zeros_like(f)
    for c in np.unique(labels):
        g[labels == c] = f[labels == c].mean(0)
    between = np.atleast_2d(np.cov(g, rowvar=False))
    return float(np.trace(np.linalg.pinv(cov, rcond=1e-10) @ between))


def baseline_scores(source_array, target_array, pre, mode: str, pooled: np.ndarray,
                    classes: np.ndarray | None, *, max_samples: int = BASELINE_SAMPLES,
                    seed: int = 0) -> dict:
    """The baselines of one layer: ``mmd2`` between (a seeded subset of at most
    ``max_samples``) source and target samples after the source fit's preprocessing ``pre``,
    and ``logme`` / ``hscore`` of the target's pooled features ``pooled`` (N, C), as they
    are (the paper's LogME does not rescale them), for its ``classes`` (NaN without labels)."""
    src = mmd2_draw(n_samples(source_array.shape, mode), "source", seed, max_samples)
    tgt = mmd2_draw(n_samples(target_array.shape, mode), "target", seed, max_samples)
    xs = pre.transform(read_samples(source_array, mode, src))
    xt = pre.transform(read_samples(target_array, mode, tgt))
    out = {"mmd2": mmd2(xs, xt, seed=seed)}
    if classes is None:
        return out | {"logme": float("nan"), "hscore": float("nan")}
    return out | {"logme": logme(pooled, classes), "hscore": hscore(pooled, classes)}
