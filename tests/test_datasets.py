"""convdp.datasets: torchvision formats served from 127.0.0.1, image folders, single images.

Every file is built here, tiny and valid, in the format the loader parses; the registry's
MD5s are swapped for the tiny files' ones (monkeypatch), so the real download, verify,
unpack and parse code runs end to end without the internet.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import logging
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from convdp import datasets as ds
from convdp.datasets import (
    Dataset,
    DatasetError,
    ImageReadError,
    cifar,
    fetch_torchvision_dataset,
    load_histology,
    load_image_folder,
    load_images,
    load_torchvision_dataset,
    mnist,
    select_indices,
    stl10,
    svhn,
)
from convdp.datasets.fetch import DownloadError

pytestmark = pytest.mark.usefixtures("no_proxy")  # 127.0.0.1 must not go to a proxy


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _patch_registry(monkeypatch, name: str, served: Path, members: Path | None = None):
    """Point the registry's MD5s for ``name`` at the tiny files in ``served``."""
    spec = ds.TORCHVISION_REGISTRY[name]
    files = []
    for rf in spec.files:
        changes = {}
        if (served / rf.filename).exists():
            changes["md5"] = _md5(served / rf.filename)
        if members is not None and rf.members:
            changes["members"] = tuple(
                (m, _md5(members / m)) for m, _ in rf.members if (members / m).exists()
            )
        elif rf.members and (served / rf.filename).exists():  # the archive's own members
            with tarfile.open(served / rf.filename) as tar:
                inside = {i.name: hashlib.md5(tar.extractfile(i).read()).hexdigest()
                          for i in tar.getmembers() if i.isfile()}
            changes["members"] = tuple(
                (m, inside[f"{spec.archive_folder}/{m}"]) for m, _ in rf.members
                if f"{spec.archive_folder}/{m}" in inside
            )
        files.append(dataclasses.replace(rf, **changes))
    monkeypatch.setitem(
        ds.TORCHVISION_REGISTRY, name, dataclasses.replace(spec, files=tuple(files))
    )


def _rng_images(rng, n, h, w, c):
    return rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def test_registry_matches_torchvision():
    tvd = pytest.importorskip("torchvision.datasets")
    reg = ds.TORCHVISION_REGISTRY
    for name in ("MNIST", "FashionMNIST", "KMNIST"):
        cls = getattr(tvd, name)
        assert [(f.filename, f.md5) for f in reg[name].files] == list(cls.resources)
        assert list(reg[name].mirrors) == list(cls.mirrors)
        assert list(reg[name].class_names) == list(cls.classes)
    for name, cls in (("CIFAR10", tvd.CIFAR10), ("CIFAR100", tvd.CIFAR100)):
        (rf,) = reg[name].files
        assert (rf.filename, rf.md5) == (cls.filename, cls.tgz_md5)
        assert reg[name].mirrors[0] + rf.filename == cls.url
        assert reg[name].archive_folder == cls.base_folder
        expected = {n: m for n, m in cls.train_list + cls.test_list}
        expected[cls.meta["filename"]] = cls.meta["md5"]
        assert dict(rf.members) == expected
    for split, (url, filename, md5) in tvd.SVHN.split_list.items():
        (rf,) = [f for f in reg["SVHN"].files if split in f.splits]
        assert (reg["SVHN"].mirrors[0] + rf.filename, rf.filename, rf.md5) == (url, filename, md5)
    (rf,) = reg["STL10"].files
    assert (rf.filename, rf.md5) == (tvd.STL10.filename, tvd.STL10.tgz_md5)
    assert reg["STL10"].mirrors[0] + rf.filename == tvd.STL10.url
    assert dict(rf.members) == {n: m for n, m in tvd.STL10.train_list + tvd.STL10.test_list}


def test_unknown_name_and_split():
    with pytest.raises(DatasetError, match="known: MNIST"):
        load_torchvision_dataset("ImageNet", "unused")
    with pytest.raises(DatasetError, match="splits train, test"):
        load_torchvision_dataset("mnist", "unused", split="extra")


# --------------------------------------------------------------------------------------
# MNIST family: gzipped IDX
# --------------------------------------------------------------------------------------


