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
