"""The cluster atlas of one layer: what each cluster of a position-mode fit looks like.

For every cluster kept (weight above the threshold), the ``n`` most typical positions —
highest responsibility under the fitted mixture, at most one per image — each shown as the
input crop under that position's receptive field (:mod:`convdp.receptive`, traced from the
net's graph). Crops clipped by the image border are padded with white, so every crop of a
row shows the field at the same scale and the border where it is. Beside each row, the
cluster's colour in the label maps (:func:`convdp.plotting.cluster_colours`), its weight and
the share of images whose label map contains it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convdp.receptive import Field, crop_box
from convdp.samples import image_chunks, to_samples

_ROWS = 16384  # samples whose responsibilities are computed at once (bounds memory)


def typical_positions(array, predictor, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image and cluster, the highest responsibility over the image's positions and the
    flat position (i·w + j) where it is: two (N, K) arrays. ``array`` is the layer (N, h, w, C),
    ``predictor`` ``(preprocess, estimator)`` (:func:`convdp.fitted.load_predictor`)."""
    pre, est = predictor
    n, h, w, _ = array.shape
    best = np.zeros((n, n_clusters), np.float32)
    where = np.zeros((n, n_clusters), np.int64)
    for start, stop, block in image_chunks(array):
        x = to_samples(block, "position")
        proba = np.concatenate([est.predict_proba(pre.transform(x[s : s + _ROWS]))
                                for s in range(0, len(x), _ROWS)])
        proba = proba.reshape(stop - start, h * w, -1)[:, :, :n_clusters]
        best[start:stop] = proba.max(1)
        where[start:stop] = proba.argmax(1)
    return best, where


def exemplars(best: np.ndarray, where: np.ndarray, cluster: int, n: int,
              min_responsibility: float = 0.5) -> list[tuple[int, int, float]]:
    """(image, flat position, responsibility) of the ``n`` images where ``cluster`` is most
    responsible, best first, leaving out those below ``min_responsibility``."""
    order = np.argsort(-best[:, cluster], kind="stable")[:n]
    return [(int(i), int(where[i, cluster]), float(best[i, cluster]))
            for i in order if best[i, cluster] >= min_responsibility]


def crop(image: np.ndarray, field: Field, i: int, j: int) -> np.ndarray:
    """The pixels of ``image`` (H, W, C) under position (i, j)'s field, padded with white
    where the field reaches outside the image."""
    h, w = image.shape[:2]
    if field.global_:
        return image
    top, left, bottom, right = field.box(i, j)
    out = np.full((bottom - top, right - left, image.shape[2]), 255, image.dtype)
    t, lft, b, r = crop_box(field, i, j, (h, w))
    out[t - top : b - top, lft - left : r - left] = image[t:b, lft:r]
    return out


def atlas_rows(labels: np.ndarray, weights: np.ndarray, best: np.ndarray, where: np.ndarray,
               n: int, weight_threshold: float, max_clusters: int) -> list[dict]:
    """One row per cluster kept, largest first (at most ``max_clusters``): cluster, weight,
    share of images, and its exemplars (:func:`exemplars`)."""
    weights = np.asarray(weights, np.float64)
    kept = [int(k) for k in np.argsort(-weights, kind="stable") if weights[k] > weight_threshold]
    flat = labels.reshape(len(labels), -1)
    rows = []
    for k in kept[:max_clusters]:
        rows.append({"cluster": k, "weight": float(weights[k]),
                     "image_share": float((flat == k).any(1).mean()),
                     "exemplars": exemplars(best, where, k, n)})
    return rows


def plot_atlas(rows: list[dict], images: np.ndarray, field: Field, map_shape: tuple[int, int],
               colours: np.ndarray, title: str, dest: str | Path, n: int,
               clusters_kept: int | None = None) -> None:
    """Clusters as rows, exemplars as columns; the label-map colour, weight and image share
    at the start of each row. ``images`` (N, H, W, C) uint8 are the data set's images."""
    from convdp.plotting import placeholder, pyplot, save_figure

    if not rows:
        placeholder(f"{title}: no cluster kept", dest)
        return
    plt = pyplot()
    cols = 1 + n
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols + 0.6, 1.05 * len(rows) + 0.6),
                             squeeze=False, gridspec_kw={"width_ratios": [1.6] + [1] * n})
    w = map_shape[1]
    grey = images.shape[-1] == 1
    for r, row in enumerate(rows):
        ax = axes[r, 0]
        ax.add_patch(plt.Rectangle((0, 0.2), 0.35, 0.6, color=colours[row["cluster"]],
                                   transform=ax.transAxes))
        ax.text(0.42, 0.5, f"{row['cluster']}\nw {row['weight']:.3f}\n"
                f"{100 * row['image_share']:.0f}% img", transform=ax.transAxes,
                va="center", fontsize=7)
        for c in range(n):
            a = axes[r, c + 1]
            if c < len(row["exemplars"]):
                img, pos, resp = row["exemplars"][c]
                patch = crop(images[img], field, pos // w, pos % w)
                a.imshow(patch[..., 0] if grey else patch, cmap="gray" if grey else None,
                         interpolation="nearest", vmin=0, vmax=255)
                a.set_title(f"#{img} {resp:.2f}", fontsize=5, pad=1)
                for s in a.spines.values():
                    s.set_color(colours[row["cluster"]])
                    s.set_linewidth(2)
            else:
                a.set_axis_off()
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[:, 0]:
        for s in ax.spines.values():
            s.set_visible(False)
    size = "whole image" if field.global_ else f"{field.size[0]}×{field.size[1]} px"
    more = (f"; the {len(rows)} largest of {clusters_kept} kept"
            if clusters_kept and clusters_kept > len(rows) else "")
    fig.suptitle(f"{title}: receptive field {size}, stride {field.jump[0]}{more}\n"
                 "rows: clusters by weight (label-map colour, weight, share of images); "
                 "columns: most typical positions (image #, responsibility)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save_figure(fig, dest)