def _write_idx(path: Path, arr: np.ndarray, code: int = 0x08) -> None:
    """A gzipped IDX file of ``arr`` as type ``code`` (0x08 uint8, 0x09 int8, 0x0D float32)."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0D: ">f4"}[code]
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(dtype).tobytes())


def _make_mnist(folder: Path, rng, n_train=40, n_test=7):
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
        data[prefix] = (images, labels)
    return data


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST", "KMNIST"])
def test_mnist_family_download_and_parse(http_server, tmp_path, monkeypatch, name):
    www, base, _ = http_server
    served = www / name.lower()
    data = _make_mnist(served, np.random.default_rng(1))
    _patch_registry(monkeypatch, name, served)
    root = tmp_path / "data"
    url = f"{base}/{name.lower()}/"
    for split, prefix in (("train", "train"), ("test", "t10k")):
        d = load_torchvision_dataset(name, root, split=split, base_url=url)
        images, labels = data[prefix]
        assert isinstance(d, Dataset)
        assert d.images.dtype == np.uint8 and d.images.shape == (len(images), 28, 28, 1)
        np.testing.assert_array_equal(d.images[..., 0], images)
        assert d.labels.dtype == np.int64
        np.testing.assert_array_equal(d.labels, labels)
        assert d.class_names == list(ds.TORCHVISION_REGISTRY[name].class_names)
        assert set(d.files) == {f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"}
        assert url in d.source
    # Only downloaded into <root>/<NAME>/; cached afterwards, so the server is not needed.
    assert sorted(p.name for p in (root / name).iterdir()) == sorted(
        p.name for p in served.iterdir()
    )
    d = load_torchvision_dataset(name.lower(), root, base_url="http://127.0.0.1:9/nothing")
    np.testing.assert_array_equal(d.labels, data["train"][1])


def test_mnist_class_subset_and_max_samples(http_server, tmp_path, monkeypatch):
    www, base, _ = http_server
    data = _make_mnist(www, np.random.default_rng(2), n_train=200)
    _patch_registry(monkeypatch, "MNIST", www)
    root = tmp_path / "data"
    images, labels = data["train"]

    d = load_torchvision_dataset("MNIST", root, classes=[3, 5], base_url=base)
    keep = np.isin(labels, [3, 5])
    np.testing.assert_array_equal(d.labels, labels[keep])  # original label values
    np.testing.assert_array_equal(d.images[..., 0], images[keep])
    assert len(d.class_names) == 10  # the full list

    d = load_torchvision_dataset("MNIST", root, max_samples=50, seed=0, base_url=base)
    assert len(d) == 50
    assert np.bincount(d.labels, minlength=10).tolist() == [5] * 10  # stratified
    idx = [np.flatnonzero((images == im[..., 0]).all(axis=(1, 2)))[0] for im in d.images]
    np.testing.assert_array_equal(d.labels, labels[idx])
    assert idx == sorted(idx)  # file order kept
    again = load_torchvision_dataset("MNIST", root, max_samples=50, seed=0, base_url=base)
    np.testing.assert_array_equal(again.images, d.images)
    other = load_torchvision_dataset("MNIST", root, max_samples=50, seed=1, base_url=base)
    assert not np.array_equal(other.images, d.images)

    d = load_torchvision_dataset("MNIST", root, classes=[0, 1], max_samples=10, base_url=base)
    assert sorted(d.labels.tolist()) == [0] * 5 + [1] * 5
    with pytest.raises(DatasetError, match="unknown"):
        load_torchvision_dataset("MNIST", root, classes=[10], base_url=base)


def test_idx_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 28, 28) + b"\x00" * 100)
    with pytest.raises(DatasetError, match="shape"):
        ds.read_idx(bad)
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DatasetError, match="not an IDX file"):
        ds.read_idx(tmp_path / "junk")


def test_download_failure_names_url_and_destination(tmp_path, refused_url):
    with pytest.raises(DownloadError) as info:
        load_torchvision_dataset("MNIST", tmp_path / "data", base_url=refused_url)
    message = str(info.value)
    url = f"{refused_url}/train-images-idx3-ubyte.gz"
    assert url in message
    assert str(tmp_path / "data" / "MNIST" / "train-images-idx3-ubyte.gz") in message
    (note,) = info.value.__notes__  # lists every file the split needs
    assert "train-labels-idx1-ubyte.gz (md5 d53e105ee54ea40749a09fcbcd1e9432)" in note


def test_checksum_mismatch_from_server(http_server, tmp_path):
    www, base, _ = http_server
    _make_mnist(www, np.random.default_rng(3))  # registry keeps the real MNIST md5s
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        load_torchvision_dataset("MNIST", tmp_path / "data", base_url=base)
    assert "f68b3c2dcbeaaa9fbdd348bbdeb94873" in str(info.value)
    assert list((tmp_path / "data" / "MNIST").iterdir()) == []


def test_mirrors_are_tried_in_turn(http_server, tmp_path, monkeypatch, refused_url):
    www, base, _ = http_server
    data = _make_mnist(www, np.random.default_rng(4))
    _patch_registry(monkeypatch, "MNIST", www)
    spec = ds.TORCHVISION_REGISTRY["MNIST"]
    monkeypatch.setitem(
        ds.TORCHVISION_REGISTRY,
        "MNIST",
        dataclasses.replace(spec, mirrors=(refused_url + "/", base + "/")),
    )
    d = load_torchvision_dataset("MNIST", tmp_path / "data", split="test")
    np.testing.assert_array_equal(d.labels, data["t10k"][1])


# --------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100: pickled numpy batches in a tar.gz
# --------------------------------------------------------------------------------------


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # R plane, G plane, B plane


class _Py2Pickler(pickle._Pickler):
    """Writes pickles the way Python 2 + numpy 1 wrote the CIFAR files: every str and bytes
    object as a Python 2 ``str`` (BINSTRING), numpy globals under ``numpy.core``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        name = name or obj.__qualname__
        module = pickle.whichmodule(obj, name).replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def _py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def test_py2_pickler_writes_python2_style():
    import pickletools

    listing = io.StringIO()
    pickletools.dis(_py2_pickle({"data": np.zeros((2, 3), np.uint8)}), out=listing)
    assert "GLOBAL     'numpy.core.multiarray _reconstruct'" in listing.getvalue()
    assert "UNICODE" not in listing.getvalue() and "_codecs" not in listing.getvalue()


