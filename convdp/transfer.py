"""Which layers transfer: a per-layer verdict from the DPGMM fits, checked against retraining.

For a net trained on a *source* data set and a *target* data set it was not trained on,
each configured layer gets, from unlabelled activations only:

- **domain shift**: the mean log-likelihood per sample of the target's activations under
  the DPGMM fitted on the source, minus that of *held-out* source activations (samples
  that are not in the source fit's ``fit_index``). The fitted estimator (either backend) and
  the fit's preprocessing are rebuilt from the arrays saved in the fit's ``.npz`` (no
  pickles; :mod:`convdp.fitted`). The log-likelihood is ``score_samples`` of the variational
  model (scikit-learn's definition: expected log-density under the variational posterior). 0 means the target looks like unseen source data; more negative means less
  transferable. ``shift_z`` is the same difference in units of the standard deviation of
  the held-out source log-likelihoods (an effect size, comparable across layers);
- **cluster usage**: which of the source's clusters the target's samples fall in: how many
  hold more than ``weight_threshold`` of the target's samples, and the Jensen–Shannon
  divergence (base 2, 0…1) between the target's and the source's cluster-usage
  distributions; and how the target's own clusters relate to the source's (NMI);
- clusters kept on each side and the NMI of the target's own clusters with the target's
  classes (read from the fits' JSON records).

And, using the target's labels:

- **linear probe**: cross-validated (stratified, seeded) accuracy of a logistic regression
  on the spatially averaged layer features of the target images;
- **retraining** (the ground truth; Yosinski et al. 2014, "AnB"): for each cut ``n = 0…L``
  the parameters of every module up to and including the n-th configured layer keep the
  source weights and are frozen; everything above is re-initialised (a new head for the
  target's classes) and trained on the target for ``epochs`` epochs. The held-out target
  accuracy is recorded per cut and seed (``n = 0`` is training from scratch).

The **recommended cut** (:func:`recommend_cut`) uses the unlabelled score only, and the
Spearman rank correlation across layers between each score and the retraining accuracy
at that layer's cut says how well the unlabelled score predicts the real outcome.

Mode: by default the *position*-mode fits are scored (``transfer.mode``): the paper's mode,
many samples per image, so a source fit capped at ``preprocess.max_samples`` leaves plenty of
held-out positions, and it gives the label maps. Held-out positions come from the same images
as some fitted ones, so the held-out reference is slightly optimistic (the shift slightly more
negative) than a fresh-image reference would be. In *image* mode, and wherever fewer than
:data:`MIN_HELDOUT` samples are held out, the fitted samples themselves are the reference
(``source_reference = "in-sample"``), which biases the shift towards more negative values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convdp.fitted import load_npz, load_predictor
from convdp.preprocess import Preprocess
from convdp.samples import check_mode, image_chunks, iter_samples, n_samples, to_samples

log = logging.getLogger(__name__)

MIN_HELDOUT = 100
"""Fewer held-out source samples than this: the in-sample ones are used (and flagged)."""

MIN_SCORED = 100
"""A layer scored on fewer target (or source) samples than this is marked
``too_few_samples`` in the table, and the verdict's summary warns."""

COLUMNS = [
    "model", "dataset", "source", "layer", "layer_index", "cut", "mode",
    "shift", "shift_z", "source_ll", "target_ll", "source_reference", "n_source_scored",
    "n_target_scored", "usage_js", "source_clusters_used", "target_clusters_used",
    "own_vs_source_nmi", "source_clusters_kept", "target_clusters_kept", "target_nmi",
    "target_nmi_image", "probe_accuracy", "probe_std", "retrain_accuracy", "retrain_std",
    "retrain_accuracies", "retrain_gain", "transferable", "too_few_samples", "recommended_cut",
    "retrain_best_cut",
    "spearman_shift", "spearman_shift_z",
]


# --------------------------------------------------------------------------------------
# Rebuilding a saved fit


def load_fit(npz_path: str | Path) -> tuple[dict[str, np.ndarray], Preprocess, object]:
    """A DPGMM fit's arrays, its preprocessing and its estimator (rebuilt by
    :func:`convdp.fitted.load_predictor`: the backend that made the fit)."""
    arrays = load_npz(npz_path)
    return (arrays, *load_predictor(arrays, str(npz_path)))


