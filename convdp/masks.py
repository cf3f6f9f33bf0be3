"""Agreement of a layer's label maps with ground-truth part masks.

A data set of kind ``folder`` may declare ``masks: FOLDER``: integer mask images with the same
relative names as the images (``images/a/1.png`` ↔ ``masks/a/1.png``; another extension with
the same stem is accepted), one value per part, ``mask_background`` (default 0) for the
background; or colour masks (8-bit RGB, one colour per part), whose label is the colour as
``0xRRGGBB`` (black 0, so the default background; a white one is ``0xFFFFFF``) and whose
parts are named ``#rrggbb`` in the tables. Each is drawn on its image as shown (both EXIF
orientations applied): the same width and height. They are resized and cropped the way the images were (short side to ``size``, centre
crop), with nearest-neighbour interpolation so that no new values appear. Masks are lossless
images (:data:`MASK_EXTENSIONS`): JPEG's artefacts at part borders would be labels of their
own.

For one fit (position mode), the label maps (N, h, w) are upsampled to the image (N, H, W),
each pixel taking the label of the position whose receptive field is centred nearest to it,
and compared with the masks:

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
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: A data set's config keys of its part masks (read by prepare_masks alone).
SPEC_KEYS = ("masks", "mask_background", "mask_ignore")
#: Columns of the per-layer CSV (one row per cluster present in the label maps).
CLUSTER_COLUMNS = ["cluster", "weight", "kept", "pixels", "foreground_share", "best_label",
                   "best_label_name", "iou"]
#: Columns added to the summary table for position-mode DPGMM rows of masked data sets.
SUMMARY_COLUMNS = ["mask_nmi", "mask_ari", "mask_purity", "mask_mean_best_iou"]


#: Lossless formats a mask may be stored in (any case).
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".pgm", ".pbm", ".ppm", ".pnm", ".tga")
#: Image formats refused as masks, and why.
_JPEG = "JPEG's lossy compression makes new values at the parts' borders"
_LOSSY = "it is mostly lossy, and a lossy image makes new values at the parts' borders"
_REFUSED = {
    **dict.fromkeys((".jpg", ".jpeg", ".jpe", ".jfif", ".mpo"), _JPEG),
    **dict.fromkeys((".webp", ".avif", ".jp2", ".j2k"), _LOSSY),
    ".gif": "a GIF's pixels are palette indices, which its writers renumber",
    ".apng": "an animated PNG holds several images",
}
#: Distinct colours a colour mask may hold: more are a photograph or a mask drawn with
#: antialiasing, not one colour per part.
MAX_COLOURS = 1024
#: A grey (v, v, v) packed as a colour label ``0xRRGGBB``: ``v * GREY``.
GREY = 0x010101
#: The ``background`` stored for masks without one (``mask_background: null``): no int32
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
    h, w, orientation = _shown(path)
    return h, w, orientation in (5, 6, 7, 8)


def _shown(path: Path) -> tuple[int, int, int]:
    """(height, width) as shown and the EXIF orientation (1: none) of an image's header."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    turned = orientation in (5, 6, 7, 8)  # a quarter turn
    return ((w, h) if turned else (h, w)) + (orientation,)


def read_mask(path: Path) -> np.ndarray:
    """A mask image as (H, W) int64, as shown (its EXIF orientation applied, as the images
    are read): one channel (8 or 16 bit, a palette's indices, or 1-bit: 0 / 1), grey saved
    as RGB / RGBA (three equal channels, opaque) read as that grey, or colour (8-bit RGB or
    opaque RGBA) read as each pixel's colour ``0xRRGGBB``; 16-bit colour (which Pillow reads
    by its top byte), translucent colour and more than :data:`MAX_COLOURS` colours are
    refused."""
    arr, _, colour, _ = _read(path)
    return arr // GREY if colour is False else arr  # grey RGB as its grey