def _add_pickle(tar: tarfile.TarFile, name: str, obj) -> None:
    raw = _py2_pickle(obj)
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    tar.addfile(info, io.BytesIO(raw))


def _make_cifar10(path: Path, rng):
    names = [f"class{i}" for i in range(10)]
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for b in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            images = _rng_images(rng, 6, 32, 32, 3)
            labels = rng.integers(0, 10, size=6).tolist()
            batches[b] = (images, labels)
            _add_pickle(
                tar,
                f"cifar-10-batches-py/{b}",
                {"batch_label": b, "labels": labels, "data": _cifar_rows(images)},
            )
        _add_pickle(
            tar,
            "cifar-10-batches-py/batches.meta",
            {"label_names": names, "num_vis": 3072},
        )
    return batches, names


def test_cifar10(http_server, tmp_path, monkeypatch):
    www, base, _ = http_server
    batches, names = _make_cifar10(www / "cifar-10-python.tar.gz", np.random.default_rng(5))
    _patch_registry(monkeypatch, "CIFAR10", www)
    root = tmp_path / "data"
    d = load_torchvision_dataset("CIFAR10", root, split="train", base_url=base)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    np.testing.assert_array_equal(d.images, np.concatenate([im for im, _ in train]))
    np.testing.assert_array_equal(d.labels, np.concatenate([lab for _, lab in train]))
    assert d.images.shape == (30, 32, 32, 3) and d.images.flags.c_contiguous
    assert d.class_names == names
    assert d.files == {"cifar-10-python.tar.gz": _md5(www / "cifar-10-python.tar.gz")}
    d = load_torchvision_dataset("CIFAR10", root, split="test", base_url=base)
    np.testing.assert_array_equal(d.images, batches["test_batch"][0])
    np.testing.assert_array_equal(d.labels, batches["test_batch"][1])
    assert (root / "CIFAR10" / "cifar-10-batches-py" / ".convdp-extracted").is_file()
    assert not [p for p in (root / "CIFAR10").iterdir() if p.name.endswith((".part", ".unpack"))]


def test_cifar10_unpacked_folder_without_archive(tmp_path, monkeypatch, refused_url):
    """An unpacked folder (e.g. copied from a torchvision root) is used when its members have
    the registry's MD5s, without the archive and without the network."""
    archive = tmp_path / "src" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    batches, _ = _make_cifar10(archive, np.random.default_rng(6))
    root = tmp_path / "data"
    with tarfile.open(archive) as tar:
        tar.extractall(root / "CIFAR10", filter="data")
    _patch_registry(
        monkeypatch, "CIFAR10", archive.parent, root / "CIFAR10" / "cifar-10-batches-py"
    )
    d = load_torchvision_dataset("CIFAR10", root, split="test", base_url=refused_url)
    np.testing.assert_array_equal(d.images, batches["test_batch"][0])
    assert set(d.files) == {"cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"}
    # A member that does not match → the archive is needed → download (refused here).
    (root / "CIFAR10" / "cifar-10-batches-py" / "test_batch").write_bytes(b"corrupt")
    with pytest.raises(DownloadError, match="cifar-10-python.tar.gz"):
        load_torchvision_dataset("CIFAR10", root, split="test", base_url=refused_url)


def test_cifar100(http_server, tmp_path, monkeypatch):
    www, base, _ = http_server
    rng = np.random.default_rng(7)
    fine = [f"fine{i}" for i in range(100)]
    written = {}
    with tarfile.open(www / "cifar-100-python.tar.gz", "w:gz") as tar:
        for split, n in (("train", 12), ("test", 5)):
            images = _rng_images(rng, n, 32, 32, 3)
            labels = rng.integers(0, 100, size=n).tolist()
            written[split] = (images, labels)
            _add_pickle(
                tar,
                f"cifar-100-python/{split}",
                {
                    "filenames": ["x.png"] * n,
                    "fine_labels": labels,
                    "coarse_labels": [lab // 5 for lab in labels],
                    "data": _cifar_rows(images),
                },
            )
        _add_pickle(
            tar,
            "cifar-100-python/meta",
            {
                "fine_label_names": fine,
                "coarse_label_names": [f"c{i}" for i in range(20)],
            },
        )
    _patch_registry(monkeypatch, "CIFAR100", www)
    for split in ("train", "test"):
        d = load_torchvision_dataset("cifar-100", tmp_path / "data", split=split, base_url=base)
        np.testing.assert_array_equal(d.images, written[split][0])
        np.testing.assert_array_equal(d.labels, written[split][1])
        assert d.class_names == fine


def test_cifar_pickle_with_foreign_globals_is_refused(tmp_path):
    import collections

    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": collections.OrderedDict()}, protocol=2))
    with pytest.raises(DatasetError, match="evil: .*collections.OrderedDict is not allowed"):
        cifar.read_pickle(path)


# --------------------------------------------------------------------------------------
# SVHN: MATLAB .mat
# --------------------------------------------------------------------------------------


def test_svhn(http_server, tmp_path, monkeypatch):
    import scipy.io

    www, base, _ = http_server
    rng = np.random.default_rng(8)
    images = _rng_images(rng, 9, 32, 32, 3)
    digits = np.array([0, 1, 2, 3, 4, 5, 6, 0, 9])
    y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]  # SVHN writes 0 as 10
    scipy.io.savemat(www / "test_32x32.mat", {"X": images.transpose(1, 2, 3, 0), "y": y})
    _patch_registry(monkeypatch, "SVHN", www)
    d = load_torchvision_dataset("SVHN", tmp_path / "data", split="test", base_url=base)
    np.testing.assert_array_equal(d.images, images)
    np.testing.assert_array_equal(d.labels, digits)
    assert d.class_names == [str(i) for i in range(10)]
    assert list(d.files) == ["test_32x32.mat"]
    assert not (tmp_path / "data" / "SVHN" / "train_32x32.mat").exists()  # only the split asked


