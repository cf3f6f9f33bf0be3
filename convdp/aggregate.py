"""Aggregation: the tidy summary table and the comparison figures.

``results/summary.csv`` has one row per model × data set × layer × mode × method. The
figures read it (and the label arrays beside each fit's JSON):

1. ``clusters_per_layer.png``  clusters kept and effective number per layer, source vs
   target, DPGMM vs BIC baseline, the range over near-optimal restarts, saturated fits marked,
   the count on half the samples beside it
2. ``nmi_per_layer.png``       NMI with the classes per layer (image mode), source vs target
3. ``label_maps.png``          per model: example images (rows) × layers (columns)
4. ``cluster_class_heatmap.png`` cluster × class counts for the deepest layer, per model × data set
5. ``model_comparison.png``    every model × data set against relative depth; a random-weights
   control (``control_of``, see :mod:`convdp.control`) dashed, in its model's colour
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
from convdp.plotting import (  # noqa: E402
    PALETTE,
    cluster_colours,
    grey_clusters,
    label_map_rows,
    placeholder,
    save_figure,
)
from convdp.sampled import example_images  # noqa: E402

COLUMNS = [
    "model", "control_of", "dataset", "role", "layer", "layer_index", "mode", "method",
    "clusters_kept", "clusters_kept_min", "clusters_kept_max",
    "clusters_effective", "clusters_effective_min", "clusters_effective_max",
    "truncation", "saturated", "clusters_kept_half", "grows_with_samples",
    "clusters_kept_seed", "elbo_per_sample_seed", "moves_with_seed", "clusters_at_floor",
    "restarts", "restarts_near_best", "clusters_used",
    "lower_bound_per_sample", "elbo_per_sample", "iterations", "converged",
    "components_emptied", "components_merged",
    "n_samples", "n_samples_fit", "effective_samples", "too_few_samples",
    "n_channels", "n_dims", "dims_dropped",
    "nmi", "ari", "purity", "fit_seconds", "seconds",
]


CHECK_MARKERS = [
    # (count column, flag column, marker, legend of the check's fit, of its flag)
    ("clusters_kept_half", "grows_with_samples", "v", "the same fit on half the samples",
     "the count grows with the samples"),
    ("clusters_kept_seed", "moves_with_seed", "D", "one start from another seed's draws",
     "the count moves with the seed"),
]
"""The check fits drawn beside each kept count in ``clusters_per_layer.png``."""


def number_layers(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its ``layer_index`` — in records, the layer's position in the net's graph
    (so that adding a layer to the config reruns no fit) — numbering each model's layers
    0, 1, ... in that order, as every table shows them."""
    df = df.copy()
    df["layer_index"] = (df.groupby("model")["layer_index"].rank(method="dense") - 1).astype("Int64")
    return df


def summary_table(fit_jsons: Sequence[str | Path], controls: dict[str, str] | None = None
                  ) -> pd.DataFrame:
    """One tidy row per fit, sorted by model, data set role, layer depth, mode and method.

    ``controls`` maps each random-weights control to its model (the ``control_of`` column;
    empty for the others)."""
    rows = [_with_spread(read_json(p)) for p in fit_jsons]
    if not rows:
        raise ValueError("no fits to aggregate")
    df = pd.DataFrame(rows)
    df["control_of"] = df["model"].map(controls or {})
    df = df.reindex(columns=COLUMNS)  # a column no record has: NaN
    df = number_layers(df)
    df = df.sort_values(["model", "role", "dataset", "layer_index", "mode", "method"],
                        kind="stable")
    return df.reset_index(drop=True)


def _with_spread(record: dict) -> dict:
    """The record with min / max of the cluster counts over its near-optimal restarts (the
    kept fit's count when there is one, or for the baseline)."""
    out = dict(record)
    for name in ("clusters_kept", "clusters_effective"):
        values = record.get(f"restart_{name}") or [record.get(name)]
        values = [v for v in values if v is not None]
        out[f"{name}_min"] = min(values) if values else np.nan
        out[f"{name}_max"] = max(values) if values else np.nan
    return out


def write_csv(df: pd.DataFrame, dest: str | Path) -> None:
    """``df`` as CSV: floats to 6 significant digits, whole numbers exactly."""
    with atomic_path(dest, ".csv") as tmp:
        _whole_numbers_exact(df).to_csv(tmp, index=False, float_format="%.6g")


