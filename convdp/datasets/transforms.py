"""Seeded image transforms that make a target from source images, for the transfer benchmark:
the same classes with a shift at a chosen depth (``datasets.NAME.transform``).

Every transform works on (N, H, W, C) uint8 images with bright strokes on a dark background
(as the bundled digits are) and is seeded: the same seed gives the same images.

- ``invert``: ``255 - x`` (a low-level shift: every edge changes sign);
- ``rotate``: each image rotated by an angle drawn uniformly from ±[strength/2, strength]
  degrees (default 60: 30–60°, either way), bilinear, zero fill;
- ``texture``: the strokes over a random background texture (a sum of random oriented
  gratings plus smoothed noise, one per image) of peak brightness ``strength`` × 255
  (default 0.5);
- ``blur``: a Gaussian blur of standard deviation ``strength`` pixels (default 2).
"""

from __future__ import annotations

import numpy as np

TRANSFORMS = ("invert", "rotate", "texture", "blur")
DEFAULT_STRENGTH = {"invert": None, "rotate": 60.0, "texture": 0.5, "blur": 2.0}


def transform_images(images: np.ndarray, name: str, strength: float | None = None,
                     seed: int = 0) -> np.ndarray:
    """``images`` (N, H, W, C) uint8 → the transformed images, same shape and dtype."""
    from scipy import ndimage

    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; one of {', '.join(TRANSFORMS)}")
    s = DEFAULT_STRENGTH[name] if strength is None else float(strength)
    x = np.asarray(images, np.float64)
    rng = np.random.default_rng(seed)
    n, h, w, _ = x.shape
    if name == "invert":
        out = 255.0 - x
    elif name == "rotate":
        angles = rng.uniform(s / 2, s, n) * rng.choice([-1.0, 1.0], n)
        out = np.stack([ndimage.rotate(img, a, axes=(0, 1), reshape=False, order=1,
                                       mode="constant", cval=0.0)
                        for img, a in zip(x, angles, strict=True)])
    elif name == "blur":
        out = ndimage.gaussian_filter(x, sigma=(0, s, s, 0))
    else:
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        out = np.empty_like(x)
        for i in range(n):
            tex = np.zeros((h, w))
            for _ in range(3):
                theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(3, 8), rng.uniform(0, 2 * np.pi)
                tex += np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
            tex += 2.0 * ndimage.gaussian_filter(rng.normal(size=(h, w)), 1.0)
            tex = (tex - tex.min()) / max(np.ptp(tex), 1e-9)
            bg = s * 255.0 * tex[..., None]
            ink = x[i] / 255.0
            out[i] = ink * 255.0 + (1.0 - ink) * bg
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