# --------------------------------------------------------------------------------------
# STL-10: raw binaries in a tar.gz
# --------------------------------------------------------------------------------------


def _add_bytes(tar: tarfile.TarFile, name: str, raw: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    tar.addfile(info, io.BytesIO(raw))


def _stl_bytes(images: np.ndarray) -> bytes:
    # Channel by channel, each channel column-major: (N, H, W, C) → (N, C, W, H).
    return np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tobytes()


def test_stl10(http_server, tmp_path, monkeypatch):
    www, base, _ = http_server
    rng = np.random.default_rng(9)
    # Images that are not symmetric, so a wrong transpose would show.
    written = {s: _rng_images(rng, n, 96, 96, 3) for s, n in (("train", 5), ("test", 3))}
    written["unlabeled"] = _rng_images(rng, 8, 96, 96, 3)
    labels = {"train": np.array([1, 2, 3, 10, 1]), "test": np.array([4, 5, 6])}  # 1-based
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    with tarfile.open(www / "stl10_binary.tar.gz", "w:gz") as tar:
        for split, images in written.items():
            _add_bytes(tar, f"stl10_binary/{split}_X.bin", _stl_bytes(images))
        for split, lab in labels.items():
            _add_bytes(tar, f"stl10_binary/{split}_y.bin", lab.astype(np.uint8).tobytes())
        _add_bytes(tar, "stl10_binary/class_names.txt", ("\n".join(names) + "\n").encode())
    _patch_registry(monkeypatch, "STL10", www)
    root = tmp_path / "data"
    for split in ("train", "test"):
        d = load_torchvision_dataset("STL10", root, split=split, base_url=base)
        np.testing.assert_array_equal(d.images, written[split])
        np.testing.assert_array_equal(d.labels, labels[split] - 1)
        assert d.class_names == names
    d = load_torchvision_dataset("STL10", root, split="unlabeled", base_url=base)
    assert d.labels is None
    np.testing.assert_array_equal(d.images, written["unlabeled"])
    d = load_torchvision_dataset("STL10", root, split="unlabeled", max_samples=3, base_url=base)
    assert len(d) == 3 and d.labels is None
    assert all(any((im == w).all() for w in written["unlabeled"]) for im in d.images)
    with pytest.raises(DatasetError, match="no labels"):
        load_torchvision_dataset("STL10", root, split="unlabeled", classes=[0], base_url=base)


def test_member_changed_after_unpacking_is_unpacked_again(
    http_server, tmp_path, monkeypatch, refused_url, caplog
):
    """A member of an unpacked archive that no longer matches its MD5 (a test batch copied
    over a training batch) is not read as the split: the verified archive is unpacked again,
    with a warning naming the file; without the archive, offline, the run stops."""
    www, base, _ = http_server
    batches, _ = _make_cifar10(www / "cifar-10-python.tar.gz", np.random.default_rng(15))
    _patch_registry(monkeypatch, "CIFAR10", www)
    root = tmp_path / "data"
    first = load_torchvision_dataset("CIFAR10", root, split="train", base_url=base)
    unpacked = root / "CIFAR10" / "cifar-10-batches-py"
    (unpacked / "data_batch_2").write_bytes((unpacked / "test_batch").read_bytes())
    with caplog.at_level(logging.WARNING, logger="convdp.datasets.registry"):
        again = load_torchvision_dataset("CIFAR10", root, split="train", base_url=base)
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.labels, first.labels)
    assert "data_batch_2 no longer match" in caplog.text
    (unpacked / "data_batch_2").write_bytes((unpacked / "test_batch").read_bytes())
    (root / "CIFAR10" / "cifar-10-python.tar.gz").unlink()
    with pytest.raises(DownloadError, match="cifar-10-python.tar.gz"):
        load_torchvision_dataset("CIFAR10", root, split="train", base_url=refused_url)


@pytest.mark.parametrize(
    "labels, code, message",
    [([0, 1, 200], 0x08, r"labels 200 outside 0-9"),
     ([0, -1, 2], 0x09, r"labels -1 outside 0-9"),
     ([0, 1.0, 2.7], 0x0D, r"labels must be integers, got float32")],
)
def test_mnist_labels_outside_the_classes_are_refused(tmp_path, labels, code, message):
    folder = tmp_path / "MNIST"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.array(labels), code)
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.gz: " + message):
        mnist.load(ds.TORCHVISION_REGISTRY["MNIST"], folder, "train")


