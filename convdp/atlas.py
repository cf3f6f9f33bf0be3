"""The cluster atlas of one layer: what each cluster of a position-mode fit looks like.

For every cluster kept (weight above the threshold), the ``n`` most typical positions —
highest responsibility under the fitted mixture, ties among the certain ones (≥ 0.99) broken by
the distance to the cluster's mean; at most one per image — each shown as the
input crop under that position's receptive field (:mod:`convdp.receptive`, traced from the
net's graph). Crops clipped by the image border are padded with a grey checkerboard
(:func:`outside`), so every crop of a row shows the field at the same scale and the border
where it is. Beside each row, the
cluster's colour in the label maps (:func:`convdp.plotting.cluster_colours`), its weight and
the share of images whose label map contains it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convdp.receptive import Field, crop_box
from convdp.samples import image_chunks, to_samples

_ROWS = 16384  # samples whose responsibilities are computed at once (bounds memory)


def typical_positions(array, predictor, n_clusters: int, candidates: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image and cluster: the image's most typical position for the cluster (flat, i·w + j),
    its responsibility, and its rank key; three (N, K) arrays ``(resp, where, key)``.
    ``array`` is the layer (N, h, w, C), ``predictor`` ``(preprocess, estimator)``
    (:func:`convdp.fitted.load_predictor`). Of a sample store (:mod:`convdp.sampled`) only the
    stored positions are candidates; an image without any has responsibility 0 everywhere.
    ``candidates`` (h, w) bool, where given, leaves the other positions out too (the copies
    of a smoothed layer's border, :func:`convdp.smoothing.inner_box`).

    Most typical = highest responsibility; a DP mixture is often certain (responsibility ≥ 0.99
    at many positions), so among those the one nearest the cluster's mean (in the preprocessed
    space the fit saw) comes first: key = 2 + 1 / (1 + squared distance) there, the
    responsibility elsewhere.
    """
    pre, est = predictor
    n, h, w, _ = array.shape
    means = np.asarray(getattr(est, "means_", np.zeros((0, 0))), np.float64)[:n_clusters]
    resp = np.zeros((n, n_clusters), np.float32)
    key = np.zeros((n, n_clusters), np.float64)
    where = np.zeros((n, n_clusters), np.int64)
    for start, stop, rows, x in _position_blocks(array):
        score = np.empty((len(x), n_clusters))
        proba = np.empty((len(x), n_clusters))
        for s in range(0, len(x), _ROWS):
            z = np.asarray(pre.transform(x[s : s + _ROWS]), np.float64)
            p = np.asarray(est.predict_proba(z))[:, :n_clusters]
            if means.shape == (p.shape[1], z.shape[1]):
                d2 = np.maximum((z**2).sum(1)[:, None] - 2 * z @ means.T
                                + (means**2).sum(1)[None], 0)
            else:
                d2 = np.zeros_like(p)
            proba[s : s + len(z)] = p
            score[s : s + len(z)] = np.where(p >= 0.99, 2 + 1 / (1 + d2), p)
        m = stop - start
        if rows is not None:  # only some positions stored: the rest can never be picked
            score, proba = _spread(score, rows, m * h * w, -1.0), _spread(proba, rows, m * h * w, 0.0)
        score = score.reshape(m, h * w, -1)
        if candidates is not None:
            out = ~np.asarray(candidates, bool).ravel()
            score[:, out], proba.reshape(m, h * w, -1)[:, out] = -1.0, 0.0
        pick = score.argmax(1)
        where[start:stop] = pick
        key[start:stop] = np.take_along_axis(score, pick[:, None, :], 1)[:, 0]
        resp[start:stop] = np.take_along_axis(proba.reshape(m, h * w, -1), pick[:, None, :], 1)[:, 0]
    return resp, where, key