# --------------------------------------------------------------------------------------
# Scores from the activations


def read_samples(array, mode: str, index: np.ndarray) -> np.ndarray:
    """The samples at the sorted indices ``index`` of a layer (N, H, W, C), chunk by chunk."""
    index = np.asarray(index, np.int64)
    per_image = n_samples(array.shape, mode) // array.shape[0]
    parts = []
    for start, stop, block in image_chunks(array):
        lo, hi = np.searchsorted(index, [start * per_image, stop * per_image])
        if hi > lo:
            parts.append(to_samples(block, mode)[index[lo:hi] - start * per_image])
    if not parts:
        return np.empty((0, array.shape[-1]), np.float32)
    return np.concatenate(parts)


def subsample(index: np.ndarray, max_samples: int | None, seed: int) -> np.ndarray:
    """A seeded random subset (sorted) of at most ``max_samples`` of ``index``."""
    index = np.asarray(index, np.int64)
    if max_samples is None or len(index) <= max_samples:
        return index
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(index, size=max_samples, replace=False))


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
    k = len(arrays["weights"])
    n_src = n_samples(source_array.shape, mode)
    heldout = np.setdiff1d(np.arange(n_src), arrays["fit_index"], assume_unique=True)
    reference = "held-out"
    if len(heldout) < MIN_HELDOUT:
        log.warning("only %d held-out source samples (%s mode): scoring the fitted ones instead; "
                    "the shift is then biased towards more negative values", len(heldout), mode)
        heldout, reference = np.arange(n_src), "in-sample"
    src_index = subsample(heldout, max_samples, seed)
    tgt_index = subsample(np.arange(n_samples(target_array.shape, mode)), max_samples, seed + 1)
    Xs = pre.transform(read_samples(source_array, mode, src_index))
    Xt = pre.transform(read_samples(target_array, mode, tgt_index))
    ll_s, ll_t = est.score_samples(Xs), est.score_samples(Xt)
    assigned = est.predict(Xt)
    source_usage = np.bincount(np.asarray(arrays["labels"]).ravel(), minlength=k)
    target_usage = np.bincount(assigned, minlength=k)
    sd = float(ll_s.std())
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
        "too_few_samples": min(len(src_index), len(tgt_index)) < MIN_SCORED,
        "usage_js": js_divergence(source_usage, target_usage),
        "source_clusters_used": int((source_usage / source_usage.sum() > weight_threshold).sum()),
        "target_clusters_used": int((target_usage / target_usage.sum() > weight_threshold).sum()),
        "source_usage": source_usage.tolist(),
        "target_usage": target_usage.tolist(),
        "target_index": tgt_index,
        "target_assigned": assigned,
    }
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


# --------------------------------------------------------------------------------------
# Retraining (the ground truth)


def frozen_parameters(model, layers: Sequence[str]) -> list[list[str]]:
    """For each cut ``n = 0…L``: the parameter names frozen when the first n layers are kept.

    A parameter is frozen at cut n when its module runs no later than the n-th configured
    layer (graph order of :func:`convdp.models.layer_names`; a layer given as a module name,
    e.g. a ResNet stage, ends at its last node). Parameters of modules that are not graph
    nodes are never frozen. ``layers`` must go from the input towards the output.
    """
    from convdp.models import layer_names

    nodes = layer_names(model)
    pos = {n: i for i, n in enumerate(nodes)}

    def position(name: str) -> float:
        if name in pos:
            return pos[name]
        inside = [pos[n] for n in nodes if n.startswith(f"{name}.")]
        return max(inside) if inside else float("inf")

    cut_pos = [position(layer) for layer in layers]
    if any(np.isinf(p) for p in cut_pos):
        raise ValueError(f"layers {list(layers)} are not all graph nodes or modules of the net")
    if any(b <= a for a, b in zip(cut_pos, cut_pos[1:], strict=False)):
        raise ValueError(f"layers {list(layers)} must be listed from the input towards the output "
                         "to define cuts")
    names = [name for name, _ in model.named_parameters()]
    param_pos = {name: position(name.rsplit(".", 1)[0]) if "." in name else float("inf")
                 for name in names}
    return [[]] + [[n for n in names if param_pos[n] <= p] for p in cut_pos]


