"""One layer, one clustering: a DPGMM (the method) or a BIC-chosen mixture (the baseline).

:func:`fit_layer` is the whole job of a ``fit_dpgmm`` / ``fit_baseline`` rule:

1. draw the fitting samples (position or image mode, at most ``max_samples``, seeded);
2. preprocess: drop zero-variance dimensions (dead channels), optionally scale so the
   largest absolute value is ``scale_max`` (the paper used 10), optionally PCA;
3. fit the model on those samples;
4. label every sample of the layer, one stored chunk at a time;
5. record the fit (clusters kept and used, lower bound per sample, iterations,
   convergence, seconds) and, where class labels exist, NMI / ARI / purity.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.decomposition import PCA

from convdp.metrics import cluster_scores
from convdp.samples import check_mode, fit_subset, iter_samples, n_samples

log = logging.getLogger(__name__)

METHODS = ("dpgmm", "baseline")


@dataclass
class Preprocess:
    """Drop constant dimensions, scale, and project: fitted on samples (n, C), applied per chunk.

    Parameters
    ----------
    pca : int or None, number of principal components kept (None or >= dims: no PCA)
    scale_max : float or None, scale so that max |x| over the fitting samples is this value
    seed : int, for the randomised PCA solver
    """

    pca: int | None = None
    scale_max: float | None = None
    seed: int = 0
    keep_: np.ndarray = field(default=None, repr=False)
    scale_: float = 1.0
    pca_: PCA | None = field(default=None, repr=False)

    def fit(self, X: np.ndarray, what: str = "layer") -> Preprocess:
        var = X.var(axis=0, dtype=np.float64)
        self.keep_ = var > 1e-12 * max(float(var.max()), 1e-30)
        if not self.keep_.any() or float(var.max()) == 0.0:
            raise ValueError(
                f"{what}: all {X.shape[1]} channels are constant over the {len(X)} samples "
                "(a dead layer); there is nothing to cluster"
            )
        Xk = X[:, self.keep_]
        if self.scale_max is not None:
            self.scale_ = float(self.scale_max) / float(np.abs(Xk).max())
        if self.pca is not None and self.pca < Xk.shape[1]:
            self.pca_ = PCA(self.pca, random_state=self.seed).fit(Xk * self.scale_)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        Xk = X[:, self.keep_].astype(np.float64) * self.scale_
        return self.pca_.transform(Xk) if self.pca_ is not None else Xk

    @property
    def n_dims(self) -> int:
        return self.pca_.n_components_ if self.pca_ is not None else int(self.keep_.sum())

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that reproduce this transform (saved beside the fit)."""
        out = {"pre_keep": self.keep_, "pre_scale": np.float64(self.scale_)}
        if self.pca_ is not None:
            out |= {"pre_pca_mean": self.pca_.mean_, "pre_pca_components": self.pca_.components_}
        return out


def make_dpgmm(params: dict, seed: int):
    """The DPGMM estimator the config asks for (``backend: sklearn | torch``)."""
    common = dict(
        n_components=params["n_components"],
        covariance_type=params["covariance_type"],
        weight_concentration_prior=params["concentration"],
        max_iter=params["max_iter"],
        tol=params["tol"],
        random_state=seed,
        init_params=params.get("init", "kmeans"),
    )
    backend = params.get("backend", "sklearn")
    if backend == "sklearn":
        from sklearn.mixture import BayesianGaussianMixture

        return BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_process", **common)
    if backend == "torch":
        from convdp.dpgmm_torch import TorchBayesianGaussianMixture

        return TorchBayesianGaussianMixture(
            device=params.get("device", "cpu"), dtype=params.get("dtype", "float32"), **common
        )
    raise ValueError(f"unknown dpgmm backend {backend!r}; choose sklearn or torch")


def fit_dpgmm(X: np.ndarray, params: dict, seed: int) -> tuple[object, dict]:
    """Fit a DPGMM on X (n, d); return the estimator and its fit record."""
    est = make_dpgmm(params, seed)
    est.fit(X)
    weights = np.asarray(est.weights_)
    return est, {
        "clusters_kept": int((weights > params["weight_threshold"]).sum()),
        "lower_bound_per_sample": float(est.lower_bound_) / len(X),
        "iterations": int(est.n_iter_),
        "converged": bool(est.converged_),
    }


def fit_bic_baseline(X: np.ndarray, params: dict, seed: int) -> tuple[object, dict]:
    """k-means or a Gaussian mixture, the number of clusters chosen by BIC over a range."""
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    k_lo, k_hi = params["k_min"], min(params["k_max"], len(X))
    best, bics = None, {}
    for k in range(k_lo, k_hi + 1):
        if params["method"] == "gmm":
            est = GaussianMixture(
                k, covariance_type=params["covariance_type"], random_state=seed,
                max_iter=params.get("max_iter", 100), reg_covar=1e-6,
            ).fit(X)
            bic = est.bic(X)
        else:
            est = KMeans(k, n_init=3, random_state=seed).fit(X)
            bic = kmeans_bic(X, est.inertia_, np.bincount(est.labels_, minlength=k))
        bics[k] = float(bic)
        if best is None or bic < bics[best[0]]:
            best = (k, est)
    k, est = best
    return est, {
        "clusters_kept": k,
        "lower_bound_per_sample": float(est.score(X)) if params["method"] == "gmm" else float("nan"),
        "iterations": int(getattr(est, "n_iter_", 0)),
        "converged": bool(getattr(est, "converged_", True)),
        "bic": bics,
    }