def _whole_numbers_exact(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each float column that holds only whole numbers (below 2**53) as nullable
    integers: a count missing in some rows (``effective_samples`` of a baseline fit) makes
    its column float, and "%.6g" wrote 1,234,567 samples as 1.23457e+06."""
    out = df.copy()
    for name in out.columns:
        col = out[name]
        if not pd.api.types.is_float_dtype(col):
            continue
        values = col.dropna().to_numpy(dtype=float)
        if len(values) and np.all(np.isfinite(values)) and np.all(values == np.round(values)) \
                and np.abs(values).max() < 2.0**53:
            out[name] = col.astype("Int64")
    return out


def _layer_order(df: pd.DataFrame) -> list[str]:
    return df.sort_values("layer_index")["layer"].drop_duplicates().tolist()


def _at_positions(df: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """``df`` with ``layer position``: each row's layer's index in ``order``, the x a line is
    drawn at. (Given the layer names, seaborn placed them in the order it first met them: a
    data set without the first layer put its second one at the first tick.)"""
    return df.assign(**{"layer position": df["layer"].map({v: i for i, v in enumerate(order)})})


def _palette(levels) -> dict:
    """{level: colour}, the same in every panel of a figure: seaborn's default colours, or
    husl's beyond ten levels (the default ones would repeat)."""
    levels = list(levels)
    colours = (sns.color_palette(n_colors=len(levels)) if len(levels) <= 10
               else sns.color_palette("husl", len(levels)))
    return dict(zip(levels, colours, strict=True))


def _figure_legend(fig, axes, order, **kwargs) -> None:
    """One legend below the panels, of every panel's entries (a level drawn in a later panel
    only is named too), those in ``order`` first; the panels' own legends removed (inside a
    panel one hid its lines)."""
    entries: dict = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
        if ax.get_legend():
            ax.get_legend().remove()
    labels = [lab for lab in order if lab in entries] + [lab for lab in entries if lab not in order]
    if labels:
        fig.legend([entries[lab] for lab in labels], labels, loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), frameon=False, **kwargs)


def plot_clusters_per_layer(df: pd.DataFrame, dest: str | Path) -> None:
    """Clusters per layer, one column per model × mode: clusters kept (top) and the effective
    number (bottom); data sets as colours, methods as line styles, the range over restarts as
    a band, fits whose truncation may have bound the count as red crosses, and the count the
    same settings keep on half the samples as triangles (filled where the count grows)."""
    panels = [(model, mode) for model in df["model"].unique() for mode in sorted(df["mode"].unique())]
    fig, axes = plt.subplots(2, len(panels), figsize=(5.5 * len(panels), 7.5), squeeze=False,
                             sharex="col")
    datasets = df["dataset"].unique().tolist()
    methods = df["method"].unique().tolist()
    palette = _palette(datasets)
    for col, (model, mode) in enumerate(panels):
        sub = df[(df["model"] == model) & (df["mode"] == mode)]
        order = _layer_order(sub)
        sub = _at_positions(sub, order)  # the x of every line, band and marker
        for row, what in enumerate(("clusters_kept", "clusters_effective")):
            ax = axes[row, col]
            sns.lineplot(sub, x="layer position", y=what, hue="dataset",
                         style="method", markers=True, ax=ax, legend=row == 0,
                         palette=palette, style_order=methods)
            for _, grp in sub.groupby(["dataset", "method"], sort=False):
                ax.fill_between(grp["layer position"], grp[f"{what}_min"], grp[f"{what}_max"],
                                alpha=0.15, color="grey", linewidth=0)
            sat = sub[sub["saturated"].map(_flag)]
            if len(sat):
                ax.scatter(sat["layer position"], sat[what], marker="x",
                           s=80, color="red", zorder=5, label="truncation bound the count")
            for count, flag, marker, what_fit, what_flag in CHECK_MARKERS:
                checked = sub[sub[count].notna()] if row == 0 else sub.iloc[:0]
                for ds, grp in checked.groupby("dataset", sort=False):
                    colour = palette[ds]
                    flagged = grp[flag].map(_flag).to_numpy()
                    ax.scatter(grp["layer position"], grp[count],
                               marker=marker, s=40, edgecolors=colour, zorder=4,
                               facecolors=[colour if f else "none" for f in flagged])
                if len(checked):  # one legend entry, whichever panel has them
                    ax.scatter([], [], marker=marker, s=40, facecolors="none",
                               edgecolors="dimgrey", label=what_fit)
                    ax.scatter([], [], marker=marker, s=40, color="dimgrey",
                               label=f"... filled: {what_flag}")
            ax.set_xticks(range(len(order)), order, rotation=30)
            ax.set_xlabel("layer")
            ax.set_ylabel("clusters kept" if row == 0 else "effective number (exp entropy)")
            ax.set_ylim(bottom=0)
            if row == 0:
                ax.set_title(f"{mode} mode: {_model_title(df, model)}", fontsize=10)
    fig.suptitle("Clusters per layer; band: range over the restarts within 1 % of the best bound, "
                 "red x: saturated fit,\nv: the same fit on half the samples (filled: the count "
                 "grows with the samples), diamond: one start from another seed (filled: the "
                 "count moves)")
    order = ["dataset", *datasets, "method", *methods]
    _figure_legend(fig, axes[0], order, ncol=min(len(order) + 3, 12), fontsize=8)
    save_figure(fig, dest)


