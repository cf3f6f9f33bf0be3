"""Aggregation: the tidy summary table and the comparison figures.

``results/summary.csv`` has one row per model × data set × layer × mode × method. The
figures read it (and the label arrays beside each fit's JSON):

1. ``clusters_per_layer.png``  clusters kept per layer, source vs target, DPGMM vs BIC baseline
2. ``nmi_per_layer.png``       NMI with the classes per layer (image mode), source vs target
3. ``label_maps.png``          example images (rows) × layers (columns), the input beside them
4. ``cluster_class_heatmap.png`` cluster × class counts for the deepest layer, source and target
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from convdp.io import atomic_path, read_json  # noqa: E402
from convdp.metrics import contingency  # noqa: E402

COLUMNS = [
    "model", "dataset", "role", "layer", "layer_index", "mode", "method",
    "clusters_kept", "clusters_kept_min", "clusters_kept_max",
    "clusters_effective", "clusters_effective_min", "clusters_effective_max",
    "truncation", "saturated", "restarts", "clusters_used",
    "lower_bound_per_sample", "elbo_per_sample", "iterations", "converged",
    "components_emptied", "components_merged",
    "n_samples", "n_samples_fit", "too_few_samples", "n_channels", "n_dims", "dims_dropped",
    "nmi", "ari", "purity", "fit_seconds", "seconds",
]


def summary_table(fit_jsons: Sequence[str | Path]) -> pd.DataFrame:
    """One tidy row per fit, sorted by model, data set role, layer depth, mode and method."""
    rows = [_with_spread(read_json(p)) for p in fit_jsons]
    if not rows:
        raise ValueError("no fits to aggregate")
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = np.nan
    df = df[COLUMNS].sort_values(["model", "role", "dataset", "layer_index", "mode", "method"],
                                 kind="stable")
    return df.reset_index(drop=True)


def _with_spread(record: dict) -> dict:
    """The record with min / max of the cluster counts over its restarts (the kept fit's
    count when there is one restart, or for the baseline)."""
    out = dict(record)
    for name in ("clusters_kept", "clusters_effective"):
        values = record.get(f"restart_{name}") or [record.get(name)]
        values = [v for v in values if v is not None]
        out[f"{name}_min"] = min(values) if values else np.nan
        out[f"{name}_max"] = max(values) if values else np.nan
    return out


def write_csv(df: pd.DataFrame, dest: str | Path) -> None:
    with atomic_path(dest, ".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def save_figure(fig, dest: str | Path) -> None:
    with atomic_path(dest, ".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _layer_order(df: pd.DataFrame) -> list[str]:
    return df.sort_values("layer_index")["layer"].drop_duplicates().tolist()


def plot_clusters_per_layer(df: pd.DataFrame, dest: str | Path) -> None:
    """Clusters per layer, one column per mode: clusters kept (top) and the effective number
    (bottom); data sets as colours, methods as line styles, the range over restarts as a
    band, and fits whose truncation may have bound the count as red crosses."""
    modes = sorted(df["mode"].unique())
    fig, axes = plt.subplots(2, len(modes), figsize=(5.5 * len(modes), 7.5), squeeze=False,
                             sharex="col")
    for col, mode in enumerate(modes):
        sub = df[df["mode"] == mode]
        order = _layer_order(sub)
        for row, what in enumerate(("clusters_kept", "clusters_effective")):
            ax = axes[row, col]
            sns.lineplot(sub, x="layer", y=what, hue="dataset", style="method", markers=True,
                         ax=ax, sort=False, legend=row == 0 and col == 0)
            for _, grp in sub.groupby(["dataset", "method"], sort=False):
                x = [order.index(v) for v in grp["layer"]]
                ax.fill_between(x, grp[f"{what}_min"], grp[f"{what}_max"], alpha=0.15,
                                color="grey", linewidth=0)
            sat = sub[sub["saturated"].astype(bool)]
            if len(sat):
                ax.scatter([order.index(v) for v in sat["layer"]], sat[what], marker="x",
                           s=80, color="red", zorder=5, label="truncation bound the count")
                if row == 0 and col == 0:
                    ax.legend(fontsize=7)
            ax.set_xticks(range(len(order)), order, rotation=30)
            ax.set_ylabel("clusters kept" if row == 0 else "effective number (exp entropy)")
            ax.set_ylim(bottom=0)
            if row == 0:
                ax.set_title(f"{mode} mode")
    fig.suptitle(f"Clusters per layer ({', '.join(df['model'].unique())}); "
                 "band: range over restarts, red x: saturated fit")
    save_figure(fig, dest)


def plot_nmi_per_layer(df: pd.DataFrame, dest: str | Path) -> None:
    """NMI between image-mode clusters and classes, per layer, source vs target."""
    sub = df[(df["mode"] == "image") & df["nmi"].notna()]
    fig, ax = plt.subplots(figsize=(6, 4))
    if sub.empty:
        ax.text(0.5, 0.5, "no labelled data in image mode", ha="center", va="center")
        ax.set_axis_off()
    else:
        sns.lineplot(sub, x="layer", y="nmi", hue="dataset", style="method", markers=True,
                     ax=ax, sort=False)
        ax.set_xticks(range(len(_layer_order(sub))), _layer_order(sub), rotation=30)
        ax.set_ylim(0, 1)
        ax.set_ylabel("NMI with classes (image mode)")
    ax.set_title("Do a layer's clusters follow the classes?")
    save_figure(fig, dest)


def plot_label_maps(
    examples: dict[str, np.ndarray],
    label_maps: dict[str, dict[str, np.ndarray]],
    layers: Sequence[str],
    dest: str | Path,
) -> None:
    """Rows: example images (per data set); columns: the input, then each layer's label map.

    Parameters
    ----------
    examples : data set → (n, H, W, C) uint8 images
    label_maps : data set → layer → (n, h, w) cluster labels of the same images
    """
    rows = [(ds, i) for ds, imgs in examples.items() for i in range(len(imgs))]
    ncols = 1 + len(layers)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.6 * ncols, 1.6 * len(rows) + 0.5),
                             squeeze=False, layout="constrained")
    cmap = plt.get_cmap("tab20")
    for r, (ds, i) in enumerate(rows):
        img = examples[ds][i]
        axes[r, 0].imshow(img[..., 0] if img.shape[-1] == 1 else img,
                          cmap="gray" if img.shape[-1] == 1 else None)
        axes[r, 0].set_ylabel(f"{ds}\n#{i}", fontsize=7)
        for c, layer in enumerate(layers, start=1):
            lab = label_maps[ds][layer][i]
            axes[r, c].imshow(lab % 20, cmap=cmap, vmin=0, vmax=19, interpolation="nearest")
            if r == 0:
                axes[r, c].set_title(layer, fontsize=8)
        if r == 0:
            axes[r, 0].set_title("input", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("DPGMM label maps (position mode): each colour is one cluster of that layer")
    save_figure(fig, dest)


def plot_cluster_class_heatmap(
    tables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], layer: str, dest: str | Path
) -> None:
    """Per data set, the (class × cluster) share of each class's images in each cluster."""
    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 4), squeeze=False)
    for ax, (ds, (table, classes, clusters)) in zip(axes[0], tables.items(), strict=True):
        share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
        sns.heatmap(pd.DataFrame(share, index=classes, columns=clusters), ax=ax, cmap="viridis",
                    vmin=0, vmax=1, cbar_kws={"label": "share of the class"})
        ax.set_xlabel("cluster")
        ax.set_ylabel("class")
        ax.set_title(f"{ds}: {layer} (image mode)")
    save_figure(fig, dest)