def _position_blocks(array):
    """``(start, stop, rows, x)`` per image chunk of ``array``: the channel vectors ``x`` of its
    readable positions and their flat indices ``rows`` within the chunk (None: all of them)."""
    if hasattr(array, "position_blocks"):  # a sample store
        yield from array.position_blocks()
        return
    for start, stop, block in image_chunks(array):
        yield start, stop, None, to_samples(block, "position")


def _spread(values: np.ndarray, rows: np.ndarray, n: int, fill: float) -> np.ndarray:
    """(n, K): ``values`` (len(rows), K) at ``rows``, ``fill`` elsewhere."""
    out = np.full((n, values.shape[1]), fill, values.dtype)
    out[rows] = values
    return out


def exemplars(resp: np.ndarray, where: np.ndarray, cluster: int, n: int,
              key: np.ndarray | None = None,
              min_responsibility: float = 0.5) -> list[tuple[int, int, float]]:
    """(image, flat position, responsibility) of the ``n`` images whose most typical position
    for ``cluster`` ranks highest by ``key`` (default: the responsibility), best first, leaving
    out those below ``min_responsibility``."""
    rank = resp if key is None else key
    order = np.argsort(-rank[:, cluster], kind="stable")
    out = [(int(i), int(where[i, cluster]), float(resp[i, cluster]))
           for i in order if resp[i, cluster] >= min_responsibility]
    return out[:n]


#: The greys of the checkerboard that fills a field's part outside the image. (It was white,
#: which in the digits' atlas read as strokes: the clusters of the border positions looked
#: like clusters of white bars.)
OUTSIDE = (150, 205)


def outside(shape: tuple[int, int, int], dtype) -> np.ndarray:
    """A (h, w, C) checkerboard of :data:`OUTSIDE`, one pixel a square."""
    yy, xx = np.indices(shape[:2])
    board = np.where((yy + xx) % 2 == 0, OUTSIDE[0], OUTSIDE[1]).astype(dtype)
    return np.repeat(board[..., None], shape[2], axis=2)


def crop(image: np.ndarray, field: Field, i: int, j: int) -> np.ndarray:
    """The pixels of ``image`` (H, W, C) under position (i, j)'s field, a grey checkerboard
    (:func:`outside`) where the field reaches outside the image."""
    h, w = image.shape[:2]
    if field.global_:
        return image
    top, left, bottom, right = field.box(i, j)
    out = outside((bottom - top, right - left, image.shape[2]), image.dtype)
    t, lft, b, r = crop_box(field, i, j, (h, w))
    out[t - top : b - top, lft - left : r - left] = image[t:b, lft:r]
    return out


def atlas_rows(labels: np.ndarray, weights: np.ndarray, best: np.ndarray, where: np.ndarray,
               n: int, weight_threshold: float, max_clusters: int,
               key: np.ndarray | None = None) -> list[dict]:
    """One row per cluster kept, largest first (at most ``max_clusters``): cluster, weight,
    share of images, and its exemplars (:func:`exemplars`)."""
    weights = np.asarray(weights, np.float64)
    kept = [int(k) for k in np.argsort(-weights, kind="stable") if weights[k] > weight_threshold]
    flat = labels.reshape(len(labels), -1)
    rows = []
    for k in kept[:max_clusters]:
        rows.append({"cluster": k, "weight": float(weights[k]),
                     "image_share": float((flat == k).any(1).mean()),
                     "exemplars": exemplars(best, where, k, n, key)})
    return rows


CELL = 48
"""Pixels a crop is enlarged to (at most; by an integer factor, nearest neighbour) in the atlas."""

CAPTION = 12
"""Pixels of white above each row of crops, for their 6.5 pt captions (clear of the row above)."""