def _read(path: Path) -> tuple[np.ndarray, dict | None, bool | None, dict[int, int]]:
    """:func:`read_mask`'s labels, for a palette image the colour of each index it uses,
    whether the mask is RGB (None: one channel; False: RGB of three equal channels; True:
    colour): an RGB mask's labels are its colours ``0xRRGGBB``, so that the masks of one
    folder read alike whether or not a file holds a colour (:func:`load_masks`); and the
    labels drawn in a grey other than their value (label → grey: a palette's index whose
    colour is a grey, a 1-bit mask's white, read as 1), which a grey mask beside it would
    read as that grey."""
    from PIL import Image, ImageOps

    from convdp.datasets.images import declared_bits, extra_images, tiff_sample_layout

    with Image.open(path) as im:
        if extra_images(im):
            raise ValueError(f"mask {path} holds several images (pages or frames): a mask is "
                             "one integer image; save one mask per file")
        im.load()
        signed, white_is_zero = tiff_sample_layout(im)
        if white_is_zero:
            raise ValueError(f"mask {path} is a WhiteIsZero TIFF, whose values Pillow reads "
                             "inverted; save the mask with photometric BlackIsZero "
                             "(minisblack)")
        with open(path, "rb") as f:
            wide = declared_bits(im, f.read(25)) > 8 and im.mode in ("RGB", "RGBA", "LA")
        im = ImageOps.exif_transpose(im)
        arr = np.array(im)
        if signed and arr.dtype == np.uint8:  # signed 8-bit samples, which Pillow reads unsigned
            arr = arr.view(np.int8)
        palette = None
        if im.mode == "P" and im.getpalette() is not None:
            colours = np.array(im.getpalette(), np.int64).reshape(-1, 3)
            palette = {int(v): tuple(int(c) for c in colours[v]) for v in np.unique(arr)
                       if v < len(colours)}
    if wide:
        raise ValueError(f"mask {path} is 16-bit {im.mode}: Pillow reads 16-bit colour by its "
                         "top byte, which would turn small labels into 0; save masks as "
                         "16-bit greyscale (one channel)")
    drawn = {int(v): rgb[0] for v, rgb in (palette or {}).items()
             if rgb[0] == rgb[1] == rgb[2] and rgb[0] != v}
    if arr.dtype == np.bool_:  # mode "1": a binary mask
        arr = arr.astype(np.uint8)
        drawn = {1: 255} if arr.any() else {}  # its white, read as 1
    colour = None
    if arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.dtype == np.uint8:
        if arr.shape[2] == 4 and not (arr[..., 3] == 255).all():
            raise ValueError(f"mask {path} is translucent RGBA: a colour mask gives each part "
                             "one opaque colour; save it as RGB")
        rgb = arr[..., :3].astype(np.int64)
        colour = bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 0] != rgb[..., 2]).any())
        arr = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        n = np.unique(arr).size
        if n > MAX_COLOURS:
            raise ValueError(f"mask {path} holds {n} colours: a colour mask gives each part "
                             f"one colour (a photograph, or a mask drawn with antialiasing? "
                             f"at most {MAX_COLOURS})")
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"mask {path} is not a label image (shape {arr.shape}, {arr.dtype}): "
                         "write one integer label per pixel (one channel), or one 8-bit RGB "
                         "colour per part")
    return arr.astype(np.int64), palette, colour, drawn


def resize_mask(mask: np.ndarray, size: int | None) -> np.ndarray:
    """Short side to ``size`` (nearest), then centre crop: the images' geometry
    (:func:`convdp.datasets.resize.resize_center_crop`)."""
    import torch
    import torch.nn.functional as F

    from convdp.datasets.resize import crop_offsets, resized_shape

    h, w = mask.shape
    if size is None or (h, w) == (size, size):
        return mask
    nh, nw = resized_shape(h, w, size)
    if (nh, nw) != (h, w):
        t = torch.from_numpy(mask.astype(np.float64))[None, None]
        mask = F.interpolate(t, size=(nh, nw), mode="nearest-exact")[0, 0].numpy().astype(np.int64)
    top, left = crop_offsets(nh, nw, size)
    return mask[top : top + size, left : left + size]