def anb_retrain(
    meta: dict,
    weights: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    layers: Sequence[str],
    *,
    epochs: int = 5,
    seeds: Sequence[int] = (0, 1),
    train: dict | None = None,
    device: str = "cpu",
    progress: bool = False,
    data_name: str = "the target data",
) -> dict:
    """Yosinski's AnB for every cut: freeze the source's first n layers, retrain the rest.

    For each seed the net is built once per cut with the same seeded initialisation
    (``torch.manual_seed(seed)``), the frozen parameters are overwritten with the source's,
    and :func:`convdp.models.train_classifier` trains the others (``trainable``) on the
    target for ``epochs`` epochs; its seeded, stratified held-out split (the same for every
    cut of one seed) gives the accuracy. ``train`` holds ``batch_size``, ``lr``,
    ``weight_decay``, ``val_fraction`` (the model's training settings).

    Returns ``{"cuts": [{"cut", "layer", "accuracies", "mean", "std", ...}], "runs": [...]}``.
    """
    import torch

    from convdp.models import build_model, load_state_dict, train_classifier

    train = {k: v for k, v in (train or {}).items()
             if k in ("batch_size", "lr", "weight_decay", "val_fraction")}
    classes = np.unique(labels)
    y = np.searchsorted(classes, labels)
    source = load_state_dict(weights)
    arch, in_ch = meta["arch"], meta["in_channels"]
    frozen = frozen_parameters(build_model(arch, len(classes), in_ch), layers)
    runs = []
    for seed in seeds:
        for cut, names in enumerate(frozen):
            torch.manual_seed(seed)
            net = build_model(arch, len(classes), in_ch)
            state = net.state_dict()
            for name in names:
                if source[name].shape != state[name].shape:
                    raise ValueError(f"source parameter {name} has shape {tuple(source[name].shape)}, "
                                     f"the target net's {tuple(state[name].shape)}")
                state[name] = source[name]
            net.load_state_dict(state)
            trainable = [n for n, _ in net.named_parameters() if n not in names]
            if not trainable:
                raise ValueError(f"cut {cut} freezes every parameter; nothing is left to train")
            start = time.perf_counter()
            metrics = train_classifier(net, images, y, mean=meta["mean"], std=meta["std"],
                                       epochs=epochs, seed=seed, device=device,
                                       trainable=trainable, progress=progress,
                                       data_name=data_name, **train)
            runs.append({
                "seed": seed, "cut": cut, "layer": layers[cut - 1] if cut else None,
                "accuracy": metrics["val_accuracy"], "n_val": metrics["n_val"],
                "n_frozen": len(names), "n_trainable": len(trainable),
                "seconds": time.perf_counter() - start,
            })
            log.info("AnB cut %d (%s), seed %d: held-out accuracy %.4f (%.1f s)", cut,
                     runs[-1]["layer"] or "nothing frozen", seed, runs[-1]["accuracy"],
                     runs[-1]["seconds"])
    cuts = []
    for cut in range(len(frozen)):
        acc = np.array([r["accuracy"] for r in runs if r["cut"] == cut])
        cuts.append({"cut": cut, "layer": layers[cut - 1] if cut else None,
                     "accuracies": acc.tolist(), "mean": float(acc.mean()),
                     "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0})
    return {"cuts": cuts, "runs": runs, "epochs": epochs, "seeds": list(seeds),
            "classes": classes.tolist(), "n_images": len(labels)}


# --------------------------------------------------------------------------------------
# The verdict


def recommend_cut(shift_z: Sequence[float], tolerance: float = 1.0) -> int:
    """The recommended cut from the unlabelled domain shift: how many layers to freeze.

    Rule: freeze up to the deepest layer L such that *every* layer from the first up to
    and including L has a standardised domain shift ``shift_z >= -tolerance``, i.e. the
    target's mean log-likelihood under the source's DPGMM is at most ``tolerance`` standard
    deviations (of the held-out source samples' log-likelihoods) below that of unseen
    source data. Layers are frozen as a prefix, so the first layer that fails ends the run.
    Returns n (0 = no layer passes: retrain everything; L = every layer transfers).
    """
    n = 0
    for z in shift_z:
        if not (z >= -tolerance):  # NaN fails too
            break
        n += 1
    return n


def best_retrain_cut(means: Sequence[float], tolerance: float = 0.02) -> int:
    """The deepest cut whose mean retraining accuracy is within ``tolerance`` of the best cut's."""
    means = np.asarray(means, np.float64)
    ok = np.flatnonzero(means >= np.nanmax(means) - tolerance)
    return int(ok.max())


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation; NaN when either side is constant or has fewer than 3 values."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)


def verdict(
    scores: dict,
    retrain: dict | None,
    *,
    shift_tolerance: float = 1.0,
    accuracy_tolerance: float = 0.02,
):
    """The verdict table (one row per layer) and its summary.

    ``scores`` is :func:`transfer_scores`' record, ``retrain`` :func:`anb_retrain`'s
    (or None). Returns ``(DataFrame, summary dict)``.
    """
    import pandas as pd

    rows = [dict(r) for r in scores["layers"]]
    layers = [r["layer"] for r in rows]
    n_rec = recommend_cut([r["shift_z"] for r in rows], shift_tolerance)
    cuts = retrain["cuts"] if retrain else []
    acc0 = cuts[0]["mean"] if cuts else float("nan")
    for i, r in enumerate(rows):
        r["cut"] = i + 1
        c = cuts[i + 1] if cuts else None
        r["retrain_accuracy"] = c["mean"] if c else float("nan")
        r["retrain_std"] = c["std"] if c else float("nan")
        r["retrain_accuracies"] = ";".join(f"{a:.4f}" for a in c["accuracies"]) if c else ""
        r["retrain_gain"] = r["retrain_accuracy"] - acc0
        r["transferable"] = bool(r["shift_z"] >= -shift_tolerance)
    acc = [r["retrain_accuracy"] for r in rows]
    corr = {
        "shift": spearman([r["shift"] for r in rows], acc),
        "shift_z": spearman([r["shift_z"] for r in rows], acc),
        "usage_js_negated": spearman([-r["usage_js"] for r in rows], acc),
        "probe_accuracy": spearman([r["probe_accuracy"] for r in rows], acc),
    }
    n_best = best_retrain_cut([c["mean"] for c in cuts], accuracy_tolerance) if cuts else None
    name = lambda n: layers[n - 1] if n else "none"  # noqa: E731
    summary = {
        "model": scores["model"], "dataset": scores["dataset"], "source": scores["source"],
        "mode": scores["mode"],
        "rule": (f"freeze up to the deepest layer L such that every layer up to L has "
                 f"shift_z >= -{shift_tolerance}"),
        "shift_tolerance": shift_tolerance,
        "recommended_cut": n_rec,
        "recommended_layer": name(n_rec),
        "recommendation": (f"freeze up to layer {name(n_rec)}" if n_rec
                           else "freeze nothing (retrain every layer)"),
        "accuracy_tolerance": accuracy_tolerance,
        "retrain_best_cut": n_best,
        "retrain_best_layer": name(n_best) if n_best is not None else None,
        "retrain_accuracy_at_recommended": cuts[n_rec]["mean"] if cuts else None,
        "retrain_accuracy_at_best": cuts[n_best]["mean"] if cuts else None,
        "retrain_accuracy_scratch": acc0 if cuts else None,
        "retrain_cuts": cuts,
        "retrain_epochs": retrain["epochs"] if retrain else None,
        "retrain_seeds": retrain["seeds"] if retrain else None,
        "spearman": corr,
        "too_few_samples": [r["layer"] for r in rows if r.get("too_few_samples")],
        "min_scored": MIN_SCORED,
    }
    if summary["too_few_samples"]:
        summary["warning"] = (
            f"scored on fewer than {MIN_SCORED} samples at {', '.join(summary['too_few_samples'])}"
            ": the shift there is not a reliable basis for the verdict")
        log.warning("%s -> %s: %s", scores["source"], scores["dataset"], summary["warning"])
    for r in rows:
        r["recommended_cut"] = name(n_rec)
        r["retrain_best_cut"] = name(n_best) if n_best is not None else ""
        r["spearman_shift"] = corr["shift"]
        r["spearman_shift_z"] = corr["shift_z"]
        r |= {k: scores[k] for k in ("model", "dataset", "source")}
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = np.nan
    return df[COLUMNS], summary


# --------------------------------------------------------------------------------------
# Figures


def plot_transfer(df, summary: dict, dest: str | Path) -> None:
    """Four panels: log-likelihoods, standardised shift with the rule, cluster usage, accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convdp.aggregate import save_figure

    layers = df["layer"].tolist()
    x = np.arange(1, len(layers) + 1)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    ax.plot(x, df["source_ll"], "o-", label=f"held-out {summary['source']}")
    ax.plot(x, df["target_ll"], "s-", label=summary["dataset"])
    ax.set_ylabel("mean log-likelihood per sample")
    ax.set_title("Under the DPGMM fitted on the source")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    tol = summary["shift_tolerance"]
    ax.axhspan(-tol, max(0.5, float(np.nanmax(df["shift_z"])) + 0.2), color="tab:green", alpha=0.12)
    ax.axhline(-tol, color="tab:green", lw=1, ls="--", label=f"rule: shift_z ≥ −{tol:g}")
    ax.plot(x, df["shift_z"], "o-", color="tab:red", label="shift_z (target − source, in SDs)")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("standardised domain shift")
    ax.set_title(f"Recommended: {summary['recommendation']}")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    w = 0.35
    ax.bar(x - w / 2, df["source_clusters_used"], w, alpha=0.35, color="tab:blue",
           label="source clusters used by the source")
    ax.bar(x + w / 2, df["target_clusters_used"], w, alpha=0.35, color="tab:orange",
           label="source clusters used by the target")
    ax.set_ylabel("clusters holding > weight threshold")
    ax.set_ylim(0, 1.35 * max(float(df["source_clusters_used"].max()), 1.0))
    ax2 = ax.twinx()
    ax2.plot(x, df["usage_js"], "o-", color="tab:purple", label="JS divergence of cluster usage")
    ax2.set_ylim(0, max(0.1, 1.2 * float(np.nanmax(df["usage_js"]))))
    ax2.set_ylabel("Jensen–Shannon divergence (bits)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left", ncol=2)
    ax.set_title("How the target uses the source's clusters")
    ax = axes[1, 1]
    cuts = summary["retrain_cuts"]
    if cuts:
        cx = np.array([c["cut"] for c in cuts])
        mean = np.array([c["mean"] for c in cuts])
        std = np.array([c["std"] for c in cuts])
        ax.errorbar(cx, mean, yerr=std, fmt="o-", capsize=3, color="tab:blue",
                    label=f"AnB retraining ({summary['retrain_epochs']} epochs, "
                          f"{len(summary['retrain_seeds'])} seeds)")
        for c in cuts:
            ax.scatter([c["cut"]] * len(c["accuracies"]), c["accuracies"], s=8, color="tab:blue",
                       alpha=0.5)
        ax.axvline(summary["retrain_best_cut"], color="tab:blue", ls=":", lw=1,
                   label="best cut by retraining")
    ax.plot(x, df["probe_accuracy"], "s--", color="tab:orange", label="linear probe (CV)")
    ax.axvline(summary["recommended_cut"], color="tab:green", ls="--", lw=1,
               label="recommended cut (unlabelled)")
    ax.set_xticks(np.arange(0, len(layers) + 1), ["none"] + layers)
    ax.set_xlabel("frozen up to layer (cut)")
    ax.set_ylabel("target held-out accuracy")
    ax.set_ylim(0, 1.02)
    rho = summary["spearman"]
    ax.set_title(f"Retraining (ground truth). Spearman with it: shift {rho['shift']:.2f}, "
                 f"shift_z {rho['shift_z']:.2f}", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    for a in axes[0].tolist() + [axes[1, 0]]:
        a.set_xticks(x, layers)
    title = (f"Which layers of {summary['model']} transfer from {summary['source']} to "
             f"{summary['dataset']} ({summary['mode']} mode)")
    if summary.get("warning"):
        title += f"\nWARNING: {summary['warning']}"
    fig.suptitle(title, color="firebrick" if summary.get("warning") else "black")
    fig.tight_layout()
    save_figure(fig, dest)


def plot_transfer_label_maps(maps: dict, layers: Sequence[str], dest: str | Path, title: str = ""):
    """For each example image, two rows: labels from the SOURCE's fit and from the target's own.

    ``maps`` holds ``images`` (n, H, W, C) and per layer ``source_{layer}`` (the source
    DPGMM's labels of the target images) and ``target_{layer}`` (the target fit's own
    labels, recoloured: each target cluster takes the colour of the source cluster most of
    its samples fall in), both (n, h, w).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convdp.aggregate import save_figure

    images = maps["images"]
    n = len(images)
    ncols = 1 + len(layers)
    fig, axes = plt.subplots(2 * n, ncols, figsize=(1.7 * ncols, 1.7 * 2 * n), squeeze=False)
    cmap = plt.get_cmap("tab20")
    for i in range(n):
        for j, (side, label) in enumerate((("source", "source fit"), ("target", "target's fit"))):
            r = 2 * i + j
            img = images[i]
            axes[r, 0].imshow(img[..., 0] if img.shape[-1] == 1 else img,
                              cmap="gray" if img.shape[-1] == 1 else None)
            axes[r, 0].set_ylabel(f"#{i}\n{label}", fontsize=7)
            for c, layer in enumerate(layers, start=1):
                key = f"{side}_{layer}"
                if key in maps:
                    axes[r, c].imshow(maps[key][i] % 20, cmap=cmap, vmin=0, vmax=19,
                                      interpolation="nearest")
                if r == 0:
                    axes[r, c].set_title(layer, fontsize=8)
        if i == 0:
            axes[0, 0].set_title("input", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or "Target images labelled by the source's DPGMM vs the target's own", fontsize=9)
    save_figure(fig, dest)


def _placeholder(dest: str | Path, text: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convdp.aggregate import save_figure

    fig, ax = plt.subplots(figsize=(5, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    save_figure(fig, dest)


# --------------------------------------------------------------------------------------
# The workflow's jobs


def transfer_scores(
    source_manifest: str | Path,
    target_manifest: str | Path,
    source_fits: dict[str, str | Path],
    target_fits: dict[str, str | Path],
    target_dataset: str | Path,
    layers: Sequence[str],
    out_json: str | Path,
    out_maps: str | Path,
    *,
    mode: str = "position",
    target_image_fits: dict[str, str | Path] | None = None,
    max_samples: int | None = 20000,
    probe_folds: int = 5,
    weight_threshold: float = 0.01,
    n_examples: int = 3,
    seed: int = 0,
    context: dict | None = None,
) -> dict:
    """Every unlabelled score (and the linear probe) per layer; example label maps.

    ``source_fits`` / ``target_fits`` map each layer to its DPGMM fit's ``.npz`` in ``mode``
    (the ``.json`` beside it is read too); ``target_image_fits`` (optional) to the image-mode
    fit's ``.npz``, for its NMI. Writes the record to ``out_json`` and the label maps of
    ``n_examples`` target images to ``out_maps`` (position mode only).
    """
    from convdp.data import open_dataset
    from convdp.io import read_json, write_json, write_npz
    from convdp.pipeline import open_layer

    group = open_dataset(target_dataset)
    labelled = group.attrs.get("labelled", True)
    classes = group["labels"][:] if labelled else None
    n_images = group["images"].shape[0]
    pick = np.linspace(0, n_images - 1, min(n_examples, n_images)).astype(int)
    maps: dict[str, np.ndarray] = {"images": group["images"].get_orthogonal_selection((pick,))}
    rows = []
    for i, layer in enumerate(layers):
        src_arr = open_layer(source_manifest, layer)
        tgt_arr = open_layer(target_manifest, layer)
        src_json = read_json(Path(source_fits[layer]).with_suffix(".json"))
        tgt_json = read_json(Path(target_fits[layer]).with_suffix(".json"))
        fit = load_fit(source_fits[layer])
        with np.load(target_fits[layer]) as z:
            own = z["labels"]
        s = layer_shift(src_arr, tgt_arr, fit, mode, max_samples=max_samples, seed=seed,
                        weight_threshold=weight_threshold, target_labels=own)
        if mode == "position":
            _, pre, est = fit
            block = np.asarray(tgt_arr.get_orthogonal_selection((pick,)) if hasattr(
                tgt_arr, "get_orthogonal_selection") else tgt_arr[pick])
            _, h, w, _ = block.shape
            maps[f"source_{layer}"] = est.predict(pre.transform(to_samples(block, mode))).reshape(-1, h, w)
            mapping = s["own_to_source"]
            lut = np.array([mapping.get(k, k) for k in range(int(own.max()) + 1)])
            maps[f"target_{layer}"] = lut[own[pick]]
        probe = (linear_probe(pooled_features(tgt_arr), classes, probe_folds, seed)
                 if labelled else (float("nan"), float("nan")))
        nmi_image = float("nan")
        if target_image_fits and layer in target_image_fits:
            nmi_image = read_json(Path(target_image_fits[layer]).with_suffix(".json")).get("nmi", nmi_image)
        row = {k: v for k, v in s.items()
               if k not in ("target_index", "target_assigned", "own_to_source")}
        row |= {
            "layer": layer, "layer_index": i,
            "source_clusters_kept": src_json["clusters_kept"],
            "target_clusters_kept": tgt_json["clusters_kept"],
            "target_nmi": tgt_json.get("nmi", float("nan")),
            "target_nmi_image": nmi_image,
            "probe_accuracy": probe[0], "probe_std": probe[1],
        }
        log.info("%s: shift %.3f (z %.2f), JS %.3f, probe %.3f", layer, row["shift"],
                 row["shift_z"], row["usage_js"], row["probe_accuracy"])
        rows.append(row)
    record = {"mode": mode, "layers": rows, "examples": pick.tolist(), **(context or {})}
    write_json(out_json, record)
    write_npz(out_maps, **maps)
    return record


def transfer_retrain(
    weights: str | Path,
    meta_path: str | Path,
    target_dataset: str | Path,
    layers: Sequence[str],
    out_json: str | Path,
    *,
    epochs: int = 5,
    seeds: Sequence[int] = (0, 1),
    train: dict | None = None,
    device: str = "cpu",
) -> dict:
    """Run :func:`anb_retrain` on the target data set and write its record."""
    from convdp.data import read_dataset
    from convdp.io import read_json, write_json

    meta = read_json(meta_path)
    ds = read_dataset(target_dataset)
    if ds.labels is None:
        record = {"cuts": [], "runs": [], "epochs": epochs, "seeds": list(seeds),
                  "skipped": "the target data set has no labels"}
    else:
        record = anb_retrain(meta, weights, ds.images, ds.labels, layers, epochs=epochs,
                             seeds=seeds, train=train, device=device,
                             data_name=str(target_dataset))
    write_json(out_json, record)
    return record


def transfer_verdict(
    scores_json: str | Path,
    retrain_json: str | Path,
    maps_npz: str | Path,
    out_csv: str | Path,
    out_json: str | Path,
    out_figure: str | Path,
    out_label_maps: str | Path,
    *,
    shift_tolerance: float = 1.0,
    accuracy_tolerance: float = 0.02,
) -> dict:
    """The verdict table, its summary JSON and the two figures."""
    from convdp.aggregate import write_csv
    from convdp.io import read_json, write_json

    scores = read_json(scores_json)
    retrain = read_json(retrain_json)
    df, summary = verdict(scores, retrain if retrain.get("cuts") else None,
                          shift_tolerance=shift_tolerance, accuracy_tolerance=accuracy_tolerance)
    write_csv(df, out_csv)
    summary["layers"] = df.to_dict(orient="records")
    write_json(out_json, summary)
    plot_transfer(df, summary, out_figure)
    with np.load(maps_npz) as z:
        maps = {k: z[k] for k in z.files}
    layers = [layer for layer in df["layer"] if f"source_{layer}" in maps]
    if layers:
        plot_transfer_label_maps(
            maps, layers, out_label_maps,
            f"{summary['dataset']} images labelled by the DPGMM of {summary['source']} (upper row) "
            f"and by their own DPGMM (lower row), {summary['model']}")
    else:
        _placeholder(out_label_maps, "label maps need the position-mode fits (transfer.mode)")
    return summary