def test_damaged_files_are_named(tmp_path):
    good = tmp_path / "good.gz"
    _write_idx(good, np.zeros((3, 28, 28), np.uint8))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good.read_bytes()[:-9])
    with pytest.raises(DatasetError, match="cut.gz: damaged gzip data"):
        ds.read_idx(cut)
    floats = tmp_path / "floats.gz"
    _write_idx(floats, np.zeros((3, 28, 28)), 0x0D)
    (tmp_path / "labels.gz").write_bytes(good.read_bytes())
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(floats.read_bytes())
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(3))
    with pytest.raises(DatasetError, match="images-idx3-ubyte.gz: images must be 8-bit .*float32"):
        mnist.load(ds.TORCHVISION_REGISTRY["MNIST"], folder, "train")
    half = tmp_path / "half"
    half.write_bytes(_py2_pickle({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]})[:40])
    with pytest.raises(DatasetError, match="half: not a readable CIFAR pickle"):
        cifar.read_pickle(half)


def _cifar_folder(tmp_path, data, labels, names=None) -> Path:
    base = tmp_path / "CIFAR10" / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for b in [f"data_batch_{i}" for i in range(1, 6)]:
        (base / b).write_bytes(_py2_pickle({"data": data, "labels": labels}))
    meta = {"label_names": names or [f"c{i}" for i in range(10)]}
    (base / "batches.meta").write_bytes(_py2_pickle(meta))
    return base.parent


@pytest.mark.parametrize(
    "data, labels, message",
    [(np.zeros((2, 3072), np.uint8), [0, 10], r"data_batch_1: labels 10 outside 0-9"),
     (np.zeros((2, 3072), np.uint8), [-1, 3], r"data_batch_1: labels -1 outside 0-9"),
     (np.full((2, 3072), 300, np.int64), [0, 1], r"data_batch_1: images must be 8-bit .*int64"),
     (np.zeros((2, 3072)), [0, 1], r"data_batch_1: images must be 8-bit .*float64"),
     (np.zeros((2, 3072), np.uint8), [0.0, 2.9], r"data_batch_1: labels must be integers")],
)
def test_cifar_values_a_cast_would_change_are_refused(tmp_path, data, labels, message):
    folder = _cifar_folder(tmp_path, data, labels)
    with pytest.raises(DatasetError, match=message):
        cifar.load(ds.TORCHVISION_REGISTRY["CIFAR10"], folder, "train")


def test_svhn_labels_and_sizes_are_checked(tmp_path):
    import scipy.io

    def load(x, y):
        scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array(y)[:, None]})
        return svhn.load(ds.TORCHVISION_REGISTRY["SVHN"], tmp_path, "test")

    x = np.zeros((32, 32, 3, 3), np.uint8)
    assert load(x, np.array([10, 1, 9], np.uint8))[1].tolist() == [0, 1, 9]
    for y in ([0, 1, 2], [11, 1, 2], [255, 1, 2]):
        with pytest.raises(DatasetError, match=r"test_32x32.mat: labels \d+ outside 1-10"):
            load(x, np.array(y, np.uint8))
    with pytest.raises(DatasetError, match=r"expected X \(32, 32, 3, N\).*got X \(64, 64, 3, 3\)"):
        load(np.zeros((64, 64, 3, 3), np.uint8), np.array([1, 2, 3], np.uint8))
    with pytest.raises(DatasetError, match="images must be 8-bit .*float64"):
        load(np.zeros((32, 32, 3, 3)), np.array([1, 2, 3], np.uint8))
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DatasetError, match="test_32x32.mat: not a readable MATLAB file"):
        svhn.load(ds.TORCHVISION_REGISTRY["SVHN"], tmp_path, "test")


def test_stl10_labels_and_class_names_are_checked(tmp_path):
    base = tmp_path / "stl10_binary"
    base.mkdir()
    spec = ds.TORCHVISION_REGISTRY["STL10"]
    (base / "train_X.bin").write_bytes(_stl_bytes(np.zeros((3, 96, 96, 3), np.uint8)))
    for raw, shown in ((b"\x00\x01\x02", "0"), (b"\x01\x0b\x02", "11")):
        (base / "train_y.bin").write_bytes(raw)
        with pytest.raises(DatasetError, match=rf"train_y.bin: labels {shown} outside 1-10"):
            stl10.load(spec, tmp_path, "train")
    (base / "train_y.bin").write_bytes(b"\x01\x0a\x02")
    assert stl10.load(spec, tmp_path, "train")[1].tolist() == [0, 9, 1]
    names = list(spec.class_names)
    for text in ("\n".join(names[:3]) + "\n", "\n".join(names[:4] + [""] + names[4:]) + "\n"):
        (base / "class_names.txt").write_text(text)
        with pytest.raises(DatasetError, match="class_names.txt: expected 10 class names"):
            stl10.load(spec, tmp_path, "train")
    (base / "class_names.txt").write_text("\n".join(names) + "\n")
    assert stl10.load(spec, tmp_path, "train")[2] == names
    (base / "test_X.bin").write_bytes(b"")
    with pytest.raises(DatasetError, match="test_X.bin: empty"):
        stl10.load(spec, tmp_path, "test")


