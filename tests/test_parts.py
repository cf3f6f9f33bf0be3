"""The planted-parts generator: exact masks, textured parts, determinism, the CLI."""

import hashlib
import json

import numpy as np
from PIL import Image

from convdp.cli import main
from convdp.parts import DIRECTIONS, PARTS, make_parts, make_scene


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


def test_masks_name_the_texture_of_every_pixel():
    rng = np.random.default_rng(3)
    for _ in range(5):
        scene = make_scene(rng, 48)
        image = scene.image().astype(np.float64) / 255
        assert set(np.unique(scene.mask)) == set(PARTS)  # every part visible, background too
        for part in PARTS:
            tex = scene.background if part == 0 else scene.textures[part]
            sel = scene.mask == part
            # the composite equals the part's own texture wherever the mask names it
            assert np.allclose(image[sel], np.clip(tex[sel], 0, 1), atol=0.5 / 255)
            if part:
                # textured, not flat: two tones at least, far apart
                assert np.ptp(image[sel], axis=0).max() > 0.3


def test_parts_are_where_the_geometry_puts_them(tmp_path):
    make_parts(tmp_path, n=6, size=40, seed=1)
    names = sorted(p.relative_to(tmp_path / "images").as_posix()
                   for p in (tmp_path / "images").rglob("*.png"))
    assert len(names) == 6 and all(n.split("/")[0] in DIRECTIONS for n in names)
    for name in names:
        im = np.array(Image.open(tmp_path / "images" / name))
        mask = np.array(Image.open(tmp_path / "masks" / name))
        assert im.shape == (40, 40, 3) and mask.shape == (40, 40) and mask.dtype == np.uint8
        assert mask.max() <= 3 and (mask == 0).mean() > 0.5
        # the parts' mean colours differ from each other: the masks separate the textures
        means = [im[mask == k].mean(0) for k in (1, 2, 3) if (mask == k).any()]
        assert min(np.abs(a - b).max() for i, a in enumerate(means) for b in means[i + 1:]) > 20


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    for d, seed in (("a", 0), ("b", 0), ("c", 1)):
        make_parts(tmp_path / d, n=4, size=32, seed=seed)
    assert _digest(tmp_path / "a/images") == _digest(tmp_path / "b/images")
    assert _digest(tmp_path / "a/masks") == _digest(tmp_path / "b/masks")
    assert _digest(tmp_path / "a/images") != _digest(tmp_path / "c/images")


def test_cli(tmp_path, capsys):
    assert main(["make-parts", str(tmp_path / "p"), "--n", "3", "--size", "32"]) == 0
    assert len(list((tmp_path / "p/masks").rglob("*.png"))) == 3
    assert json.loads((tmp_path / "p/parts.json").read_text())["parts"]["1"] == "body"
    assert main(["make-parts", str(tmp_path / "q"), "--n", "0"]) == 2
