import numpy as np
import pytest

from convdp.data import (
    Dataset,
    load_digits_split,
    open_dataset,
    read_dataset,
    write_dataset,
)


def test_digits_split_is_disjoint_and_resized():
    src = load_digits_split([0, 1, 2, 3, 4], size=32)
    tgt = load_digits_split([5, 6, 7, 8, 9], size=32)
    assert src.images.shape[1:] == (32, 32, 1) and src.images.dtype == np.uint8
    assert set(np.unique(src.labels)) == {0, 1, 2, 3, 4}
    assert set(np.unique(tgt.labels)) == {5, 6, 7, 8, 9}
    assert len(src.images) + len(tgt.images) == 1797
    assert src.images.max() > 200  # 0-16 scaled to 0-255
    assert "digits.csv.gz" in src.files


def test_unknown_digit_class_is_refused():
    with pytest.raises(ValueError, match=r"unknown classes \[12\]"):
        load_digits_split([1, 12])


def test_dataset_round_trip(tmp_path):
    ds = load_digits_split([3, 4], size=16, max_samples=30, seed=1)
    assert len(ds.images) == 30
    checksum = write_dataset(tmp_path / "d.zarr", ds, chunk=7)
    back = read_dataset(tmp_path / "d.zarr")
    np.testing.assert_array_equal(back.images, ds.images)
    np.testing.assert_array_equal(back.labels, ds.labels)
    assert back.class_names == ds.class_names
    assert open_dataset(tmp_path / "d.zarr").attrs["checksum"] == checksum
    assert not list(tmp_path.glob(".tmp-*")), "temporary store left behind"


def test_unlabelled_dataset_round_trip(tmp_path):
    ds = Dataset(np.zeros((3, 4, 4, 3), np.uint8), None, [], "test")
    write_dataset(tmp_path / "u.zarr", ds)
    assert read_dataset(tmp_path / "u.zarr").labels is None


def test_missing_store_is_named(tmp_path):
    with pytest.raises(ValueError, match="nothere.zarr"):
        open_dataset(tmp_path / "nothere.zarr")


def test_one_resize_short_side_then_centre_crop():
    from convdp.data import resize_center_crop, resize_dataset

    # 10×30: left | middle | right thirds of 0, 100, 200; the short side is 10 already, so
    # the crop alone keeps the middle third; shrunk to 5 the middle column stays 100.
    wide = np.zeros((1, 10, 30, 1), np.uint8)
    wide[:, :, 10:20], wide[:, :, 20:] = 100, 200
    assert (resize_center_crop(wide, 10) == 100).all()
    tall = resize_center_crop(wide.transpose(0, 2, 1, 3), 10)  # 30×10 → the middle rows
    assert tall.shape == (1, 10, 10, 1) and (tall == 100).all()
    small = resize_center_crop(wide, 5)
    assert small.shape == (1, 5, 5, 1) and (small[:, :, 2] == 100).all()
    square = wide[:, :, :10]
    assert resize_center_crop(square, 10) is square  # already 10×10: unchanged
    # Every kind goes through it: a non-square torchvision-like data set is cropped too.
    ds = Dataset(np.repeat(wide, 3, axis=0), np.arange(3), ["a", "b", "c"], "test")
    assert resize_dataset(ds, 5).images.shape == (3, 5, 5, 1)
    assert resize_dataset(ds, None) is ds


@pytest.mark.parametrize("shape, size", [((37, 50), 16), ((50, 37), 16), ((101, 64), 32),
                                         ((15, 40), 10), ((30, 45), 8), ((64, 65), 64)])
def test_the_resize_is_torchvisions_resize_and_centre_crop(shape, size):
    """Non-square images: the same pixels as torchvision's Resize(size, antialias=True) and
    CenterCrop(size) on float tensors (rounded), where the long side's length and the crop's
    offsets are truncated and rounded as torchvision does (one-pixel shifts otherwise)."""
    import torch
    import torchvision.transforms.v2.functional as TF

    from convdp.data import resize_center_crop

    x = np.random.default_rng(1).integers(0, 256, (3, *shape, 3), dtype=np.uint8)
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float()
    want = TF.center_crop(TF.resize(t, [size], antialias=True), [size, size])
    want = want.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(resize_center_crop(x, size), want)


def test_square_resize_is_bilinear_antialiased():
    """Square images (the digits) only resize, with the filter the digits always had."""
    import torch
    import torch.nn.functional as F

    from convdp.data import resize_center_crop

    rng = np.random.default_rng(0)
    for size_in, size_out in ((8, 32), (40, 16)):
        x = rng.integers(0, 256, (4, size_in, size_in, 3), dtype=np.uint8)
        t = torch.from_numpy(x).permute(0, 3, 1, 2).float()
        want = F.interpolate(t, size=(size_out, size_out), mode="bilinear", align_corners=False,
                             antialias=True).round().clamp(0, 255).to(torch.uint8)
        np.testing.assert_array_equal(resize_center_crop(x, size_out),
                                      want.permute(0, 2, 3, 1).numpy())