def load_masks(folder: str | Path, names: Sequence[str], size: int | None,
               shape: tuple[int, int], images: str | Path | None = None,
               return_colour: bool = False) -> np.ndarray | tuple[np.ndarray, bool]:
    """The masks of the images ``names`` (in that order), as (N, H, W) int16 (int32 where the
    labels need it: colour masks, 16-bit labels), checked to have the images' ``shape``;
    with ``images`` (their folder), each mask also checked to have its image's own size
    before both are resized. Every mask is read before a refusal, which names all the masks
    that fail (up to ten, and how many). Where any mask is colour, every RGB mask's labels
    are its colours ``0xRRGGBB`` (grey ones too) and single-channel masks beside them are
    refused; otherwise grey RGB masks are read as their grey. Palette masks must give each
    index one colour, and each colour one index, in every file; a palette or 1-bit mask that
    reads a grey as another label (1-bit white as 1) beside a grey mask holding that grey is
    refused (one part would be two labels); values that never fill a 3 × 3 block (compression
    artefacts) and image orientations the sizes cannot confirm are warned of.
    ``return_colour``: also return whether the labels are colours."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"mask folder {folder} does not exist or is not a folder")
    out = np.empty((len(names), *shape), np.int32)
    problems: list[Exception] = []
    palettes: dict[int, dict[tuple, str]] = {}  # index -> {colour: first file}
    # per kind of mask (None: one channel, False / True: grey / colour RGB), the values
    # that fill a 3 × 3 block, the pixels of each value, the masks and the first file
    filled: dict[bool | None, set[int]] = {}
    counts: dict[bool | None, dict[int, int]] = {}
    kinds: dict[bool | None, list[int]] = {}
    first: dict[bool | None, Path] = {}
    unconfirmed = []
    taken: dict[Path, str] = {}  # mask file -> the first image it was found for
    # one-channel / grey masks read by their grey, and the palette / 1-bit masks that read a
    # grey as another label: grey -> (the label, the file), grey -> the first file holding it
    drawn: dict[int, tuple[int, Path]] = {}
    greys: dict[int, Path] = {}
    for i, name in enumerate(names):
        try:
            path = mask_file(folder, name)
            if taken.setdefault(path, name) != name:  # a.jpg and a.png found a.png by stem
                raise ValueError(f"images {taken[path]!r} and {name!r} both take mask {path}: "
                                 "give each image its own mask, named as the image")
            mask, palette, colour, renamed = _read(path)
            if images is not None and not _check_drawn_on(path, mask.shape, Path(images) / name):
                unconfirmed.append(name)
            for index, rgb in (palette or {}).items():
                palettes.setdefault(index, {}).setdefault(rgb, path.name)
            values, value_counts = np.unique(mask, return_counts=True)
            if palette is None and not renamed and colour is not True:
                for v in (values // GREY if colour is False else values).tolist():
                    greys.setdefault(v, path)
            for label, grey in renamed.items():
                drawn.setdefault(grey, (label, path))
            filled.setdefault(colour, set()).update(_filled_values(mask))
            kind_counts = counts.setdefault(colour, {})
            for v, c in zip(values.tolist(), value_counts.tolist(), strict=True):
                kind_counts[v] = kind_counts.get(v, 0) + c
            mask = resize_mask(mask, size)
            if mask.shape != tuple(shape):
                raise ValueError(f"mask {path} is {mask.shape[1]}×{mask.shape[0]} once resized, "
                                 f"its image {shape[1]}×{shape[0]}")
            if mask.min() < -(2**31) or mask.max() >= 2**31:
                raise ValueError(f"mask {path} has labels outside the int32 range")
            out[i] = mask
            kinds.setdefault(colour, []).append(i)
            first.setdefault(colour, path)
        except (OSError, ValueError) as exc:
            problems.append(exc)
    if True in first and None in first:
        problems.append(ValueError(
            f"mask {first[True]} is a colour mask and {first[None]} a one-channel label image: "
            "the masks of a folder are all colour (RGB, one colour per part) or all labels"))
    clash = [(g, *drawn[g]) for g in sorted(drawn) if g in greys and drawn[g][0] not in greys]
    if clash and True not in first:  # (colour masks beside one-channel ones are refused above)
        grey, label, path = clash[0]
        problems.append(ValueError(
            f"mask {path} reads the grey {grey} as label {label} (a palette's index, or a 1-bit "
            f"mask's white), and {greys[grey]} holds {grey} itself: the same part would be two "
            "labels; save the masks of a folder alike (all palette, all 1-bit or all grey "
            "values)"))
    if len(problems) == 1:
        raise problems[0]
    if problems:
        listed = "\n  ".join(str(p) for p in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ValueError(f"{len(problems)} of the {len(names)} masks in {folder} cannot be "
                         f"used:\n  {listed}{more}")
    colour = True in kinds
    if not colour and False in kinds:  # grey RGB among labels: read as its grey
        out[kinds[False]] //= GREY
        filled[False] = {v // GREY for v in filled[False]}
        counts[False] = {v // GREY: c for v, c in counts[False].items()}
    _check_palettes(palettes, folder)
    merged: dict[int, int] = {}
    for kind_counts in counts.values():
        for v, c in kind_counts.items():
            merged[v] = merged.get(v, 0) + c
    _warn_unfilled(merged, set().union(*filled.values()), folder, colour)
    if unconfirmed:
        log.warning("%d image(s) of %s (e.g. %s) carry an EXIF orientation (a flip, a half turn, "
                    "or a quarter turn of a square image) that their masks' sizes cannot "
                    "confirm: masks are read as the images are shown; a mask drawn on the "
                    "stored pixels would not match its image", len(unconfirmed),
                    images, unconfirmed[0])
    if len(out) and -(2**15) <= out.min() and out.max() < 2**15:
        out = out.astype(np.int16)
    return (out, colour) if return_colour else out


def colour_name(value: int) -> str:
    """A colour mask's label ``0xRRGGBB`` as ``#rrggbb``."""
    return f"#{int(value):06x}"


