"""The unlabelled scores of one layer (domain shift, cluster usage) and the linear probe."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from convdp.draws import BASELINE_SAMPLES, MIN_HELDOUT, score_draw
from convdp.fitted import load_npz, load_predictor
from convdp.preprocess import Preprocess
from convdp.samples import check_mode, iter_samples, n_samples, read_samples, to_samples
from convdp.transfer.baselines import baseline_scores
from convdp.transfer.verdict import MIN_IMAGES, MIN_SCORED

log = logging.getLogger(__name__)


def load_fit(npz_path: str | Path) -> tuple[dict[str, np.ndarray], Preprocess, object]:
    """A DPGMM fit's arrays, its preprocessing and its estimator (rebuilt by
    :func:`convdp.fitted.load_predictor`: the backend that made the fit)."""
    arrays = load_npz(npz_path)
    return (arrays, *load_predictor(arrays, str(npz_path)))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence (base 2, in [0, 1]) between two count or probability vectors."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return max(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0)


def refitted_log_likelihood(log_prob: np.ndarray, iters: int = 500,
                            tol: float = 1e-6) -> np.ndarray:
    """Per-sample log-likelihood (N,) under a mixture of fixed components whose mixing weights
    are refitted to these samples (EM on the weights alone, from equal weights, until the mean
    rises by less than ``tol``).

    log_prob : (N, K) log density of each sample under each component
    """
    from scipy.special import logsumexp

    n, k = log_prob.shape
    log_w = np.full(k, -np.log(k))
    best = -np.inf
    for _ in range(iters):
        joint = log_prob + log_w
        ll = logsumexp(joint, axis=1)
        if ll.mean() - best < tol:
            break
        best = ll.mean()
        log_w = logsumexp(joint - ll[:, None], axis=0) - np.log(n)
    return ll


def coverage_shift(est, Xs: np.ndarray, Xt: np.ndarray, kept: np.ndarray) -> dict:
    """The shift once each data set may weight the source's clusters as it likes: the mean
    log-likelihood of the target under the source's kept clusters with weights refitted to the
    target, less the same for the held-out source samples (``cover``), and in standard
    deviations of the source's (``cover_z``). A target that uses the source's clusters in other
    proportions (another class mix, contrast inverted: other edges of the same bank) keeps
    ``cover`` near 0 while its ``shift`` falls; one whose samples fall between the source's
    clusters does not. Components the source left empty (the prior's broad shape) are left
    out: they would cover anything."""
    lp_s = est._estimate_log_prob(Xs)[:, kept]
    lp_t = est._estimate_log_prob(Xt)[:, kept]
    ll_s, ll_t = refitted_log_likelihood(lp_s), refitted_log_likelihood(lp_t)
    sd = float(ll_s.std())
    cover = float(ll_t.mean() - ll_s.mean())
    return {"cover": cover, "cover_z": cover / sd if sd > 0 else float("nan")}


def _check_fit_matches(arrays, pre, source_array, target_array, mode: str) -> None:
    """Refuse a source fit made in the other mode or on other activations than
    ``source_array`` (its labels are one per sample of that array), or a target of another
    layer (other channels): each would be scored without a word, wrongly."""
    labels_shape = tuple(np.shape(arrays["labels"]))
    grid = tuple(source_array.shape[:3]) if mode == "position" else (source_array.shape[0],)
    if len(labels_shape) != len(grid):
        fitted = "position" if len(labels_shape) == 3 else "image"
        raise ValueError(f"the source fit was made in {fitted} mode (labels of shape "
                         f"{labels_shape}), not in {mode} mode: score it in {fitted} mode")
    if labels_shape != grid:
        raise ValueError(f"the source fit labels samples of shape {labels_shape}, the source "
                         f"activations have {grid}: the fit was made on other activations "
                         "(another data set or layer)")
    channels = len(pre.keep_)
    for side, array in (("source", source_array), ("target", target_array)):
        if array.shape[-1] != channels:
            raise ValueError(f"the {side} activations have {array.shape[-1]} channels, the "
                             f"source fit's layer {channels}: another layer's activations")


def layer_shift(
    source_array,
    target_array,
    source_fit: str | Path | tuple,
    mode: str,
    *,
    max_samples: int | None = 20000,
    seed: int = 0,
    weight_threshold: float = 0.01,
    target_labels: np.ndarray | None = None,
) -> dict:
    """Domain shift and cluster usage of one layer under the source's DPGMM.

    Parameters
    ----------
    source_array, target_array : (N, H, W, C) activations of the layer (Zarr or NumPy)
    source_fit : the source fit's ``.npz`` path, or ``load_fit``'s result
    mode : ``position`` or ``image`` (the mode the source fit was made in)
    max_samples : at most this many samples are scored on each side (seeded subset)
    weight_threshold : a cluster counts as used by a data set when it holds more than this
        share of the data set's samples
    target_labels : the target's own cluster labels (flat, one per sample), for
        ``own_vs_source_nmi`` and the label colour matching; optional

    Returns
    -------
    dict of scalars, plus ``target_index`` and ``target_assigned`` (the scored target
    samples and the source cluster each falls in) and ``own_to_source`` (each target
    cluster → the source cluster most of its scored samples fall in).
    """
    from sklearn.metrics import normalized_mutual_info_score

    check_mode(mode)
    arrays, pre, est = source_fit if isinstance(source_fit, tuple) else load_fit(source_fit)
    _check_fit_matches(arrays, pre, source_array, target_array, mode)
    k = len(arrays["weights"])
    src_index, reference = score_draw(n_samples(source_array.shape, mode), "source", seed,
                                      max_samples, arrays["fit_index"])
    if reference == "in-sample":
        log.warning("fewer than %d held-out source samples (%s mode): scoring the fitted ones "
                    "instead; the shift is then biased towards more negative values",
                    MIN_HELDOUT, mode)
    tgt_index, _ = score_draw(n_samples(target_array.shape, mode), "target", seed, max_samples)
    Xs, Xt = (read_samples(a, mode, i) for a, i in ((source_array, src_index),
                                                    (target_array, tgt_index)))
    for side, x in (("source", Xs), ("target", Xt)):
        if not np.isfinite(x).all():
            raise ValueError(f"the {side} activations hold NaN or Inf values ({mode} mode)")
    Xs, Xt = pre.transform(Xs), pre.transform(Xt)
    ll_s, ll_t = est.score_samples(Xs), est.score_samples(Xt)
    assigned = est.predict(Xt)
    source_usage = np.bincount(np.asarray(arrays["labels"]).ravel(), minlength=k)
    target_usage = np.bincount(assigned, minlength=k)
    sd = float(ll_s.std())
    kept = np.flatnonzero(np.asarray(arrays["weights"]) > weight_threshold)
    out = {
        "mode": mode,
        "source_ll": float(ll_s.mean()),
        "target_ll": float(ll_t.mean()),
        "shift": float(ll_t.mean() - ll_s.mean()),
        "shift_z": float((ll_t.mean() - ll_s.mean()) / sd) if sd > 0 else float("nan"),
        "source_ll_sd": sd,
        "source_reference": reference,
        "n_source_scored": len(src_index),
        "n_target_scored": len(tgt_index),
        "n_source_images": int(source_array.shape[0]),
        "n_target_images": int(target_array.shape[0]),
        "too_few_samples": (min(len(src_index), len(tgt_index)) < MIN_SCORED
                            or min(source_array.shape[0], target_array.shape[0]) < MIN_IMAGES),
        "usage_js": js_divergence(source_usage, target_usage),
        "source_clusters_used": int((source_usage / source_usage.sum() > weight_threshold).sum()),
        "target_clusters_used": int((target_usage / target_usage.sum() > weight_threshold).sum()),
        "source_usage": source_usage.tolist(),
        "target_usage": target_usage.tolist(),
        "target_index": tgt_index,
        "target_assigned": assigned,
    }
    if hasattr(est, "_estimate_log_prob") and len(kept):
        out |= coverage_shift(est, Xs, Xt, kept)
    if target_labels is not None:
        own = np.asarray(target_labels).ravel()[tgt_index]
        out["own_vs_source_nmi"] = float(normalized_mutual_info_score(own, assigned))
        out["own_to_source"] = own_to_source(own, assigned)
    return out


def own_to_source(own: np.ndarray, assigned: np.ndarray) -> dict[int, int]:
    """Each of the target's own clusters → the source cluster most of its samples fall in."""
    from convdp.metrics import contingency

    table, own_ids, src_ids = contingency(own, assigned)
    return {int(o): int(src_ids[row.argmax()]) for o, row in zip(own_ids, table, strict=True)}


def pooled_features(array) -> np.ndarray:
    """(N, C) spatial means of a layer's activations (the image-mode samples)."""
    return np.concatenate(list(iter_samples(array, "image"))).astype(np.float64)


def linear_probe(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0):
    """Stratified, seeded k-fold accuracy of a standardised logistic regression.

    Returns ``(mean, std)`` over the folds; NaN when a class has fewer than 2 images.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, counts = np.unique(labels, return_counts=True)
    folds = min(folds, int(counts.min()))
    if folds < 2 or len(counts) < 2:
        return float("nan"), float("nan")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    acc = cross_val_score(clf, features, labels, cv=cv)
    return float(acc.mean()), float(acc.std())


def score_layer(
    source_array,
    target_array,
    source_fit: str | Path | tuple,
    target_labels: np.ndarray,
    mode: str,
    *,
    pick: np.ndarray,
    classes: np.ndarray | None = None,
    max_samples: int | None = 20000,
    probe_folds: int = 5,
    weight_threshold: float = 0.01,
    seed: int = 0,
    baseline_samples: int = BASELINE_SAMPLES,
) -> tuple[dict, dict[str, np.ndarray]]:
    """One layer's row of the scores record and its label maps.

    The row holds :func:`layer_shift`'s scalars, the linear probe on the target's
    ``classes`` (NaN when None) and :func:`convdp.transfer.baselines.baseline_scores`
    (``mmd2`` on at most ``baseline_samples`` samples a side, ``logme``, ``hscore``). In
    position mode the maps are ``source`` (the source
    DPGMM's labels of the target images ``pick``) and ``target`` (the target fit's own
    ``target_labels`` of them, each cluster renumbered to the source cluster most of its
    samples fall in), both (n, h, w), and ``weights``, the source fit's (K,) cluster weights
    (the figure colours the source's clusters by them, as the label maps and the atlas of
    that fit do: :func:`convdp.plotting.cluster_colours`); in image mode there are none.
    """
    fit = source_fit if isinstance(source_fit, tuple) else load_fit(source_fit)
    s = layer_shift(source_array, target_array, fit, mode, max_samples=max_samples, seed=seed,
                    weight_threshold=weight_threshold, target_labels=target_labels)
    maps = {}
    if mode == "position":
        _, pre, est = fit
        block = np.asarray(target_array.get_orthogonal_selection((pick,)) if hasattr(
            target_array, "get_orthogonal_selection") else target_array[pick])
        _, h, w, _ = block.shape
        maps["source"] = est.predict(pre.transform(to_samples(block, mode))).reshape(-1, h, w)
        mapping = dict(s["own_to_source"])
        own_pick = np.asarray(target_labels)[pick]
        # a target cluster none of the scored samples falls in (a small one, a small
        # transfer.max_samples): from these images' own samples, not its id read as a
        # source cluster's
        if set(np.unique(own_pick).tolist()) - set(mapping):
            mapping = own_to_source(own_pick.ravel(), maps["source"].ravel()) | mapping
        lut = np.array([mapping.get(k, k) for k in range(int(target_labels.max()) + 1)])
        maps["target"] = lut[own_pick]
        maps["weights"] = np.asarray(fit[0]["weights"], np.float64)
    pooled = pooled_features(target_array)
    probe = (linear_probe(pooled, classes, probe_folds, seed)
             if classes is not None else (float("nan"), float("nan")))
    row = {k: v for k, v in s.items()
           if k not in ("target_index", "target_assigned", "own_to_source")}
    base = baseline_scores(source_array, target_array, fit[1], mode, pooled, classes,
                           max_samples=baseline_samples, seed=seed)
    return row | {"probe_accuracy": probe[0], "probe_std": probe[1]} | base, maps
