"""The transfer benchmark: does a score order the (target, cut) pairs like retraining does?

Input: the verdict tables (one row per cut) and summaries of one model's targets
(:func:`convdp.transfer.verdict.verdict`). For every score in :data:`SCORES`, oriented so
that higher means "predicts a higher retraining accuracy", it reports

- Kendall's tau-b and weighted tau (``scipy.stats.kendalltau`` / ``weightedtau``, the latter
  as the transferability literature uses it: hyperbolic weights favouring the top) between
  the score and the mean AnB retraining accuracy over every (target, cut) pair, and per cut
  across the targets (the question depth alone cannot answer: at one cut, which targets
  transfer), with their mean over the cuts;
- two ranges of each, from resamples with replacement: of the targets (a target drawn brings
  all its cuts; ``*_targets_lo`` / ``*_hi``, the 2.5 and 97.5 percentiles: the usual bootstrap
  interval over the unit the benchmark samples, rough with six targets), and of the retraining
  seeds per target (one draw of seeds for every cut of a target, as one seed fixes a target's
  held-out split; ``*_lo`` / ``*_hi``): how far seed noise moves tau. The latter is no
  confidence interval: a resample averages fewer distinct seeds, which adds noise and lowers
  tau, so it lies mostly below the point, and the targets stay fixed;
- per target, the recommended cut (convdp's rule, unlabelled) against the best cut by
  retraining: within ``accuracy_tolerance`` of the best cut's accuracy or not, with the
  recommended cut's price (parameters and training compute retrained).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SCORES = {
    # name: (column, sign, family)
    "shift_z": ("shift_z", 1, "convdp (DPGMM, unlabelled)"),
    "shift": ("shift", 1, "convdp (DPGMM, unlabelled)"),
    "usage_js": ("usage_js", -1, "convdp (DPGMM, unlabelled)"),
    "shift_z_cut": ("shift_z_cut", 1, "convdp (DPGMM, unlabelled)"),
    "shift_cut": ("shift_cut", 1, "convdp (DPGMM, unlabelled)"),
    "cover_z": ("cover_z", 1, "convdp (DPGMM, unlabelled)"),
    "cover_z_cut": ("cover_z_cut", 1, "convdp (DPGMM, unlabelled)"),
    "step_cut": ("step_cut", 1, "convdp (DPGMM, unlabelled)"),
    "depth": ("depth", -1, "baseline (no data)"),
    "mmd2": ("mmd2", -1, "baseline (unlabelled two-sample)"),
    "mmd2_cut": ("mmd2_cut", -1, "baseline (unlabelled two-sample)"),
    "probe_accuracy": ("probe_accuracy", 1, "baseline (labelled)"),
    "logme": ("logme", 1, "baseline (labelled)"),
    "hscore": ("hscore", 1, "baseline (labelled)"),
}
"""Each score's column in the verdict table, its sign (-1: lower means more transferable)
and its family. ``depth`` is the cut's index: "the deeper, the worse"; ``shift_z_cut``,
``shift_cut``, ``cover_z_cut`` and ``mmd2_cut`` are the worst layer's value among the layers a
cut freezes (:data:`convdp.transfer.verdict.CUT_SCORES`). ``shift_cut`` uses the shift in nats
per sample, not divided by the source's spread: the fits of every layer share one PCA
dimension (``preprocess.pca``), so the layers' nats are on one scale. ``step_cut`` is the step
rule's score of a cut, the worst shift a frozen layer adds
(:func:`convdp.transfer.verdict.step_cut`)."""

CONVDP_SCORES = [k for k, v in SCORES.items() if v[2].startswith("convdp")]


def _tau(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy.stats import kendalltau, weightedtau

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    return float(kendalltau(x, y).statistic), float(weightedtau(x, y).statistic)


def pairs_table(tables: Sequence, summaries: Sequence[dict]):
    """One row per (target, cut ≥ 1): the verdict table's rows of every target, with the
    per-seed accuracies as a list (``seed_accuracies``)."""
    import pandas as pd

    frames = []
    for df, s in zip(tables, summaries, strict=True):
        df = df.copy()
        by_cut = {c["cut"]: c["accuracies"] for c in s.get("retrain_cuts") or []}
        df["seed_accuracies"] = [by_cut.get(int(c), []) for c in df["cut"]]
        df["retrain_scratch"] = s.get("retrain_accuracy_scratch")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def correlations(pairs, accuracy: np.ndarray | None = None) -> dict[tuple[str, str], tuple]:
    """``{(score, scope): (tau, weighted tau)}``; scope ``all pairs``, ``cut N`` or ``mean
    over cuts``. ``accuracy`` replaces the table's mean retraining accuracy (bootstrap)."""
    y = np.asarray(pairs["retrain_accuracy"] if accuracy is None else accuracy, np.float64)
    cuts = sorted(int(c) for c in pairs["cut"].unique())
    cut_of = pairs["cut"].to_numpy()
    out = {}
    for name, (col, sign, _) in SCORES.items():
        if col not in pairs:
            continue
        x = sign * pairs[col].to_numpy(np.float64)
        out[(name, "all pairs")] = _tau(x, y)
        per = [_tau(x[cut_of == c], y[cut_of == c]) for c in cuts]
        for c, t in zip(cuts, per, strict=True):
            out[(name, f"cut {c}")] = t
        with np.errstate(invalid="ignore"):
            means = np.array(per, np.float64)
            fin = np.isfinite(means)
            out[(name, "mean over cuts")] = tuple(
                float(np.mean(means[:, j][fin[:, j]])) if fin[:, j].any() else float("nan")
                for j in range(2))
    return out


