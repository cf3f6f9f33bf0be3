"""One layer, one clustering: a DPGMM (the method) or a BIC-chosen mixture (the baseline).

:func:`fit_layer` is the whole job of a ``fit_dpgmm`` / ``fit_baseline`` rule:

1. draw the fitting samples (position or image mode, at most ``max_samples``, seeded);
2. preprocess: drop zero-variance dimensions (dead channels), optionally scale so the
   largest absolute value is ``scale_max`` (the paper used 10), optionally PCA;
3. fit the model on those samples;
4. label every sample of the layer, one stored chunk at a time;
5. record the fit (clusters kept and used, lower bound per sample, iterations,
   convergence, seconds) and, where class labels exist, NMI / ARI / purity.

A big layer's fit can be split into jobs (config ``label_jobs``): :func:`fit_model` does 1–3
and returns the model as plain arrays; :func:`label_images` does 4 for one range of images
(:func:`label_ranges`, aligned to the stored chunks) with the predictor rebuilt from those
arrays (:func:`predictor_from_state`, no pickles); :func:`merge_labels` does 5. ``fit_layer``
is the three in a row, and the split gives the same arrays and record.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.decomposition import PCA

from convdp.metrics import cluster_scores
from convdp.samples import (
    check_mode,
    chunk_bounds,
    chunk_size,
    fit_subset,
    iter_samples,
    n_samples,
)

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
    backend = params.get("backend", "torch")
    if backend == "sklearn":
        from sklearn.mixture import BayesianGaussianMixture

        if params.get("delete_below"):
            log.warning("dpgmm.delete_below is ignored by the sklearn backend (torch only)")
        return BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_process", **common)
    if backend == "torch":
        from convdp.dpgmm_torch import TorchBayesianGaussianMixture

        return TorchBayesianGaussianMixture(
            device=params.get("device", "cpu"), dtype=params.get("dtype", "float32"),
            delete_below=params.get("delete_below", 0.0), **common
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
        "components_emptied": int(getattr(est, "fit_stats_", {}).get("deleted", 0)),
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


# --------------------------------------------------------------------------------------
# A layer's clustering in three steps: fit once, label image ranges (in parallel), merge.

PREDICT = "predict_"
"""Prefix of the model arrays that only rebuilding the predictor needs: they are kept in the
model file of a split fit and left out of the fit's ``.npz``."""


def predictor_state(est) -> dict[str, np.ndarray]:
    """What rebuilding ``est.predict`` exactly needs beyond :func:`estimator_state`."""
    kind = type(est).__name__
    if kind not in _REBUILD:
        raise ValueError(f"cannot save a {kind} for labelling; known: {', '.join(_REBUILD)}")
    out = {f"{PREDICT}estimator": np.array(kind)}
    if kind != "KMeans":
        out[f"{PREDICT}covariance_type"] = np.array(est.covariance_type)
    if kind == "TorchBayesianGaussianMixture":
        # Its predict() works on data centred on the fitting samples' mean, from the
        # variational state, in the fit's dtype. The centred means are saved as they are:
        # ``means_ - mean`` would not give them back bit for bit.
        state = est._state
        out |= {
            f"{PREDICT}shift": _to_numpy(est._shift),
            f"{PREDICT}means_centred": _to_numpy(state.means),
            f"{PREDICT}log_det_prec_chol": _to_numpy(state.log_det_prec_chol),
            f"{PREDICT}dtype": np.array(str(est._dtype).removeprefix("torch.")),
            f"{PREDICT}chunk_size": np.int64(est.chunk_size),
        }
    return out


def _to_numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _need(model, keys, what: str) -> None:
    missing = [k for k in keys if k not in model]
    if missing:
        raise ValueError(f"{what}: the saved model lacks {missing}; fit the layer again")


_MIXTURE = ("weights", "means", "covariances", "precisions_cholesky", f"{PREDICT}covariance_type")
_DPGMM = (*_MIXTURE, "mean_precision", "degrees_of_freedom", "weight_concentration_a",
          "weight_concentration_b")


def _rebuild_sklearn_dpgmm(model, what):
    from sklearn.mixture import BayesianGaussianMixture

    _need(model, _DPGMM, what)
    means = np.asarray(model["means"])
    est = BayesianGaussianMixture(
        n_components=len(means), covariance_type=str(model[f"{PREDICT}covariance_type"]),
        weight_concentration_prior_type="dirichlet_process",
    )
    _set_dpgmm_attributes(est, model)
    return est


