"""One layer, one clustering: a DPGMM (the method) or a BIC-chosen mixture (the baseline).

:func:`fit_layer` is the whole job of a ``fit_dpgmm`` / ``fit_baseline`` rule:

1. draw the fitting samples (position or image mode, at most ``max_samples``, seeded);
2. preprocess: drop zero-variance dimensions (dead channels), optionally scale so the
   largest absolute value is ``scale_max`` (the paper used 10), optionally PCA;
3. fit the model on those samples;
4. label every sample of the layer, one stored chunk at a time;
5. record the fit (clusters kept and used, effective number of clusters, truncation used and
   whether it bound the count, lower bound per sample, iterations, convergence, seconds)
   and, where class labels exist, NMI / ARI / purity.

A big layer's fit can be split into jobs (config ``label_jobs``): :func:`fit_model` does 1–3
and returns the model as plain arrays; :func:`label_images` does 4 for one range of images
(:func:`label_ranges`, aligned to the stored chunks) with the predictor rebuilt from those
arrays (:func:`convdp.fitted.load_predictor`, no pickles); :func:`merge_labels` does 5. ``fit_layer``
is the three in a row, and the split gives the same arrays and record.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np

from convdp.fitted import load_predictor, model_arrays
from convdp.metrics import cluster_scores, effective_number, is_saturated
from convdp.preprocess import Preprocess
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

MIN_SAMPLES_PER_DIM = 10
"""A fit on fewer than this many samples per dimension (after preprocessing), or on fewer
than :data:`MIN_SAMPLES`, is marked ``too_few_samples``: its count says little."""
MIN_SAMPLES = 100
REG_COVAR = 1e-6
"""``reg_covar`` of a fit whose parameters do not give it (callers that skip the config's
validation): the schema's default for ``dpgmm`` and ``baseline``, and scikit-learn's."""


def make_dpgmm(params: dict, seed: int):
    """The DPGMM estimator the config asks for (``backend: sklearn | torch``)."""
    common = dict(
        n_components=params["n_components"],
        covariance_type=params["covariance_type"],
        weight_concentration_prior=params["concentration"],
        max_iter=params["max_iter"],
        tol=params["tol"],
        reg_covar=params.get("reg_covar", REG_COVAR),
        random_state=seed,
        init_params=params.get("init", "kmeans"),
        n_init=params.get("restarts", 1),
    )
    backend = params.get("backend", "torch")
    if backend == "sklearn":
        from sklearn.mixture import BayesianGaussianMixture

        # the torch-only keys are ignored here; the config check names those set off their
        # schema defaults (convdp.config.TORCH_ONLY), which are in every job's params
        return BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_process", **common)
    if backend == "torch":
        from convdp.dpgmm import TorchBayesianGaussianMixture

        # the fallbacks are the schema's defaults (for callers with unvalidated params);
        # early_moves and effective_samples have none: when not set, the estimator's own
        # default applies
        merge = params.get("merge", True)
        cap = params.get("max_components", 320)
        optional = {k: params[k] for k in ("early_moves", "effective_samples")
                    if params.get(k) is not None}
        return TorchBayesianGaussianMixture(
            dtype=params.get("dtype", "float32"), delete_below=params.get("delete_below", 0.01),
            merge=merge, max_components=None if cap is None else max(cap, common["n_components"]),
            grow_at=params.get("grow_at", 0.6), init_sizes="halving" if merge else "same",
            device=params.get("device", "cpu"), kmeans_max_iter=params.get("kmeans_max_iter", 10),
            **optional, **common,
        )
    raise ValueError(f"unknown dpgmm backend {backend!r}; choose sklearn or torch")


def fit_dpgmm(X: np.ndarray, params: dict, seed: int) -> tuple[object, dict]:
    """Fit a DPGMM on X (n, d); return the estimator and its fit record.

    Besides clusters kept (weight above ``weight_threshold``), the record says whether the
    truncation may have bound the count (``saturated``: more than ``grow_at`` of the final
    truncation occupied), the truncation used, the effective number of clusters and, over
    the restarts (``restarts``) whose bound is within :func:`near_best` of the best, the
    spread of both counts; unless ``sample_check`` is off, the count the same settings keep
    on half the samples (:func:`sample_check`); unless ``seed_check`` is off, the count one
    start from another seed's draws keeps (:func:`seed_check`); and how many kept clusters
    sit at the ``reg_covar`` floor (:func:`clusters_at_floor`).
    """
    est = make_dpgmm(params, seed)
    est.fit(X)
    weights = np.asarray(est.weights_)
    threshold = params["weight_threshold"]
    record = {
        "clusters_kept": int((weights > threshold).sum()),
        "clusters_effective": effective_number(weights),
        # per effective sample in a tempered fit (dpgmm.effective_samples)
        "lower_bound_per_sample": getattr(est, "lower_bound_per_sample_",
                                          float(est.lower_bound_) / len(X)),
        "effective_samples": round(getattr(est, "likelihood_power_", 1.0) * len(X)),
        "iterations": int(est.n_iter_),
        "converged": bool(est.converged_),
        "components_emptied": int(getattr(est, "fit_stats_", {}).get("deleted", 0)),
        "components_merged": int(getattr(est, "fit_stats_", {}).get("merges", 0)),
        "truncation": int(getattr(est, "truncation_", len(weights))),
        "restarts": int(params.get("restarts", 1)),
    }
    record["clusters_at_floor"] = clusters_at_floor(est, weights > threshold)
    if hasattr(est, "saturated_"):  # torch backend
        record |= {"saturated": bool(est.saturated_), "elbo_per_sample": est.elbo_per_sample_}
        runs = est.init_results_
    else:  # scikit-learn: bound when (nearly) every component holds samples
        # a component's posterior count (its stick's first parameter less the prior's 1);
        # an empty one's expected weight can still reach 1 / n
        occupied = int((np.asarray(est.weight_concentration_[0]) - 1.0 >= 1.0).sum())
        record["saturated"] = is_saturated(occupied, len(weights), params.get("grow_at", 0.6))
        runs = []
    if runs:
        # the fits the starts reached (starts of several sizes can end at one fit: it counts
        # once); the spread is over the near-optimal ones: a start that ends far below the
        # best bound is a worse fit, not a different reading of the data
        runs = list({(r["truncation"], r["elbo_per_sample"]): r for r in runs}.values())
        best = max(r["elbo_per_sample"] for r in runs)
        near = [r for r in runs if r["elbo_per_sample"] >= best - near_best(best)]
        record |= {
            "restart_clusters_kept": [int((r["weights"] > threshold).sum()) for r in near],
            "restart_clusters_effective": [r["n_effective"] for r in near],
            "restart_elbo_per_sample": [r["elbo_per_sample"] for r in runs],
            "restarts_near_best": len(near),
        }
    if params.get("sample_check", True):
        record |= sample_check(X, params, seed, record)
    if params.get("seed_check", True):
        record |= seed_check(X, params, seed, record)
    return est, record


def clusters_at_floor(est, kept: np.ndarray) -> int:
    """How many kept clusters (``kept`` (K,) bool) have a direction whose variance is mostly
    the estimator's ``reg_covar``: there the count depends on that setting, not only on the
    data. The M-step adds ``reg_covar`` to each cluster's scatter, which its posterior
    covariance carries with weight N_k / nu_k (nu_k = nu_0 + N_k); a cluster is at the floor
    when its smallest variance is under twice that. The prior (the data's own covariance
    over nu_k) keeps a cluster off it unless the data vary by less than ``reg_covar`` times
    N_k in some direction: small activations (a random net's), near-copies of one vector."""
    cov = np.asarray(est.covariances_)[kept]
    if not len(cov):
        return 0
    smallest = np.linalg.eigvalsh(cov)[:, 0] if cov.ndim == 3 else cov.min(1)
    dof = np.asarray(est.degrees_of_freedom_)[kept]
    floor = est.reg_covar * (dof - est.degrees_of_freedom_prior_) / dof
    return int((smallest < 2 * floor).sum())


SAMPLE_GROWTH = 1.2
"""A fit keeping more than this many times the clusters the same settings keep on half its
samples (and at least 2 more) is marked ``grows_with_samples``."""


def sample_check(X: np.ndarray, params: dict, seed: int, record: dict) -> dict:
    """Does the count hold at half the samples? A Dirichlet-process mixture keeps more
    clusters the more samples it is given wherever the data are not a few Gaussian clumps
    (it tiles a curved or heavy-tailed cluster with more Gaussians as the evidence grows), so
    ``preprocess.max_samples`` can decide a count as the truncation once did.

    The same settings (restarts too) on a seeded random half of X (n, d), a tempered fit's
    (``effective_samples``) tempered by the same weight. Returns
    ``clusters_kept_half`` and ``grows_with_samples`` (the kept fit's count above
    :data:`SAMPLE_GROWTH` times the half's, and at least 2 more); counts compare between
    layers only at equal numbers of samples (``n_samples_fit``).
    """
    n = len(X)
    if n < 2 * max(params["n_components"], MIN_SAMPLES):
        return {"clusters_kept_half": None, "grows_with_samples": None}  # not checked
    half = np.sort(np.random.default_rng(seed).choice(n, n // 2, replace=False))
    half_params = {**params, "sample_check": False, "seed_check": False}
    effective = params.get("effective_samples")
    if effective is not None and effective < n:
        # a tempered fit's half weighs its samples as the fit did: half the evidence, so
        # that the check asks whether the count holds at half the effective samples
        half_params["effective_samples"] = max(1, round(effective * (n // 2) / n))
    _, on_half = fit_dpgmm(X[half], half_params, seed)
    kept_half = on_half["clusters_kept"]
    kept = record["clusters_kept"]
    grows = kept > SAMPLE_GROWTH * kept_half and kept >= kept_half + 2
    return {"clusters_kept_half": kept_half, "grows_with_samples": bool(grows)}


SEED_SPREAD = 1.15
"""A fit whose count and the count of one start from another seed's draws (:func:`seed_check`)
differ by more than this factor (and by at least 2) is marked ``moves_with_seed``."""


def other_seed(seed: int) -> int:
    """The seed of :func:`seed_check`'s fit: derived from ``seed`` (as the estimator derives
    its restarts' seeds), below 2**31."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0] >> 1)


def seed_check(X: np.ndarray, params: dict, seed: int, record: dict) -> dict:
    """Does the count hold from another seed's start? The restarts share one seed's k-means++
    draws (so that truncations K and 2K share their starts), so their spread does not show
    how much the draws themselves move the count; where the data are not a few Gaussian
    clumps, a start from other draws can end at an equally good fit with other clusters.

    One start from :func:`other_seed`'s draws on the same samples X (n, d), at the truncation
    the fit kept (``record["truncation"]``), the other settings the same (with merge moves,
    twice that truncation is tried after it while that raises the bound, as for every
    start). Returns ``clusters_kept_seed``, ``elbo_per_sample_seed`` (torch; NaN for
    scikit-learn) and ``moves_with_seed``: the two counts more than :data:`SEED_SPREAD`
    times apart (and at least 2), where the other start's fit is as good a reading of the
    data (its bound not below :func:`near_best` of the kept fit's; a start that ends below
    it is a worse fit, not another reading).
    """
    one_start = {**params, "restarts": 1, "n_components": int(record["truncation"]),
                 "sample_check": False, "seed_check": False}
    _, other = fit_dpgmm(X, one_start, other_seed(seed))
    other_bound = other.get("elbo_per_sample", float("nan"))
    return {"clusters_kept_seed": other["clusters_kept"], "elbo_per_sample_seed": other_bound,
            "moves_with_seed": count_moves(record["clusters_kept"], other["clusters_kept"],
                                           record.get("elbo_per_sample"), other_bound)}


def count_moves(kept: int, other: int, bound: float | None, other_bound: float) -> bool:
    """:func:`seed_check`'s mark: counts ``kept`` and ``other`` more than :data:`SEED_SPREAD`
    times apart and at least 2, the other fit's bound per sample not below
    :func:`near_best` of ``bound`` (None or NaN, as scikit-learn's fits have no comparable
    bound: the counts alone)."""
    apart = max(kept, other) > SEED_SPREAD * min(kept, other) and abs(kept - other) >= 2
    if bound is None or np.isnan(bound) or np.isnan(other_bound):
        return bool(apart)
    return bool(apart and other_bound >= bound - near_best(bound))


def near_best(bound: float) -> float:
    """How far below the best bound per sample a restart still counts as an equally good
    reading of the data: 1 % of it, at least 0.05 nat (the truncation check's tolerance)."""
    return max(0.01 * abs(bound), 0.05)


GROW_STEPS = 6
"""Values of K tried in each range the BIC search grows into."""


def fit_bic_baseline(X: np.ndarray, params: dict, seed: int) -> tuple[object, dict]:
    """k-means or a Gaussian mixture, the number of clusters chosen by BIC over a range.

    When the best BIC is at the top of the range, the range grows (doubling ``k_max``, up
    to ``k_limit``; each new range searched on a grid of about :data:`GROW_STEPS` values) so
    the choice is the data's; if it still is, ``saturated`` says so.
    """
    k_lo, k_hi = params["k_min"], min(params["k_max"], len(X))
    k_limit = min(max(params.get("k_limit") or 4 * params["k_max"], k_hi), len(X))
    bics: dict[int, float] = {}
    best = None
    candidates = range(k_lo, k_hi + 1)
    while True:
        for k in candidates:
            est, bic = _bic_fit(X, k, params, seed)
            bics[k] = bic
            if best is None or bic < bics[best[0]]:
                best = (k, est)
        if best[0] < k_hi or k_hi >= k_limit:
            break
        # the best K is at the top: search above it, on a grid of about GROW_STEPS values
        k_lo, k_hi = k_hi + 1, min(2 * k_hi, k_limit)
        step = max(1, (k_hi - k_lo + 1) // GROW_STEPS)
        candidates = sorted({*range(k_lo, k_hi + 1, step), k_hi})
    k, est = best
    # k-means has no weights_: its clusters' shares of the samples (the mixing proportions
    # its BIC reads, kmeans_bic), not k equal weights
    weights = (est.weights_ if params["method"] == "gmm"
               else np.bincount(est.labels_, minlength=k) / len(X))
    return est, {
        "clusters_kept": k,
        "clusters_effective": effective_number(weights),
        "lower_bound_per_sample": float(est.score(X)) if params["method"] == "gmm" else float("nan"),
        "iterations": int(getattr(est, "n_iter_", 0)),
        "converged": bool(getattr(est, "converged_", True)),
        "truncation": k_hi,
        "saturated": k == k_hi,
        "bic": bics,
    }


def _bic_fit(X, k, params, seed):
    """One candidate of the BIC search: the fitted model with k clusters and its BIC."""
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    if params["method"] == "gmm":
        est = GaussianMixture(
            k, covariance_type=params["covariance_type"], random_state=seed,
            max_iter=params.get("max_iter", 100), reg_covar=params.get("reg_covar", REG_COVAR),
        ).fit(X)
        return est, float(est.bic(X))
    est = KMeans(k, n_init=3, random_state=seed, max_iter=params.get("max_iter", 300)).fit(X)
    return est, kmeans_bic(X, est.inertia_, np.bincount(est.labels_, minlength=k))


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


def fit_model(
    array, *, layer: str, mode: str, method: str, params: dict, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict]:
    """Steps 1–3 of :func:`fit_layer`: sample, preprocess and fit, once per layer.

    Returns
    -------
    model : ``fit_index`` (the samples fitted on), the model's parameters and the
            preprocessing (what the fit's ``.npz`` holds besides the labels), then the
            ``predict_*`` arrays :func:`convdp.fitted.load_predictor` needs
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
    if mode == "image" and n < 2:  # the preprocessing would call its one vector a dead layer
        raise ValueError(f"{what}: image mode clusters one vector per image, and there is "
                         f"{n}; fit it in position mode, or on more images")
    pre_params, fit_params = params["preprocess"], params[method]
    start = time.perf_counter()

    X, index = fit_subset(array, mode, pre_params.get("max_samples"), seed)
    if not np.isfinite(X).all():
        raise ValueError(f"{what}: the activations hold NaN or Inf values")
    pca = pre_params.get("pca")
    if pca is not None and pca >= len(X) and len(X) - 1 < X.shape[1]:
        # centred samples span at most n - 1 dimensions
        log.warning("%s: preprocess.pca = %d is not below the %d samples; keeping %d "
                    "principal components", what, pca, len(X), len(X) - 1)
        pca = max(len(X) - 1, 1)
    pre = Preprocess(pca, pre_params.get("scale_max"), seed).fit(X, what)
    Xp = pre.transform(X)
    k_needed = fit_params["n_components"] if method == "dpgmm" else fit_params["k_min"]
    if len(Xp) < k_needed:
        raise ValueError(
            f"{what}: {len(Xp)} samples are fewer than the {k_needed} mixture components; "
            "lower n_components (or k_min) or use more images"
        )
    log.info("%s: fitting %s on %d samples × %d dims", what, method, *Xp.shape)
    few = len(Xp) < max(MIN_SAMPLES, MIN_SAMPLES_PER_DIM * Xp.shape[1])
    if few:
        log.warning("%s: only %d samples for %d dimensions (fewer than %d, or %d per "
                    "dimension): marked too_few_samples", what, len(Xp), Xp.shape[1],
                    MIN_SAMPLES, MIN_SAMPLES_PER_DIM)
    if method == "dpgmm":
        from convdp.dpgmm import OverflowInDtype

        # the estimator's own warnings (no convergence, float32 rounding) as the job's, naming
        # the layer: printed to stderr they reached the job's log only
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                est, record = fit_dpgmm(Xp, fit_params, seed)
            except OverflowInDtype as exc:  # the estimator's words name no layer, nor the config
                raise ValueError(f"{what}: {exc} (in the config: dpgmm.dtype: float64, or "
                                 "preprocess.scale_max)") from exc
        said = [c for c in caught if issubclass(c.category, UserWarning | RuntimeWarning)]
        for message in dict.fromkeys(str(c.message) for c in said):
            log.warning("%s: %s", what, message)
        for other in caught:  # a library's deprecations: to Python's own filters, as before
            if other not in said:
                warnings.warn_explicit(other.message, other.category, other.filename,
                                       other.lineno)
        if record["clusters_at_floor"]:
            log.warning("%s: %d of %d kept clusters have a direction whose variance is mostly "
                        "the DPGMM's reg_covar (%g), not the data's: the count can change with "
                        "that setting (dpgmm.reg_covar; marked clusters_at_floor)", what,
                        record["clusters_at_floor"], record["clusters_kept"], est.reg_covar)
        if record.get("moves_with_seed"):
            log.warning("%s: %d clusters kept, %d by a start from another seed's draws on "
                        "the same samples, at as good a bound: the count moves with the seed "
                        "(marked moves_with_seed; see dpgmm.seed_check)", what,
                        record["clusters_kept"], record["clusters_kept_seed"])
        if record.get("grows_with_samples"):
            log.warning("%s: %d clusters kept on %d samples, %d on half of them: the count "
                        "grows with the samples (marked grows_with_samples; see "
                        "preprocess.max_samples and dpgmm.effective_samples)", what,
                        record["clusters_kept"], len(Xp), record["clusters_kept_half"])
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
        "too_few_samples": few,
        "fit_seconds": time.perf_counter() - start,
        "grid": [h, w],
    }
    model = {"fit_index": index.astype(np.int64), **model_arrays(est, pre)}
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
    pre, est = predictor or load_predictor(model, f"layer {layer!r} ({mode} mode)")
    n = array.shape[0]
    stop = n if stop is None else stop
    blocks = len(chunk_bounds(n, chunk_size(array), start, stop)) - 1
    per_image = int(np.prod(array.shape[1:3])) if mode == "position" else 1
    labels, image = [], start
    for s in tqdm(iter_samples(array, mode, start=start, stop=stop), total=blocks,
                  desc=f"label {layer}/{mode}", disable=not progress):
        try:  # the estimator's (scikit-learn's) input check refuses NaN and Inf ...
            labels.append(est.predict(pre.transform(s)).astype(np.int16))
        except ValueError:  # ... in its words: name the layer and the image instead
            bad = ~np.isfinite(s).all(axis=1)
            if not bad.any():
                raise
            raise ValueError(f"layer {layer!r} ({mode} mode): the activations of image "
                             f"{image + int(np.flatnonzero(bad)[0]) // per_image} hold NaN or "
                             "Inf values") from None
        image += len(s) // per_image
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

    Returns the fit's arrays (``labels`` first, then every array of the model, its
    ``predict_*`` ones too: the atlas and the transfer scores rebuild the predictor from
    them) and its record, as :func:`fit_layer` does.
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
        if len(np.unique(class_labels)) < 2:
            log.warning("%s: the images hold one class (%s): NMI, ARI and purity with the "
                        "classes need two and are left empty", what,
                        class_labels[0] if len(class_labels) else "none")
    arrays = {"labels": labels.reshape(n, h, w) if mode == "position" else labels, **model}
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


def components_cap(config: dict) -> int:
    """The most mixture components any fit of ``config`` (validated) can hold: the DPGMM's
    truncation after growth (``dpgmm.max_components``; scikit-learn's fit does not grow), the
    BIC baseline's largest K (``baseline.k_limit``, 4 x ``k_max`` by default). The fit and
    label jobs' memory uses it."""
    dp, bl = config["dpgmm"], config["baseline"]
    grown = dp.get("max_components") if dp.get("backend", "torch") == "torch" else None
    # a fit starts at n_components even above max_components (it only grows to the larger)
    return max(dp["n_components"], grown or 0, bl.get("k_limit") or 4 * bl["k_max"])


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