def bootstrap_accuracy(pairs, rng: np.random.Generator) -> np.ndarray:
    """The mean retraining accuracy of each pair, its target's seeds resampled with
    replacement (one draw per target, shared by its cuts)."""
    acc = np.empty(len(pairs))
    for _target, idx in pairs.groupby("dataset").indices.items():
        n = len(pairs["seed_accuracies"].iloc[idx[0]])
        draw = rng.integers(0, n, n) if n else None
        for i in idx:
            runs = np.asarray(pairs["seed_accuracies"].iloc[i], np.float64)
            acc[i] = runs[draw].mean() if len(runs) == n and n else np.nan
    return acc


def resample_targets(pairs, rng: np.random.Generator):
    """``pairs`` of as many targets as it has, drawn with replacement (each with all its
    cuts; a target drawn twice is there twice)."""
    import pandas as pd

    groups = [grp for _, grp in pairs.groupby("dataset", sort=False)]
    return pd.concat([groups[i] for i in rng.integers(0, len(groups), len(groups))],
                     ignore_index=True)


def correlation_table(pairs, n_boot: int = 1000, seed: int = 0):
    """The correlations with their resampled ranges: a DataFrame with ``score``, ``family``,
    ``scope``, ``kendall_tau``, ``weighted_tau``, their ``*_targets_lo`` / ``*_targets_hi``
    (2.5 and 97.5 percentiles over ``n_boot`` resamples of the targets) and ``*_lo`` /
    ``*_hi`` (the same over resamples of the retraining seeds: seed noise, not a confidence
    interval; see the module's docstring)."""
    import pandas as pd

    point = correlations(pairs)
    rng = np.random.default_rng(seed)
    boots = {"": [correlations(pairs, bootstrap_accuracy(pairs, rng)) for _ in range(n_boot)],
             "_targets": [correlations(resample_targets(pairs, rng)) for _ in range(n_boot)]}
    rows = []
    for key, (tau, wtau) in point.items():
        row = {"score": key[0], "family": SCORES[key[0]][2], "scope": key[1],
               "kendall_tau": tau, "weighted_tau": wtau}
        for kind, draws in boots.items():
            for j, name in enumerate(("kendall_tau", "weighted_tau")):
                vals = np.array([b.get(key, (np.nan, np.nan))[j] for b in draws], np.float64)
                vals = vals[np.isfinite(vals)]
                lo, hi = (np.percentile(vals, [2.5, 97.5]) if len(vals) else (np.nan, np.nan))
                row[f"{name}{kind}_lo"], row[f"{name}{kind}_hi"] = float(lo), float(hi)
        rows.append(row)
    return pd.DataFrame(rows)


