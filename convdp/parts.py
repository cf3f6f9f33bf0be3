"""A planted-parts data set: objects made of textured parts, with their exact part masks.

``convdp make-parts DIR`` (or :func:`make_parts`) writes

* ``DIR/images/<direction>/0000.png`` … : RGB images, each with one object (or more,
  ``objects``) on a textured background, at a random position, scale and rotation, in class
  sub-folders by the direction the (first) object's head points: ``0_right``, ``1_down``,
  ``2_left``, ``3_up`` (the nearest of the four; a task that needs the parts told apart, for
  training a net on it);
* ``DIR/masks/<direction>/0000.png`` … : the same names, 8-bit greyscale, the part each pixel
  belongs to (0 = background, 1 = body, 2 = head, 3 = tail; see :data:`PARTS`);
* ``DIR/parts.json``: the part names, the settings and the seed.

Every part has its own texture, drawn in the object's frame (so it turns with the object), not
a flat colour: the body a coarse labyrinth, the head a fine speckle, the tail sparse spots,
each two-toned in its own colours and isotropic (:func:`_waves`: no texture has a direction,
so the way the object points is told by where its parts are, not by a texture's orientation —
with striped bodies a net trained on the direction clustered the body by stripe angle); the
background is a sum of random low-frequency waves in muted colours. Every texture has
per-image colour jitter and pixel noise. Parts are painted pixel by pixel from the same
geometry that writes the mask (no antialiasing), so each pixel of a mask names the texture that
painted it: the masks are exact. The same seed gives the same files, byte for byte.

A data set entry of the config then points at both folders::

    datasets:
      parts:
        kind: folder
        path: DIR/images
        masks: DIR/masks
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Mask value → part name (0 is the background).
PARTS = {0: "background", 1: "body", 2: "head", 3: "tail"}
#: Class folder names: where the first object's head points (image axes, y down).
DIRECTIONS = ("0_right", "1_down", "2_left", "3_up")


@dataclass
class Scene:
    """One image's layers: the background texture, each part's texture and the mask."""

    background: np.ndarray  # (H, W, 3) float in [0, 1]
    textures: dict[int, np.ndarray]  # part → (H, W, 3) float in [0, 1]
    mask: np.ndarray  # (H, W) uint8
    direction: int = 0  # index into DIRECTIONS

    def image(self) -> np.ndarray:
        """The composite: each pixel from the texture its mask value names, as uint8."""
        out = self.background.copy()
        for part, tex in self.textures.items():
            sel = self.mask == part
            out[sel] = tex[sel]
        return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def _object_frame(size: int, cx: float, cy: float, scale: float, angle: float):
    """Pixel centres in the object's frame (u along the object's axis, v across), in units of
    ``scale`` pixels."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(angle), np.sin(angle)
    return (c * dx + s * dy) / scale, (-s * dx + c * dy) / scale


def _geometry(u: np.ndarray, v: np.ndarray) -> dict[int, np.ndarray]:
    """Where each part is, in the object frame: an elliptic body, a round head in front of it,
    a tapering tail behind it."""
    body = (u / 1.0) ** 2 + (v / 0.6) ** 2 <= 1.0
    head = (u - 1.45) ** 2 + v**2 <= 0.6**2
    tail = (u <= -0.85) & (u >= -2.0) & (np.abs(v) <= 0.2 + 0.33 * (u + 2.0))
    return {3: tail & ~body, 1: body, 2: head & ~body}


def _jitter(rng, base, amount=0.08):
    return np.clip(np.asarray(base) + rng.uniform(-amount, amount, 3), 0, 1)


def _two_tone(sel: np.ndarray, a, b) -> np.ndarray:
    return np.where(sel[..., None], np.asarray(a), np.asarray(b))


def _waves(rng, u, v, wavelength: float, n: int = 6) -> np.ndarray:
    """An isotropic random texture in the object frame: the sum of ``n`` plane waves of one
    ``wavelength`` (object units) at evenly spread, randomly turned directions and random
    phases, scaled to unit variance. Thresholded at 0 it is a labyrinth, high up isolated
    spots. No direction is preferred, so a part's texture says nothing about which way the
    object points: telling the direction needs the parts' layout."""
    field = np.zeros_like(u)
    k = 2 * np.pi / wavelength
    for a in rng.uniform(0, np.pi) + np.arange(n) * np.pi / n:
        field += np.cos(k * (np.cos(a) * u + np.sin(a) * v) + rng.uniform(0, 2 * np.pi))
    return field / np.sqrt(n / 2)


