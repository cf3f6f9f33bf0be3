"""Image files: image folders (class sub-folders as labels, or flat), a few images on their own,
and scikit-image's histology stand-in; decoding with faithful value mapping.

Images are decoded as 8-bit RGB: 8-bit modes by Pillow, greyscale wider than 8 bits by its
real depth (one depth per data set), float greyscale by [0, 1] or its own range (see
:func:`_to_rgb`); an image that can't be mapped faithfully counts as unreadable. With a
``size`` every image goes through :func:`convdp.datasets.resize.resize_center_crop`. Folder
scans follow links without loops, each real folder and file once.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import io
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convdp.datasets.base import Dataset, DatasetError, ImageReadError, select_indices
from convdp.datasets.fetch import file_hash
from convdp.datasets.resize import resize_center_crop

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".bmp", ".tif",
                    ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".avif",
                    ".jp2", ".j2k")
"""The extensions an image folder's files are read by (any case)."""

_OTHER_FORMAT = "of an image format convdp does not read"

#: Raster image formats Pillow opens that convdp does not read: a folder's files of these are
#: skipped with a warning (other files, a ``.txt`` or an ``.h5`` beside the images, quietly).
OTHER_IMAGE_EXTENSIONS = (".psd", ".ico", ".icns", ".cur", ".pcx", ".dcx", ".dds", ".sgi",
                          ".rgb", ".rgba", ".bw", ".xbm", ".xpm", ".dib", ".heic", ".heif",
                          ".jxl", ".qoi", ".blp", ".ftc", ".ftu", ".wal", ".msp", ".eps")


@contextlib.contextmanager
def _strict_decoding() -> Iterator[None]:
    """Make PIL raise on truncated images (restoring the caller's setting afterwards)."""
    from PIL import ImageFile

    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old



# Pillow modes whose samples are 8 bits (or fewer): converted to RGB by Pillow itself.
_EIGHT_BIT_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _wide_bits(peak: int) -> int:
    """The depth a greyscale integer image wider than 8 bits is scaled by: the smallest even
    bit count ≥ 8 that holds its maximum ``peak`` (10, 12, 14 and 16 bits are the usual
    sensor depths: a 16-bit PNG holding 12-bit data 0–4095 is scaled as 12-bit)."""
    n = int(peak).bit_length()
    return max(8, n + n % 2)


def _from_wide_int(im: Any, bits: int | None, fixed: bool = False) -> tuple[Any, tuple]:
    """Mode I;16… or I as mode L: 0…2**bits - 1 → 0…255, ``bits`` from the data when None
    (at least ``bits`` unless ``fixed``: then a value above 2**bits - 1 is refused)."""
    from PIL import Image

    arr = np.asarray(im).astype(np.int64)
    low, peak = int(arr.min()), int(arr.max())
    if low < 0:
        raise ValueError(f"{im.mode} image with negative values (min {low}): no faithful 0-255 map")
    if fixed and peak > 2**bits - 1:
        raise ValueError(f"{im.mode} image with a value of {peak}, above the {bits}-bit maximum "
                         f"{2**bits - 1} of the data set's bit_depth")
    bits = bits if fixed else max(bits or 0, _wide_bits(peak))
    scaled = np.round(arr * (255 / (2**bits - 1))).astype(np.uint8)
    return Image.fromarray(scaled, "L"), ("int", bits, peak, im.mode)