def test_fetch_then_load_offline(http_server, tmp_path, monkeypatch, refused_url):
    www, base, _ = http_server
    data = _make_mnist(www, np.random.default_rng(10))
    _patch_registry(monkeypatch, "MNIST", www)
    root = tmp_path / "data"
    folder = fetch_torchvision_dataset("MNIST", root, base_url=base)
    assert folder == root / "MNIST"
    assert len(list(folder.iterdir())) == 4  # both splits
    d = load_torchvision_dataset("MNIST", root, split="test", base_url=refused_url)
    np.testing.assert_array_equal(d.labels, data["t10k"][1])


# --------------------------------------------------------------------------------------
# select_indices
# --------------------------------------------------------------------------------------


def test_select_indices():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20, dtype=np.int64)
    idx = select_indices(labels, 100, max_samples=10, seed=0)
    assert np.bincount(labels[idx]).tolist() == [5, 3, 2]
    assert (np.diff(idx) > 0).all()
    idx = select_indices(labels, 100, max_samples=7, seed=0)  # remainders: 3.5, 2.1, 1.4
    # [4, 2, 1] by the largest remainders, then two images a class at least
    assert np.bincount(labels[idx], minlength=3).tolist() == [3, 2, 2]
    np.testing.assert_array_equal(
        select_indices(labels, 100, max_samples=7, seed=3),
        select_indices(labels, 100, max_samples=7, seed=3),
    )
    assert len(select_indices(None, 100, max_samples=9, seed=0)) == 9
    np.testing.assert_array_equal(select_indices(labels, 100, max_samples=1000), np.arange(100))
    idx = select_indices(labels, 100, classes=[2, 1], max_samples=5)
    assert np.bincount(labels[idx], minlength=3).tolist() == [0, 3, 2]
    with pytest.raises(DatasetError):
        select_indices(None, 10, classes=[0])
    with pytest.raises(DatasetError):
        select_indices(labels, 100, max_samples=0)


def test_select_indices_keeps_a_rare_class(caplog):
    """A class whose share of the cap rounds to 0 (3 of 903 images, cap 50: 0.17) was left
    out without a word, and a net trained on the pick had a class fewer; it now keeps two
    images (training, its stratified split and the linear probe need two a class) while the
    cap allows two per class, and a smaller cap says which classes keep fewer."""
    labels = np.repeat(np.arange(10), [100] * 9 + [3]).astype(np.int64)
    idx = select_indices(labels, len(labels), max_samples=50, seed=0)
    counts = np.bincount(labels[idx], minlength=10)
    assert len(idx) == 50 and counts[9] == 2 and counts.min() >= 2
    idx = select_indices(labels, len(labels), classes=[0, 9], max_samples=10, seed=0)
    assert np.bincount(labels[idx], minlength=10)[[0, 9]].tolist() == [8, 2]
    # a class of one image keeps it
    one = np.repeat(np.arange(3), [60, 39, 1]).astype(np.int64)
    assert np.bincount(one[select_indices(one, 100, max_samples=10)]).tolist() == [5, 4, 1]
    # shares of two or more are picked as before
    even = np.repeat(np.arange(3), [50, 30, 20]).astype(np.int64)
    assert np.bincount(even[select_indices(even, 100, max_samples=10)]).tolist() == [5, 3, 2]
    with caplog.at_level(logging.WARNING):
        idx = select_indices(labels, len(labels), max_samples=5, seed=0)
    assert len(idx) == 5 and "cannot give each of the 10 classes two images" in caplog.text


# --------------------------------------------------------------------------------------
# Image folders and single images
# --------------------------------------------------------------------------------------


def _save(path: Path, array: np.ndarray, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)


@pytest.fixture
def class_folder(tmp_path):
    rng = np.random.default_rng(11)
    root = tmp_path / "folder"
    written = {}
    for cls, n in (("cat", 3), ("dog", 4), ("ant", 2)):
        for i in range(n):
            arr = _rng_images(rng, 1, 16, 16, 3)[0]
            _save(root / cls / f"img{i}.png", arr)
            written[f"{cls}/img{i}.png"] = arr
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    _save(root / ".hidden" / "x.png", written["cat/img0.png"])
    return root, written


def test_image_folder_with_classes(class_folder):
    root, written = class_folder
    d = load_image_folder(root)
    assert d.class_names == ["ant", "cat", "dog"]
    assert d.labels.tolist() == [0] * 2 + [1] * 3 + [2] * 4
    assert d.images.shape == (9, 16, 16, 3) and d.images.dtype == np.uint8
    order = sorted(written)
    np.testing.assert_array_equal(d.images, np.stack([written[k] for k in order]))
    assert list(d.files) == order
    assert (
        d.files["cat/img1.png"] == hashlib.sha256((root / "cat/img1.png").read_bytes()).hexdigest()
    )
    assert str(root.resolve()) in d.source


def test_image_folder_class_subset_and_max_samples(class_folder):
    root, _ = class_folder
    d = load_image_folder(root, classes=["dog", "ant"])
    assert d.labels.tolist() == [0, 0, 2, 2, 2, 2]
    assert d.class_names == ["ant", "cat", "dog"]
    assert load_image_folder(root, classes=[1]).labels.tolist() == [1, 1, 1]
    d = load_image_folder(root, max_samples=4, seed=0)
    assert len(d) == 4 and len(d.files) == 4
    assert np.bincount(d.labels, minlength=3).tolist() == [1, 1, 2]
    with pytest.raises(DatasetError, match="no class folder 'cow'"):
        load_image_folder(root, classes=["cow"])
    with pytest.raises(DatasetError, match="out of range"):
        load_image_folder(root, classes=[3])


