"""The verdict: the recommended cut, its check against retraining, the per-layer table.

Pure: the scores' and the retraining's records in, a table and its summary out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import takewhile

import numpy as np

from convdp.transfer.cost import price

log = logging.getLogger(__name__)

MIN_SCORED = 100
"""A layer scored on fewer target (or source) samples than this is marked
``too_few_samples`` in the table, and the verdict's summary warns."""

MIN_IMAGES = 30
"""Nor on fewer images than this: a position-mode score draws its samples from the images'
maps, and positions of one image are no independent samples (a target of 3 images drawn from
the source itself gave ``shift_z`` of -0.78 to +0.73 over 20 draws)."""

MIN_HELDOUT_IMAGES = 20
"""Retraining's accuracies measured on fewer held-out target images than this make the
verdict's summary warn (a 10-image target holds out 2: every cut then scores 0.5 or 1)."""

COLUMNS = [
    "model", "dataset", "source", "layer", "layer_index", "cut", "mode",
    "shift", "shift_z", "shift_z_step", "cover", "cover_z", "source_ll", "target_ll", "source_reference",
    "n_source_scored", "n_target_scored", "usage_js", "source_clusters_used", "target_clusters_used",
    "own_vs_source_nmi", "source_clusters_kept", "target_clusters_kept", "target_nmi",
    "target_nmi_image", "probe_accuracy", "probe_std", "retrain_accuracy", "retrain_std",
    "retrain_accuracies", "retrain_gain", "transferable", "too_few_samples", "recommended_cut",
    "retrain_best_cut",
    "spearman_shift", "spearman_shift_z",
    # the baselines (convdp.transfer.baselines) and the price of each cut (convdp.transfer.cost)
    "depth", "mmd2", "logme", "hscore", "shift_z_cut", "shift_cut", "cover_z_cut", "step_cut",
    "mmd2_cut", "params_frozen", "params_retrained", "params_retrained_share", "frozen_forward_flops",
    "train_flops", "train_flops_share", "flops_saved", "flops_saved_share",
]
COST_COLUMNS = COLUMNS[COLUMNS.index("params_frozen"):]

CUT_SCORES = {
    "shift_z_cut": ("shift_z", np.min), "shift_cut": ("shift", np.min),
    "cover_z_cut": ("cover_z", np.min), "mmd2_cut": ("mmd2", np.max),
}
"""Scores of a cut: the worst value, among the layers it freezes, of a per-layer score (the
lowest shift, the highest MMD); a row gets one when every frozen layer has the score."""


def added_shift(shift_z: Sequence[float]) -> np.ndarray:
    """The shift each layer *adds*, shallow to deep (L,): the first layer its whole
    ``shift_z``, each next layer its drop from the layer below (the table's
    ``shift_z_step``). The one list of steps that :func:`step_passes`,
    :func:`recommend_cut_by_step` and :func:`step_cut` read; a NaN stays NaN."""
    z = np.asarray(shift_z, np.float64)
    return np.concatenate([z[:1], np.diff(z)])


def step_passes(shift_z: Sequence[float], step_tolerance: float = 0.5) -> list[bool]:
    """Per layer, whether the step rule freezes it on its own: the first layer when its
    ``shift_z`` is known (whatever its value), each next layer when the shift it adds is at
    most ``step_tolerance`` (a NaN fails)."""
    added = added_shift(shift_z)
    return [bool(np.isfinite(a)) if i == 0 else bool(a >= -step_tolerance)
            for i, a in enumerate(added)]


def step_cut(shift_z: Sequence[float]) -> list[float]:
    """The step rule's score of each cut (``step_cut``): the worst shift, in the source's
    standard deviations, that a layer the cut freezes adds (:func:`added_shift`). Where
    :func:`recommend_cut_by_step` asks whether a layer adds too much, this says by how much
    the worst one does, and the first layer's term says how far the target's low-level
    statistics are from the source's; for ``shift_z`` (one value per layer, shallow to deep)
    it returns one value per cut 1, 2, ..."""
    return [float(v) for v in np.minimum.accumulate(added_shift(shift_z))]


CONTROL_COLUMNS = ["shift_z", "usage_js", "target_clusters_kept", "target_nmi", "probe_accuracy",
                   "retrain_accuracy", "retrain_std"]
"""The scores of the model's random-weights control (:mod:`convdp.control`) put beside the
model's own in the table, as ``control_<name>`` (with ``control_model``)."""