def _set_dpgmm_attributes(est, model) -> None:
    """The fitted attributes scikit-learn's DP mixture (and the torch backend) predict with."""
    est.weights_ = np.asarray(model["weights"])
    est.means_ = np.asarray(model["means"])
    est.covariances_ = np.asarray(model["covariances"])
    est.precisions_cholesky_ = np.asarray(model["precisions_cholesky"])
    est.mean_precision_ = np.asarray(model["mean_precision"])
    est.degrees_of_freedom_ = np.asarray(model["degrees_of_freedom"])
    est.weight_concentration_ = (np.asarray(model["weight_concentration_a"]),
                                 np.asarray(model["weight_concentration_b"]))
    est.n_features_in_ = est.means_.shape[1]


def _rebuild_torch_dpgmm(model, what):
    """The torch backend's predictor: its fitted attributes, its variational state, and the
    E-step quantities it caches at the end of ``fit`` for ``predict`` (computed by the class
    itself, from the same state, so the labels are the same bit for bit)."""
    import torch

    from convdp.dpgmm_torch import TorchBayesianGaussianMixture, _State

    extra = ("shift", "means_centred", "log_det_prec_chol", "dtype", "chunk_size")
    _need(model, (*_DPGMM, *(PREDICT + k for k in extra)), what)
    covariance_type = str(model[f"{PREDICT}covariance_type"])
    means = np.asarray(model["means"])
    est = TorchBayesianGaussianMixture(
        n_components=len(means), covariance_type=covariance_type,
        dtype=str(model[f"{PREDICT}dtype"]), chunk_size=int(model[f"{PREDICT}chunk_size"]),
    )
    device, dtype = est._check_params()

    def tensor(key):
        return torch.as_tensor(np.asarray(model[key], np.float64), device=device)

    est._device, est._dtype = device, dtype
    est._n_aug = 1 if covariance_type == "full" else 0
    est._shift = tensor(f"{PREDICT}shift")
    _set_dpgmm_attributes(est, model)
    state = _State(
        wc_a=tensor("weight_concentration_a"), wc_b=tensor("weight_concentration_b"),
        mean_precision=tensor("mean_precision"), means=tensor(f"{PREDICT}means_centred"),
        dof=tensor("degrees_of_freedom"), cov=tensor("covariances"),
        prec_chol=tensor("precisions_cholesky"),
        log_det_prec_chol=tensor(f"{PREDICT}log_det_prec_chol"),
    )
    est._state = state
    est._perm = None
    est._prune_now = False
    est.fit_stats_ = {"scatter_skipped": 0, "mahalanobis_shared": 0, "mahalanobis_pruned": 0}
    est._prepare_estep(state)
    return est


def _rebuild_gmm(model, what):
    from sklearn.mixture import GaussianMixture

    _need(model, _MIXTURE, what)
    means = np.asarray(model["means"])
    est = GaussianMixture(len(means), covariance_type=str(model[f"{PREDICT}covariance_type"]))
    est.weights_ = np.asarray(model["weights"])
    est.means_ = means
    est.covariances_ = np.asarray(model["covariances"])
    est.precisions_cholesky_ = np.asarray(model["precisions_cholesky"])
    est.n_features_in_ = means.shape[1]
    return est


def _rebuild_kmeans(model, what):
    from sklearn.cluster import KMeans
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    _need(model, ("cluster_centers",), what)
    centres = np.asarray(model["cluster_centers"])
    est = KMeans(len(centres))
    est.cluster_centers_ = centres
    est.n_features_in_ = centres.shape[1]
    est._n_threads = _openmp_effective_n_threads()  # what KMeans.fit sets for predict
    return est


_REBUILD = {
    "BayesianGaussianMixture": _rebuild_sklearn_dpgmm,
    "TorchBayesianGaussianMixture": _rebuild_torch_dpgmm,
    "GaussianMixture": _rebuild_gmm,
    "KMeans": _rebuild_kmeans,
}


