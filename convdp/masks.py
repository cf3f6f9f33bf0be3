"""Agreement of a layer's label maps with ground-truth part masks.

A data set of kind ``folder`` may declare ``masks: FOLDER``: integer mask images with the same
relative names as the images (``images/a/1.png`` ↔ ``masks/a/1.png``; another extension with
the same stem is accepted), one value per part, ``mask_background`` (default 0) for the
background. Each is drawn on its image as shown (EXIF orientation applied): the same width and
height. They are resized and cropped the way the images were (short side to ``size``, centre
crop), with nearest-neighbour interpolation so that no new values appear. Masks are lossless
images (:data:`MASK_EXTENSIONS`): JPEG's artefacts at part borders would be labels of their
own.

For one fit (position mode), the label maps (N, h, w) are upsampled (nearest) to the image
(N, H, W) and compared with the masks:

* on the **foreground** pixels (mask ≠ background), pooled over the data set: normalised
  mutual information (arithmetic mean normalisation) and adjusted Rand index of the clusters
  against the parts (Choudhury et al., NeurIPS 2021: unsupervised part discovery is scored
  this way), and the purity (the share of foreground pixels whose cluster's most common part
  is their own: high when the clusters split the parts but never mix them, where the ARI is
  low);
* per cluster, over all pixels: the mask label (background included) with the highest
  intersection over union, and that IoU (Network Dissection's score).
"""

from __future__ import annotations

import glob
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

#: Columns of the per-layer CSV (one row per cluster present in the label maps).
CLUSTER_COLUMNS = ["cluster", "weight", "kept", "pixels", "foreground_share", "best_label",
                   "best_label_name", "iou"]
#: Columns added to the summary table for position-mode DPGMM rows of masked data sets.
SUMMARY_COLUMNS = ["mask_nmi", "mask_ari", "mask_purity", "mask_mean_best_iou"]


#: Lossless formats a mask may be stored in (any case).
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".pgm", ".pbm", ".ppm", ".pnm")
#: Image formats refused as masks, and why.
_JPEG = "JPEG's lossy compression makes new values at the parts' borders"
_REFUSED = {
    ".jpg": _JPEG,
    ".jpeg": _JPEG,
    ".webp": "WebP is mostly lossy, and a lossy one makes new values at the parts' borders",
    ".gif": "a GIF's pixels are palette indices, which its writers renumber",
}
#: The ``background`` stored for masks without one (``mask_background: null``): no int16
#: pixel holds it, so every pixel is foreground.
NO_BACKGROUND = 1 << 40


def mask_file(folder: Path, name: str) -> Path:
    """The mask of the image ``name`` (relative to its folder): same name, or else the one
    image file with the same stem (other files, a ``.json`` beside it, are not masks);
    refused when it is not a lossless image or not the only one."""
    path = folder / name
    images = MASK_EXTENSIONS + tuple(_REFUSED)
    found = [path] if path.is_file() else sorted(
        p for p in path.parent.glob(glob.escape(path.stem) + ".*")
        if p.stem == path.stem and p.suffix.lower() in images and p.is_file()
    ) if path.parent.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no mask for image {name!r}: expected {path} (or "
                                f"{path.with_suffix('.*')})")
    if len(found) > 1:
        raise ValueError(f"several masks for image {name!r}: {', '.join(p.name for p in found)} "
                         f"in {path.parent}; keep one")
    suffix = found[0].suffix.lower()
    if suffix in _REFUSED:
        raise ValueError(f"mask {found[0]} is a {suffix} image: {_REFUSED[suffix]}; save masks "
                         "as PNG")
    return found[0]  # an image's own name has an image extension: one of the two lists


