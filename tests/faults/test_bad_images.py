"""Images read faithfully or refused naming the file; folder scans count each real file once;
training refuses a single class (issue 12: no silent wrong result)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from convdp.datasets import ImageReadError, load_image_folder, load_images


def save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def test_12_bit_data_in_a_16_bit_png_is_scaled_by_its_real_range(tmp_path, caplog):
    bright = np.tile(np.array([0, 2048, 4095], np.uint16), (4, 2))  # 12-bit camera data
    dim = np.full((4, 6), 1000, np.uint16)  # on its own it would be scaled as 10-bit
    paths = [save(tmp_path / "bright.png", bright), save(tmp_path / "dim.png", dim)]
    assert Image.open(paths[0]).mode == "I;16"
    with caplog.at_level(logging.INFO, logger="convdp"):
        d = load_images(paths)
    assert d.images.dtype == np.uint8 and d.images.shape == (2, 4, 6, 3)
    assert d.images[0, 0, :3, 0].tolist() == [0, 128, 255]  # was 0, 8, 15 (a black image)
    assert (d.images[1] == round(1000 * 255 / 4095)).all()  # one depth for the data set
    assert "data max 4095 -> scaled as 12-bit" in caplog.text


def test_a_set_bit_depth_scales_every_data_set_alike(tmp_path):
    """``auto`` takes each data set's depth from its largest value, so one pixel above 4095
    made the same 12-bit image a quarter as bright in another data set; ``bit_depth`` fixes
    the depth, and a value above it is an unreadable image, named. The depth is recorded."""
    image = np.tile(np.array([0, 1000, 3999], np.uint16), (4, 2))
    hot = image.copy()
    hot[0, 0] = 4200
    a = [save(tmp_path / "a" / "im.png", image)]
    b = a + [save(tmp_path / "b" / "hot.png", hot)]
    auto_a, auto_b = load_images(a), load_images(b)
    assert (auto_a.images[0, 0, 1, 0], auto_b.images[0, 0, 1, 0]) == (62, 16)  # 1000 of 4095, 16383
    assert (auto_a.depth, auto_b.depth) == ({"bits": 12, "max": 3999, "set": False},
                                           {"bits": 14, "max": 4200, "set": False})
    fixed_a, fixed_b = load_images(a, bit_depth=14), load_images(b, bit_depth=14)
    assert (fixed_a.images[0] == fixed_b.images[0]).all()
    assert fixed_a.depth == {"bits": 14, "max": 3999, "set": True}
    with pytest.raises(ImageReadError, match=r"hot\.png.*value of 4200, above the 12-bit "
                                             r"maximum 4095 of the data set's bit_depth"):
        load_images(b, bit_depth=12)


def test_data_sets_scaled_by_other_depths_are_not_compared(tmp_path):
    """A net whose source's images were scaled as 12-bit is not run on a data set scaled as
    14-bit unless both depths were set: the error names both data sets and the key."""
    from convdp.pipeline import check_depth

    src = {"bits": 12, "max": 3999, "set": False}
    target = {"bits": 14, "max": 4200, "set": False}
    args = ("results/data/tgt.zarr", "results/data/src.zarr", "m")
    with pytest.raises(ValueError, match=r"tgt.zarr: its images were scaled as 14-bit \(data "
                                         r"max 4200, by bit_depth auto\), those of src, model "
                                         r"'m''s source, as 12-bit .* Set bit_depth on both "
                                         r"datasets tgt and src"):
        check_depth(target, src, *args)
    with pytest.raises(ValueError, match="as bit_depth says"):  # one set, the other auto
        check_depth(target | {"set": True}, src, *args)
    check_depth(target | {"set": True}, src | {"set": True}, *args)  # both chosen
    check_depth(None, src, *args)  # 8-bit images: no depth to compare
    check_depth(dict(target, bits=12), src, *args)


def test_transfer_scores_check_the_depths_again_when_only_the_source_changed(tmp_path):
    """A target's extraction does not rerun when its net's source is prepared again (the
    source is an ``ancient`` input), so the transfer scores, which do rerun, check the two
    depths themselves: a source that became 16-bit gave a shift score of -19.7 for 0.09."""
    from convdp.io import write_json
    from convdp.pipeline import prepare_dataset, transfer_scores

    image = np.tile(np.array([0, 1000, 3999], np.uint16), (4, 2))
    hot = image.copy()
    hot[0, 0] = 40000
    for name, arr in (("src", hot), ("tgt", image)):
        save(tmp_path / name / "im.png", arr)
        prepare_dataset({"kind": "images", "paths": [str(tmp_path / name / "im.png")],
                         "size": None}, tmp_path / f"{name}.zarr")
    write_json(tmp_path / "src.json", {"dataset": str(tmp_path / "src.zarr")})
    with pytest.raises(ValueError, match=r"tgt.zarr: its images were scaled as 12-bit .* those "
                                         r"of src, model 'm''s source, as 16-bit"):
        transfer_scores(tmp_path / "src.json", tmp_path / "tgt.json", {}, {}, tmp_path / "tgt.zarr",
                        [], tmp_path / "out.json", tmp_path / "maps.npz", context={"model": "m"})
    assert not (tmp_path / "out.json").exists()


def test_what_the_images_lose_on_the_way_to_the_net_is_said(tmp_path, caplog):
    """Transparency dropped, a tiny image blown up, an elongated one cropped to its middle:
    each is read (as before), and a warning per data set names how many and one of them."""
    clear = np.full((8, 8, 4), 200, np.uint8)
    clear[:4, :, 3] = 0  # transparent top half: its stored colour is what the net would see
    paths = [save(tmp_path / "clear.png", clear),
             save(tmp_path / "opaque.png", np.full((8, 8, 4), 255, np.uint8)),
             save(tmp_path / "dot.png", np.full((1, 1, 3), 9, np.uint8)),
             save(tmp_path / "strip.png", np.zeros((16, 400, 3), np.uint8))]
    with caplog.at_level(logging.WARNING, logger="convdp"):
        d = load_images(paths, size=32)
    assert d.images.shape == (4, 32, 32, 3) and (d.images[0] == 200).all()
    text = caplog.text
    assert "1 image(s) with transparent pixels: the alpha is dropped" in text
    assert "clear.png, 8×8 px" in text and "opaque.png" not in text
    assert "1 image(s) upscaled more than 4x to size 32" in text and "dot.png, 1×1 px" in text
    assert ("1 image(s) so elongated that the centre crop to a square keeps less than half of "
            "them (e.g. " in text) and "strip.png, 400×16 px" in text


def test_float_tiff_in_unit_range_keeps_its_grey_levels(tmp_path, caplog):
    grey = np.full((4, 4), 0.5, np.float32)
    ramp = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    wide = np.linspace(-2, 6, 16, dtype=np.float32).reshape(4, 4)  # outside [0, 1]
    paths = [save(tmp_path / f"{n}.tif", a) for n, a in [("grey", grey), ("ramp", ramp),
                                                          ("wide", wide)]]
    with caplog.at_level(logging.INFO, logger="convdp"):
        d = load_images(paths)
    assert (d.images[0] == 128).all()  # mid-grey stays mid-grey (was clipped to 0)
    assert d.images[1].min() == 0 and d.images[1].max() == 255
    assert len(np.unique(d.images[1])) == 16
    assert d.images[2, 0, 0, 0] == 0 and d.images[2, -1, -1, 0] == 255  # own min..max
    assert "wide.tif: -2..6" in caplog.text


def test_float_image_with_nan_is_refused_naming_the_file(tmp_path, caplog):
    bad = np.full((4, 4), 0.5, np.float32)
    bad[1, 2] = np.nan
    path = save(tmp_path / "flat" / "nan.tif", bad)
    save(tmp_path / "flat" / "ok.tif", np.full((4, 4), 0.25, np.float32))
    with pytest.raises(ImageReadError, match=r"nan\.tif.*NaN"):
        load_images(path)
    with pytest.raises(ImageReadError, match=r"nan\.tif"):
        load_image_folder(tmp_path / "flat")
    with caplog.at_level(logging.WARNING, logger="convdp"):
        d = load_image_folder(tmp_path / "flat", on_error="skip")
    assert list(d.files) == ["ok.tif"] and "nan.tif" in caplog.text


def test_16_bit_colour_holding_12_bit_data_is_refused(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, np.full((4, 4, 3), 4000, np.uint16), photometric="rgb")
    with pytest.raises(ImageReadError, match=r"rgb16\.tif.*16-bit RGB"):
        load_images(path)


def test_tiff_sample_conventions_that_pillow_leaves_to_the_reader(tmp_path):
    """WhiteIsZero greyscale wider than 8 bits, and float, is stored as a viewer shows it
    (Pillow gives the raw samples: black and white were swapped); signed 8-bit samples with a
    negative value (read by Pillow as unsigned: -1 as 255) and a TIFF of several pages (only
    the first page was read: a channel stack came out as its first channel) are refused,
    naming the file."""
    tifffile = pytest.importorskip("tifffile")
    ramp16 = (np.arange(256).reshape(16, 16) * 256).astype(np.uint16)
    tifffile.imwrite(tmp_path / "white16.tif", ramp16, photometric="miniswhite")
    rampf = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    tifffile.imwrite(tmp_path / "whitef.tif", rampf, photometric="miniswhite")
    d = load_images([tmp_path / "white16.tif", tmp_path / "whitef.tif"])
    assert (d.images[0, ..., 0] == np.round((65535 - ramp16.astype(np.int64)) * 255 / 65535)).all()
    assert np.abs(d.images[1, ..., 0] - np.round((1 - rampf.astype(np.float64)) * 255)).max() <= 1
    assert d.images[0, 0, 0, 0] == d.images[1, 0, 0, 0] == 255  # sample 0 is white
    tifffile.imwrite(tmp_path / "signed.tif", np.arange(-128, 128, dtype=np.int8).reshape(16, 16))
    with pytest.raises(ImageReadError, match=r"signed\.tif.*signed 8-bit image with negative"):
        load_images(tmp_path / "signed.tif")
    tifffile.imwrite(tmp_path / "positive.tif", np.arange(64, dtype=np.int8).reshape(8, 8))
    assert load_images(tmp_path / "positive.tif").images[0, 0, :3, 0].tolist() == [0, 1, 2]
    tifffile.imwrite(tmp_path / "u32.tif", np.full((4, 4), 3_000_000_000, np.uint32))
    with pytest.raises(ImageReadError, match=r"u32\.tif: unsigned 32-bit image with values of "
                                             r"2\*\*31 or more"):  # not "negative values"
        load_images(tmp_path / "u32.tif")
    (tmp_path / "text.tif").write_text("not an image")
    with pytest.raises(ImageReadError, match=r"text\.tif: cannot identify image file$"):
        load_images(tmp_path / "text.tif")  # without Pillow's name of an in-memory copy
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([np.full((8, 8), v, np.uint8)
                                                       for v in (10, 200, 90)]),
                     photometric="minisblack", metadata=None)
    with pytest.raises(ImageReadError, match=r"stack\.tif.*TIFF of 3 full-size pages"):
        load_images(tmp_path / "stack.tif")
    # a reduced-resolution preview page (NewSubfileType 1) is no second image
    with tifffile.TiffWriter(tmp_path / "preview.tif") as tif:
        tif.write(np.full((16, 16), 77, np.uint8), photometric="minisblack", metadata=None)
        tif.write(np.zeros((4, 4), np.uint8), photometric="minisblack", subfiletype=1,
                  metadata=None)
    assert (load_images(tmp_path / "preview.tif").images[0] == 77).all()
    # a broken pointer to a next page (Pillow cannot count the pages): the first is read
    data = bytearray((tmp_path / "positive.tif").read_bytes())
    first = int.from_bytes(data[4:8], "little")
    after = first + 2 + 12 * int.from_bytes(data[first:first + 2], "little")
    data[after:after + 4] = (len(data) + 1000).to_bytes(4, "little")
    (tmp_path / "broken.tif").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="Corrupt EXIF"):  # Pillow's, on the next page
        assert load_images(tmp_path / "broken.tif").images[0, 0, :3, 0].tolist() == [0, 1, 2]


def test_what_an_image_declares_but_is_not_read_by_is_said(tmp_path, caplog):
    """Read as before, with a warning per data set naming one file: an animation (only its
    first frame), a PNG colour key (transparent pixels, as an alpha band is), an ICC profile
    other than sRGB (no colour management), a CMYK JPEG without Adobe's marker (its inks taken
    as inverted); a file of an image format convdp does not read is skipped with a warning,
    not quietly; .jfif is read as JPEG."""
    from PIL import ImageCms

    folder = tmp_path / "odd"
    folder.mkdir()
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    keyed = np.full((8, 8), 40, np.uint8)
    keyed[2:6, 2:6] = 200
    Image.fromarray(keyed, "L").save(folder / "keyed.png", transparency=40)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.new("RGB", (8, 8), (90, 90, 90)).save(folder / "lab.png", icc_profile=profile)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (8, 8), (90, 90, 90)).save(folder / "srgb.png", icc_profile=srgb)
    Image.new("CMYK", (8, 8), (0, 0, 0, 60)).save(folder / "tmp.jpg")
    data = (folder / "tmp.jpg").read_bytes()
    at = data.find(b"\xff\xee")  # Adobe's APP14 marker, left out
    (folder / "cmyk.jpg").write_bytes(data[:at] + data[at + 2 + int.from_bytes(data[at + 2:at + 4], "big"):])
    (folder / "tmp.jpg").unlink()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "photo.jfif", format="JPEG")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "icon.ico")
    (folder / "notes.h5").write_bytes(b"")  # not an image format: skipped quietly
    # sRGB under another name (Facebook's compact "c2"): no warning
    at = srgb.find("sRGB built-in".encode("utf-16-be"))
    c2 = srgb[:at] + "c2".encode("utf-16-be") + " ".encode("utf-16-be") * 11 + srgb[at + 26:]
    Image.new("RGB", (8, 8), (90, 90, 90)).save(folder / "c2.png", icc_profile=c2)
    with caplog.at_level(logging.WARNING, logger="convdp"):
        d = load_image_folder(folder)
    assert sorted(d.files) == ["anim.gif", "c2.png", "cmyk.jpg", "keyed.png", "lab.png",
                               "photo.jfif", "srgb.png"]
    assert (d.images[sorted(d.files).index("anim.gif")] == (255, 0, 0)).all()  # frame 1
    text = caplog.text
    assert "1 image(s) animated: only the first frame of each is read (e.g. " in text
    assert "1 image(s) with transparent pixels" in text and "keyed.png" in text
    assert ("1 image(s) declaring a colour space other than sRGB (Lab identity built-in): "
            "their values are read as stored" in text) and "lab.png" in text
    assert "1 image(s) in CMYK without Adobe's marker" in text and "cmyk.jpg" in text
    assert ("skipped 2 file(s): 1 of an image format convdp does not read (.ico: convert to "
            "PNG), 1 unsupported extension" in text)
    assert "c2.png" not in text and "srgb.png" not in text


def test_symlink_loop_counts_each_real_file_once(tmp_path, caplog):
    root = tmp_path / "pets"
    for i in range(3):
        save(root / "cat" / f"{i}.png", np.full((4, 4, 3), 10 * i, np.uint8))
    for i in range(2):
        save(root / "dog" / f"{i}.png", np.full((4, 4, 3), 200, np.uint8))
    (root / "cat" / "again").symlink_to(".", target_is_directory=True)  # a loop
    (root / "dog" / "cats").symlink_to("../cat", target_is_directory=True)  # another class
    (root / "dog" / "copy.png").symlink_to("0.png")  # one file by two names
    (root / "dog" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.INFO, logger="convdp"):
        d = load_image_folder(root)
    assert np.bincount(d.labels).tolist() == [3, 2]  # was 3 * 41 cats
    assert sorted(d.files) == ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png"]
    assert "skipped 8 file(s)" in caplog.text
    assert "7 duplicate via a link" in caplog.text and "1 unsupported extension" in caplog.text


def test_training_on_a_single_class_is_refused_naming_the_data_set():
    from convdp.models import DigitNet, train_classifier

    images = np.random.default_rng(0).integers(0, 255, (10, 8, 8, 1), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"shapes has one class \(label 0\)"):
        train_classifier(DigitNet(num_classes=1), images, np.zeros(10, np.int64),
                         mean=[0.5], std=[0.25], epochs=1, progress=False, data_name="shapes")


def test_a_net_with_fewer_outputs_than_classes_is_refused_before_training():
    """A ``module:factory`` without a ``num_classes`` argument keeps its own head: with 3
    outputs and 10 classes the loss failed mid-training ("Target 6 is out of bounds"); now
    the shapes are compared on one image first, naming the data set. More outputs than
    classes still train (a 1000-way head on 10 classes). Too few images for a held-out
    image of every class is refused naming the data set too (scikit-learn's split said
    "The test_size = 8 should be greater or equal to the number of classes = 10")."""
    from torch import nn

    from convdp.models import train_classifier

    def net(outputs):
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, outputs))

    images = np.random.default_rng(0).integers(0, 255, (60, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(60) % 10
    with pytest.raises(ValueError, match=r"shapes: 40 images of 10 classes; the held-out 0.2 "
                                         r"of them \(8 images\)"):  # sklearn's split refused it
        train_classifier(net(10), images[:40], labels[:40], mean=[0.5], std=[0.25], epochs=1,
                         progress=False, data_name="shapes")
    with pytest.raises(ValueError, match=r"outputs of shape \(3,\) per image but shapes has 10 "
                                         r"classes"):
        train_classifier(net(3), images, labels, mean=[0.5], std=[0.25], epochs=1,
                         progress=False, data_name="shapes")
    wide = net(12)
    metrics = train_classifier(wide, images, labels, mean=[0.5], std=[0.25], epochs=1,
                               progress=False, data_name="shapes")
    assert 0 <= metrics["val_accuracy"] <= 1

    class Squeezed(nn.Module):  # (N, 10) for a batch, (10,) for one image: it trained before
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 10, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3)).squeeze()

    metrics = train_classifier(Squeezed(), images, labels, mean=[0.5], std=[0.25], epochs=1,
                               progress=False, data_name="shapes")
    assert 0 <= metrics["val_accuracy"] <= 1