def atlas_mosaic(rows: list[dict], images: np.ndarray, field: Field, map_width: int,
                 colours: np.ndarray, n: int, border: int = 3, gap: int = 4,
                 caption: int = CAPTION) -> tuple[np.ndarray, int, int]:
    """The atlas's exemplar crops as one RGB image (float, 0-1): row r, column c holds the
    crop of ``rows[r]``'s c-th exemplar, enlarged by an integer factor to about
    :data:`CELL` px, framed in the cluster's colour, below a white band of ``caption`` px for
    its caption; white elsewhere. Returns the image, the column pitch (px from one cell's
    start to the next) and the row pitch (a framed crop plus its caption band)."""
    field_px = (max(images.shape[1:3]) if field.global_ else max(field.size))
    scale = max(1, CELL // max(field_px, 1))
    size = field_px * scale + 2 * border
    pitch, row_pitch = size + gap, size + caption
    canvas = np.ones((len(rows) * row_pitch, n * pitch, 3))
    for r, row in enumerate(rows):
        for c, (img, pos, _) in enumerate(row["exemplars"][:n]):
            patch = crop(images[img], field, pos // map_width, pos % map_width) / 255.0
            patch = np.repeat(np.repeat(patch, scale, 0), scale, 1)
            if patch.shape[-1] == 1:
                patch = np.repeat(patch, 3, -1)
            top, left = r * row_pitch + caption, c * pitch
            h, w = patch.shape[:2]
            canvas[top:top + h + 2 * border, left:left + w + 2 * border] = colours[row["cluster"]]
            canvas[top + border:top + border + h, left + border:left + border + w] = patch
    return canvas, pitch, row_pitch


def plot_atlas(rows: list[dict], images: np.ndarray, field: Field, map_shape: tuple[int, int],
               colours: np.ndarray, title: str, dest: str | Path, n: int,
               clusters_kept: int | None = None) -> None:
    """Clusters as rows, exemplars as columns; the label-map colour, weight and image share
    at the start of each row. ``images`` (N, H, W, C) uint8 are the data set's images.
    One axes holds every crop (:func:`atlas_mosaic`): a figure of 24 rows draws in about a
    second, not the ten that an axes per crop takes."""
    from convdp.plotting import placeholder, pyplot, save_figure

    if not rows:
        placeholder(f"{title}: no cluster kept", dest)
        return
    plt = pyplot()
    mosaic, pitch, row_pitch = atlas_mosaic(rows, images, field, map_shape[1], colours, n)
    legend = 1.6  # the legend column, in cells
    fig = plt.figure(figsize=(1.1 * (n + legend) + 0.4,
                              1.1 * len(rows) * row_pitch / pitch + 0.9))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.96 - 0.75 / fig.get_figheight()))
    ax.imshow(mosaic, interpolation="nearest",
              extent=(0, mosaic.shape[1], mosaic.shape[0], 0))
    for r, row in enumerate(rows):
        top = r * row_pitch + CAPTION  # the crops' top, below their captions' band
        ax.add_patch(plt.Rectangle((-legend * pitch, top + 0.2 * pitch), 0.3 * pitch,
                                   0.5 * pitch, color=colours[row["cluster"]]))
        ax.text(-legend * pitch + 0.38 * pitch, top + 0.45 * pitch,
                f"{row['cluster']}\nw {row['weight']:.3f}\n{100 * row['image_share']:.0f}% img",
                va="center", fontsize=7)
        for c, (img, _, resp) in enumerate(row["exemplars"][:n]):
            ax.text(c * pitch, top - 1, f"#{img} {resp:.2f}", fontsize=6.5, va="bottom")
    ax.set_xlim(-legend * pitch, mosaic.shape[1])
    ax.set_ylim(mosaic.shape[0], 0)
    ax.set_axis_off()
    size = "whole image" if field.global_ else f"{field.size[0]}×{field.size[1]} px"
    more = (f"; the {len(rows)} largest of {clusters_kept} kept"
            if clusters_kept and clusters_kept > len(rows) else "")
    down, across = field.jump
    stride = f"{down} px" if down == across else f"{down}×{across} px"
    fig.suptitle(f"{title}: receptive field {size}, stride {stride}{more}\n"
                 "rows: clusters by weight (label-map colour, weight, share of images); "
                 "columns: most typical positions (image #, responsibility); grey checkers: "
                 "outside the image", fontsize=8)
    save_figure(fig, dest)