def recommended_table(summaries: Sequence[dict], accuracy_tolerance: float = 0.02):
    """Per target: the recommended cut (convdp's rule) and the best cut by retraining (the
    highest mean accuracy), their accuracies, whether the recommended one is within
    ``accuracy_tolerance`` of the best, and the recommended cut's price."""
    import pandas as pd

    rows = []
    for s in summaries:
        cuts = s.get("retrain_cuts") or []
        means = np.array([c["mean"] for c in cuts], np.float64)
        rec = s["recommended_cut"]
        best = int(np.nanargmax(means)) if len(means) else None
        row = {"dataset": s["dataset"], "recommended_cut": rec,
               "recommended_layer": s["recommended_layer"],
               "accuracy_at_recommended": means[rec] if len(means) else np.nan,
               "best_cut": best, "best_layer": (cuts[best]["layer"] or "none") if best is not None else None,
               "accuracy_at_best": means[best] if best is not None else np.nan,
               "deepest_within_tolerance": s.get("retrain_best_layer"),
               "within_tolerance": (bool(means[rec] >= means[best] - accuracy_tolerance)
                                    if best is not None else None),
               "decision": s.get("decision") or s["recommendation"]}
        costs = s.get("costs") or []
        if costs:
            row |= {"params_retrained_share": costs[rec]["params_retrained_share"],
                    "train_flops_share": costs[rec]["train_flops_share"]}
        rows.append(row)
    return pd.DataFrame(rows)