def rule_score_of(rows: Sequence[dict]) -> str:
    """The score the ``level`` rule reads: ``cover_z`` (the shift once each side may weight
    the source's clusters as it likes, :func:`convdp.transfer.scores.coverage_shift`) where
    every layer has a finite one, else ``shift_z`` (a NaN fails a layer: a ``cover_z`` that
    could not be computed would have read as "retrain it"). On the transfer benchmark's seeds 0, 1 and 2 the
    ``cover_z`` rule's cut was within tolerance of the best for one more shifted target than
    the ``shift_z`` rule's (3 of 5 against 2 of 5 on each): a target whose low-level
    statistics change only in proportion (inverted contrast: the same edges, the other way
    round) keeps its first layer."""
    usable = rows and all(np.isfinite(r.get("cover_z", np.nan)) for r in rows)
    return "cover_z" if usable else "shift_z"


RULES = ("step", "level")
"""The rules for the recommended cut: ``step`` (the default, :func:`recommend_cut_by_step`)
and ``level`` (:func:`recommend_cut`)."""


def recommend_cut_by_step(shift_z: Sequence[float], step_tolerance: float = 0.5) -> int:
    """The recommended cut from the shift each layer adds: how many layers to freeze.

    Rule ``step``: freeze the first layer, then each next layer as long as the shift it adds
    — the drop of ``shift_z`` from the layer below it, in standard deviations of the held-out
    source's log-likelihoods — is at most ``step_tolerance``; the first layer that adds more
    is retrained, and every layer above it. A shift that comes in at the first layer (the
    target's pixels differ: rotated, inverted, textured) is carried by every layer above
    it, so the level of ``shift_z`` there says little about whether a deeper layer is
    specific to the source; its increase does. The first layer is frozen whatever its
    shift (first-layer features are the general ones, Yosinski et al. 2014); the table
    still shows its ``shift_z``. A NaN stops the run (a NaN first layer: 0).
    Returns n (0 = retrain everything; L = every layer transfers).
    """
    return _frozen_prefix(step_passes(shift_z, step_tolerance))


def recommend_cut(shift_z: Sequence[float], tolerance: float = 1.0) -> int:
    """The recommended cut from the unlabelled domain shift: how many layers to freeze.

    Rule ``level``: freeze up to the deepest layer L such that *every* layer from the first up to
    and including L has a standardised domain shift ``shift_z >= -tolerance``, i.e. the
    target's mean log-likelihood under the source's DPGMM is at most ``tolerance`` standard
    deviations (of the held-out source samples' log-likelihoods) below that of unseen
    source data. Layers are frozen as a prefix, so the first layer that fails ends the run.
    Returns n (0 = no layer passes: retrain everything; L = every layer transfers).
    """
    return _frozen_prefix(level_passes(shift_z, tolerance))


def level_passes(shift_z: Sequence[float], tolerance: float = 1.0) -> list[bool]:
    """Rule ``level``'s per-layer test: ``shift_z >= -tolerance`` (a NaN fails)."""
    return [bool(z >= -tolerance) for z in shift_z]