def plot_nmi_per_layer(df: pd.DataFrame, dest: str | Path) -> None:
    """NMI between image-mode clusters and classes, per layer, source vs target; one panel
    per model."""
    sub = df[(df["mode"] == "image") & df["nmi"].notna()]
    models = sub["model"].unique().tolist() or [None]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        if model is None:
            ax.text(0.5, 0.5, "no labelled data in image mode", ha="center", va="center")
            ax.set_axis_off()
            continue
        part = sub[sub["model"] == model]
        order = _layer_order(part)
        sns.lineplot(_at_positions(part, order), x="layer position", y="nmi", hue="dataset",
                     style="method", markers=True, ax=ax)
        ax.set_xticks(range(len(order)), order, rotation=30)
        ax.set_xlabel("layer")
        ax.set_ylim(0, 1)
        ax.set_ylabel("NMI with classes (image mode)")
        ax.set_title(_model_title(df, model), fontsize=10)
    fig.suptitle("Do a layer's clusters follow the classes?")
    save_figure(fig, dest)


def _model_title(df: pd.DataFrame, model: str) -> str:
    """``model``, or ``model`` and on a second line ``(random-weights control of X)``."""
    of = df.loc[df["model"] == model, "control_of"].dropna()
    return f"{model}\n(random-weights control of {of.iloc[0]})" if len(of) else model


def plot_label_maps(
    blocks: Sequence[dict],
    dest: str | Path,
) -> None:
    """One block per model: rows are example images (per data set), columns the input and
    then each of that model's layers' label maps, coloured by :func:`cluster_colours`.

    Parameters
    ----------
    blocks : per model, ``{"model": name, "layers": [...], "examples": {data set: (n, H, W, C)
             uint8}, "maps": {data set: {layer: (n, h, w) labels}}, "weights": {data set:
             {layer: (K,) weights}}}``; a layer is drawn only where every data set has it.
    """
    sizes = [sum(len(v) for v in b["examples"].values()) for b in blocks]
    width = max(1 + len(b["layers"]) for b in blocks)
    fig = plt.figure(figsize=(1.7 * width, sum(1.7 * n + 0.6 for n in sizes)),
                     layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(blocks), 1, height_ratios=[n + 0.4 for n in sizes]))
    for sub, block in zip(subfigs, blocks, strict=True):
        _label_map_block(sub, block, width)
    fig.suptitle("DPGMM label maps (position mode): one colour per cluster of that layer's\n"
                 "fit on that data set, largest first (one colour in two data sets' rows: two\n"
                 f"fits' clusters); grey = the smaller clusters beyond {len(PALETTE)}")
    save_figure(fig, dest)