def _part_textures(rng, u, v, size) -> dict[int, np.ndarray]:
    labyrinth = _waves(rng, u, v, 0.45) > 0
    speckle = _waves(rng, u, v, 0.2) > 0
    spots = _waves(rng, u, v, 0.3) > 0.9
    tex = {
        1: _two_tone(labyrinth, _jitter(rng, (0.9, 0.55, 0.1)), _jitter(rng, (0.45, 0.1, 0.05))),
        2: _two_tone(speckle, _jitter(rng, (0.92, 0.92, 0.95)), _jitter(rng, (0.1, 0.25, 0.7))),
        3: _two_tone(spots, _jitter(rng, (0.05, 0.35, 0.1)), _jitter(rng, (0.55, 0.85, 0.45))),
    }
    return {k: t + rng.normal(0, 0.04, (size, size, 3)) for k, t in tex.items()}


def _background(rng, size) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    base = _jitter(rng, (0.45, 0.42, 0.38), 0.12)
    field = np.zeros((size, size))
    for _ in range(4):
        f = rng.uniform(1, 4)
        a = rng.uniform(0, 2 * np.pi)
        field += np.sin(2 * np.pi * f * (np.cos(a) * xx + np.sin(a) * yy) + rng.uniform(0, 6.3))
    tint = rng.uniform(-0.12, 0.12, 3)
    out = base + 0.06 * field[..., None] + tint * (field[..., None] / 4)
    return out + rng.normal(0, 0.05, (size, size, 3))


def make_scene(rng: np.random.Generator, size: int = 64, objects: int = 1) -> Scene:
    """One image: a textured background and ``objects`` objects (later ones in front)."""
    background = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    textures: dict[int, np.ndarray] = {k: np.zeros((size, size, 3)) for k in PARTS if k}
    direction = None
    for _ in range(objects):
        scale = rng.uniform(0.16, 0.24) * size
        cx, cy = rng.uniform(0.3, 0.7, 2) * size
        angle = rng.uniform(0, 2 * np.pi)
        if direction is None:
            direction = int(np.round(angle / (np.pi / 2))) % 4
        u, v = _object_frame(size, cx, cy, scale, angle)
        tex = _part_textures(rng, u, v, size)
        for part, where in _geometry(u, v).items():
            mask[where] = part
            textures[part][where] = tex[part][where]
    return Scene(background, textures, mask, direction)


def make_parts(dest: str | Path, n: int = 400, size: int = 64, seed: int = 0,
               objects: int = 1) -> Path:
    """Write ``n`` images and their masks under ``dest`` (see the module docstring)."""
    from PIL import Image

    if n < 1 or size < 16 or objects < 1:
        raise ValueError(f"need n ≥ 1, size ≥ 16 and objects ≥ 1 (got {n}, {size}, {objects})")
    root = Path(dest)
    used = [p.name for p in (root / "images", root / "masks", root / "parts.json") if p.exists()]
    if used:  # a second set over a first would mix the two, under the second's parts.json
        raise ValueError(f"{root} already holds {', '.join(used)}: choose a new folder, or "
                         "delete those first")
    rng = np.random.default_rng(seed)
    width = max(4, len(str(n - 1)))
    for i in range(n):
        scene = make_scene(rng, size, objects)
        name = f"{DIRECTIONS[scene.direction]}/{i:0{width}d}.png"
        # a class folder only where an image goes: the folder loader refuses an empty one
        for sub in ("images", "masks"):
            (root / sub / DIRECTIONS[scene.direction]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene.image(), "RGB").save(root / "images" / name)
        Image.fromarray(scene.mask, "L").save(root / "masks" / name)
    classes = [d for d in DIRECTIONS if (root / "images" / d).is_dir()]
    if len(classes) < len(DIRECTIONS):
        log.warning("%s: %d images point %s only (no %s): a net trained on them learns %d "
                    "classes", root, n, ", ".join(classes),
                    ", ".join(sorted(set(DIRECTIONS) - set(classes))), len(classes))
    info = {"parts": {str(k): v for k, v in PARTS.items()}, "background": 0, "n": n,
            "size": size, "objects": objects, "seed": seed, "classes": classes,
            "images": "images", "masks": "masks"}
    (root / "parts.json").write_text(json.dumps(info, indent=2) + "\n")
    return root


def rgb_digitnet(num_classes: int = 4, in_channels: int = 3):
    """:class:`convdp.models.DigitNet` for the parts' RGB images, as a ``module:factory``
    (``arch: convdp.parts:rgb_digitnet``): with ``weights: none`` it is the random-weights
    control of a DigitNet trained on the parts (the same seeded initialisation, never trained)
    until ``control: random`` can name it."""
    from convdp.models import DigitNet

    return DigitNet(num_classes=num_classes, in_channels=in_channels)