def shown_values(values, colour: bool = False) -> str:
    """The first ten of the masks' ``values`` for a message (colours as ``#rrggbb``)."""
    values = list(values)
    shown = [colour_name(v) if colour else str(v) for v in values[:10]]
    return ", ".join(shown) + (", …" if len(values) > 10 else "")


def _filled_values(mask: np.ndarray) -> set[int]:
    """The values of ``mask`` that fill at least one 3 × 3 block of pixels."""
    if min(mask.shape) < 3:
        return set(np.unique(mask).tolist())
    centre = mask[1:-1, 1:-1]
    same = np.ones(centre.shape, bool)
    h, w = mask.shape
    for di in (0, 1, 2):
        for dj in (0, 1, 2):
            same &= mask[di : h - 2 + di, dj : w - 2 + dj] == centre
    return set(np.unique(centre[same]).tolist())


def _check_palettes(palettes: dict[int, dict[tuple, str]], folder: Path) -> None:
    """Refuse palette masks whose indices stand for different colours in different files:
    a writer that renumbers its palette (a quantiser, an optimiser) made them, and an index
    is then no label."""
    mixed = {index: colours for index, colours in palettes.items() if len(colours) > 1}
    indices: dict[tuple, dict[int, str]] = {}  # colour -> {index: first file}
    for index, colours in sorted(palettes.items()):
        for colour, file in colours.items():
            indices.setdefault(colour, {}).setdefault(index, file)
    split = {colour: where for colour, where in indices.items() if len(where) > 1}
    if split and not mixed:  # one colour, two labels: a writer that renumbered, leaving gaps
        colour, where = min(split.items(), key=lambda cw: min(cw[1]))
        shown = "; ".join(f"index {index} in {file}" for index, file in list(where.items())[:3])
        raise ValueError(f"the palette masks of {folder} give the colour {colour} different "
                         f"indices ({shown}): one part would be several labels; save the masks "
                         "as greyscale label images, or with one fixed palette")
    if mixed:
        index, colours = min(mixed.items())
        shown = "; ".join(f"{colour} in {file}" for colour, file in list(colours.items())[:3])
        raise ValueError(f"the palette masks of {folder} give index {index} different colours "
                         f"({shown}; {len(mixed)} index(es) so): their indices are not labels; "
                         "save the masks as greyscale label images, or with one fixed palette")


def _warn_unfilled(counts: dict[int, int], filled: set[int], folder: Path,
                   colour: bool = False) -> None:
    """Warn of values that never fill a 3 × 3 block in any mask: the artefacts of lossy
    compression at the parts' borders (a JPEG saved again as PNG), or parts one or two
    pixels thin."""
    thin = sorted(v for v in counts if v not in filled)
    if not thin:
        return
    share = sum(counts[v] for v in thin) / max(sum(counts.values()), 1)
    log.warning("%d value(s) of the masks in %s never fill a 3×3 block of pixels (%s; %.2g%% of "
                "the pixels): lossy compression's artefacts at the parts' borders (a JPEG saved "
                "again as PNG, a colour mask drawn with antialiasing) are labels of their own "
                "and lower every score; re-draw or export the masks losslessly unless these are "
                "parts one or two pixels thin",
                len(thin), folder, shown_values(thin, colour), 100 * share)


def _check_drawn_on(path: Path, shape: tuple[int, int], image: Path) -> bool:
    """Refuse a mask whose size is not its image's as shown (resizing would hide it).
    Returns False where the image's EXIF orientation is one the sizes cannot confirm (a flip
    or half turn, or a quarter turn of a square image)."""
    h, w, orientation = _shown(image)
    turned = orientation in (5, 6, 7, 8)
    if shape == (h, w):
        return orientation == 1 or (turned and h != w)
    why = (f"; the image's EXIF orientation turns it, and the mask has the stored pixels' "
           f"{h}×{w}: draw or turn the mask as the image is shown" if turned and shape == (w, h)
           else "")
    raise ValueError(f"mask {path} is {shape[1]}×{shape[0]} pixels, its image {image} "
                     f"{w}×{h}{' as shown' if turned else ''}{why}")