def _label_map_block(sub, block, width):
    rows = [(ds, i) for ds, imgs in block["examples"].items() for i in range(len(imgs))]
    # the model's name in a header of its own: a subfigure's suptitle overlaps the column
    # titles under constrained layout
    head, body = sub.subfigures(2, 1, height_ratios=[0.25, 1.7 * len(rows) + 0.35])
    axes = body.subplots(len(rows), width, squeeze=False)
    layers = block["layers"]
    label_map_rows(axes, [
        (block["examples"][ds][i], f"{ds}\nimage {block['picks'][ds][i]}",
         [cluster_colours(block["weights"][ds][layer])[block["maps"][ds][layer][i]]
          for layer in layers])
        for ds, i in rows])
    for r, (ds, _) in enumerate(rows):
        if r and rows[r - 1][0] == ds:
            continue  # titles on the first row of each data set only
        for c, layer in enumerate(layers, start=1):
            kept, few = block.get("notes", {}).get((ds, layer), (None, False))
            grey = grey_clusters(block["weights"][ds][layer], block["maps"][ds][layer])
            note = "" if kept is None else f"{kept} cluster{'s' if kept != 1 else ''} kept"
            note += f", {grey} grey" if grey else ""
            note += "\n(too few samples)" if few else ""
            axes[r, c].set_title(f"{layer}\n{note}" if r == 0 else note, fontsize=7,
                                 color="firebrick" if few else "black")
    of = block.get("control_of")
    head.text(0.5, 0.5, f"{block['model']} (random-weights control of {of})" if of
              else block["model"], fontsize=10, fontweight="bold", ha="center", va="center")


def plot_model_comparison(df: pd.DataFrame, dest: str | Path) -> None:
    """Models side by side, against relative depth (0 = first analysed layer, 1 = last):
    clusters kept and effective number (position and image mode) and NMI with the classes
    (image mode); one line per model × data set, DPGMM only; saturated fits as red crosses.
    A random-weights control is drawn dashed in its model's colour."""
    dp = df[df["method"] == "dpgmm"].copy()
    depth = dp.groupby("model")["layer_index"].transform(lambda s: s / max(s.max(), 1))
    dp["relative depth"] = depth
    family = dp["control_of"].where(dp["control_of"].notna(), dp["model"])
    dp["model × data set"] = family + " · " + dp["dataset"] + " (" + dp["role"] + ")"
    dp["weights"] = np.where(dp["control_of"].notna(), "random (control)", "model's own")
    styles = [w for w in ("model's own", "random (control)") if w in set(dp["weights"])]
    panels = [(m, y) for m in sorted(dp["mode"].unique())
              for y in ("clusters_kept", "clusters_effective")]
    panels.append(("image", "nmi"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    # one colour per model × data set in every panel: the NMI panel leaves out the unlabelled
    # data sets, and its own colour order would give a line another's colour
    levels = list(dict.fromkeys(dp["model × data set"]))
    palette = _palette(levels)
    for ax, (mode, what) in zip(axes[0], panels, strict=True):
        sub = dp[(dp["mode"] == mode) & dp[what].notna()]
        if sub.empty:
            ax.text(0.5, 0.5, f"no {what} in {mode} mode", ha="center", va="center")
            ax.set_axis_off()
            continue
        sns.lineplot(sub, x="relative depth", y=what, hue="model × data set", style="weights",
                     hue_order=[v for v in levels if v in set(sub["model × data set"])],
                     palette=palette, style_order=styles,
                     dashes={"model's own": "", "random (control)": (4, 2)},
                     markers=True, ax=ax)
        sat = sub[sub["saturated"].map(_flag)]
        if len(sat):
            ax.scatter(sat["relative depth"], sat[what], marker="x", s=80, color="red", zorder=5)
        ax.set_title(f"{what.replace('_', ' ')} ({mode} mode)", fontsize=9)
        ax.set_ylim(bottom=0, top=1 if what == "nmi" else None)
    _figure_legend(fig, axes[0], ["model × data set", *levels, "weights", *styles], ncol=3,
                   fontsize=7)
    fig.suptitle("Models compared: what each layer groups, by relative depth")
    save_figure(fig, dest)


def plot_cluster_class_heatmap(
    tables: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray, np.ndarray]],
    dest: str | Path,
) -> None:
    """Per (model, data set, layer): the (class × cluster) share of each class's images in
    each cluster of that layer's image-mode fit."""
    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 4.3), squeeze=False)
    for ax, ((model, ds, layer), (table, classes, clusters)) in zip(axes[0], tables.items(),
                                                                    strict=True):
        share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
        sns.heatmap(pd.DataFrame(share, index=classes, columns=clusters), ax=ax, cmap="viridis",
                    vmin=0, vmax=1, cbar_kws={"label": "share of the class"})
        ax.set_xlabel("cluster")
        ax.set_ylabel("class")
        ax.set_title(f"{model}: {ds}\n{layer}, the deepest layer (image mode)", fontsize=10)
    save_figure(fig, dest)