def _from_float(im: Any) -> tuple[Any, tuple]:
    """Mode F as mode L: values within [0, 1] taken as 0…1, others by the image's min…max."""
    from PIL import Image

    arr = np.asarray(im, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("float image with NaN or infinite values: no faithful 0-255 map")
    low, high = float(arr.min()), float(arr.max())
    unit = low >= 0.0 and high <= 1.0
    if not unit and low == high:
        raise ValueError(f"float image constant at {low:g}, outside [0, 1]: no range to scale by")
    if unit:
        low, high = 0.0, 1.0
    scaled = np.round((arr - low) * (255 / (high - low))).astype(np.uint8)
    return Image.fromarray(scaled, "L"), ("float", unit, low, high)


def declared_bits(im: Any, head: bytes) -> int:
    """Bits per sample that a TIFF's tags (BitsPerSample) or a PNG's header (``head``: the
    file's first 25 bytes or more) declare; 8 for anything else."""
    tags = getattr(im, "tag_v2", None)
    if tags is not None:
        return int(max(np.atleast_1d(tags.get(258, 8))))
    return head[24] if head[:8] == _PNG_SIGNATURE and len(head) > 24 else 8


def _check_wide_colour(im: Any, declared: int) -> None:
    """Refuse a 16-bit colour image whose data would come out nearly black.

    Pillow reads 16-bit colour (PNG, TIFF) by the top 8 bits of each sample: faithful to the
    depth the file declares, but data of 14 bits or fewer in it (12-bit camera data) would
    be stored at most a quarter bright, so such an image is refused (``declared``: its
    :func:`declared_bits`).
    """
    if im.mode not in ("LA", "RGB", "RGBA") or declared <= 8:
        return
    bands = [b for b, band in zip(im.getextrema(), im.getbands(), strict=True) if band != "A"]
    peak = max(high for _, high in bands)
    if peak < 64:
        raise ValueError(
            f"{declared}-bit {im.mode} image whose values fit in 14 bits (top byte max {peak}): "
            "read as 8-bit colour it would be nearly black; save it as 16-bit greyscale or "
            "scale it to 8 bits"
        )


def extra_images(im: Any) -> int:
    """The images a file holds beyond its first: a TIFF's later pages that are full images
    (not a reduced-resolution preview or a transparency mask, NewSubfileType bits 0 and 2),
    an animation's later frames (GIF, APNG, WebP); 0 for a camera's MPO JPEG (the picture,
    then its previews) and where the file's page count cannot be read (a broken pointer to a
    next page: its first page is read as before). Call it before ``im.load()``: it leaves the
    file at its first page."""
    try:
        n = getattr(im, "n_frames", 1)
    except Exception:  # Pillow reads the page count from the file: a broken chain of pages
        return 0
    if n <= 1 or im.format == "MPO":
        return 0
    if im.format != "TIFF":
        return n - 1
    full = 0
    try:
        for page in range(1, n):
            im.seek(page)
            full += not (int(im.tag_v2.get(254, 0)) & 0b101)
    except Exception:  # a page that cannot be read: the pages before it count
        pass
    im.seek(0)
    return full


def _check_frames(im: Any) -> int:
    """The frames of an animation beyond the first, which are not read (0 for a still image);
    a TIFF holding several full images (a stack of channels, slices or times) is refused."""
    extra = extra_images(im)
    if extra and im.format == "TIFF":
        raise ValueError(f"TIFF of {extra + 1} full-size pages (a stack of channels, slices or "
                         "times): convdp reads one image per file; save each page as its own "
                         "image, or up to three channels as one RGB image")
    return extra


def tiff_sample_layout(im: Any) -> tuple[bool, bool]:
    """``(signed, white_is_zero)`` of a TIFF's samples (SampleFormat 2, photometric 0), which
    Pillow leaves to the reader for some depths; ``(False, False)`` for any other file."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return False, False
    return 2 in np.atleast_1d(tags.get(339, 1)), tags.get(262) == 0


def _tiff_samples(im: Any, bits: int) -> Any:
    """``im`` with a TIFF's sample conventions that Pillow leaves to the reader applied:
    WhiteIsZero (photometric 0) greyscale wider than 8 bits or float is inverted (Pillow
    inverts 8-bit itself), and signed 8-bit samples, which Pillow reads as unsigned, are
    refused where one is negative (as negative wider integers are). ``bits``: its
    :func:`declared_bits`."""
    from PIL import Image

    signed, white_is_zero = tiff_sample_layout(im)
    if signed and im.mode == "L" and bits == 8:
        low = int(np.asarray(im).view(np.int8).min())
        if low < 0:
            raise ValueError(f"signed 8-bit image with negative values (min {low}): no "
                             "faithful 0-255 map")
    if im.mode == "I" and not signed and bits == 32 and getattr(im, "tag_v2", None) is not None:
        low = int(np.asarray(im).min())
        if low < 0:  # Pillow reads unsigned 32-bit as signed: 2**31 and above come out negative
            raise ValueError("unsigned 32-bit image with values of 2**31 or more: no faithful "
                             "0-255 map; save it as 16-bit")
    if not white_is_zero or im.mode in _EIGHT_BIT_MODES:
        return im
    arr = np.asarray(im)
    if im.mode == "F":
        if not (np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1):
            raise ValueError("WhiteIsZero float image with values outside [0, 1]: no faithful "
                             "0-255 map")
        return Image.fromarray((1.0 - arr).astype(np.float32), "F")
    white = 2**bits - 1
    if white >= 2**16 or arr.min() < 0 or arr.max() > white:
        raise ValueError(f"WhiteIsZero {im.mode} image of {bits} bits, values "
                         f"{arr.min()}..{arr.max()}: no faithful 0-255 map; save it as 16-bit "
                         "BlackIsZero")
    return Image.fromarray((white - arr.astype(np.int64)).astype(np.uint16))


def _to_rgb(im: Any, bits: int | None = None, fixed: bool = False) -> tuple[Any, tuple | None]:
    """``im`` as 8-bit RGB, with how its values were mapped (None for 8-bit images).

    * 8-bit modes (L, P, RGB, RGBA, CMYK, …): Pillow's conversion (alpha is dropped).
    * Greyscale integers wider than 8 bits (I;16…, I): scaled by their real depth, see
      :func:`_wide_bits` (at least ``bits``: a data set's images share one depth), or by
      ``bits`` itself when ``fixed`` (the config's ``bit_depth``); negative values are
      refused. Note ``("int", bits, max, mode)``.
    * Float greyscale (F): values within [0, 1] are taken as 0…1, otherwise the image's own
      min…max is stretched to 0…255; NaN or infinite values are refused. Note
      ``("float", in_unit_range, low, high)``.
    * Any other mode is refused (ValueError).
    """
    note = None
    if im.mode.startswith("I;16") or im.mode == "I":
        im, note = _from_wide_int(im, bits, fixed)
    elif im.mode == "F":
        im, note = _from_float(im)
    elif im.mode not in _EIGHT_BIT_MODES:
        raise ValueError(f"unsupported image mode {im.mode!r}")
    return (im if im.mode == "RGB" else im.convert("RGB")), note


def _transparent(im: Any, bits: int = 8) -> bool:
    """Whether ``im`` has a pixel that is not fully opaque (its alpha band, or the transparent
    colour key of an 8-bit greyscale or RGB image or a 16-bit greyscale one, PNG's tRNS, which
    Pillow keeps at the file's depth: ``bits``; a palette's transparent index is one once
    :func:`_decode` has made it RGBA)."""
    key = im.info.get("transparency")
    keyed = (im.mode in ("L", "RGB") and bits == 8) or (im.mode.startswith("I;16") and bits == 16)
    if keyed and isinstance(key, int | tuple):
        arr = np.asarray(im)
        hit = arr == np.asarray(key)
        return bool((hit.all(-1) if arr.ndim == 3 else hit).any())
    if "A" not in im.getbands():
        return False
    low, high = im.getchannel("A").getextrema()
    return low < high or high < 255


def _colour_profile(im: Any) -> str | None:
    """The name of the colour space an image declares other than sRGB (an embedded ICC
    profile, or a PNG's gamma), whose values are read as stored, without colour management
    (as torchvision and most training pipelines read them); None for sRGB or none."""
    icc = im.info.get("icc_profile")
    if isinstance(icc, bytes | bytearray) and icc:
        return _profile_unless_srgb(bytes(icc))
    gamma = im.info.get("gamma")
    if gamma and "srgb" not in im.info and abs(float(gamma) - 1 / 2.2) > 0.01:
        return f"PNG gamma {float(gamma):.3g}"
    return None


#: Parts of the descriptions of profiles that are sRGB in all but name: grey profiles of
#: sRGB's curve or of gamma 2.2 (within a few levels of it); and Facebook's compact "c2".
_SRGB_ALIASES = ("srgb", "sgrey", "sgray", "gamma2.2")


@functools.lru_cache(maxsize=64)
def _profile_unless_srgb(icc: bytes) -> str | None:
    """An ICC profile's description, None for sRGB: named so (:data:`_SRGB_ALIASES`), or an
    RGB profile with sRGB's primaries (D50-adapted, within 0.005 in xy) — and None where the
    profile cannot be parsed (no littlecms). Each profile is parsed once (a camera's files
    share one)."""
    try:
        from PIL import ImageCms

        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(profile).strip() or "an unnamed ICC profile"
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).profile
        primaries = [(getattr(profile.profile, c), getattr(srgb, c)) for c in
                     ("red_colorant", "green_colorant", "blue_colorant")]
    except Exception:  # no littlecms, or a profile it cannot parse: nothing to say
        return None
    plain = name.lower().replace(" ", "")
    if plain == "c2" or any(a in plain for a in _SRGB_ALIASES):
        return None
    if all(p is not None and max(abs(p[1][0] - q[1][0]), abs(p[1][1] - q[1][1])) < 0.005
           for p, q in primaries):
        return None  # sRGB's primaries; its curve is not compared
    return name


def _unmarked_cmyk(im: Any) -> bool:
    """A CMYK JPEG without Adobe's marker: Pillow takes its inks as inverted (Adobe's
    convention, the common one), which a writer without the marker may not have meant."""
    return im.mode == "CMYK" and im.format == "JPEG" and "adobe" not in im.info


def _decode(
    data: bytes, path: Path, size: int | None, bits: int | None = None, fixed: bool = False
) -> tuple[np.ndarray, tuple | None, dict]:
    """Decode one image file's bytes to an (H, W, 3) uint8 array, its value-mapping note (see
    :func:`_to_rgb`) and what the conversion did not keep (``transparent``: alpha dropped;
    ``shape``: (H, W) as shown, before resizing); ImageReadError naming the file if it is bad
    or can't be mapped."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            frames = _check_frames(im)
            im.load()
            declared = declared_bits(im, data)
            _check_wide_colour(im, declared)
            seen = {"frames": frames, "profile": _colour_profile(im),
                    "cmyk_polarity": _unmarked_cmyk(im), "transparent": _transparent(im, declared)}
            im = _tiff_samples(im, declared)
            im = ImageOps.exif_transpose(im)  # a copy: the file's format is not kept
            if im.mode in ("P", "PA") and "transparency" in im.info:
                im = im.convert("RGBA")  # the transparent index as alpha, converted once
                seen["transparent"] = _transparent(im)
            seen["shape"] = (im.height, im.width)
            im, note = _to_rgb(im, bits, fixed)
            arr = np.asarray(im, dtype=np.uint8)
            if size is not None:
                arr = resize_center_crop(arr[None], size)[0]
            return arr.copy(), note, seen
    except MemoryError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageReadError(path, e) from e


def _one_depth(out: np.ndarray, notes: list, size: int | None,
               fixed: int | None = None) -> dict | None:
    """Give the wide integer images of one data set one depth (``fixed``, else the widest any
    needs), so a dim image is not brightened next to the others, and log the choice once.
    Returns the depth (``bits``, the data's ``max``, whether it was ``set`` by the config),
    None where no image is wider than 8 bits."""
    wide = [(j, path, n) for j, path, n in notes if n[0] == "int"]
    if not wide:
        return None
    bits = max(n[1] for _, _, n in wide)
    for j, path, n in wide:
        if n[1] < bits:
            out[j] = _decode(path.read_bytes(), path, size, bits)[0]
    peak, where, mode = max((n[2], str(path), n[3]) for _, path, n in wide)
    log.info(
        "%d image(s) wider than 8 bits (e.g. %s, mode %s): data max %d -> scaled as %d-bit "
        "(0..%d -> 0..255)%s", len(wide), where, mode, peak, bits, 2**bits - 1,
        " as bit_depth says" if fixed else " (the smallest even depth that holds the data max)",
    )
    return {"bits": bits, "max": peak, "set": fixed is not None}


def _log_unkept(seen: list, size: int | None) -> None:
    """Warn once a data set of what its images lost on the way to the net: transparency, or
    most of their pixels to a strong upscale or a centre crop (``seen``: (file, what
    :func:`_decode` saw))."""
    def warn(which, what):
        if which:
            path, (h, w) = which[0][0], which[0][1]["shape"]
            log.warning("%d image(s) %s (e.g. %s, %d×%d px)", len(which), what, path, w, h)

    warn([s for s in seen if s[1]["transparent"]],
         "with transparent pixels: the alpha is dropped, so the net sees the colours stored "
         "under them")
    warn([s for s in seen if s[1]["frames"]],
         "animated: only the first frame of each is read")
    profiled = [s for s in seen if s[1]["profile"]]
    if profiled:
        warn(profiled, f"declaring a colour space other than sRGB ({profiled[0][1]['profile']}"
             "): their values are read as stored, without colour management")
    warn([s for s in seen if s[1]["cmyk_polarity"]],
         "in CMYK without Adobe's marker: their inks are read as inverted (Adobe's "
         "convention); if the colours look negative, save them as RGB")
    if size is not None:
        warn([s for s in seen if size > 4 * min(s[1]["shape"])],
             f"upscaled more than 4x to size {size}: their pixels become blocks")
        warn([s for s in seen if 2 * min(s[1]["shape"]) < max(s[1]["shape"])],
             "so elongated that the centre crop to a square keeps less than half of them")


def _log_floats(notes: list) -> None:
    """Say once how the float images of a data set were mapped to 0…255."""
    floats = [(path, n) for _, path, n in notes if n[0] == "float"]
    stretched = [(path, n) for path, n in floats if not n[1]]
    if len(stretched) < len(floats):
        log.info("%d float image(s) with values in [0, 1]: taken as 0..1 -> 0..255",
                 len(floats) - len(stretched))
    if stretched:
        path, n = stretched[0]
        log.warning(
            "%d float image(s) with values outside [0, 1]: each scaled by its own min..max to "
            "0..255 (e.g. %s: %g..%g), so their absolute intensities are not comparable",
            len(stretched), path, n[2], n[3],
        )


def _check_size(size: int | None) -> None:
    if size is not None and (not isinstance(size, int | np.integer) or size < 1):
        raise DatasetError(f"size must be a positive integer or None, got {size!r}")


def _read_images(
    paths: Sequence[Path], names: Sequence[str], size: int | None, on_error: str,
    bit_depth: int | None = None,
) -> tuple[np.ndarray, list[int], dict[str, str], dict | None]:
    """Decode ``paths``; returns the stacked images, the positions kept, name → sha256 and
    the depth images wider than 8 bits were scaled by (:func:`_one_depth`)."""
    if on_error not in ("stop", "skip"):
        raise DatasetError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    out: np.ndarray | None = None
    first: tuple[str, tuple[int, ...]] | None = None
    kept: list[int] = []
    files: dict[str, str] = {}
    notes: list[tuple[int, Path, tuple]] = []  # (position in out, file, value-mapping note)
    seen: list[tuple[Path, dict]] = []
    with _strict_decoding():
        for i, (path, name) in enumerate(zip(paths, names, strict=True)):
            try:
                try:
                    data = path.read_bytes()
                except OSError as e:
                    raise ImageReadError(path, e) from e
                arr, note, info = _decode(data, path, size, bit_depth, bit_depth is not None)
            except ImageReadError as e:
                if on_error == "stop":
                    raise
                log.warning("skipping unreadable image %s: %s", path, e)
                continue
            if first is None:
                first = (str(path), arr.shape)
                out = np.empty((len(paths), *arr.shape), dtype=np.uint8)
            elif arr.shape != first[1]:
                raise DatasetError(
                    f"{path} is {arr.shape[1]}×{arr.shape[0]} pixels but {first[0]} is "
                    f"{first[1][1]}×{first[1][0]}; set the data set's size (size=) to resize "
                    "and centre-crop all images to one size"
                )
            assert out is not None
            if note is not None:
                notes.append((len(kept), path, note))
            seen.append((path, info))
            out[len(kept)] = arr
            kept.append(i)
            files[name] = hashlib.sha256(data).hexdigest()
        if out is None:
            raise DatasetError(f"none of the {len(paths)} images could be read")
        depth = _one_depth(out, notes, size, bit_depth)
    _log_floats(notes)
    _log_unkept(seen, size)
    return out[: len(kept)], kept, files, depth


@dataclass
class _Scan:
    """One folder scan: links are followed, but each real folder and file is taken once;
    the files left out are counted by reason."""

    seen: set[tuple[int, int]] = field(default_factory=set)  # (st_dev, st_ino)
    skipped: collections.Counter = field(default_factory=collections.Counter)
    formats: set[str] = field(default_factory=set)  # the extensions of those

    def first_visit(self, path: str | Path) -> bool:
        """True the first time the real file or folder behind ``path`` is met."""
        st = os.stat(path)
        key = (st.st_dev, st.st_ino)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def take(self, p: Path) -> bool:
        """Whether ``p`` is an image file to read (each real file once); counts the others."""
        if p.name.startswith("."):
            reason = "hidden"
        elif p.suffix.lower() in OTHER_IMAGE_EXTENSIONS:
            reason = _OTHER_FORMAT
            self.formats.add(p.suffix.lower())
        elif p.suffix.lower() not in IMAGE_EXTENSIONS:
            reason = "unsupported extension"
        elif not p.is_file():
            reason = "unreadable (broken link or not a file)"
        elif not self.first_visit(p):
            reason = "duplicate via a link"
        else:
            return True
        self.skipped[reason] += 1
        return False

    def report(self, folder: Path) -> None:
        """Log once how many files the scan of ``folder`` left out, and why."""
        if self.skipped:
            why = ", ".join(
                f"{n} {reason}" + (f" ({', '.join(sorted(self.formats))}: convert to PNG)"
                                   if reason == _OTHER_FORMAT else "")
                for reason, n in sorted(self.skipped.items()))
            quiet = set(self.skipped) <= {"hidden", "unsupported extension"}
            log.log(logging.INFO if quiet else logging.WARNING,
                    "%s: skipped %d file(s): %s", folder, self.skipped.total(), why)


def _images_under(folder: Path, scan: _Scan) -> list[Path]:
    """Image files in ``folder`` and its sub-folders (hidden ones skipped), sorted; links are
    followed without cycles, each real folder and file once (``scan`` remembers them)."""
    found = []

    def unreadable(err: OSError) -> None:
        scan.skipped["unreadable folder"] += 1

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=unreadable):
        if not scan.first_visit(dirpath):  # a link loop, or a second link to one folder
            dirnames[:] = []
            scan.skipped["duplicate via a link"] += sum(
                not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
                for f in filenames
            )
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(p for f in sorted(filenames) if scan.take(p := Path(dirpath) / f))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def load_image_folder(
    path: str | os.PathLike,
    size: int | None = None,
    on_error: str = "stop",
    classes: Sequence[int | str] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    bit_depth: int | None = None,
) -> Dataset:
    """Images of a folder, as RGB.

    * Class sub-folders (``path/<class>/…``, searched recursively): labels are the indices of
      the sorted folder names, which are the ``class_names``.
    * A flat folder (no sub-folder holds images): labels None, ``class_names`` [].

    ``size``: resize each image so its short side is ``size`` and centre-crop to size×size;
    when None all images must have the same size. ``on_error``: "stop" raises
    :class:`ImageReadError` on the first unreadable or truncated image, "skip" logs a
    warning naming it and goes on. ``classes`` (indices or folder names) keeps a class
    subset, labels keep their values; ``max_samples`` caps the count (seeded,
    class-stratified), chosen before decoding, so skipped images can make it fewer.
    Extensions: :data:`IMAGE_EXTENSIONS` (any case). Links are followed, but
    each real folder and file is read once; the files left out are logged by reason.
    Pixel values are mapped as :func:`_to_rgb` says (greyscale wider than 8 bits by its
    real depth, float by [0, 1] or its own range; ``bit_depth`` fixes that depth); an image
    that can't be mapped faithfully (NaN, negative integers, 12-bit data in 16-bit colour, a
    value above ``bit_depth``) counts as unreadable.
    """
    _check_size(size)
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a folder")
    scan = _Scan()
    scan.first_visit(folder)
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    top = [p for p in entries if not p.is_dir() and scan.take(p)]
    subdirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    per_class = {d.name: _images_under(d, scan) for d in subdirs}
    scan.report(folder)
    labelled = any(per_class.values())
    labels: np.ndarray | None
    if labelled:
        if top:
            raise DatasetError(
                f"{folder} has both class sub-folders and images of its own (e.g. {top[0]}); "
                "put every image in a class folder, or use a flat folder"
            )
        empty = [name for name, files in per_class.items() if not files]
        if empty:
            raise DatasetError(
                f"class folder {folder / empty[0]} has no images "
                f"(extensions {' '.join(IMAGE_EXTENSIONS)})"
            )
        class_names = list(per_class)
        paths = [p for files in per_class.values() for p in files]
        labels = np.concatenate(
            [np.full(len(files), k, np.int64) for k, files in enumerate(per_class.values())]
        )
    else:
        if not top:
            raise DatasetError(
                f"no images in {folder} (looked for {' '.join(IMAGE_EXTENSIONS)}, "
                "in the folder or in class sub-folders)"
            )
        class_names, paths, labels = [], top, None
    class_idx: list[int] | None = None
    if classes is not None:
        if labels is None:
            raise DatasetError(f"{folder} has no class sub-folders, so no class subset")
        class_idx = []
        for c in classes:
            if isinstance(c, str):
                if c not in class_names:
                    raise DatasetError(f"no class folder {c!r} in {folder}; have {class_names}")
                class_idx.append(class_names.index(c))
            elif 0 <= int(c) < len(class_names):
                class_idx.append(int(c))
            else:
                raise DatasetError(
                    f"class index {c} out of range: {folder} has {len(class_names)} classes"
                )
    idx = select_indices(labels, len(paths), class_idx, max_samples, seed)
    paths = [paths[i] for i in idx]
    labels = None if labels is None else labels[idx]
    names = [p.relative_to(folder).as_posix() for p in paths]
    try:
        images, kept, files, depth = _read_images(paths, names, size, on_error, bit_depth)
    except ImageReadError as e:  # say how to go on without it
        raise ImageReadError(e.path, f"{e.reason} (the data set's on_error: skip leaves "
                                     "unreadable images out)") from e
    return Dataset(
        images=images,
        labels=None if labels is None else labels[kept],
        class_names=class_names,
        source=f"image folder {folder.resolve()}",
        files=files,
        depth=depth,
    )


def load_images(
    paths: str | os.PathLike | Sequence[str | os.PathLike], size: int | None = None,
    bit_depth: int | None = None,
) -> Dataset:
    """A few images on their own (e.g. large microscopy images), unlabelled, as RGB.

    ``size`` resizes each so its short side is ``size`` and centre-crops to size×size; when
    None they must all have the same size. Any unreadable image, or one whose values can't
    be mapped to 0–255 faithfully (see :func:`_to_rgb`), raises :class:`ImageReadError`.
    """
    _check_size(size)
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    plist = [Path(p) for p in paths]
    if not plist:
        raise DatasetError("load_images needs at least one image path")
    for p in plist:
        if not p.is_file():
            raise FileNotFoundError(f"image {p} does not exist")
    images, _, files, depth = _read_images(plist, [str(p) for p in plist], size, "stop",
                                           bit_depth)
    return Dataset(
        images=images,
        labels=None,
        class_names=[],
        source="images " + ", ".join(str(p.resolve()) for p in plist),
        files=files,
        depth=depth,
    )


def load_histology(size: int | None = 224) -> Dataset:
    """scikit-image's immunohistochemistry image (512×512 RGB, ships with scikit-image, so
    this works offline), resized so its short side is ``size`` and centre-cropped; the
    stand-in for the paper's GlaS histology image. ``size=None`` keeps 512×512."""
    _check_size(size)
    import skimage.data

    image = np.asarray(skimage.data.immunohistochemistry(), dtype=np.uint8)[None]
    if size is not None:
        image = resize_center_crop(image, size)
    png = Path(skimage.data.__file__).parent / "ihc.png"
    files = {"ihc.png": file_hash(png, "sha256")} if png.is_file() else {}
    return Dataset(
        images=np.ascontiguousarray(image),
        labels=None,
        class_names=[],
        source="skimage.data.immunohistochemistry",
        files=files,
    )