def test_flat_folder_and_resize_crop(tmp_path):
    root = tmp_path / "flat"
    # 60×20: red | green | blue thirds; short side 20 → the centre crop is all green.
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20, 0] = wide[:, 20:40, 1] = wide[:, 40:, 2] = 255
    _save(root / "a_wide.png", wide)
    _save(root / "b_grey.JPG", np.full((40, 40), 128, np.uint8), quality=95)  # upper-case ext
    _save(root / "c_rgba.webp", np.full((30, 50, 4), 200, np.uint8), lossless=True)
    d = load_image_folder(root, size=20)
    assert d.labels is None and d.class_names == []
    assert d.images.shape == (3, 20, 20, 3)
    np.testing.assert_array_equal(d.images[0], np.broadcast_to([0, 255, 0], (20, 20, 3)))
    assert np.abs(d.images[1].astype(int) - 128).max() <= 2  # greyscale → RGB
    assert list(d.files) == ["a_wide.png", "b_grey.JPG", "c_rgba.webp"]
    with pytest.raises(DatasetError, match="b_grey.JPG") as info:
        load_image_folder(root)  # different sizes without size=
    assert "size=" in str(info.value)
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_image_folder(root, size=20, classes=[0])


def _truncated_jpeg_folder(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "jpgs"
    rng = np.random.default_rng(12)
    for cls in ("a", "b"):
        for i in range(2):
            _save(root / cls / f"{i}.jpg", _rng_images(rng, 1, 32, 32, 3)[0])
    bad = root / "b" / "0.jpg"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])  # a JPEG cut in half
    return root, bad


def test_truncated_jpeg_stop_and_skip(tmp_path, caplog, monkeypatch):
    root, bad = _truncated_jpeg_folder(tmp_path)
    # Even if the caller allowed truncated images globally, the loader refuses them ...
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageReadError) as info:
        load_image_folder(root)
    assert str(bad) in str(info.value) and info.value.path == bad
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # ... and restores the setting
    with caplog.at_level(logging.WARNING, logger="convdp.datasets"):
        d = load_image_folder(root, on_error="skip")
    assert str(bad) in caplog.text
    assert len(d) == 3 and d.labels.tolist() == [0, 0, 1]
    assert "b/0.jpg" not in d.files and "b/1.jpg" in d.files
    with pytest.raises(DatasetError, match="on_error"):
        load_image_folder(root, on_error="ignore")


def test_not_an_image_with_an_image_extension(tmp_path):
    root = tmp_path / "flat"
    _save(root / "ok.png", np.zeros((8, 8, 3), np.uint8))
    (root / "fake.png").write_bytes(b"this is text")
    with pytest.raises(ImageReadError, match="fake.png"):
        load_image_folder(root)
    assert len(load_image_folder(root, on_error="skip")) == 1


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no images in"):
        load_image_folder(empty)
    classes = tmp_path / "classes"
    _save(classes / "a" / "1.png", np.zeros((8, 8, 3), np.uint8))
    (classes / "b").mkdir()
    with pytest.raises(DatasetError, match="class folder .*b has no images"):
        load_image_folder(classes)
    mixed = tmp_path / "mixed"
    _save(mixed / "a" / "1.png", np.zeros((8, 8, 3), np.uint8))
    _save(mixed / "2.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match="both class sub-folders and images"):
        load_image_folder(mixed)
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"nope")
    with pytest.raises(DatasetError, match="none of the 1 images"):
        load_image_folder(only_bad, on_error="skip")


def test_load_images(tmp_path):
    big = np.random.default_rng(13).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    _save(tmp_path / "big.tif", big)
    _save(tmp_path / "big2.png", big[:, ::-1].copy())
    d = load_images([tmp_path / "big.tif", str(tmp_path / "big2.png")])
    assert d.labels is None and d.class_names == []
    np.testing.assert_array_equal(d.images, np.stack([big, big[:, ::-1]]))
    assert set(d.files) == {str(tmp_path / "big.tif"), str(tmp_path / "big2.png")}
    d = load_images(tmp_path / "big.tif", size=64)
    assert d.images.shape == (1, 64, 64, 3)
    (tmp_path / "cut.png").write_bytes((tmp_path / "big2.png").read_bytes()[:1000])
    with pytest.raises(ImageReadError, match="cut.png"):
        load_images([tmp_path / "big.tif", tmp_path / "cut.png"])
    with pytest.raises(FileNotFoundError):
        load_images([tmp_path / "absent.png"])