def plot_benchmark(pairs, corr, rec, dest: str | Path, title: str = "") -> None:
    """Three panels: tau per score (all pairs, and mean over cuts; the targets' bootstrap
    interval as a grey bar, the seeds' range as a black line, each from its low to its high
    end: the seeds' range can lie wholly below the point), the
    retraining accuracy per target and cut with the recommended and best cuts, and the
    best convdp score against the accuracy for every pair."""
    from convdp.plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    ax = axes[0]
    names = [n for n in SCORES if n in set(corr["score"])]
    y = np.arange(len(names))
    for off, scope, colour in ((-0.2, "all pairs", "tab:blue"), (0.2, "mean over cuts", "tab:orange")):
        sub = corr[corr["scope"] == scope].set_index("score").reindex(names)
        tau = sub["kendall_tau"].to_numpy(np.float64)
        ax.barh(y + off, np.nan_to_num(tau), 0.38, color=colour, alpha=0.75)
        for kind, lw, shade in (("_targets", 4.5, "0.55"), ("", 1.2, "k")):
            if f"kendall_tau{kind}_lo" in sub:
                ax.hlines(y + off, sub[f"kendall_tau{kind}_lo"], sub[f"kendall_tau{kind}_hi"],
                          color=shade, lw=lw, alpha=0.8)
        for yy, t in zip(y + off, tau, strict=True):
            if not np.isfinite(t):
                ax.text(0.01, yy, "undefined", va="center", fontsize=7, color="grey")
    ax.set_yticks(y, [f"{n}\n{SCORES[n][2]}" for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Kendall τ with the retraining accuracy\ngrey: 95 % bootstrap over the "
                  "targets; black: range over resampled seeds (seed noise)", fontsize=8)
    ax.set_title("Kendall τ with retraining: blue over all (target, cut) pairs,\n"
                 "orange per cut across targets (mean over cuts)", fontsize=10)
    ax = axes[1]
    for i, (target, grp) in enumerate(pairs.groupby("dataset", sort=False)):
        grp = grp.sort_values("cut")
        xs = np.concatenate([[0], grp["cut"].to_numpy()])
        ys = np.concatenate([[grp["retrain_scratch"].iloc[0]], grp["retrain_accuracy"].to_numpy()])
        line, = ax.plot(xs, ys, "o-", ms=3, color=f"C{i}", label=target)
        r = rec[rec["dataset"] == target].iloc[0]
        ax.scatter([r["recommended_cut"]], [r["accuracy_at_recommended"]], s=110, marker="*",
                   color=line.get_color(), edgecolor="k", zorder=5)
        ax.scatter([r["best_cut"]], [r["accuracy_at_best"]], s=70, facecolor="none",
                   edgecolor=line.get_color(), lw=1.5, zorder=5)
    layers = ["none"] + pairs.sort_values("cut")["layer"].unique().tolist()
    ax.set_xticks(range(len(layers)), layers)
    ax.set_xlabel("frozen up to layer (cut)")
    ax.set_ylabel("AnB retraining accuracy (mean over seeds)")
    ax.set_title("Retraining: ★ recommended (unlabelled), ○ best by retraining", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[2]
    allp = corr[(corr["scope"] == "all pairs") & corr["score"].isin(CONVDP_SCORES)]
    best = allp.sort_values("kendall_tau", ascending=False)["score"].iloc[0] if len(allp) else None
    if best:
        col, sign, _ = SCORES[best]
        for i, (target, grp) in enumerate(pairs.groupby("dataset", sort=False)):
            ax.scatter(grp[col], grp["retrain_accuracy"], color=f"C{i}", label=target, s=18)
            for _, r in grp.iterrows():
                ax.annotate(str(r["layer"]), (r[col], r["retrain_accuracy"]), fontsize=6,
                            xytext=(2, 2), textcoords="offset points")
        if col in ("shift_z", "shift_z_cut", "step_cut", "shift", "shift_cut") and (pairs[col].abs() > 0).any():
            ax.set_xscale("symlog", linthresh=0.1 if col in ("shift", "shift_cut") else 1.0)
        ax.set_xlabel(f"{col} ({'higher' if sign > 0 else 'lower'} = predicted to transfer)")
        ax.set_ylabel("AnB retraining accuracy")
        t = allp.set_index("score").loc[best, "kendall_tau"]
        ax.set_title(f"convdp's best unlabelled score, {best}: τ = {t:.2f} over all pairs",
                     fontsize=10)
    fig.suptitle(title, fontsize=11)
    save_figure(fig, dest)


def benchmark_job(table_paths: Sequence[str | Path], summary_paths: Sequence[str | Path],
                  out_pairs, out_correlations, out_recommended, out_summary, out_figure, *,
                  accuracy_tolerance: float = 0.02, bootstrap: int = 1000, seed: int = 0) -> dict:
    """The rule ``transfer_benchmark``: every table and summary of one model's targets in,
    the pairs, the correlations, the recommended cuts, a summary JSON and the figure out."""
    import pandas as pd

    from convdp.aggregate import write_csv
    from convdp.io import read_json, write_json

    summaries = [read_json(p) for p in summary_paths]
    pairs = pairs_table([pd.read_csv(p) for p in table_paths], summaries)
    corr = correlation_table(pairs, bootstrap, seed)
    rec = recommended_table(summaries, accuracy_tolerance)
    out = pairs.copy()
    out["seed_accuracies"] = [";".join(f"{a:.4f}" for a in v) for v in out["seed_accuracies"]]
    write_csv(out, out_pairs)
    write_csv(corr, out_correlations)
    write_csv(rec, out_recommended)
    allp = corr[corr["scope"] == "all pairs"].set_index("score")
    percut = corr[corr["scope"] == "mean over cuts"].set_index("score")
    conv = allp.loc[[s for s in CONVDP_SCORES if s in allp.index], "kendall_tau"]
    best = conv.idxmax() if conv.notna().any() else None
    summary = {
        "model": summaries[0]["model"], "source": summaries[0]["source"],
        "targets": [s["dataset"] for s in summaries], "pairs": len(pairs),
        "seeds": summaries[0].get("retrain_seeds"), "bootstrap": bootstrap,
        "accuracy_tolerance": accuracy_tolerance,
        "kendall_tau_all_pairs": allp["kendall_tau"].to_dict(),
        "weighted_tau_all_pairs": allp["weighted_tau"].to_dict(),
        "kendall_tau_mean_over_cuts": percut["kendall_tau"].to_dict(),
        "best_convdp_score": best,
        "recommended_within_tolerance": int(rec["within_tolerance"].fillna(False).sum()),
        "targets_with_retraining": int(rec["within_tolerance"].notna().sum()),
        "recommended": rec.to_dict(orient="records"),
    }
    log.info("Kendall tau over all %d pairs: %s", len(pairs),
             ", ".join(f"{k} {v:.2f}" for k, v in summary["kendall_tau_all_pairs"].items()))
    log.info("recommended cut within %.3f of the best: %d of %d targets", accuracy_tolerance,
             summary["recommended_within_tolerance"], len(rec))
    write_json(out_summary, summary)
    plot_benchmark(pairs, corr, rec, out_figure,
                   f"Transfer benchmark: {summary['model']} trained on {summary['source']}, "
                   f"{len(summaries)} targets × {pairs['cut'].nunique()} cuts, "
                   f"{len(summary['seeds'] or [])} retraining seeds")
    return summary
