"""Mask agreement: upsampling, foreground NMI / ARI, per-cluster IoU, loading and resizing."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from convdp.masks import (
    add_summary_columns,
    agreement,
    check_background,
    load_masks,
    mask_table,
    plot_mask_agreement,
    resize_mask,
    upsample,
)


def test_upsample_is_nearest():
    labels = np.array([[[0, 1], [2, 3]]])
    up = upsample(labels, (4, 4))
    assert up.shape == (1, 4, 4)
    assert (up[0, :2, :2] == 0).all() and (up[0, 2:, 2:] == 3).all()


def test_positions_are_placed_by_their_receptive_fields():
    """A padded stride-2 convolution centres position i at pixel 2i: pixel 1 is between
    positions 0 and 1 and goes to 1 (stretching gave 0); where the fields tile the image
    (DigitNet at 64 px, the parts config) placing by field is stretching."""
    from convdp.models import DigitNet
    from convdp.receptive import trace_fields

    labels = np.arange(4)[None, None, :].repeat(4, axis=1)
    strided = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 7, stride=2, padding=3))
    field = trace_fields(strided, ["0"], 8)["0"]
    assert upsample(labels, (8, 8), field)[0, 0].tolist() == [0, 1, 1, 2, 2, 3, 3, 3]
    assert upsample(labels, (8, 8))[0, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    fields = trace_fields(DigitNet(), ["relu1", "relu2", "relu3", "relu4"], 64)
    for layer, f in fields.items():
        n = 64 // f.jump[0]
        maps = np.arange(n * n).reshape(1, n, n)
        assert (upsample(maps, (64, 64), f) == upsample(maps, (64, 64))).all(), layer


def test_perfect_and_permuted_labels_score_one():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 4, (3, 8, 8))
    labels = (masks + 2) % 5  # a relabelling of the parts, background to its own cluster
    record, table = agreement(labels, masks, np.full(5, 0.2))
    assert record["nmi"] == pytest.approx(1) and record["ari"] == pytest.approx(1)
    assert record["purity"] == 1
    assert (table["iou"] == 1).all()
    assert dict(zip(table["cluster"], table["best_label"], strict=True)) == {2: 0, 3: 1, 4: 2, 0: 3}


def test_background_is_left_out_of_the_foreground_scores():
    masks = np.zeros((1, 4, 4), int)
    masks[0, :, 2:] = 1
    masks[0, 3, 2:] = 2
    labels = masks.copy()
    labels[0, :, :2] = 7 * np.arange(4)[:, None] % 5  # background split any way at all
    record, _ = agreement(labels, masks, np.full(8, 0.1), background=0)
    assert record["ari"] == pytest.approx(1)
    assert record["foreground_pixels"] == 8 and record["parts"] == 2


def test_one_cluster_over_everything_scores_below_the_object_found():
    """The mean best IoU takes each cluster's best part, not the background: one cluster over
    the whole image (IoU 0.75 with a 75 % background) scores below a labelling that finds the
    object exactly but splits it in two."""
    masks = np.zeros((1, 8, 8), int)
    masks[0, :2, :4], masks[0, :2, 4:] = 1, 2  # two parts of 12.5 % each
    nothing, _ = agreement(np.zeros_like(masks), masks, np.ones(1), background=0)
    found = (masks > 0).astype(int)  # the object, both parts as one cluster
    object_found, _ = agreement(found, masks, np.full(2, 0.5), background=0)
    assert nothing["mean_best_iou"] == pytest.approx(0.125)
    assert object_found["mean_best_iou"] == pytest.approx(0.5)


def test_masks_of_one_part_leave_the_foreground_scores_empty(tmp_path, caplog):
    """Object / background masks: NMI, ARI and purity of the foreground would be 1 for any
    labelling that keeps the object whole and 0 for any other: empty (NaN), said once where
    the masks are read; the figure says so in its panels."""
    masks = np.zeros((2, 8, 8), int)
    masks[:, 2:6, 2:6] = 1
    whole = np.zeros_like(masks)
    record, table = agreement(whole, masks, np.ones(1), background=0)
    assert np.isnan([record["nmi"], record["ari"], record["purity"]]).all()
    assert record["parts"] == 1 and record["mean_best_iou"] == pytest.approx(0.25)
    assert table["best_label"].tolist() == [0]
    with caplog.at_level(logging.WARNING, logger="convdp.masks"):
        check_background(masks, 0, tmp_path / "masks")
    assert "hold one part (value 1) beside the background 0" in caplog.text
    caplog.clear()  # Pascal VOC's unlabelled borders (255) are no second part
    bordered = np.where(np.pad(masks, ((0, 0), (1, 1), (1, 1)), constant_values=0) == 1, 1, 0)
    bordered[:, 2, 2:8] = 255
    with caplog.at_level(logging.WARNING, logger="convdp.masks"):
        check_background(bordered, 0, tmp_path / "masks", ignore=[255])
    assert "hold one part (value 1) beside the background 0" in caplog.text
    caplog.clear()  # no background: one value is one part
    with caplog.at_level(logging.WARNING, logger="convdp.masks"):
        check_background(np.full((2, 8, 8), 3), None, tmp_path / "masks")
    assert "hold one part (value 3) and no background (mask_background: null)" in caplog.text
    rec = record | {"model": "net", "control_of": None, "dataset": "d", "layer": "r1",
                    "layer_index": 4}
    table = mask_table([rec, rec | {"layer": "r2", "layer_index": 7}])
    assert table["layer_index"].tolist() == [0, 1]  # as summary.csv numbers the layers
    plot_mask_agreement(table, tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 1000


def test_split_parts_are_pure_but_score_a_low_ari():
    rng = np.random.default_rng(2)
    masks = rng.integers(1, 3, (2, 16, 16))
    labels = masks * 10 + rng.integers(0, 6, masks.shape)  # every part cut in six at random
    record, _ = agreement(labels, masks, np.full(30, 0.03))
    assert record["purity"] == 1 and record["ari"] < 0.3


def test_random_labels_score_near_zero():
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 4, (4, 32, 32))
    record, _ = agreement(rng.integers(0, 5, (4, 32, 32)), masks, np.full(5, 0.2))
    assert abs(record["ari"]) < 0.02 and record["nmi"] < 0.02


def test_load_masks_same_names_and_geometry(tmp_path):
    (tmp_path / "a").mkdir()
    mask = np.zeros((20, 30), np.uint8)
    mask[:, 15:] = 2
    Image.fromarray(mask).save(tmp_path / "a" / "x.png")
    out = load_masks(tmp_path, ["a/x.jpg"], 10, (10, 10))  # another extension, same stem
    assert out.shape == (1, 10, 10) and set(np.unique(out)) == {0, 2}
    assert (resize_mask(mask, 10) == out[0]).all()
    with pytest.raises(FileNotFoundError, match="no mask for image"):
        load_masks(tmp_path, ["a/y.png"], 10, (10, 10))
    two = np.zeros((4, 4, 2), np.uint8)  # grey and alpha: no label image
    Image.fromarray(two, "LA").save(tmp_path / "a" / "c.png")
    with pytest.raises(ValueError, match=r"mask .*c\.png is not a label image"):
        load_masks(tmp_path, ["a/c.png"], None, (4, 4))
    # grey saved as RGB, and a 1-bit mask, are read as the labels they hold
    grey = np.repeat(mask[:, :, None], 3, axis=2)
    Image.fromarray(grey).save(tmp_path / "a" / "g.png")
    assert (load_masks(tmp_path, ["a/g.png"], None, (20, 30))[0] == mask).all()
    Image.fromarray(mask > 0).convert("1").save(tmp_path / "a" / "b.png")
    assert (load_masks(tmp_path, ["a/b.png"], None, (20, 30))[0] == (mask > 0)).all()


def test_colour_masks_are_read_one_label_per_colour(tmp_path):
    """Colour masks (one RGB colour per part: ADE20K's, CamVid's, most drawing tools') were
    refused; each colour is now a label 0xRRGGBB, black 0. A black-and-white mask among them
    is colour too (white 0xFFFFFF, not 255); one-channel labels beside them, a photograph,
    a translucent mask are refused, naming the files."""
    red, sky = 0xFF0000, 0x0080FF
    m = np.full((20, 30, 3), 255, np.uint8)  # a white background
    m[:, 10:20] = (255, 0, 0)
    m[5:15, 20:] = (0, 128, 255)
    Image.fromarray(m).save(tmp_path / "a.png")
    bw = np.zeros((20, 30, 3), np.uint8)
    bw[:, 15:] = 255
    Image.fromarray(bw).save(tmp_path / "b.png")
    masks, colour = load_masks(tmp_path, ["a.jpg", "b.jpg"], 10, (10, 10), return_colour=True)
    assert colour and masks.dtype == np.int32
    assert set(np.unique(masks[0])) == {red, sky, 0xFFFFFF} and (masks[0][:, 5:7] == red).all()
    assert set(np.unique(masks[1])) == {0, 0xFFFFFF}
    check_background(masks, 0xFFFFFF, tmp_path, colour=True)
    with pytest.raises(ValueError, match=r"mask_background 7 \(#000007\) is in none of the 1 masks .*"
                                         r"\(their colours: #0080ff, #ff0000, #ffffff\).*0xRRGGBB"):
        check_background(masks[:1], 7, tmp_path, colour=True)
    # without a colour mask, grey RGB is read as its grey, as before
    masks, colour = load_masks(tmp_path, ["b.png"], None, (20, 30), return_colour=True)
    assert not colour and masks.dtype == np.int16 and set(np.unique(masks)) == {0, 255}
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(ValueError, match=r"a\.png is a colour mask and .*c\.png a one-channel"):
        load_masks(tmp_path, ["a.png", "b.png", "c.png"], None, (20, 30))
    photo = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "p.png")
    with pytest.raises(ValueError, match=r"p\.png holds 1600 colours: .*\(a photograph"):
        load_masks(tmp_path, ["p.png"], None, (40, 40))
    Image.fromarray(np.dstack([m, np.full((20, 30), 128, np.uint8)])).save(tmp_path / "t.png")
    with pytest.raises(ValueError, match=r"t\.png is translucent RGBA"):
        load_masks(tmp_path, ["t.png"], None, (20, 30))


def test_colour_masks_through_the_job_functions(tmp_path):
    """From an image folder to the per-cluster table: the colour masks' labels reach the
    scores, the background set as white, and each part is named by its colour."""
    from convdp.atlas_jobs import mask_agreement, prepare_masks
    from convdp.io import write_npz
    from convdp.pipeline import prepare_dataset

    colours = np.array([[255, 255, 255], [200, 0, 0], [0, 0, 200]], np.uint8)
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    parts = np.zeros((4, 16, 16), int)
    for i in range(4):
        parts[i, 2:14, 2 + i : 8 + i] = 1
        parts[i, 2:14, 8 + i :] = 2
        Image.fromarray(colours[parts[i]]).save(tmp_path / "masks" / f"{i}.png")
        Image.fromarray((80 * parts[i]).astype(np.uint8)).save(tmp_path / "images" / f"{i}.png")
    prepare_dataset({"kind": "folder", "path": str(tmp_path / "images"), "size": None},
                    tmp_path / "d.zarr")
    prepare_masks(tmp_path / "d.zarr", tmp_path / "masks", None, 0xFFFFFF, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        assert bool(z["colour"]) and set(np.unique(z["masks"])) == {0xFFFFFF, 0xC80000, 0xC8}
    write_npz(tmp_path / "fit.npz", labels=parts, weights=np.full(3, 1 / 3))
    record = mask_agreement(tmp_path / "fit.npz", tmp_path / "m.npz", tmp_path / "t.csv",
                            tmp_path / "r.json", context={})
    assert record["parts"] == 2 and record["ari"] == pytest.approx(1.0)
    table = pd.read_csv(tmp_path / "t.csv").set_index("cluster")
    assert table["best_label_name"].to_dict() == {0: "#ffffff", 1: "#c80000", 2: "#0000c8"}


def test_mask_lookup_takes_names_literally_and_refuses_doubtful_files(tmp_path):
    """Stems are matched as names, not glob patterns (``x [1]`` took ``x 1``'s mask); two
    candidates, a lossy JPEG (its artefacts are new labels at every border) or a format that
    is no mask are refused, naming the files."""
    def save(name, value, fmt=None):
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(tmp_path / name, fmt)

    save("x [1].png", 2)
    save("x 1.png", 7)
    assert (load_masks(tmp_path, ["x [1].jpg"], None, (8, 8)) == 2).all()
    assert (load_masks(tmp_path, ["x 1.jpg"], None, (8, 8)) == 7).all()
    save("y.png", 1)
    save("y.tif", 1)
    with pytest.raises(ValueError, match=r"several masks for image 'y.jpg': y.png, y.tif"):
        load_masks(tmp_path, ["y.jpg"], None, (8, 8))
    save("z.jpg", 1)
    with pytest.raises(ValueError, match=r"mask .*z\.jpg is a \.jpg image: JPEG's lossy "):
        load_masks(tmp_path, ["z.png"], None, (8, 8))
    (tmp_path / "w.txt").write_text("1")  # not an image: no mask
    with pytest.raises(FileNotFoundError, match=r"no mask for image 'w.png'"):
        load_masks(tmp_path, ["w.png"], None, (8, 8))
    save("g.pgm", 3)  # a lossless format beside the images' own
    assert (load_masks(tmp_path, ["g.png"], None, (8, 8)) == 3).all()
    save("h.gif", 3)  # palette indices, renumbered by the writer: this one holds 0s
    with pytest.raises(ValueError, match=r"\.gif image: a GIF's pixels are palette indices"):
        load_masks(tmp_path, ["h.png"], None, (8, 8))
    save("j.jfif", 1, "JPEG")  # another JPEG extension, read as an image: no mask either
    with pytest.raises(ValueError, match=r"mask .*j\.jfif is a \.jfif image: JPEG's lossy "):
        load_masks(tmp_path, ["j.jfif"], None, (8, 8))
    save("s.png", 4)
    (tmp_path / "s.json").write_text("{}")  # a file beside the mask is not a second mask
    assert (load_masks(tmp_path, ["s.jpg"], None, (8, 8)) == 4).all()
    # images s.jpg and s.png: s.png is the png's mask, and the jpg found it too by its stem
    with pytest.raises(ValueError, match=r"images 's.jpg' and 's.png' both take mask .*s\.png"):
        load_masks(tmp_path, ["s.jpg", "s.png"], None, (8, 8))


def test_tiff_masks_are_read_by_their_samples_or_refused(tmp_path):
    """A signed 8-bit mask keeps its negative labels (Pillow reads -1 as 255); a mask of
    several pages (only its first was read) and a WhiteIsZero mask (Pillow inverts 8-bit
    WhiteIsZero: label 1 became 254) are refused, naming the file."""
    tifffile = pytest.importorskip("tifffile")
    signed = np.zeros((8, 8), np.int8)
    signed[0] = -1
    tifffile.imwrite(tmp_path / "a.tif", signed)
    assert np.unique(load_masks(tmp_path, ["a.png"], None, (8, 8))).tolist() == [-1, 0]
    tifffile.imwrite(tmp_path / "b.tif", np.ones((2, 8, 8), np.uint8), photometric="minisblack",
                     metadata=None)
    with pytest.raises(ValueError, match=r"mask .*b\.tif holds several images"):
        load_masks(tmp_path, ["b.png"], None, (8, 8))
    tifffile.imwrite(tmp_path / "c.tif", np.ones((8, 8), np.uint8), photometric="miniswhite")
    with pytest.raises(ValueError, match=r"mask .*c\.tif is a WhiteIsZero TIFF"):
        load_masks(tmp_path, ["c.png"], None, (8, 8))


def test_a_mask_of_another_size_than_its_image_is_refused_before_resizing(tmp_path):
    """With ``size``, both are resized to one square: a mask of the wrong size (or drawn on
    the stored pixels of an image that EXIF turns) would be stretched onto it unnoticed."""
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    Image.new("RGB", (48, 32)).save(tmp_path / "img" / "a.png")
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(tmp_path / "msk" / "a.png")
    with pytest.raises(ValueError, match=r"mask .*a\.png is 40×32 pixels, its image .*a\.png 48×32"):
        load_masks(tmp_path / "msk", ["a.png"], 16, (16, 16), tmp_path / "img")
    # stored 48 x 32, EXIF orientation 6 (a quarter turn): shown 32 x 48
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (48, 32)).save(tmp_path / "img" / "t.jpg", exif=exif)
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(tmp_path / "msk" / "t.png")
    with pytest.raises(ValueError, match=r"is 48×32 pixels, its image .*t\.jpg 32×48 as shown; "
                                         r"the image's EXIF orientation turns it, and the mask "
                                         r"has the stored pixels' 48×32"):
        load_masks(tmp_path / "msk", ["t.jpg"], 16, (16, 16), tmp_path / "img")
    Image.fromarray(np.zeros((48, 32), np.uint8)).save(tmp_path / "msk" / "t.png")
    assert load_masks(tmp_path / "msk", ["t.jpg", "a.png"][:1], 16, (16, 16),
                      tmp_path / "img").shape == (1, 16, 16)


def test_a_background_no_mask_holds_is_refused(tmp_path):
    from convdp.masks import NO_BACKGROUND, check_background

    masks = np.array([[[0, 1], [2, 3]]])
    check_background(masks, 0, tmp_path)
    with pytest.raises(ValueError, match=r"mask_background 7 is in none of the 1 masks of .* "
                                         r"\(their values: 0, 1, 2, 3\).* or to null"):
        check_background(masks, 7, tmp_path)
    check_background(masks + 1, None, tmp_path)  # masks without a background, said so
    record, _ = agreement(np.array([[[0, 1], [0, 1]]]), masks + 1, np.full(2, 0.5),
                          NO_BACKGROUND)
    assert record["foreground_pixels"] == 4 and record["parts"] == 4


def test_ignored_mask_values_are_in_no_score(tmp_path):
    """Pixels nobody labelled (VOC's 255 at the borders) counted as a part of their own: the
    label maps that follow the two parts exactly scored below 1; with ``mask_ignore`` they
    are left out, through the job function too."""
    from convdp.atlas_jobs import mask_agreement
    from convdp.io import write_npz

    masks = np.zeros((2, 8, 8), np.int16)
    masks[:, :, 4:] = 2
    masks[:, :4, :] += 1  # parts 1, 2, 3 and the background 0 (bottom left), a band of 255
    masks[:, :, 3:5] = 255
    labels = np.where(masks == 255, 9, masks)  # the clusters are the parts; the band its own
    weights = np.full(10, 0.1)
    plain, _ = agreement(labels, masks, weights, 0)
    assert plain["parts"] == 4 and plain["ari"] == pytest.approx(1.0)  # 255 scored as a part
    record, table = agreement(labels, masks, weights, 0, ignore=[255])
    assert record["parts"] == 3 and record["foreground_pixels"] == 2 * (64 - 16 - 12)
    assert record["ari"] == pytest.approx(1.0) and 9 not in table["cluster"].tolist()
    shuffled = np.where(masks == 255, (np.arange(64).reshape(8, 8) % 4)[None], masks)
    assert agreement(shuffled, masks, weights, 0)[0]["ari"] < 0.9  # the band, scored, costs
    assert agreement(shuffled, masks, weights, 0, ignore=[255])[0]["ari"] == pytest.approx(1.0)
    write_npz(tmp_path / "fit.npz", labels=shuffled, weights=weights)
    write_npz(tmp_path / "m.npz", masks=masks, background=np.int64(0), names=np.array(["a", "b"]),
              ignore=np.array([255]))
    out = mask_agreement(tmp_path / "fit.npz", tmp_path / "m.npz", tmp_path / "t.csv",
                         tmp_path / "r.json", context={})
    assert out["ari"] == pytest.approx(1.0) and out["parts"] == 3


def test_summary_columns_and_figure(tmp_path):
    records = [{"model": m, "control_of": c, "dataset": "p", "layer": f"r{i}", "layer_index": i,
                "nmi": 0.1 * i + s, "ari": 0.05 * i + s, "mean_best_iou": 0.3}
               for m, c, s in (("net", None, 0.2), ("net_random", "net", 0.0)) for i in range(3)]
    df = pd.DataFrame({"model": ["net", "net"], "dataset": "p", "layer": ["r1", "r1"],
                       "mode": "position", "method": ["dpgmm", "baseline"]})
    out = add_summary_columns(df, records)
    assert out["mask_ari"].tolist()[0] == pytest.approx(0.25) and np.isnan(out["mask_purity"][0]) and np.isnan(out["mask_ari"][1])
    plot_mask_agreement(mask_table(records), tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 1000


def test_config_checks_the_mask_folder(tmp_path):
    from convdp.config import ConfigError, validate_config

    (tmp_path / "img" / "a").mkdir(parents=True)

    def config(**ds):
        return {"datasets": {"p": ds},
                "models": {"m": {"arch": "digitnet", "weights": "none", "analyse_on": ["p"],
                                 "layers": ["relu1"], "in_channels": 3}}}

    with pytest.raises(ConfigError, match="mask folder .* does not exist"):
        validate_config(config(kind="folder", path=str(tmp_path / "img"),
                               masks=str(tmp_path / "nope")), check_layers=False)
    with pytest.raises(ConfigError, match="only an image folder"):
        validate_config(config(kind="digits", masks=str(tmp_path)), check_layers=False)
    # a colour mask's background and ignored values as colours, here as snakemake's command
    # line gives them (strings)
    (tmp_path / "msk").mkdir()
    cfg = config(kind="folder", path=str(tmp_path / "img"), masks=str(tmp_path / "msk"),
                 mask_background="0xFFFFFF", mask_ignore=["#FF00ff", 3])
    validate_config(cfg, check_layers=False)
    assert cfg["datasets"]["p"]["mask_background"] == 0xFFFFFF
    assert cfg["datasets"]["p"]["mask_ignore"] == [0xFF00FF, 3]
    with pytest.raises(ConfigError, match=r"mask_background.*white"):
        validate_config(config(kind="folder", path=str(tmp_path / "img"),
                               masks=str(tmp_path / "msk"), mask_background="white"),
                        check_layers=False)


def _voronoi_masks(rng, n: int, size: int) -> np.ndarray:
    """(n, size, size) masks of Voronoi regions (3-6 per image), each of one kind (1-4)."""
    yy, xx = np.mgrid[0:size, 0:size]
    masks = np.empty((n, size, size), np.int64)
    for i in range(n):
        seeds = rng.uniform(0, size, (rng.integers(3, 7), 2))
        region = ((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2).argmin(-1)
        masks[i] = rng.integers(1, 5, size=len(seeds))[region]
    return masks


def _colour_regions(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images the project's generator does not make: Voronoi regions (3-6 per image) of four
    flat colours with pixel noise; the masks give each pixel's colour (1-4)."""
    rng = np.random.default_rng(seed)
    colours = np.array([[200, 60, 50], [60, 170, 80], [70, 90, 210], [220, 200, 70]], float)
    masks = _voronoi_masks(rng, n, size)
    noisy = colours[masks - 1] + rng.normal(0, 12, (*masks.shape, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8), masks


def _texture_regions(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same regions of four black-and-white textures (stripes of period 4 and 8 px,
    checkers of 4 and 8 px squares) with pixel noise, as grey RGB; masks: the texture (1-4)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    textures = np.stack([(xx // 2) % 2, (xx // 4) % 2, (yy // 4 + xx // 4) % 2,
                         (yy // 8 + xx // 8) % 2]).astype(float)
    masks = _voronoi_masks(rng, n, size)
    grey = 28 + 200 * np.take_along_axis(textures[None], masks[:, None] - 1, 1)[:, 0]
    noisy = grey + rng.normal(0, 12, masks.shape)
    return np.repeat(np.clip(noisy, 0, 255).astype(np.uint8)[..., None], 3, axis=3), masks


def _grating_regions(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same regions of four sinusoidal gratings of one period (6 px) at 0, 45, 90 and 135
    degrees with pixel noise, as grey RGB: textures that differ only in orientation; masks:
    the grating (1-4)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    phase = 2 * np.pi / 6
    gratings = np.sin(phase * np.stack([xx, yy, (xx + yy) / np.sqrt(2), (xx - yy) / np.sqrt(2)]))
    masks = _voronoi_masks(rng, n, size)
    grey = 128 + 90 * np.take_along_axis(gratings[None], masks[:, None] - 1, 1)[:, 0]
    noisy = grey + rng.normal(0, 12, masks.shape)
    return np.repeat(np.clip(noisy, 0, 255).astype(np.uint8)[..., None], 3, axis=3), masks


def _striped_colour_regions(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The four colours of :func:`_colour_regions`, each striped in brightness (diagonal
    stripes 3 px wide, 55 % and 100 % of the colour), with pixel noise; masks: the colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    colours = np.array([[200, 60, 50], [60, 170, 80], [70, 90, 210], [220, 200, 70]], float)
    masks = _voronoi_masks(rng, n, size)
    brightness = 0.55 + 0.45 * (((xx + yy) // 3) % 2)
    striped = colours[masks - 1] * brightness[None, ..., None]
    noisy = striped + rng.normal(0, 12, (*masks.shape, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8), masks


def _first_layer_agreement(tmp_path, repo_root, images, masks, smooth=None, samples=None,
                           effective=None):
    """relu1 of DigitNet (random weights, seeded) clustered with the workflow's default
    settings but 20 components and one restart (and ``samples`` per fit, tempered to
    ``effective``, where given), scored against ``masks``."""
    import hashlib

    import torch

    from convdp.cluster import fit_layer
    from convdp.config import load_config
    from convdp.extract import extract_activations, open_activations
    from convdp.models import DigitNet
    from convdp.training import channel_stats

    torch.manual_seed(0)
    net = DigitNet(num_classes=4, in_channels=3).eval()
    mean, std = channel_stats(images)
    store = tmp_path / f"smooth{smooth}.zarr"
    if not store.exists():
        extract_activations(net, images, ["relu1"], store, mean=mean, std=std,
                            fingerprint={"images": hashlib.sha256(images).hexdigest()},
                            chunk_size=16, progress=False,
                            smooth={"relu1": smooth} if smooth else None)
    config = load_config(repo_root / "config.yaml")
    params = {"preprocess": {**config["preprocess"], "max_samples": samples
                             or config["preprocess"]["max_samples"]},
              "baseline": config["baseline"],
              "dpgmm": {**config["dpgmm"], "restarts": 1, "n_components": 20}}
    if effective:
        params["dpgmm"]["effective_samples"] = effective
    arrays, _ = fit_layer(open_activations(store)["relu1"], layer="relu1",
                          mode="position", method="dpgmm", params=params, progress=False)
    return agreement(arrays["labels"], masks, arrays["weights"])


def test_first_layer_label_maps_follow_planted_colour_regions(tmp_path, repo_root):
    """Held-out planted regions through the mask path: a first layer (DigitNet, random
    weights) clustered with the workflow's settings gives label maps that agree with the
    regions. Measured here: ARI 0.66, purity 0.96 (48 images of 32 px); 0.73 and 0.99 in the
    workflow on 200 such images of 64 px. The clusters beyond the four colours are the
    regions' edges, the image border and noise outliers."""
    images, masks = _colour_regions(48, 32, seed=7)
    record, clusters = _first_layer_agreement(tmp_path, repo_root, images, masks)
    assert record["parts"] == 4
    assert record["ari"] >= 0.6 and record["purity"] >= 0.93, record
    # every colour is mostly one cluster: its best cluster's IoU
    best = clusters[clusters["kept"]].groupby("best_label")["iou"].max()
    assert sorted(best.index) == [1, 2, 3, 4] and best.min() >= 0.6, best


def test_smoothed_first_layer_label_maps_follow_planted_texture_regions(tmp_path, repo_root):
    """Textured regions: relu1's 3 × 3 px field sees strokes, and its clusters split every
    texture into its edges; its maps smoothed before the fit (``extract.smooth``, σ = 3
    positions, over the positions no padding reached, the border's positions taking the
    value of the nearest whose kernel is cut by little) follow the textures. Measured here (64
    images of 64 px): ARI 0.09 → 0.53, NMI 0.15 → 0.67, purity 0.50 → 0.93, 10 clusters (0.56
    / 0.65 / 0.91 and 0.58 / 0.66 / 0.93 on seeds 8 and 9; without the border rule 0.38-0.43,
    17 clusters, 7 of them bands along the image's border); the coarse checker (16 px period,
    wider than the kernel's 3 σ) is the one texture still split by phase (best IoU 0.21-0.29,
    the others 0.69-0.76)."""
    images, masks = _texture_regions(64, 64, seed=7)
    plain, _ = _first_layer_agreement(tmp_path, repo_root, images, masks)
    smoothed, clusters = _first_layer_agreement(tmp_path, repo_root, images, masks, smooth=3.0)
    assert plain["ari"] < 0.15 and plain["purity"] < 0.6, plain
    assert smoothed["ari"] >= 0.48 and smoothed["ari"] >= 4 * plain["ari"], smoothed
    assert smoothed["nmi"] >= 0.6 and smoothed["purity"] >= 0.88, smoothed
    best = clusters[clusters["kept"]].groupby("best_label")["iou"].max()
    assert sorted(best.index) == [1, 2, 3, 4] and (best >= 0.6).sum() >= 3, best


def test_tempered_fits_keep_the_texture_regions_at_more_samples(tmp_path, repo_root):
    """The smoothed textures fitted on twice the samples (10,000 positions, config/parts.yaml's
    cap): the DP spends more clusters on the ripple σ = 3 leaves in the coarse textures (split
    by phase) and the ARI falls (0.53 → 0.33, 25 clusters); tempered to 5,000 effective
    samples (``dpgmm.effective_samples``) it keeps the 5,000-sample reading (0.53, 11
    clusters; 0.53 and 10 on 20,000)."""
    images, masks = _texture_regions(64, 64, seed=7)
    more, _ = _first_layer_agreement(tmp_path, repo_root, images, masks, smooth=3.0,
                                     samples=10000)
    tempered, clusters = _first_layer_agreement(tmp_path, repo_root, images, masks, smooth=3.0,
                                                samples=10000, effective=5000)
    assert more["ari"] < 0.42, more
    assert tempered["ari"] >= 0.48 and tempered["ari"] >= more["ari"] + 0.1, tempered
    best = clusters[clusters["kept"]].groupby("best_label")["iou"].max()
    assert sorted(best.index) == [1, 2, 3, 4] and (best >= 0.6).sum() >= 3, best


@pytest.mark.parametrize("regions, sigma, plain_below, smoothed_above", [
    (_grating_regions, 3.0, 0.2, 0.5),
    (_striped_colour_regions, 1.5, 0.45, 0.7),
])
def test_smoothed_first_layer_follows_gratings_and_striped_colours(
        tmp_path, repo_root, regions, sigma, plain_below, smoothed_above):
    """Two more kinds of planted region, smoothed at a σ set by their texture's scale
    (docs/parts_and_textures.md, "Choosing σ"). Gratings that differ only in orientation (period 6 px): relu1's 3 × 3 px
    field sees strokes; ARI 0.14 → 0.64 at σ = 3 (0.67 on seed 8). Colours striped in
    brightness (3 px stripes): the stripes split every colour; ARI 0.36 → 0.77 at σ = 1.5
    (0.33 → 0.79 on seed 8; at σ = 1 0.65, 0.84 before the border rule). 64 images of 64 px,
    random weights."""
    images, masks = regions(64, 64, seed=7)
    plain, _ = _first_layer_agreement(tmp_path, repo_root, images, masks)
    smoothed, clusters = _first_layer_agreement(tmp_path, repo_root, images, masks, smooth=sigma)
    assert plain["ari"] < plain_below, plain
    assert smoothed["ari"] >= smoothed_above and smoothed["ari"] >= 1.8 * plain["ari"], smoothed
    best = clusters[clusters["kept"]].groupby("best_label")["iou"].max()
    assert sorted(best.index) == [1, 2, 3, 4], best


def test_smoothed_first_layer_follows_the_generators_textured_parts(tmp_path, repo_root):
    """The planted-parts generator's own scenes (textured parts on a textured background) at
    relu1, smoothed as config/parts.yaml stored it until a2e8ae0 (σ = 1.5 positions; its
    ``auto`` chooses 1 since: docs/parts_and_textures.md, "Choosing σ"): the label maps follow
    the parts. Measured here (64 scenes of 64 px, random weights): ARI 0.24 → 0.71 (0.72
    before the border rule), purity 0.88 → 0.95 (0.26 → 0.65 and 0.25 → 0.60 on the scenes of
    seeds 4 and 5)."""
    from convdp.parts import make_scene

    rng = np.random.default_rng(3)
    scenes = [make_scene(rng, 64) for _ in range(64)]
    images = np.stack([s.image() for s in scenes])
    masks = np.stack([s.mask for s in scenes])
    plain, _ = _first_layer_agreement(tmp_path, repo_root, images, masks)
    smoothed, clusters = _first_layer_agreement(tmp_path, repo_root, images, masks, smooth=1.5)
    assert plain["ari"] < 0.35, plain
    assert smoothed["ari"] >= 0.5 and smoothed["ari"] >= 2 * plain["ari"], smoothed
    assert smoothed["purity"] >= 0.9, smoothed
    # every part (body, head, tail) is mostly one cluster
    parts = clusters[clusters["kept"] & (clusters["best_label"] > 0)]
    best = parts.groupby("best_label")["iou"].max()
    assert sorted(best.index) == [1, 2, 3] and best.min() >= 0.45, best


def _png16_rgb(path, grey):
    """A 16-bit RGB PNG of the labels ``grey`` (H, W) in all three channels (Pillow cannot
    write one)."""
    import struct
    import zlib

    h, w = grey.shape
    rgb = np.repeat(grey.astype(">u2")[:, :, None], 3, axis=2)
    raw = b"".join(b"\x00" + rgb[i].tobytes() for i in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _parts(n=24):
    mask = np.zeros((n, n), np.uint8)
    mask[4:12, 4:20] = 1
    mask[12:20, 8:16] = 2
    return mask


def test_masks_that_would_give_wrong_labels_are_refused(tmp_path):
    """16-bit colour (Pillow keeps the top byte: every label 0), palettes renumbered per
    file (an index is no label), all background: refused; several bad masks are named in one
    error."""
    from convdp.masks import check_background

    mask = _parts()
    _png16_rgb(tmp_path / "wide.png", mask)
    with pytest.raises(ValueError, match=r"wide\.png is 16-bit RGB: Pillow reads 16-bit colour"):
        load_masks(tmp_path, ["wide.png"], None, mask.shape)
    # palette masks: the same parts, indices given by each file's own colour order
    colours = [(0, 0, 0), (200, 0, 0), (0, 200, 0)]
    for name, order in (("p.png", [0, 1, 2]), ("q.png", [0, 2, 1])):
        im = Image.fromarray(np.array(order, np.uint8)[mask], "P")
        im.putpalette([c for i in np.argsort(order) for c in colours[i]])
        im.save(tmp_path / name)
    assert (load_masks(tmp_path, ["p.png"], None, mask.shape)[0] == mask).all()
    with pytest.raises(ValueError, match=r"give index 1 different colours \(\(200, 0, 0\) in "
                                         r"p\.png; \(0, 200, 0\) in q\.png"):
        load_masks(tmp_path, ["p.png", "q.png"], None, mask.shape)
    with pytest.raises(ValueError, match="every pixel of the 2 masks .* is the background 0"):
        check_background(np.zeros((2, 4, 4), np.int16), 0, tmp_path)
    with pytest.raises(ValueError, match=r"2 of the 3 masks in .* cannot be used:\n  no mask "
                                         r"for image 'a\.png'.*\n  no mask for image 'b\.png'"):
        load_masks(tmp_path, ["a.png", "p.png", "b.png"], None, mask.shape)


def test_lossy_artefacts_and_a_small_background_are_warned_of(tmp_path, caplog):
    from convdp.masks import check_background

    mask = _parts(48) * 100
    Image.fromarray(mask).save(tmp_path / "m.jpg", quality=70)
    Image.open(tmp_path / "m.jpg").save(tmp_path / "m.png")  # the JPEG saved again as PNG
    (tmp_path / "m.jpg").unlink()
    with caplog.at_level("WARNING", logger="convdp.masks"):
        masks = load_masks(tmp_path, ["m.png"], None, mask.shape)
    assert "never fill a 3×3 block of pixels" in caplog.text
    assert len(np.unique(masks)) > 3
    caplog.clear()
    Image.fromarray(mask).save(tmp_path / "m.png")
    with caplog.at_level("WARNING", logger="convdp.masks"):
        load_masks(tmp_path, ["m.png"], None, mask.shape)
        check_background(np.where(mask == 0, 3, mask)[None], 3, tmp_path)
        assert caplog.text == ""
        check_background(np.where(mask == 0, 3, 0)[None], 0, tmp_path)
    assert "mask_background 0 covers" in caplog.text and "is 3 the background?" in caplog.text


def test_mask_orientation_is_applied_and_unconfirmed_image_orientations_warned_of(tmp_path, caplog):
    """A mask stored upside down with EXIF orientation 3 is read as shown; an image whose
    orientation is a half turn (its mask's size cannot tell how it was drawn) is warned of."""
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    mask = _parts()
    Image.new("RGB", mask.shape[::-1]).save(tmp_path / "img" / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.fromarray(mask[::-1, ::-1].copy()).save(tmp_path / "msk" / "a.png", exif=exif)
    with caplog.at_level("WARNING", logger="convdp.masks"):
        got = load_masks(tmp_path / "msk", ["a.png"], None, mask.shape, tmp_path / "img")
    assert (got[0] == mask).all() and caplog.text == ""
    Image.new("RGB", mask.shape[::-1]).save(tmp_path / "img" / "a.png", exif=exif)
    Image.fromarray(mask).save(tmp_path / "msk" / "a.png")
    with caplog.at_level("WARNING", logger="convdp.masks"):
        load_masks(tmp_path / "msk", ["a.png"], None, mask.shape, tmp_path / "img")
    assert "1 image(s) of" in caplog.text and "EXIF orientation" in caplog.text


def test_masks_that_read_one_picture_two_ways_are_refused(tmp_path):
    """A 1-bit mask's white is read as 1 and a grey palette's index as the index, but an 8-bit
    grey mask of the same picture reads its grey: beside each other the same part was two
    labels (label maps that follow the parts exactly scored ARI 0.2). Refused, naming both
    files; the mixes that read alike stay accepted."""
    mask = _parts()
    Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(mask > 0).convert("1").save(tmp_path / "bits.png")
    with pytest.raises(ValueError, match=r"bits\.png reads the grey 255 as label 1 .*grey\.png "
                                         r"holds 255 itself"):
        load_masks(tmp_path, ["grey.png", "bits.png"], None, mask.shape)
    grey = (mask * 100).astype(np.uint8)  # parts 100 and 200
    Image.fromarray(grey).save(tmp_path / "g.png")
    im = Image.fromarray(mask, "P")  # the same picture, a palette of its three greys
    im.putpalette([0, 0, 0, 100, 100, 100, 200, 200, 200])
    im.save(tmp_path / "p.png")
    with pytest.raises(ValueError, match=r"p\.png reads the grey 100 as label 1 .*g\.png holds "
                                         r"100 itself"):
        load_masks(tmp_path, ["g.png", "p.png"], None, mask.shape)
    # alike: 1-bit beside labels 0 / 1 / 2, a colour palette's indices beside those indices
    Image.fromarray(mask).save(tmp_path / "labels.png")
    assert load_masks(tmp_path, ["labels.png", "bits.png"], None, mask.shape).max() == 2
    im.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0])
    im.save(tmp_path / "voc.png")
    out = load_masks(tmp_path, ["labels.png", "voc.png"], None, mask.shape)
    assert (out == mask).all()


def test_a_colour_with_two_palette_indices_is_refused(tmp_path):
    """Palette masks written with a palette of their own, an index left unused: red was index
    1 in one file and 3 in another, so one part was two labels, though no index had two
    colours."""
    mask = _parts()
    black, red, green, blue = (0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)
    for name, palette, index in (("a.png", [black, red, green], [0, 1, 2]),
                                 ("b.png", [black, blue, green, red], [0, 3, 2])):
        im = Image.fromarray(np.array(index, np.uint8)[mask], "P")
        im.putpalette([c for colour in palette for c in colour])
        im.save(tmp_path / name)
    assert (load_masks(tmp_path, ["a.png"], None, mask.shape)[0] == mask).all()
    with pytest.raises(ValueError, match=r"give the colour \(255, 0, 0\) different indices "
                                         r"\(index 1 in a\.png; index 3 in b\.png\)"):
        load_masks(tmp_path, ["a.png", "b.png"], None, mask.shape)


def test_an_ignored_value_no_mask_holds_is_refused(tmp_path):
    """``mask_ignore: ["#ffffff"]`` for grey masks saved as RGB (read as their grey, 255), or
    a palette's colour for a palette mask (read as its index), matched no pixel: the band
    meant to be left out was scored as a part, without a word."""
    from convdp.atlas_jobs import prepare_masks
    from convdp.config import _mask_value
    from convdp.pipeline import prepare_dataset

    mask = _parts()
    mask[:, 10:12] = 255  # the unlabelled band
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.repeat(mask[:, :, None], 3, axis=2)).save(tmp_path / "masks" / "a.png")
    Image.fromarray(mask).save(tmp_path / "images" / "a.png")
    prepare_dataset({"kind": "folder", "path": str(tmp_path / "images"), "size": None},
                    tmp_path / "d.zarr")
    with pytest.raises(ValueError, match=r"mask_ignore 16777215 \(#ffffff\) is in none of the 1 "
                                         r"masks .*\(their values: 0, 1, 2, 255\)"):
        prepare_masks(tmp_path / "d.zarr", tmp_path / "masks", None, 0, tmp_path / "m.npz",
                      ignore=[_mask_value("#ffffff")])
    prepare_masks(tmp_path / "d.zarr", tmp_path / "masks", None, 0, tmp_path / "m.npz",
                  ignore=[255])
    with np.load(tmp_path / "m.npz") as z:
        assert z["ignore"].tolist() == [255]
    masks = mask[None].astype(np.int64)
    with pytest.raises(ValueError, match=r"mask_ignore #e0e0c0 is in none of the 1 masks"):
        check_background(masks, 0, tmp_path, ignore=[0xE0E0C0], colour=True)
