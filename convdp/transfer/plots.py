"""The transfer figures: the four-panel verdict and the label maps, source fit vs target's own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convdp.plotting import (
    PALETTE,
    cluster_colours,
    label_map_rows,
    placeholder,
    pyplot,
    save_figure,
)


def plot_verdict(df, summary: dict, maps: dict, figure: str | Path, label_maps: str | Path) -> None:
    """Both figures of a verdict: :func:`plot_transfer` of the table and, from the scores'
    ``maps`` (see :func:`plot_transfer_label_maps`), the label maps of the layers that have
    them (a note instead when none has: only position-mode fits give maps)."""
    plot_transfer(df, summary, figure)
    layers = [layer for layer in df["layer"] if f"source_{layer}" in maps]
    if layers:
        plot_transfer_label_maps(
            maps, layers, label_maps,
            f"{summary['dataset']} images labelled by the DPGMM of {summary['source']} (upper row) "
            f"and by their own DPGMM (lower row), {summary['model']}")
    else:
        placeholder("label maps need the position-mode fits (transfer.mode)", label_maps,
                    figsize=(5, 2))


def plot_transfer(df, summary: dict, dest: str | Path) -> None:
    """Four panels: log-likelihoods, standardised shift with the rule, cluster usage, accuracy.
    Where the table has the model's random-weights control (``control_*`` columns), its
    shift, probe and retraining are drawn dashed beside the model's."""
    plt = pyplot()
    control = df["control_model"].iloc[0] if "control_model" in df else None
    layers = df["layer"].tolist()
    x = np.arange(1, len(layers) + 1)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    ref = df.get("source_reference", ["held-out"] * len(df))
    in_sample = [layer for layer, r in zip(layers, ref, strict=True) if r == "in-sample"]
    ax.plot(x, df["source_ll"], "o-", label=(
        f"held-out {summary['source']}" if not in_sample else
        f"{summary['source']} (the fitted samples at {', '.join(in_sample)}: too few held out)"))
    ax.plot(x, df["target_ll"], "s-", label=summary["dataset"])
    ax.set_ylabel("mean log-likelihood per sample")
    ax.set_title("Under the DPGMM fitted on the source")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    step_rule = summary.get("rule_name", "level") == "step"
    if step_rule:
        # each layer's step (the shift it adds), green where the rule lets it be frozen
        tol = summary["step_tolerance"]
        z = df["shift_z"].to_numpy(np.float64)
        for i, step in enumerate(df["shift_z_step"].to_numpy(np.float64)[1:], start=1):
            ax.annotate(f"{step:+.2f}", ((x[i] + x[i - 1]) / 2, (z[i] + z[i - 1]) / 2),
                        color="tab:green" if step >= -tol else "tab:red", fontsize=8,
                        ha="center", va="bottom", xytext=(0, 4), textcoords="offset points",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                              "alpha": 0.85})
        ax.plot([], [], " ", label=f"rule: freeze while each layer adds ≤ {tol:g} SD "
                                   "(its step: green)")
    else:
        tol = summary["shift_tolerance"]
        rule = summary.get("rule_score", "shift_z")
        ax.axhspan(-tol, max(0.5, float(np.nanmax(df[rule])) + 0.2), color="tab:green", alpha=0.12)
        ax.axhline(-tol, color="tab:green", lw=1, ls="--", label=f"rule: {rule} ≥ −{tol:g}")
    ax.plot(x, df["shift_z"], "o-", color="tab:red", label="shift_z (target − source, in SDs)")
    if df["cover_z"].notna().any():
        ax.plot(x, df["cover_z"], "^-", color="tab:brown",
                label="cover_z (the same, cluster weights refitted per side)")
    if control:
        ax.plot(x, df["control_shift_z"], "o--", color="tab:red", alpha=0.6,
                label=f"shift_z of {control} (random weights)")
    ax.axhline(0, color="k", lw=0.6)
    if step_rule:  # room above for the steps' labels
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + 0.12 * (hi - lo))
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
    # room above the taller of both sides' bars (the target can use more of the source's
    # clusters than the source does: a limit from the source's alone cut its bars off)
    ax.set_ylim(0, 1.35 * max(float(np.nanmax(df[["source_clusters_used",
                                                  "target_clusters_used"]].to_numpy(float))),
                              1.0))
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
    if control:
        ccuts = summary["control"]["retrain_cuts"]
        if ccuts:
            ax.errorbar([c["cut"] for c in ccuts], [c["mean"] for c in ccuts],
                        yerr=[c["std"] for c in ccuts], fmt="o--", capsize=3, color="tab:blue",
                        alpha=0.5, mfc="white", label=f"AnB retraining, {control} frozen")
        ax.plot(x, df["control_probe_accuracy"], "s:", color="tab:orange", alpha=0.7,
                mfc="white", label=f"linear probe, {control}")
    ax.axvline(summary["recommended_cut"], color="tab:green", ls="--", lw=1,
               label="recommended cut (unlabelled)")
    ax.set_xticks(np.arange(0, len(layers) + 1), ["none"] + layers)
    ax.set_xlabel("frozen up to layer (cut)")
    ax.set_ylabel("target held-out accuracy")
    ax.set_ylim(0, 1.02)
    rho = summary["spearman"]
    ax.set_title(f"Retraining (ground truth). Spearman with it: shift {rho['shift']:.2f}, "
                 f"shift_z {rho['shift_z']:.2f}" if cuts else
                 "No retraining (transfer.retrain: false, or no labels): linear probes only",
                 fontsize=10)
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

    ``maps`` holds ``images`` (n, H, W, C), their indices in the data set ``examples`` (n,)
    (optional) and per layer ``source_{layer}`` (the source
    DPGMM's labels of the target images) and ``target_{layer}`` (the target fit's own
    labels, recoloured: each target cluster takes the colour of the source cluster most of
    its samples fall in), both (n, h, w), and ``weights_{layer}`` (the source fit's cluster
    weights). A source cluster takes the colour :func:`convdp.plotting.cluster_colours` gives
    it, the one it has in the source's label maps and cluster atlas (coloured by id modulo
    the palette, it had another colour here than there, and clusters ``k`` and ``k + 18``
    shared one); maps saved without ``weights_{layer}`` fall back to ``k % len(PALETTE)``.
    """
    images = maps["images"]
    palette = np.asarray(PALETTE)
    # each layer's colour of every source cluster id, once
    colours = {layer: cluster_colours(maps[f"weights_{layer}"]) if f"weights_{layer}" in maps
               else None for layer in layers}

    def coloured_map(layer, labels):
        table = colours[layer]
        return table[labels] if table is not None else palette[labels % len(palette)]

    ncols = 1 + len(layers)
    fig, axes = pyplot().subplots(2 * len(images), ncols, figsize=(1.7 * ncols, 1.7 * 2 * len(images)),
                                  squeeze=False)
    rows = []
    for i, img in enumerate(images):
        for side, label in (("source", "source fit"), ("target", "target's fit")):
            coloured = [coloured_map(layer, maps[f"{side}_{layer}"][i])
                        if f"{side}_{layer}" in maps else None for layer in layers]
            index = int(maps["examples"][i]) if "examples" in maps else i
            rows.append((img, f"image {index}\n{label}", coloured))
    label_map_rows(axes, rows)
    for c, layer in enumerate(layers, start=1):
        axes[0, c].set_title(layer, fontsize=8)
    fig.suptitle(title or "Target images labelled by the source's DPGMM vs the target's own", fontsize=9)
    save_figure(fig, dest)
