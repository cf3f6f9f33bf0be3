"""Job functions of the atlas and mask rules (``rules/atlas.smk``): paths in, files out.

* :func:`prepare_masks`: a data set's part masks, aligned with its stored images;
* :func:`mask_agreement`: one layer's label maps against the masks (:mod:`convdp.masks`);
* :func:`mask_summary`: the table of every layer and the NMI / ARI figure;
* :func:`cluster_atlas`: one layer's cluster atlas (:mod:`convdp.atlas`).
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convdp.io import read_json, write_json, write_npz

log = logging.getLogger(__name__)


def prepare_masks(dataset: str | Path, folder: str | Path, size: int | None,
                  background: int | None, out: str | Path,
                  images: str | Path | None = None, ignore: Sequence[int] = ()) -> dict:
    """Read the masks of the stored data set's images (same relative names; ``images``:
    their folder, where each mask's size is checked against its image's) into ``out``
    (``masks`` (N, H, W) int16 or int32, ``background``: :data:`convdp.masks.NO_BACKGROUND`
    for None, masks without one; ``ignore``: the values no score counts; ``colour``: the
    labels are colours ``0xRRGGBB``)."""
    from convdp.data import open_dataset
    from convdp.masks import NO_BACKGROUND, check_background, load_masks

    group = open_dataset(dataset)
    names = list(dict(group.attrs.get("files", {})))
    shape = tuple(group["images"].shape[1:3])
    if len(names) != group["images"].shape[0]:
        raise ValueError(f"{dataset}: {group['images'].shape[0]} images but {len(names)} file "
                         "names; masks need an image folder data set (kind folder)")
    masks, colour = load_masks(folder, names, size, shape, images, return_colour=True)
    check_background(masks, background, folder, ignore, colour)
    background = NO_BACKGROUND if background is None else background
    write_npz(out, masks=masks, background=np.int64(background), names=np.array(names),
              ignore=np.asarray(ignore, np.int64), colour=np.bool_(colour))
    return {"images": len(names), "shape": list(shape)}


def layer_field(meta_json: str | Path, layer: str, image: tuple[int, int]):
    """The receptive field of ``layer`` of the net ``meta_json`` describes, traced at the
    image size (:func:`convdp.receptive.trace_fields`); a ValueError where it cannot be."""
    from convdp.models import load_model
    from convdp.receptive import trace_fields

    return trace_fields(load_model(read_json(meta_json), None), [layer], image)[layer]


def mask_agreement(fit_npz: str | Path, masks_npz: str | Path, out_csv: str | Path,
                   out_json: str | Path, *, context: dict, weight_threshold: float = 0.01,
                   folder: str | Path | None = None, meta_json: str | Path | None = None,
                   layer: str | None = None) -> dict:
    """Score one position-mode fit's label maps against the masks, each position placed on
    the image by its receptive field (``meta_json``: the net's, ``layer``: the fit's; stretched
    evenly where none is given or it cannot be traced, with a warning); write the
    per-cluster CSV and the record."""
    from convdp.aggregate import write_csv
    from convdp.masks import agreement, part_names

    with np.load(fit_npz) as z:
        labels, weights = z["labels"], z["weights"]
    with np.load(masks_npz) as z:
        masks, background = z["masks"], int(z["background"])
        ignore = z["ignore"] if "ignore" in z else ()  # stores from before mask_ignore
        colour = bool(z["colour"]) if "colour" in z else False
    if labels.ndim != 3:
        raise ValueError(f"{fit_npz}: labels of shape {labels.shape} are not label maps "
                         "(position mode)")
    field = None
    if meta_json is not None and layer is not None:
        try:
            field = layer_field(meta_json, layer, tuple(masks.shape[1:]))
        except ValueError as exc:
            log.warning("the label maps of %s are stretched over the images: %s", layer, exc)
    record, table = agreement(labels, masks, weights, background, weight_threshold,
                              part_names(folder) if folder else None, ignore, field, colour)
    record |= dict(context)
    write_csv(table, out_csv)
    write_json(out_json, record)
    return record


def mask_summary(records: Sequence[str | Path], out_csv: str | Path, figure: str | Path) -> None:
    """All layers' mask agreement in one table, and the figure against depth."""
    from convdp.aggregate import write_csv
    from convdp.masks import mask_table, plot_mask_agreement

    table = mask_table([read_json(p) for p in records])
    plot_mask_agreement(table, figure)
    write_csv(table, out_csv)


def cluster_atlas(fit_npz: str | Path, manifest: str | Path, dataset: str | Path,
                  meta_json: str | Path, layer: str, out_png: str | Path, out_json: str | Path,
                  *, n_exemplars: int = 8, max_clusters: int = 24,
                  weight_threshold: float = 0.01, title: str = "") -> dict:
    """One layer's cluster atlas: the figure and a JSON of every row's exemplars."""
    from convdp.atlas import atlas_rows, plot_atlas, typical_positions
    from convdp.data import open_dataset
    from convdp.fitted import load_npz, load_predictor
    from convdp.pipeline import open_layer
    from convdp.plotting import cluster_colours, placeholder
    from convdp.receptive import padding_free, widen
    from convdp.smoothing import inner_box, radius

    fit = load_npz(fit_npz)
    labels, weights = fit["labels"], fit["weights"]
    if labels.ndim != 3:
        raise ValueError(f"{fit_npz}: not a position-mode fit (labels {labels.shape})")
    images = open_dataset(dataset)["images"][:]
    try:
        field = layer_field(meta_json, layer, tuple(images.shape[1:3]))
    except ValueError as exc:  # the fits stand; only the crops need the field
        log.warning("no cluster atlas for %s: %s", title or layer, exc)
        placeholder(textwrap.fill(f"No cluster atlas: {exc}", 70), out_png,
                    figsize=(7, 2))
        out = {"layer": layer, "field": None, "error": str(exc)}
        write_json(out_json, out)
        return out
    sigma = (read_json(manifest).get("smooth") or {}).get(layer)
    title = title or layer
    candidates = None
    if sigma:  # stored smoothed: a position sees its neighbours' fields too
        grid = tuple(labels.shape[1:])
        box = inner_box(padding_free(field, grid, tuple(images.shape[1:3])), grid, sigma)
        if box is not None:  # the border's positions hold copies of the box's: not exemplars
            candidates = np.zeros(grid, bool)
            candidates[box[0]:box[1], box[2]:box[3]] = True
        field = widen(field, radius(sigma))
        title += f" (smoothed, σ = {sigma:g} positions)"
    array = open_layer(manifest, layer)
    resp, where, key = typical_positions(array, load_predictor(fit, f"{fit_npz}"), len(weights),
                                         candidates)
    rows = atlas_rows(labels, weights, resp, where, n_exemplars, weight_threshold,
                      max_clusters, key)
    kept = int((np.asarray(weights) > weight_threshold).sum())
    plot_atlas(rows, images, field, labels.shape[1:], cluster_colours(weights),
               title, out_png, n_exemplars, kept)
    out = {"layer": layer, "field": field.as_dict(), "clusters_kept": kept,
           # a sample store (extract.store: sample) keeps a seeded subset of the positions
           "candidates": "stored sample" if hasattr(array, "position_blocks") else "all",
           "label_map_shape": list(labels.shape[1:]), "rows": rows}
    write_json(out_json, out)
    return out