def preprocess_from_state(model, what: str = "model") -> Preprocess:
    """The fitted :class:`Preprocess` that :meth:`Preprocess.state`'s arrays describe."""
    _need(model, ("pre_keep", "pre_scale"), what)
    pre = Preprocess()
    pre.keep_ = np.asarray(model["pre_keep"]).astype(bool)
    pre.scale_ = float(model["pre_scale"])
    if "pre_pca_components" in model:
        components = np.asarray(model["pre_pca_components"])
        pca = PCA(n_components=components.shape[0])
        pca.components_ = components
        pca.mean_ = np.asarray(model["pre_pca_mean"])
        pca.n_components_ = components.shape[0]
        pca.n_features_in_ = components.shape[1]
        pre.pca, pre.pca_ = components.shape[0], pca
    return pre


def predictor_from_state(model, what: str = "model") -> tuple[Preprocess, object]:
    """The preprocessing and the estimator of a saved model (:func:`fit_model`'s arrays),
    rebuilt from the arrays alone (no pickles): ``est.predict(pre.transform(x))`` labels
    samples exactly as the fitted estimator did. ``what`` names the model in errors."""
    _need(model, (f"{PREDICT}estimator",), what)
    kind = str(model[f"{PREDICT}estimator"])
    if kind not in _REBUILD:
        raise ValueError(f"{what}: unknown estimator {kind!r}; known: {', '.join(_REBUILD)}")
    return preprocess_from_state(model, what), _REBUILD[kind](model, what)


def fit_model(
    array, *, layer: str, mode: str, method: str, params: dict, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict]:
    """Steps 1–3 of :func:`fit_layer`: sample, preprocess and fit, once per layer.

    Returns
    -------
    model : ``fit_index`` (the samples fitted on), the model's parameters and the
            preprocessing (what the fit's ``.npz`` holds besides the labels), then the
            ``predict_*`` arrays :func:`predictor_from_state` needs
    record : the fit's scalar results except those the labels give (see :func:`merge_labels`)
    """
    model, record, _ = _fit_model(array, layer=layer, mode=mode, method=method, params=params,
                                  seed=seed)
    return model, record


def _fit_model(array, *, layer, mode, method, params, seed):
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
    record |= {
        "layer": layer,
        "mode": mode,
        "method": "dpgmm" if method == "dpgmm" else f"{fit_params['method']}-bic",
        "n_samples": n_samples(array.shape, mode),
        "n_samples_fit": len(Xp),
        "n_channels": c,
        "n_dims": pre.n_dims,
        "dims_dropped": int((~pre.keep_).sum()),
        "fit_seconds": time.perf_counter() - start,
        "grid": [h, w],
    }
    model = {
        "fit_index": index.astype(np.int64),
        **estimator_state(est),
        **pre.state(),
        **predictor_state(est),
    }
    return model, record, (pre, est)