def test_images_kind_max_samples_reads_only_the_images_kept(tmp_path):
    """kind images with max_samples: the images left out neither set the depth the kept ones
    are scaled by nor stay in the data set's files (as for a folder, picked before reading)."""
    paths = [tmp_path / "bright.png", tmp_path / "dim.png", tmp_path / "grey.png"]
    _save(paths[0], np.full((4, 4), 65535, np.uint16))  # full 16-bit range
    _save(paths[1], np.full((4, 4), 1000, np.uint16))  # 10-bit data
    _save(paths[2], np.full((4, 4), 77, np.uint8))
    spec = {"kind": "images", "paths": [str(p) for p in paths], "max_samples": 1}
    for seed in range(6):
        d = ds.load_dataset(spec, seed=seed)
        assert len(d) == 1 and len(d.files) == 1
        (name,) = d.files
        alone = load_images([name])
        np.testing.assert_array_equal(d.images, alone.images)
        assert d.depth == alone.depth


def test_load_histology():
    d = load_histology()
    assert d.images.shape == (1, 224, 224, 3) and d.images.dtype == np.uint8
    assert d.labels is None and d.class_names == []
    assert d.source == "skimage.data.immunohistochemistry"
    assert len(d.files["ihc.png"]) == 64
    assert load_histology(size=None).images.shape == (1, 512, 512, 3)


def test_dataset_validates_its_fields():
    with pytest.raises(ValueError, match="uint8"):
        Dataset(np.zeros((2, 4, 4, 1), np.float32), None, [], "test")
    with pytest.raises(ValueError, match="int64"):
        Dataset(np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2, np.int32), [], "test")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        Dataset(np.zeros((4, 4), np.uint8), None, [], "test")


def test_parsers_agree_with_torchvision(tmp_path, monkeypatch):
    """The same tiny files, read by torchvision's own dataset classes (checksums disabled):
    guards against a layout mistake made the same way in the writer and in the parser."""
    tvd = pytest.importorskip("torchvision.datasets")
    rng = np.random.default_rng(14)
    tv_root, our = tmp_path / "tv", tmp_path / "ours"

    # MNIST: torchvision reads the unpacked IDX files from <root>/MNIST/raw/.
    data = _make_mnist(our / "MNIST", rng)
    raw = tv_root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (our / "MNIST").iterdir():
        (raw / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    _patch_registry(monkeypatch, "MNIST", our / "MNIST")
    tv = tvd.MNIST(tv_root, train=True)
    d = load_torchvision_dataset("MNIST", our, base_url="http://127.0.0.1:9")
    np.testing.assert_array_equal(d.images[..., 0], tv.data.numpy())
    np.testing.assert_array_equal(d.labels, tv.targets.numpy())
    np.testing.assert_array_equal(d.labels, data["train"][1])

    # CIFAR-10
    www = tmp_path / "www"
    www.mkdir()
    _make_cifar10(www / "cifar-10-python.tar.gz", rng)
    with tarfile.open(www / "cifar-10-python.tar.gz") as tar:
        tar.extractall(tv_root, filter="data")
    for attr in ("train_list", "test_list"):
        monkeypatch.setattr(tvd.CIFAR10, attr, [[n, None] for n, _ in getattr(tvd.CIFAR10, attr)])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": None})
    _patch_registry(monkeypatch, "CIFAR10", www)
    tv = tvd.CIFAR10(tv_root, train=True)
    d = load_torchvision_dataset("CIFAR10", our, base_url=www.as_uri())
    np.testing.assert_array_equal(d.images, tv.data)
    np.testing.assert_array_equal(d.labels, tv.targets)
    assert d.class_names == tv.classes

    # SVHN
    import scipy.io

    x = _rng_images(rng, 4, 32, 32, 3).transpose(1, 2, 3, 0)
    y = np.array([[10], [1], [2], [10]], np.uint8)
    scipy.io.savemat(www / "test_32x32.mat", {"X": x, "y": y})
    scipy.io.savemat(tv_root / "test_32x32.mat", {"X": x, "y": y})
    monkeypatch.setitem(tvd.SVHN.split_list, "test", [*tvd.SVHN.split_list["test"][:2], None])
    _patch_registry(monkeypatch, "SVHN", www)
    tv = tvd.SVHN(tv_root, split="test")
    d = load_torchvision_dataset("SVHN", our, split="test", base_url=www.as_uri())
    np.testing.assert_array_equal(d.images, tv.data.transpose(0, 2, 3, 1))  # NCHW → NHWC
    np.testing.assert_array_equal(d.labels, tv.labels)

    # STL-10
    images = _rng_images(rng, 3, 96, 96, 3)
    with tarfile.open(www / "stl10_binary.tar.gz", "w:gz") as tar:
        for split in ("train", "test", "unlabeled"):
            _add_bytes(tar, f"stl10_binary/{split}_X.bin", _stl_bytes(images))
        for split in ("train", "test"):
            _add_bytes(tar, f"stl10_binary/{split}_y.bin", bytes([3, 1, 10]))
    with tarfile.open(www / "stl10_binary.tar.gz") as tar:
        tar.extractall(tv_root, filter="data")
    for attr in ("train_list", "test_list"):
        monkeypatch.setattr(tvd.STL10, attr, [[n, None] for n, _ in getattr(tvd.STL10, attr)])
    _patch_registry(monkeypatch, "STL10", www)
    tv = tvd.STL10(tv_root, split="train")
    d = load_torchvision_dataset("STL10", our, base_url=www.as_uri())
    np.testing.assert_array_equal(d.images, tv.data.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(d.labels, tv.labels)
    np.testing.assert_array_equal(d.images, images)