def check_background(masks: np.ndarray, background: int | None, folder: str | Path,
                     ignore: Sequence[int] = (), colour: bool = False) -> None:
    """Refuse a background value that no mask holds (every pixel would count as a part), or
    that every pixel holds (no part to score) (``None``: the masks have no background, said
    so), and an ``ignore`` value that no mask holds (it would leave out nothing); warn where
    the background covers few pixels and another value most of them, and where the masks
    hold one part (beside the background, if any, and the values ``ignore``): no foreground
    score then. ``colour``: the masks' labels are colours ``0xRRGGBB``, shown as such."""
    values, counts = np.unique(masks, return_counts=True)
    shown = shown_values(values, colour)
    name = colour_name if colour else str
    if background is not None and background not in values:
        what = (f" ({colour_name(background)})" if colour and 0 <= background < 1 << 24 else "")
        how = ("the colour of their background as 0xRRGGBB (white: 0xFFFFFF)" if colour
               else "the value of their background")
        raise ValueError(f"mask_background {background}{what} is in none of the {len(masks)} "
                         f"masks of {folder} (their {'colours' if colour else 'values'}: "
                         f"{shown}); set the data set's mask_background to {how}, or to null "
                         "where every pixel is a part's")
    absent = [v for v in ignore if v not in values]
    if absent:  # a colour for labels that are no colours, a palette's colour for its index
        v = int(absent[0])
        what = colour_name(v) if colour else (f"{v} ({colour_name(v)})" if 255 < v < 1 << 24
                                              else str(v))
        raise ValueError(f"mask_ignore {what} is in none of "
                         f"the {len(masks)} masks of {folder} (their "
                         f"{'colours' if colour else 'values'}: {shown}), so no pixel would be "
                         "left out; give the value the masks are read as (a palette mask's "
                         "index, a grey mask's grey, a colour mask's colour), or remove it")
    if background is not None and len(values) == 1:
        raise ValueError(f"every pixel of the {len(masks)} masks of {folder} is the background "
                         f"{background}: no part to score (16-bit colour read by its top byte, "
                         "or the wrong folder?)")
    parts = values[(values != background) & ~np.isin(values, np.asarray(ignore, int))]
    if len(parts) == 1:
        beside = (f"beside the background {background}" if background is not None
                  else "and no background (mask_background: null)")
        log.warning("the masks of %s hold one part (value %s) %s: the foreground NMI, ARI and "
                    "purity need two parts and are left empty; mean_best_iou scores the "
                    "clusters against the part", folder, name(parts[0]), beside)
    if background is None:
        return
    share = counts / counts.sum()
    own, top = float(share[values == background][0]), int(np.argmax(share))
    if own < 0.1 and share[top] > 0.5 and values[top] != background:
        log.warning("mask_background %s covers %.1f%% of the pixels of the masks of %s and value "
                    "%s covers %.1f%%: is %s the background? (a palette that numbers its "
                    "colours by use puts the background anywhere)", name(background), 100 * own,
                    folder, name(values[top]), 100 * share[top], name(values[top]))


def part_names(folder: str | Path) -> dict[int, str]:
    """Part names from a ``parts.json`` beside the mask folder (``convdp make-parts``), else {}."""
    info = Path(folder).resolve().parent / "parts.json"
    if not info.is_file():
        return {}
    try:
        return {int(k): str(v) for k, v in json.loads(info.read_text())["parts"].items()}
    except (KeyError, ValueError, AttributeError):
        return {}


def upsample(labels: np.ndarray, shape: tuple[int, int], field=None) -> np.ndarray:
    """Label maps (N, h, w) → (N, H, W): each pixel takes the label of the position whose
    receptive field (``field``, a :class:`convdp.receptive.Field`) is centred nearest to it;
    without a field (or a global one), the maps are stretched evenly over the image (nearest
    neighbour at pixel centres). The two agree where a layer's fields tile the image (no
    padding, a size its stride divides); a net padded to keep sizes (a 7 × 7 convolution
    with padding 3) centres position i at pixel ``jump * i``, half a stride before where
    stretching puts it."""
    n, h, w = labels.shape
    if field is None or field.global_:
        rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.int64), w - 1)
    else:
        rows, cols = (np.clip(np.floor((np.arange(shape[a]) - field.start[a]
                                        - (field.size[a] - 1) / 2) / field.jump[a] + 0.5),
                              0, (h, w)[a] - 1).astype(np.int64) for a in range(2))
    return labels[:, rows][:, :, cols]