def aggregate(
    fit_jsons: Sequence[str | Path],
    datasets: dict[str, str | Path],
    out_csv: str | Path,
    figures: dict[str, str | Path],
    n_examples: int = 4,
) -> pd.DataFrame:
    """Write the summary table and the four figures from the fits' JSON (and .npz) files.

    ``datasets`` maps each data set name to its Zarr store (for the example images and
    class labels); ``figures`` maps ``clusters``, ``nmi``, ``label_maps``, ``heatmap`` to paths.
    """
    from convdp.data import open_dataset

    df = summary_table(fit_jsons)
    plot_clusters_per_layer(df, figures["clusters"])
    plot_nmi_per_layer(df, figures["nmi"])

    by_key = {(r["dataset"], r["layer"], r["mode"], r["method"]): Path(p)
              for p, r in zip(fit_jsons, map(read_json, fit_jsons), strict=True)}
    dp = df[df["method"] == "dpgmm"]
    layers = _layer_order(dp)
    order = dp.sort_values("role", kind="stable")["dataset"].drop_duplicates().tolist()
    examples, maps, tables = {}, {}, {}
    deepest = layers[-1]
    for ds in order:
        group = open_dataset(datasets[ds])
        n = min(n_examples, group["images"].shape[0])
        pick = np.linspace(0, group["images"].shape[0] - 1, n).astype(int)
        examples[ds] = group["images"].get_orthogonal_selection((pick,))
        maps[ds] = {}
        for layer in layers:
            key = (ds, layer, "position", "dpgmm")
            if key in by_key:
                maps[ds][layer] = np.load(by_key[key].with_suffix(".npz"))["labels"][pick]
        key = (ds, deepest, "image", "dpgmm")
        if key in by_key and group.attrs.get("labelled", True):
            pred = np.load(by_key[key].with_suffix(".npz"))["labels"]
            tables[ds] = contingency(group["labels"][:], pred)
    map_layers = [layer for layer in layers if all(layer in maps[ds] for ds in order)]
    plot_label_maps(examples, maps, map_layers, figures["label_maps"])
    if tables:
        plot_cluster_class_heatmap(tables, deepest, figures["heatmap"])
    else:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no labelled data set in image mode", ha="center", va="center")
        ax.set_axis_off()
        save_figure(fig, figures["heatmap"])
    # Last: the summary table exists only once every figure does (a killed job leaves none).
    write_csv(df, out_csv)
    return df