def label_images(
    array,
    model,
    *,
    mode: str,
    start: int = 0,
    stop: int | None = None,
    layer: str = "layer",
    predictor: tuple[Preprocess, object] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Step 4 of :func:`fit_layer`: the labels (int16, flat, in sample order) of the samples of
    images ``[start, stop)``, predicted one stored chunk at a time.

    ``predictor`` is ``(preprocess, estimator)``; by default rebuilt from ``model``.
    """
    from tqdm import tqdm

    check_mode(mode)
    pre, est = predictor or predictor_from_state(model, f"layer {layer!r} ({mode} mode)")
    n = array.shape[0]
    stop = n if stop is None else stop
    blocks = len(chunk_bounds(n, chunk_size(array), start, stop)) - 1
    labels = [
        est.predict(pre.transform(s)).astype(np.int16)
        for s in tqdm(iter_samples(array, mode, start=start, stop=stop), total=blocks,
                      desc=f"label {layer}/{mode}", disable=not progress)
    ]
    return np.concatenate(labels) if labels else np.empty(0, np.int16)


def label_ranges(n_images: int, chunk: int, parts: int) -> list[tuple[int, int]]:
    """Split images ``[0, n_images)`` into ``parts`` consecutive ranges for labelling jobs.

    The ranges end on multiples of ``chunk`` (the stored chunks), so no chunk is read by two
    jobs, and hold as equal numbers of chunks as can be. With more parts than chunks the
    images are split evenly instead (and some chunks are read by two jobs).
    """
    if parts < 1 or chunk < 1:
        raise ValueError(f"need parts >= 1 and chunk >= 1, got parts={parts}, chunk={chunk}")
    n_chunks = -(-n_images // chunk)
    if parts <= n_chunks:
        cuts = [min(i * n_chunks // parts * chunk, n_images) for i in range(parts + 1)]
    else:
        cuts = [i * n_images // parts for i in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def merge_labels(
    model,
    record: dict,
    parts,
    *,
    class_labels: np.ndarray | None = None,
    seconds: float | None = None,
    names=None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Step 5 of :func:`fit_layer`: join the labelled ranges, finish the record.

    Parameters
    ----------
    model, record : :func:`fit_model`'s results
    parts : ``(start, stop, labels)`` per range of images, in order, covering every image
    class_labels : (N,) class of each image, or None
    seconds : the record's ``seconds`` (the whole fit and labelling); default ``fit_seconds``
    names : what each part is called in errors (its file)

    Returns the fit's arrays (``labels`` first, then the model's arrays without the
    ``predict_*`` ones) and its record, as :func:`fit_layer` does.
    """
    mode, (h, w) = record["mode"], record["grid"]
    per_image = h * w if mode == "position" else 1
    n = record["n_samples"] // per_image
    names = list(names) if names is not None else [f"part {i + 1}" for i in range(len(parts))]
    what = f"layer {record['layer']!r} ({mode} mode)"
    expected = 0
    for name, (start, stop, labels) in zip(names, parts, strict=True):
        if start != expected:
            raise ValueError(f"{what}: {name} labels images {start}–{stop - 1}, but the next "
                             f"unlabelled image is {expected}; the parts must cover 0–{n - 1}")
        if len(labels) != (stop - start) * per_image:
            raise ValueError(f"{what}: {name} holds {len(labels)} labels for images "
                             f"{start}–{stop - 1}, which have {(stop - start) * per_image} samples")
        expected = stop
    if expected != n:
        raise ValueError(f"{what}: the parts label images 0–{expected - 1} of {n}; "
                         "some are missing")
    labels = np.concatenate([p[2] for p in parts]) if parts else np.empty(0, np.int16)
    record = dict(record) | {
        "clusters_used": int(len(np.unique(labels))),
        "seconds": record["fit_seconds"] if seconds is None else seconds,
    }
    if class_labels is not None:
        per_sample = np.repeat(class_labels, h * w) if mode == "position" else class_labels
        record |= cluster_scores(per_sample, labels)
    arrays = {
        "labels": labels.reshape(n, h, w) if mode == "position" else labels,
        **{k: v for k, v in model.items() if not k.startswith(PREDICT)},
    }
    return arrays, record


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
    """Cluster one layer's activations: :func:`fit_model`, :func:`label_images` over every
    image, :func:`merge_labels`, in one go (the split workflow runs them as separate jobs).

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
    start = time.perf_counter()
    model, record, predictor = _fit_model(array, layer=layer, mode=mode, method=method,
                                          params=params, seed=seed)
    labels = label_images(array, model, mode=mode, layer=layer, predictor=predictor,
                          progress=progress)
    return merge_labels(model, record, [(0, array.shape[0], labels)], class_labels=class_labels,
                        seconds=time.perf_counter() - start)


# --------------------------------------------------------------------------------------
# Memory of the split jobs (the Snakemake rules ask for it)

INTERPRETER_MB = 1000
"""Python with NumPy, scikit-learn and torch loaded, and some slack."""


def label_memory_mb(shape, chunk: int, mode: str, n_components: int, parts: int) -> int:
    """Memory (MB) of a job that labels one of ``parts`` ranges of a layer of ``shape``
    (N, H, W, C) stored in chunks of ``chunk`` images: one chunk of activations with its
    float64 copies, the predictor's per-sample temporaries over ``n_components``, and the
    labels of its range. Independent of ``preprocess.max_samples``."""
    n, h, w, c = shape
    per_image = h * w if check_mode(mode) == "position" else 1
    chunk_samples = min(chunk, n) * per_image
    range_samples = -(-n // parts) * per_image + chunk_samples  # ranges end on chunks
    held = chunk_samples * (40 * c + 24 * n_components) + range_samples * 4
    return int(INTERPRETER_MB + held / 1e6)


def merge_memory_mb(samples: int) -> int:
    """Memory (MB) of merging the labels of a layer's ``samples`` (the record's ``n_samples``):
    every sample's label, its class and the temporaries of the scores (NMI, ARI, purity)."""
    return int(INTERPRETER_MB + samples * 64 / 1e6)