def _frozen_prefix(passes) -> int:
    """How many layers, from the first, pass before the first that fails: layers are frozen
    as a prefix, so the first failure ends the run (both rules)."""
    return sum(1 for _ in takewhile(bool, passes))


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
    rule: str = "step",
    step_tolerance: float = 0.5,
    shift_tolerance: float = 1.0,
    accuracy_tolerance: float = 0.02,
    control: tuple[dict, dict | None] | None = None,
):
    """The verdict table (one row per layer) and its summary.

    ``scores`` is :func:`convdp.pipeline.transfer_scores`' record, ``retrain``
    :func:`convdp.transfer.retrain.anb_retrain`'s (or None; its ``costs`` give each row's
    price and the summary's ``decision``: "freeze up to X: retrain Y% of the parameters, Z%
    of the training compute"). ``control``: the same two records of the model's
    random-weights control, whose scores go beside the model's (:data:`CONTROL_COLUMNS`; the
    summary's ``control``). ``rule``: ``step`` (:func:`recommend_cut_by_step` with
    ``step_tolerance``) or ``level`` (:func:`recommend_cut` on :func:`rule_score_of`'s score
    with ``shift_tolerance``). Returns ``(DataFrame, summary dict)``.
    """
    import pandas as pd

    if rule not in RULES:
        raise ValueError(f"transfer.rule {rule!r}: choose one of {', '.join(RULES)}")
    rows = [dict(r) for r in scores["layers"]]
    layers = [r["layer"] for r in rows]
    shift_z = [r["shift_z"] for r in rows]
    for i, (r, added) in enumerate(zip(rows, added_shift(shift_z), strict=True)):
        r["shift_z_step"] = float(added) if i else float("nan")
    if rule == "step":
        rule_score = "shift_z"
        passes = step_passes(shift_z, step_tolerance)
        rule_text = (f"freeze the first layer, then each next layer while the shift it adds "
                     f"(shift_z_step, the drop of shift_z from the layer below) is at most "
                     f"{step_tolerance}")
    else:
        rule_score = rule_score_of(rows)
        passes = level_passes([r[rule_score] for r in rows], shift_tolerance)
        rule_text = (f"freeze up to the deepest layer L such that every layer up to L has "
                     f"{rule_score} >= -{shift_tolerance}")
    # the cut of either rule: recommend_cut_by_step / recommend_cut on the same passes
    n_rec = _frozen_prefix(passes)
    cuts = retrain["cuts"] if retrain else []
    costs = (retrain or {}).get("costs") or []
    acc0 = cuts[0]["mean"] if cuts else float("nan")
    step_scores = step_cut(shift_z)
    for i, r in enumerate(rows):
        r["cut"] = i + 1
        r["depth"] = i + 1
        # a cut freezes every layer up to it: its worst layer's score
        for name, (score, worst) in CUT_SCORES.items():
            if all(score in q for q in rows[:i + 1]):
                r[name] = float(worst([q[score] for q in rows[:i + 1]]))
        r["step_cut"] = step_scores[i]
        if costs:
            r |= {k: costs[i + 1][k] for k in COST_COLUMNS}
        c = cuts[i + 1] if cuts else None
        r["retrain_accuracy"] = c["mean"] if c else float("nan")
        r["retrain_std"] = c["std"] if c else float("nan")
        r["retrain_accuracies"] = ";".join(f"{a:.4f}" for a in c["accuracies"]) if c else ""
        r["retrain_gain"] = r["retrain_accuracy"] - acc0
        r["transferable"] = bool(passes[i])
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
        "rule": rule_text,
        "rule_name": rule,
        "rule_score": rule_score,
        "step_tolerance": step_tolerance,
        "shift_tolerance": shift_tolerance,
        "recommended_cut": n_rec,
        "recommended_layer": name(n_rec),
        "recommendation": (f"freeze up to layer {name(n_rec)}" if n_rec
                           else "freeze nothing (retrain every layer)"),
        "price": price(costs[n_rec]) if costs else None,
        "costs": costs,
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
    if costs:
        summary["decision"] = f"{summary['recommendation']}: {summary['price']}"
    warnings = []
    if summary["too_few_samples"]:
        warnings.append(
            f"scored on fewer than {MIN_SCORED} samples or {MIN_IMAGES} images at "
            f"{', '.join(summary['too_few_samples'])}: the shift there is not a reliable basis "
            "for the verdict")
    n_val = [r["n_val"] for r in (retrain or {}).get("runs", []) if "n_val" in r]
    if n_val and min(n_val) < MIN_HELDOUT_IMAGES:
        warnings.append(f"retraining's accuracies are measured on {min(n_val)} held-out target "
                        f"images (fewer than {MIN_HELDOUT_IMAGES}): the cut they favour is "
                        "chance as much as data")
    if warnings:
        summary["warning"] = "; ".join(warnings)
        log.warning("%s -> %s: %s", scores["source"], scores["dataset"], summary["warning"])
    for r in rows:
        r["recommended_cut"] = name(n_rec)
        r["retrain_best_cut"] = name(n_best) if n_best is not None else ""
        r["spearman_shift"] = corr["shift"]
        r["spearman_shift_z"] = corr["shift_z"]
        r |= {k: scores[k] for k in ("model", "dataset", "source")}
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)  # a column no row has: NaN
    columns = list(COLUMNS)
    if control is not None:
        cdf, csum = verdict(*control, rule=rule, step_tolerance=step_tolerance,
                            shift_tolerance=shift_tolerance, accuracy_tolerance=accuracy_tolerance)
        if list(cdf["layer"]) != layers:
            raise ValueError(f"the control {csum['model']!r} was scored on layers "
                             f"{list(cdf['layer'])}, the model on {layers}")
        df["control_model"] = csum["model"]
        for col in CONTROL_COLUMNS:
            df[f"control_{col}"] = cdf[col].to_numpy()
        columns += ["control_model"] + [f"control_{c}" for c in CONTROL_COLUMNS]
        summary["control"] = {k: csum[k] for k in (
            "model", "recommended_cut", "recommended_layer", "retrain_best_cut",
            "retrain_best_layer", "retrain_accuracy_at_best", "retrain_cuts")}
    return df[columns], summary
