"""Figure helpers shared by the aggregation and the transfer figures: pyplot on the Agg
backend, atomic PNG writes, a placeholder figure, rows of label maps beside their input, and
one colour per cluster by weight.

Importing this module does not load pyplot; the functions switch it to Agg when called.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps

from convdp.io import atomic_path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (these figures are only ever saved to files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, dest: str | Path) -> None:
    """Write ``fig`` to the PNG ``dest`` (atomically: complete or not there) and close it."""
    with atomic_path(dest, ".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    pyplot().close(fig)


def placeholder(text: str, dest: str | Path, figsize: tuple[float, float] = (4, 2)) -> None:
    """A figure that only says ``text``, for an output that has nothing to show."""
    fig, ax = pyplot().subplots(figsize=figsize)
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    save_figure(fig, dest)


def label_map_rows(
    axes, rows: Sequence[tuple[np.ndarray, str, Sequence[np.ndarray | None]]]
) -> None:
    """Draw label maps beside their input image, one row of ``axes`` (a 2-D grid) per row.

    Each row is ``(image, ylabel, maps)``: the input (H, W, C) goes in column 0 (grey when it
    has one channel, on the fixed range of its dtype, 0-255 or 0-1, as an RGB input is drawn:
    not stretched to its own minimum and maximum) with ``ylabel``, then one RGB map (h, w, 3)
    per column (None leaves the cell empty). Column 0's top is titled ``input``, every tick is
    removed, and the columns that no row's maps reach are switched off. The layers' titles are
    the caller's.
    """
    width = 1 + max(len(maps) for _, _, maps in rows)
    for r, (img, ylabel, maps) in enumerate(rows):
        grey = img.shape[-1] == 1
        if grey:  # imshow would stretch a single channel to its own min and max
            top = 255 if np.issubdtype(img.dtype, np.integer) else 1.0
            axes[r, 0].imshow(img[..., 0], cmap="gray", vmin=0, vmax=top)
        else:
            axes[r, 0].imshow(img)
        axes[r, 0].set_ylabel(ylabel, fontsize=7)
        for c, rgb in enumerate(maps, start=1):
            if rgb is not None:
                axes[r, c].imshow(rgb, interpolation="nearest")
    axes[0, 0].set_title("input", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[:, width:].flat:
        ax.set_axis_off()


#: Distinguishable colours for the largest clusters of a layer; the rest are drawn grey.
PALETTE = tuple(c for i, c in enumerate(colormaps["tab20"].colors) if i not in (14, 15))
"""tab20 without its two greys (grey is for the small clusters): 18 colours."""
NEUTRAL = (0.82, 0.82, 0.82)


def cluster_colours(weights: np.ndarray) -> np.ndarray:
    """An RGB colour per cluster id (K, 3): the largest :data:`PALETTE` clusters by weight get
    the palette's colours in order of weight, every other cluster the neutral grey. The same
    cluster has the same colour in every image and figure drawn from the same fit."""
    weights = np.asarray(weights, np.float64)
    order = np.argsort(-weights, kind="stable")
    colours = np.tile(NEUTRAL, (len(weights), 1))
    top = order[: len(PALETTE)]
    colours[top] = np.asarray(PALETTE)[: len(top)]
    return colours


def grey_clusters(weights: np.ndarray, labels: np.ndarray) -> int:
    """How many of the clusters present in ``labels`` :func:`cluster_colours` draws grey."""
    top = np.argsort(-np.asarray(weights, np.float64), kind="stable")[: len(PALETTE)]
    return int(np.setdiff1d(np.unique(labels), top).size)
