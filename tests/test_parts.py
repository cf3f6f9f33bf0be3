"""The planted-parts generator: exact masks, textured parts, determinism, the CLI."""

import hashlib
import json

import numpy as np
import pytest
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


def test_cli(tmp_path, capsys, caplog):
    """Three images cannot point four ways: only the class folders that got an image are
    made (an empty one is refused by the folder loader, so the set could not be read), with
    a warning, and parts.json lists those classes."""
    from convdp.datasets.images import load_image_folder

    assert main(["make-parts", str(tmp_path / "p"), "--n", "3", "--size", "32"]) == 0
    assert len(list((tmp_path / "p/masks").rglob("*.png"))) == 3
    folders = sorted(d.name for d in (tmp_path / "p/images").iterdir())
    assert len(folders) < len(DIRECTIONS) and "learns" in caplog.text
    assert json.loads((tmp_path / "p/parts.json").read_text())["classes"] == folders
    assert load_image_folder(tmp_path / "p/images").class_names == folders
    assert json.loads((tmp_path / "p/parts.json").read_text())["parts"]["1"] == "body"
    assert main(["make-parts", str(tmp_path / "q"), "--n", "0"]) == 2
    # a second set over the first would mix them under the second's parts.json
    before = sorted(p.name for p in (tmp_path / "p/images").rglob("*.png"))
    assert main(["make-parts", str(tmp_path / "p"), "--n", "5", "--seed", "1"]) == 2
    assert "already holds images, masks, parts.json" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "p/images").rglob("*.png")) == before
    # the layer lister: 0 is no size (it was read as "the default")
    for flag in ("--size", "--num-classes"):
        with pytest.raises(SystemExit):
            main(["layers", "digitnet", flag, "0"])


def _anisotropy(field):
    """0 for a texture with no preferred direction, 1 for stripes: the normalised difference
    of the eigenvalues of the image's summed structure tensor."""
    gy, gx = np.gradient(np.asarray(field, np.float64))
    t = np.array([[np.sum(gx * gx), np.sum(gx * gy)], [np.sum(gx * gy), np.sum(gy * gy)]])
    lo, hi = np.linalg.eigvalsh(t)
    return (hi - lo) / (hi + lo)


def test_part_textures_have_no_direction():
    # The class is the way the object points; a texture with a direction (stripes) would tell
    # it without the parts, and a net trained on it clusters the body by angle instead.
    from convdp.parts import _object_frame, _part_textures

    u, v = _object_frame(256, 128, 128, 40.0, 0.0)
    for seed in range(4):
        textures = _part_textures(np.random.default_rng(seed), u, v, 256)
        for part, tex in textures.items():
            assert _anisotropy(tex.mean(-1)) < 0.2, (seed, PARTS[part])
    # what the body had before, with the same tones and pixel noise: the test would see it
    rng = np.random.default_rng(0)
    stripes = (np.where(np.sin(2 * np.pi * v / 0.45) > 0, 0.52, 0.2)
               + rng.normal(0, 0.04 / np.sqrt(3), v.shape))  # the mean of three channels
    assert _anisotropy(stripes) > 0.8