def aggregate(
    fit_jsons: Sequence[str | Path],
    datasets: dict[str, str | Path],
    out_csv: str | Path,
    figures: dict[str, str | Path],
    n_examples: int = 4,
    mask_jsons: Sequence[str | Path] = (),
    controls: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Write the summary table and the figures from the fits' JSON (and .npz) files.

    ``datasets`` maps each data set name to its Zarr store (for the example images and
    class labels); ``figures`` maps ``clusters``, ``nmi``, ``label_maps``, ``heatmap`` and
    ``comparison`` to paths. ``controls`` maps each random-weights control to its model.
    ``mask_jsons``: mask-agreement records, whose scores become the summary's ``mask_*``
    columns (:func:`convdp.masks.add_summary_columns`).
    """
    df = summary_table(fit_jsons, controls)
    if mask_jsons:
        from convdp.masks import add_summary_columns

        df = add_summary_columns(df, [read_json(p) for p in mask_jsons])
    plot_clusters_per_layer(df, figures["clusters"])
    plot_nmi_per_layer(df, figures["nmi"])
    plot_model_comparison(df, figures["comparison"])

    by_key = {(r["model"], r["dataset"], r["layer"], r["mode"], r["method"]): Path(p)
              for p, r in zip(fit_jsons, map(read_json, fit_jsons), strict=True)}
    blocks, tables = [], {}
    for model, dp in df[df["method"] == "dpgmm"].groupby("model", sort=False):
        block, deepest = _model_block(model, dp, by_key, datasets, n_examples)
        if block["layers"]:
            blocks.append(block)
        for ds, labels in block["labels"].items():
            key = (model, ds, deepest, "image", "dpgmm")
            if key in by_key and labels is not None:
                pred = np.load(by_key[key].with_suffix(".npz"))["labels"]
                tables[model, ds, deepest] = contingency(labels, pred)
    if blocks:
        plot_label_maps(blocks, figures["label_maps"])
    else:
        placeholder("no position-mode DPGMM fit: no label maps", figures["label_maps"])
    if tables:
        plot_cluster_class_heatmap(tables, figures["heatmap"])
    else:
        placeholder("no labelled data set in image mode", figures["heatmap"])
    # Last: the summary table exists only once every figure does (a killed job leaves none).
    write_csv(df, out_csv)
    return df


def _open(store):
    from convdp.data import open_dataset

    return open_dataset(store)


def _flag(value) -> bool:
    """A summary flag as a bool (missing = False)."""
    return bool(value) if pd.notna(value) else False


def _model_block(model, dp, by_key, datasets, n_examples):
    """The label-map block of one model (see :func:`plot_label_maps`) and its deepest layer."""
    from convdp.data import read_labels

    layers = _layer_order(dp)
    order = dp.sort_values("role", kind="stable")["dataset"].drop_duplicates().tolist()
    of = dp["control_of"].dropna()
    block = {"model": model, "examples": {}, "picks": {}, "labels": {}, "maps": {},
             "weights": {}, "control_of": of.iloc[0] if len(of) else None}
    for ds in order:
        group = _open(datasets[ds])
        labels = block["labels"][ds] = read_labels(datasets[ds], group)  # None: unlabelled
        pick = block["picks"][ds] = example_images(group["images"].shape[0], n_examples, labels)
        block["examples"][ds] = group["images"].get_orthogonal_selection((pick,))
        block["maps"][ds], block["weights"][ds] = {}, {}
        for layer in layers:
            key = (model, ds, layer, "position", "dpgmm")
            if key in by_key:
                with np.load(by_key[key].with_suffix(".npz")) as z:
                    block["maps"][ds][layer] = z["labels"][pick]
                    block["weights"][ds][layer] = z["weights"]
    pos = dp[dp["mode"] == "position"].set_index(["dataset", "layer"])
    block["notes"] = {key: (int(row["clusters_kept"]), _flag(row["too_few_samples"]))
                      for key, row in pos.iterrows()}
    block["layers"] = [layer for layer in layers
                       if all(layer in block["maps"][ds] for ds in order)]
    return block, layers[-1]