def shown_size(path: Path) -> tuple[int, int, bool]:
    """(height, width) of an image as shown (its EXIF orientation applied, as the images are
    read), and whether that orientation turns it, from its header alone."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # Orientation: a quarter turn
    return ((w, h) if turned else (h, w)) + (turned,)


def read_mask(path: Path) -> np.ndarray:
    """An integer mask image as (H, W) int64: one channel (8 or 16 bit, a palette's indices,
    or 1-bit: 0 / 1), or grey saved as RGB / RGBA (three equal channels, opaque); colour
    masks are refused."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.array(im)
    if arr.dtype == np.bool_:  # mode "1": a binary mask
        arr = arr.astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] in (3, 4) and np.issubdtype(arr.dtype, np.integer):
        grey = (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all()
        opaque = arr.shape[2] == 3 or (arr[..., 3] == np.iinfo(arr.dtype).max).all()
        if grey and opaque:
            arr = arr[..., 0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"mask {path} is not a single-channel integer image "
                         f"(shape {arr.shape}, {arr.dtype}); write one integer label per pixel")
    return arr.astype(np.int64)


def resize_mask(mask: np.ndarray, size: int | None) -> np.ndarray:
    """Short side to ``size`` (nearest), then centre crop: the images' geometry
    (:func:`convdp.datasets.resize.resize_center_crop`)."""
    import torch
    import torch.nn.functional as F

    from convdp.datasets.resize import resized_shape

    h, w = mask.shape
    if size is None or (h, w) == (size, size):
        return mask
    nh, nw = resized_shape(h, w, size)
    if (nh, nw) != (h, w):
        t = torch.from_numpy(mask.astype(np.float64))[None, None]
        mask = F.interpolate(t, size=(nh, nw), mode="nearest-exact")[0, 0].numpy().astype(np.int64)
    top, left = (nh - size) // 2, (nw - size) // 2
    return mask[top : top + size, left : left + size]


def load_masks(folder: str | Path, names: Sequence[str], size: int | None,
               shape: tuple[int, int], images: str | Path | None = None) -> np.ndarray:
    """The masks of the images ``names`` (in that order), as (N, H, W) int16, checked to have
    the images' ``shape``; with ``images`` (their folder), each mask also checked to have
    its image's own size before both are resized."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"mask folder {folder} does not exist or is not a folder")
    out = np.empty((len(names), *shape), np.int16)
    for i, name in enumerate(names):
        path = mask_file(folder, name)
        mask = read_mask(path)
        if images is not None:
            _check_drawn_on(path, mask.shape, Path(images) / name)
        mask = resize_mask(mask, size)
        if mask.shape != tuple(shape):
            raise ValueError(f"mask {path} is {mask.shape[1]}×{mask.shape[0]} once resized, "
                             f"its image {shape[1]}×{shape[0]}")
        if mask.min() < -32768 or mask.max() > 32767:
            raise ValueError(f"mask {path} has labels outside the int16 range")
        out[i] = mask
    return out


def _check_drawn_on(path: Path, shape: tuple[int, int], image: Path) -> None:
    """Refuse a mask whose size is not its image's as shown (resizing would hide it)."""
    h, w, turned = shown_size(image)
    if shape == (h, w):
        return
    why = (f"; the image's EXIF orientation turns it, and the mask has the stored pixels' "
           f"{h}×{w}: draw or turn the mask as the image is shown" if turned and shape == (w, h)
           else "")
    raise ValueError(f"mask {path} is {shape[1]}×{shape[0]} pixels, its image {image} "
                     f"{w}×{h}{' as shown' if turned else ''}{why}")


def check_background(masks: np.ndarray, background: int | None, folder: str | Path) -> None:
    """Refuse a background value that no mask holds: every pixel would count as a part
    (``None``: the masks have no background, said so)."""
    if background is not None and not (masks == background).any():
        values = np.unique(masks)
        shown = ", ".join(map(str, values[:10])) + (", …" if len(values) > 10 else "")
        raise ValueError(f"mask_background {background} is in none of the {len(masks)} masks "
                         f"of {folder} (their values: {shown}); set the data set's "
                         "mask_background to the value of their background, or to null "
                         "where every pixel is a part's")


def part_names(folder: str | Path) -> dict[int, str]:
    """Part names from a ``parts.json`` beside the mask folder (``convdp make-parts``), else {}."""
    info = Path(folder).resolve().parent / "parts.json"
    if not info.is_file():
        return {}
    try:
        return {int(k): str(v) for k, v in json.loads(info.read_text())["parts"].items()}
    except (KeyError, ValueError, AttributeError):
        return {}


def upsample(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Label maps (N, h, w) → (N, H, W) by nearest neighbour (pixel centres)."""
    n, h, w = labels.shape
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.int64), w - 1)
    return labels[:, rows][:, :, cols]


def _contingency(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    table = np.bincount(ia * len(ub) + ib, minlength=len(ua) * len(ub)).reshape(len(ua), len(ub))
    return ua, ub, table


def agreement(labels: np.ndarray, masks: np.ndarray, weights: np.ndarray,
              background: int = 0, weight_threshold: float = 0.01,
              names: dict[int, str] | None = None,
              ignore: Sequence[int] = ()) -> tuple[dict, pd.DataFrame]:
    """Score label maps (N, h, w) against masks (N, H, W): the record (``nmi``, ``ari`` on the
    foreground, ``mean_best_iou`` weighted by the clusters' foreground pixels, counts) and one
    row per cluster present (:data:`CLUSTER_COLUMNS`); pixels of the values ``ignore`` are in
    no score."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    up = upsample(np.asarray(labels), masks.shape[1:]).ravel()
    truth = np.asarray(masks).ravel()
    if len(ignore):
        scored = ~np.isin(truth, np.asarray(ignore))
        up, truth = up[scored], truth[scored]
    fg = truth != background
    record = {"images": int(masks.shape[0]), "pixels": int(truth.size),
              "foreground_pixels": int(fg.sum()), "label_map_shape": list(labels.shape[1:]),
              "parts": int(np.unique(truth[fg]).size)}
    if fg.any():
        record["nmi"] = float(normalized_mutual_info_score(truth[fg], up[fg]))
        record["ari"] = float(adjusted_rand_score(truth[fg], up[fg]))
        record["clusters_on_foreground"] = int(np.unique(up[fg]).size)
        _, _, fg_table = _contingency(up[fg], truth[fg])
        record["purity"] = float(fg_table.max(1).sum() / fg.sum())
    else:
        record |= {"nmi": float("nan"), "ari": float("nan"), "clusters_on_foreground": 0,
                   "purity": float("nan")}
    ua, ub, table = _contingency(up, truth)
    inter = table.astype(np.float64)
    union = table.sum(1, keepdims=True) + table.sum(0, keepdims=True) - inter
    iou = inter / np.maximum(union, 1)
    best = iou.argmax(1)
    fg_cols = ub != background
    fg_pixels = table[:, fg_cols].sum(1)
    weights = np.asarray(weights, np.float64)
    names = names or {}
    rows = []
    for r, k in enumerate(ua):
        label = int(ub[best[r]])
        rows.append({
            "cluster": int(k), "weight": float(weights[k]) if k < len(weights) else float("nan"),
            "kept": bool(k < len(weights) and weights[k] > weight_threshold),
            "pixels": int(table[r].sum()),
            "foreground_share": float(fg_pixels[r] / max(table[r].sum(), 1)),
            "best_label": label, "best_label_name": names.get(label, str(label)),
            "iou": float(iou[r, best[r]]),
        })
    df = pd.DataFrame(rows, columns=CLUSTER_COLUMNS).sort_values("weight", ascending=False)
    on_fg = fg_pixels > 0
    record["mean_best_iou"] = (float(np.average(iou.max(1)[on_fg], weights=fg_pixels[on_fg]))
                               if on_fg.any() else float("nan"))
    return record, df


def mask_table(records: Sequence[dict]) -> pd.DataFrame:
    """One row per model × data set × layer from the mask-agreement records."""
    cols = ["model", "control_of", "dataset", "layer", "layer_index", "nmi", "ari", "purity",
            "mean_best_iou", "clusters_on_foreground", "parts", "images", "foreground_pixels"]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in records], columns=cols)


def add_summary_columns(df: pd.DataFrame, records: Sequence[dict]) -> pd.DataFrame:
    """``df`` (the summary table) with :data:`SUMMARY_COLUMNS` filled on the position-mode
    DPGMM rows that have a mask record (empty elsewhere)."""
    df = df.copy()
    for c in SUMMARY_COLUMNS:
        df[c] = np.nan
    for r in records:
        sel = ((df["model"] == r["model"]) & (df["dataset"] == r["dataset"])
               & (df["layer"] == r["layer"]) & (df["mode"] == "position")
               & (df["method"] == "dpgmm"))
        df.loc[sel, SUMMARY_COLUMNS] = [r["nmi"], r["ari"], r.get("purity", np.nan),
                                        r["mean_best_iou"]]
    return df


def plot_mask_agreement(table: pd.DataFrame, dest: str | Path) -> None:
    """Foreground NMI, ARI and purity against depth: one row of three panels per model, one line per
    data set; a random-weights control (``control_of`` = the model) dashed on its model's
    panels, in the same colour."""
    from convdp.plotting import placeholder, pyplot, save_figure

    if table.empty:
        placeholder("no data set with masks", dest)
        return
    trained = [m for m in dict.fromkeys(table["model"])
               if not isinstance(table.loc[table["model"] == m, "control_of"].iloc[0], str)]
    trained = trained or list(dict.fromkeys(table["model"]))
    plt = pyplot()
    fig, axes = plt.subplots(len(trained), 3, figsize=(13, 3 * len(trained)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, model in enumerate(trained):
        own = table[table["model"] == model]
        layers = own.sort_values("layer_index")["layer"].drop_duplicates().tolist()
        controls = table[table["control_of"] == model]
        for c, ds in enumerate(dict.fromkeys(own["dataset"])):
            colour = colours[c % len(colours)]
            for sub, style, what in ((own, "-o", ds), (controls, "--s", f"{ds}, random weights")):
                part = sub[sub["dataset"] == ds].set_index("layer").reindex(layers)
                if "purity" not in part:
                    part["purity"] = np.nan
                if part["nmi"].notna().any():
                    for ax, col in zip(axes[row], ("nmi", "ari", "purity"), strict=True):
                        ax.plot(range(len(layers)), part[col].to_numpy(float), style,
                                color=colour, label=what)
        for ax, col in zip(axes[row], ("NMI", "ARI", "purity"), strict=True):
            # slanted only where many layer names would run into each other
            ax.set_xticks(range(len(layers)), layers, rotation=30 if len(layers) > 6 else 0,
                          fontsize=9 if len(layers) <= 6 else 7)
            ax.set_ylabel(f"foreground {col}")
            ax.set_title(f"{model}: {col} with the part masks", fontsize=9)
            ax.axhline(0, color="0.8", lw=0.8)
        axes[row, 2].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, dest)