def _contingency(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    table = np.bincount(ia * len(ub) + ib, minlength=len(ua) * len(ub)).reshape(len(ua), len(ub))
    return ua, ub, table


def agreement(labels: np.ndarray, masks: np.ndarray, weights: np.ndarray,
              background: int = 0, weight_threshold: float = 0.01,
              names: dict[int, str] | None = None,
              ignore: Sequence[int] = (), field=None,
              colour: bool = False) -> tuple[dict, pd.DataFrame]:
    """Score label maps (N, h, w) against masks (N, H, W): the record (``nmi``, ``ari`` and
    ``purity`` on the foreground, NaN where it holds fewer than two parts; ``mean_best_iou``,
    each cluster's best IoU with a part weighted by its foreground pixels; counts) and one
    row per cluster present (:data:`CLUSTER_COLUMNS`: its best label of all, background
    included); pixels of the values ``ignore`` are in no score. ``field``: the layer's
    receptive field, which places each position on the image (:func:`upsample`).
    ``names``: part names by label; others are named by their value, or with ``colour``
    (colour masks' labels ``0xRRGGBB``) as ``#rrggbb``."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    up = upsample(np.asarray(labels), masks.shape[1:], field).ravel()
    truth = np.asarray(masks).ravel()
    if len(ignore):
        scored = ~np.isin(truth, np.asarray(ignore))
        up, truth = up[scored], truth[scored]
    fg = truth != background
    record = {"images": int(masks.shape[0]), "pixels": int(truth.size),
              "foreground_pixels": int(fg.sum()), "label_map_shape": list(labels.shape[1:]),
              "parts": int(np.unique(truth[fg]).size),
              "placed_by": ("stretched" if field is None or field.global_
                            else "receptive field centres")}
    record["clusters_on_foreground"] = int(np.unique(up[fg]).size)
    if record["parts"] >= 2:
        record["nmi"] = float(normalized_mutual_info_score(truth[fg], up[fg]))
        record["ari"] = float(adjusted_rand_score(truth[fg], up[fg]))
        _, _, fg_table = _contingency(up[fg], truth[fg])
        record["purity"] = float(fg_table.max(1).sum() / fg.sum())
    else:  # one part (object / background masks): every labelling would score 1 or 0
        record |= {"nmi": float("nan"), "ari": float("nan"), "purity": float("nan")}
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
            "best_label": label,
            "best_label_name": names.get(label, colour_name(label) if colour else str(label)),
            "iou": float(iou[r, best[r]]),
        })
    df = pd.DataFrame(rows, columns=CLUSTER_COLUMNS).sort_values("weight", ascending=False)
    # each cluster's best IoU with a part (not the background: one cluster over the whole
    # image would score the background's share), weighted by its foreground pixels
    on_fg = fg_pixels > 0
    record["mean_best_iou"] = (
        float(np.average(iou[:, fg_cols].max(1)[on_fg], weights=fg_pixels[on_fg]))
        if on_fg.any() else float("nan"))
    return record, df


def mask_table(records: Sequence[dict]) -> pd.DataFrame:
    """One row per model × data set × layer from the mask-agreement records; ``layer_index``
    numbers each model's layers 0, 1, ... in the net's order, as ``summary.csv`` does."""
    cols = ["model", "control_of", "dataset", "layer", "layer_index", "nmi", "ari", "purity",
            "mean_best_iou", "clusters_on_foreground", "parts", "images", "foreground_pixels"]
    from convdp.aggregate import number_layers

    df = pd.DataFrame([{c: r.get(c) for c in cols} for r in records], columns=cols)
    return df if df.empty else number_layers(df)


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
        plotted = False
        for c, ds in enumerate(dict.fromkeys(own["dataset"])):
            colour = colours[c % len(colours)]
            for sub, style, what in ((own, "-o", ds), (controls, "--s", f"{ds}, random weights")):
                part = sub[sub["dataset"] == ds].set_index("layer").reindex(layers)
                if "purity" not in part:
                    part["purity"] = np.nan
                if part["nmi"].notna().any():
                    plotted = True
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
            if not plotted:
                ax.text(0.5, 0.5, "masks of one part: no score\n(mask_agreement.csv: "
                        "mean_best_iou)", transform=ax.transAxes, ha="center", color="0.4")
        if plotted:
            axes[row, 2].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, dest)