def kmeans_bic(X: np.ndarray, inertia: float, counts: np.ndarray) -> float:
    """BIC of k-means read as a mixture of k spherical Gaussians with one shared variance.

    ``counts`` (k,) are the cluster sizes; the mixing proportions are ``counts / n``
    (Pelleg & Moore's X-means likelihood).
    """
    n, d = X.shape
    k = len(counts)
    var = max(inertia / max(n - k, 1) / d, 1e-12)
    nz = counts[counts > 0]
    loglik = (np.sum(nz * np.log(nz / n)) - 0.5 * n * d * np.log(2 * np.pi * var)
              - 0.5 * inertia / var)
    n_params = k * d + 1 + (k - 1)
    return float(-2 * loglik + n_params * np.log(n))


def estimator_state(est) -> dict[str, np.ndarray]:
    """The fitted parameters of a mixture, as plain arrays for the ``.npz``."""
    out = {}
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "mean_precision_",
                 "degrees_of_freedom_", "cluster_centers_"):
        if hasattr(est, name):
            out[name.rstrip("_")] = np.asarray(getattr(est, name))
    wc = getattr(est, "weight_concentration_", None)
    if isinstance(wc, tuple):
        out["weight_concentration_a"], out["weight_concentration_b"] = map(np.asarray, wc)
    return out


def fit_layer(
    array,
    *,
    layer: str,
    mode: str,
    method: str,
    params: dict,
    seed: int = 0,
    class_labels: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict]:
    """Cluster one layer's activations.

    Parameters
    ----------
    array : (N, H, W, C) activations (Zarr or NumPy), chunked along N
    layer : its name, for messages
    mode : ``position`` or ``image``
    method : ``dpgmm`` or ``baseline``
    params : ``{"preprocess": {...}, "dpgmm": {...}, "baseline": {...}}`` from the config
    class_labels : (N,) class of each image, or None when unlabelled

    Returns
    -------
    arrays : ``labels`` ((N, H, W) label maps in position mode, (N,) in image mode),
             ``fit_index`` (the samples fitted on), the model's parameters, the preprocessing
    record : scalar results (see the module docstring)
    """
    check_mode(mode)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    what = f"layer {layer!r} ({mode} mode)"
    n, h, w, c = array.shape
    pre_params, fit_params = params["preprocess"], params[method]
    start = time.perf_counter()

    X, index = fit_subset(array, mode, pre_params.get("max_samples"), seed)
    if not np.isfinite(X).all():
        raise ValueError(f"{what}: the activations hold NaN or Inf values")
    pre = Preprocess(pre_params.get("pca"), pre_params.get("scale_max"), seed).fit(X, what)
    Xp = pre.transform(X)
    k_needed = fit_params["n_components"] if method == "dpgmm" else fit_params["k_min"]
    if len(Xp) < k_needed:
        raise ValueError(
            f"{what}: {len(Xp)} samples are fewer than the {k_needed} mixture components; "
            "lower n_components (or k_min) or use more images"
        )
    log.info("%s: fitting %s on %d samples × %d dims", what, method, *Xp.shape)
    if method == "dpgmm":
        est, record = fit_dpgmm(Xp, fit_params, seed)
    else:
        est, record = fit_bic_baseline(Xp, fit_params, seed)
    fit_seconds = time.perf_counter() - start

    from tqdm import tqdm

    labels = np.concatenate([
        est.predict(pre.transform(s)).astype(np.int16)
        for s in tqdm(iter_samples(array, mode), total=-(-n // (array.chunks[0] if hasattr(array, "chunks") else n)),
                      desc=f"label {layer}/{mode}", disable=not progress)
    ])
    record |= {
        "layer": layer,
        "mode": mode,
        "method": "dpgmm" if method == "dpgmm" else f"{fit_params['method']}-bic",
        "n_samples": n_samples(array.shape, mode),
        "n_samples_fit": len(Xp),
        "n_channels": c,
        "n_dims": pre.n_dims,
        "dims_dropped": int((~pre.keep_).sum()),
        "clusters_used": int(len(np.unique(labels))),
        "fit_seconds": fit_seconds,
        "seconds": time.perf_counter() - start,
        "grid": [h, w],
    }
    if class_labels is not None:
        per_sample = np.repeat(class_labels, h * w) if mode == "position" else class_labels
        record |= cluster_scores(per_sample, labels)
    arrays = {
        "labels": labels.reshape(n, h, w) if mode == "position" else labels,
        "fit_index": index.astype(np.int64),
        **estimator_state(est),
        **pre.state(),
    }
    return arrays, record
