"""Real data sets: torchvision's classics (verified downloads, parsed with numpy), image
folders, a few large images on their own, and scikit-image's histology stand-in.

Every loader returns a :class:`Dataset`: ``images`` (N, H, W, C) uint8, ``labels`` (N,)
int64 or ``None``, ``class_names`` (indexed by label value), ``source`` (provenance) and
``files`` (source file name → md5 or sha256 hex digest of the files used).

Torchvision data sets are *not* downloaded through torchvision's dataset classes: the
registry below holds each data set's mirrors, file names and MD5s (copied from torchvision
0.29's ``torchvision/datasets/{mnist,cifar,svhn,stl10}.py``), files go through
:func:`convdp.download.download` into ``<root>/<NAME>/``, and the formats are parsed here
with numpy. ``base_url`` points every file of a data set at another server (a mirror, a
local ``file://`` folder, or a test server).
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import hashlib
import importlib
import io
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from convdp.download import DownloadError, download, file_hash, verify_file

__all__ = [
    "IMAGE_EXTENSIONS",
    "TORCHVISION_DATASETS",
    "TORCHVISION_REGISTRY",
    "Dataset",
    "DatasetError",
    "ImageReadError",
    "RemoteFile",
    "TorchvisionSpec",
    "fetch_torchvision_dataset",
    "load_histology",
    "load_image_folder",
    "load_images",
    "load_torchvision_dataset",
    "read_idx",
    "select_indices",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------------------
# The common return type
# --------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """Images with their labels and provenance.

    Attributes
    ----------
    images : ndarray (N, H, W, C) uint8
    labels : ndarray (N,) int64, or None when the images are unlabelled
    class_names : names indexed by label value (the full list, also for a class subset)
    source : human-readable provenance (URL, folder, package)
    files : source file name → md5 or sha256 hex digest of each source file used
    """

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str]
    source: str
    files: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.images, np.ndarray) or self.images.ndim != 4:
            shape = getattr(self.images, "shape", None)
            raise ValueError(f"images must be an (N, H, W, C) array, got shape {shape}")
        if self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {self.images.dtype} ({self.source})")
        if self.labels is not None:
            if not isinstance(self.labels, np.ndarray):
                raise ValueError(f"labels must be a numpy array or None ({self.source})")
            if self.labels.dtype != np.int64 or self.labels.shape != (len(self.images),):
                raise ValueError(
                    f"labels must be ({len(self.images)},) int64, got {self.labels.shape} "
                    f"{self.labels.dtype} ({self.source})"
                )

    def __len__(self) -> int:
        return len(self.images)


class DatasetError(ValueError):
    """A data set cannot be loaded as asked (bad layout, bad argument, bad file format)."""


class ImageReadError(DatasetError):
    """An image file cannot be read (unreadable, truncated, not an image)."""

    def __init__(self, path: str | os.PathLike, reason: object):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = Path(path)


# --------------------------------------------------------------------------------------
# Subset selection shared by all loaders
# --------------------------------------------------------------------------------------


def select_indices(
    labels: np.ndarray | None,
    n: int,
    classes: Iterable[int] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Indices (sorted) of the images to keep out of ``n``.

    ``classes`` keeps the images whose label is in it (needs labels). ``max_samples`` caps
    the count: a seeded, class-stratified pick when there are labels (each class keeps its
    share, largest remainders get the leftover slots), a seeded uniform pick otherwise.
    """
    idx = np.arange(n)
    if classes is not None:
        if labels is None:
            raise DatasetError("a class subset was asked for, but the images have no labels")
        wanted = np.asarray(sorted({int(c) for c in classes}), dtype=np.int64)
        idx = idx[np.isin(labels, wanted)]
        if len(idx) == 0:
            raise DatasetError(f"no images of classes {wanted.tolist()}")
    if max_samples is None or max_samples >= len(idx):
        return idx
    if max_samples < 1:
        raise DatasetError(f"max_samples must be a positive integer, got {max_samples}")
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(idx, size=max_samples, replace=False))
    sub = labels[idx]
    values, inverse = np.unique(sub, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(values)).astype(np.int64)
    # Proportional quotas in exact integer arithmetic (largest remainder method).
    quota = counts * max_samples // len(idx)
    remainder = counts * max_samples % len(idx)
    leftover = max_samples - int(quota.sum())
    quota[np.argsort(-remainder, kind="stable")[:leftover]] += 1
    picked = [
        rng.choice(idx[inverse == k], size=int(q), replace=False)
        for k, q in enumerate(quota)
        if q > 0
    ]
    return np.sort(np.concatenate(picked))


# --------------------------------------------------------------------------------------
# Torchvision data sets: registry
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set on its server.

    ``members`` (for a tar archive) maps the archive member files to their MD5, relative to
    the spec's ``archive_folder``, and ``member_splits`` says which split needs which member.
    """

    filename: str
    md5: str
    splits: tuple[str, ...]
    members: tuple[tuple[str, str], ...] = ()
    member_splits: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class TorchvisionSpec:
    name: str
    fmt: str  # "idx", "cifar10", "cifar100", "svhn", "stl10"
    mirrors: tuple[str, ...]  # base URLs; a file's URL is mirror + filename
    files: tuple[RemoteFile, ...]
    splits: tuple[str, ...]
    class_names: tuple[str, ...] = ()  # when the archive carries no class name file
    archive_folder: str | None = None  # the folder a tar archive unpacks to
    homepage: str = ""


_MNIST_CLASSES = (
    "0 - zero",
    "1 - one",
    "2 - two",
    "3 - three",
    "4 - four",
    "5 - five",
    "6 - six",
    "7 - seven",
    "8 - eight",
    "9 - nine",
)


def _idx_files(md5s: Sequence[str]) -> tuple[RemoteFile, ...]:
    names = (
        ("train-images-idx3-ubyte.gz", "train"),
        ("train-labels-idx1-ubyte.gz", "train"),
        ("t10k-images-idx3-ubyte.gz", "test"),
        ("t10k-labels-idx1-ubyte.gz", "test"),
    )
    return tuple(RemoteFile(n, m, (s,)) for (n, s), m in zip(names, md5s, strict=True))


# Mirrors, file names and MD5s copied from torchvision 0.29.1 (torchvision/datasets/*.py);
# tests/test_datasets.py checks them against the installed torchvision.
TORCHVISION_REGISTRY: dict[str, TorchvisionSpec] = {
    "MNIST": TorchvisionSpec(
        name="MNIST",
        fmt="idx",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        files=_idx_files(
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            )
        ),
        splits=("train", "test"),
        class_names=_MNIST_CLASSES,
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "FashionMNIST": TorchvisionSpec(
        name="FashionMNIST",
        fmt="idx",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        files=_idx_files(
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            )
        ),
        splits=("train", "test"),
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "KMNIST": TorchvisionSpec(
        name="KMNIST",
        fmt="idx",
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        files=_idx_files(
            (
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            )
        ),
        splits=("train", "test"),
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        homepage="https://github.com/rois-codh/kmnist",
    ),
    "CIFAR10": TorchvisionSpec(
        name="CIFAR10",
        fmt="cifar10",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(
            RemoteFile(
                "cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
                ("train", "test"),
                members=(
                    ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                    ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                    ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
                    ("test_batch", "40351d587109b95175f43aff81a1287e"),
                    ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
                ),
                member_splits=(
                    (
                        "train",
                        (
                            "data_batch_1",
                            "data_batch_2",
                            "data_batch_3",
                            "data_batch_4",
                            "data_batch_5",
                            "batches.meta",
                        ),
                    ),
                    ("test", ("test_batch", "batches.meta")),
                ),
            ),
        ),
        splits=("train", "test"),
        archive_folder="cifar-10-batches-py",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "CIFAR100": TorchvisionSpec(
        name="CIFAR100",
        fmt="cifar100",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(
            RemoteFile(
                "cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
                ("train", "test"),
                members=(
                    ("train", "16019d7e3df5f24257cddd939b257f8d"),
                    ("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
                    ("meta", "7973b15100ade9c7d40fb424638fde48"),
                ),
                member_splits=(("train", ("train", "meta")), ("test", ("test", "meta"))),
            ),
        ),
        splits=("train", "test"),
        archive_folder="cifar-100-python",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "SVHN": TorchvisionSpec(
        name="SVHN",
        fmt="svhn",
        mirrors=("http://ufldl.stanford.edu/housenumbers/",),
        files=(
            RemoteFile("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373", ("train",)),
            RemoteFile("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3", ("test",)),
            RemoteFile("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7", ("extra",)),
        ),
        splits=("train", "test", "extra"),
        class_names=tuple(str(d) for d in range(10)),
        homepage="http://ufldl.stanford.edu/housenumbers/",
    ),
    "STL10": TorchvisionSpec(
        name="STL10",
        fmt="stl10",
        mirrors=("http://ai.stanford.edu/~acoates/stl10/",),
        files=(
            RemoteFile(
                "stl10_binary.tar.gz",
                "91f7769df0f17e558f3565bffb0c7dfb",
                ("train", "test", "unlabeled"),
                members=(
                    ("train_X.bin", "918c2871b30a85fa023e0c44e0bee87f"),
                    ("train_y.bin", "5a34089d4802c674881badbb80307741"),
                    ("unlabeled_X.bin", "5242ba1fed5e4be9e1e742405eb56ca4"),
                    ("test_X.bin", "7f263ba9f9e0b06b93213547f721ac82"),
                    ("test_y.bin", "36f9794fa4beb8a2c72628de14fa638e"),
                ),
                member_splits=(
                    ("train", ("train_X.bin", "train_y.bin")),
                    ("test", ("test_X.bin", "test_y.bin")),
                    ("unlabeled", ("unlabeled_X.bin",)),
                ),
            ),
        ),
        splits=("train", "test", "unlabeled"),
        # The archive's class_names.txt is used when present; this is its content.
        class_names=(
            "airplane",
            "bird",
            "car",
            "cat",
            "deer",
            "dog",
            "horse",
            "monkey",
            "ship",
            "truck",
        ),
        archive_folder="stl10_binary",
        homepage="https://cs.stanford.edu/~acoates/stl10/",
    ),
}

TORCHVISION_DATASETS = tuple(TORCHVISION_REGISTRY)


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _get_spec(name: str) -> TorchvisionSpec:
    by_key = {_normalise(k): k for k in TORCHVISION_REGISTRY}
    key = by_key.get(_normalise(name))
    if key is None:
        raise DatasetError(
            f"unknown torchvision data set {name!r}; known: {', '.join(TORCHVISION_REGISTRY)}"
        )
    return TORCHVISION_REGISTRY[key]


def _check_split(spec: TorchvisionSpec, split: str) -> None:
    if split not in spec.splits:
        raise DatasetError(
            f"{spec.name} has splits {', '.join(spec.splits)}; unknown split {split!r}"
        )


# --------------------------------------------------------------------------------------
# Torchvision data sets: fetching (download, verify, unpack)
# --------------------------------------------------------------------------------------


def _urls(spec: TorchvisionSpec, filename: str, base_url: str | None) -> list[str]:
    bases = [base_url] if base_url else list(spec.mirrors)
    return [b.rstrip("/") + "/" + filename for b in bases]


def _download_any(urls: Sequence[str], dest: Path, md5: str) -> None:
    """Download from the first URL that works (trying the others in turn)."""
    errors: list[DownloadError] = []
    for url in urls:
        try:
            download(url, dest, md5=md5)
            return
        except DownloadError as e:
            if len(urls) == 1:
                raise
            log.warning("%s", e.reason)
            errors.append(e)
    details = "\n".join(f"  {e.reason}" for e in errors)
    raise DownloadError(
        f"could not download {dest.name} from any mirror:\n{details}\n"
        f"To work offline, download it by other means and put it at {dest} "
        f"(md5 {md5}).",
        url=urls[-1],
        dest=dest,
        reason=f"could not download {dest.name} from any of {', '.join(urls)}",
    )


_MARKER = ".convdp-extracted"


def _member_names(rf: RemoteFile, split: str | None) -> list[str]:
    if split is None:
        return [m for m, _ in rf.members]
    return list(dict(rf.member_splits)[split])


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
        tar.extractall(dest, filter="data")
        return
    for member in tar.getmembers():  # pragma: no cover - older Pythons only
        p = PurePosixPath(member.name)
        if p.is_absolute() or ".." in p.parts or not (member.isfile() or member.isdir()):
            raise DatasetError(f"refusing to extract suspicious archive member {member.name!r}")
    tar.extractall(dest)  # noqa: S202 - members checked above


def _ensure_extracted(archive: Path, md5: str, folder: str) -> Path:
    """Unpack ``archive`` (verified, md5 ``md5``) so that ``archive.parent / folder`` exists.

    Unpacks into a temporary folder and renames it into place with a marker file holding the
    archive's md5, so an interrupted unpack is never taken for a finished one, and a second
    process doing the same concurrently is harmless.
    """
    final = archive.parent / folder
    marker = final / _MARKER
    if marker.is_file() and marker.read_text().strip() == md5:
        return final
    log.info("unpacking %s", archive)
    tmpdir = Path(tempfile.mkdtemp(dir=archive.parent, prefix=f".{folder}.", suffix=".unpack"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            _safe_extract(tar, tmpdir)
        src = tmpdir / folder
        if not src.is_dir():
            raise DatasetError(f"{archive} does not contain the folder {folder}/")
        (src / _MARKER).write_text(md5 + "\n")
        if final.exists():
            if marker.is_file() and marker.read_text().strip() == md5:
                return final  # unpacked meanwhile by another process
            log.warning("replacing the incomplete or outdated folder %s", final)
            shutil.rmtree(final)
        try:
            os.replace(src, final)
        except OSError:
            if not (marker.is_file() and marker.read_text().strip() == md5):
                raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return final


def _ensure_files(
    spec: TorchvisionSpec, root: str | os.PathLike, split: str | None, base_url: str | None
) -> tuple[Path, dict[str, str]]:
    """Make the files of ``split`` (all splits when None) present and verified.

    Returns the data set folder and the files used (name → md5).
    """
    folder = Path(root) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    needed = [rf for rf in spec.files if split is None or split in rf.splits]
    used: dict[str, str] = {}
    for rf in needed:
        try:
            used.update(_ensure_file(spec, folder, rf, split, base_url))
        except DownloadError as e:
            listing = ", ".join(f"{f.filename} (md5 {f.md5})" for f in needed)
            where = f"{spec.name} {split} split" if split else spec.name
            e.add_note(f"{where} needs these files in {folder}: {listing}")
            raise
    return folder, used


def _ensure_file(
    spec: TorchvisionSpec, folder: Path, rf: RemoteFile, split: str | None, base_url: str | None
) -> dict[str, str]:
    """Make one registry file present and verified (downloaded, unpacked); name → md5 used."""
    dest = folder / rf.filename
    if rf.members:
        assert spec.archive_folder is not None
        unpacked = folder / spec.archive_folder
        marker = unpacked / _MARKER
        if marker.is_file() and marker.read_text().strip() == rf.md5:
            return {rf.filename: rf.md5}
        # Without the archive, an unpacked folder (e.g. copied from a torchvision root)
        # is accepted when each needed member has torchvision's md5.
        if not dest.exists() and unpacked.is_dir():
            md5s = dict(rf.members)
            names = _member_names(rf, split)
            if all(verify_file(unpacked / m, md5=md5s[m]) for m in names):
                return {f"{spec.archive_folder}/{m}": md5s[m] for m in names}
        _download_any(_urls(spec, rf.filename, base_url), dest, rf.md5)
        _ensure_extracted(dest, rf.md5, spec.archive_folder)
    else:
        _download_any(_urls(spec, rf.filename, base_url), dest, rf.md5)
    return {rf.filename: rf.md5}


def fetch_torchvision_dataset(
    name: str,
    root: str | os.PathLike,
    base_url: str | None = None,
    split: str | None = None,
) -> Path:
    """Download and verify (and unpack archives of) a torchvision data set; load nothing.

    ``split=None`` fetches every split's files (note SVHN's ``extra`` is 1.3 GB, STL-10's
    single archive 2.6 GB). Returns ``<root>/<NAME>``. Files already present with the right
    checksum are not downloaded again.
    """
    spec = _get_spec(name)
    if split is not None:
        _check_split(spec, split)
    folder, _ = _ensure_files(spec, root, split, base_url)
    return folder


# --------------------------------------------------------------------------------------
# Torchvision data sets: formats
# --------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: IDX header cut short ({len(data)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(
            f"{path}: IDX header says shape {shape} ({expected} bytes), "
            f"file has {len(data) - header} bytes of data"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _load_idx(spec: TorchvisionSpec, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DatasetError(f"{spec.name} images: expected uint8 (N, H, W), got {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(
            f"{spec.name}: {len(labels)} labels for {len(images)} images in {folder}"
        )
    return images[..., None], labels.astype(np.int64)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR batches: plain containers and numpy arrays, nothing else.

    The CIFAR files are Python pickles inside a tar.gz whose md5 is verified against a fixed
    value before it is unpacked, and the pickles only hold dicts of lists, byte strings and
    numpy arrays. As a second line of defence this unpickler refuses every global other than
    the few numpy needs to rebuild an array, so a tampered file cannot run code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes into protocol-2 pickles
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in CIFAR data")
        if module.startswith("numpy.core."):  # numpy 2 renamed numpy.core to numpy._core
            with contextlib.suppress(ImportError):
                return getattr(importlib.import_module("numpy._core" + module[10:]), name)
        return getattr(importlib.import_module(module), name)


def _read_cifar_pickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        # encoding="bytes": the files are Python 2 pickles (str → bytes), as the CIFAR page
        # recommends; safe here because the archive is md5-verified and the unpickler only
        # accepts numpy arrays (see _NumpyOnlyUnpickler).
        entry = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    if not isinstance(entry, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(entry).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


def _decode_names(names: Iterable[Any]) -> list[str]:
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _load_cifar(
    spec: TorchvisionSpec, folder: Path, split: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    assert spec.archive_folder is not None
    base = folder / spec.archive_folder
    if spec.fmt == "cifar10":
        batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta_file, names_key, labels_key = "batches.meta", "label_names", "labels"
    else:
        batches = [split]
        meta_file, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
    data, labels = [], []
    for batch in batches:
        entry = _read_cifar_pickle(base / batch)
        try:
            x = np.asarray(entry["data"], dtype=np.uint8)
            y = np.asarray(entry[labels_key], dtype=np.int64)
        except KeyError as e:
            raise DatasetError(f"{base / batch}: no {e} entry") from e
        if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(y) != len(x):
            raise DatasetError(
                f"{base / batch}: expected data (N, 3072) and N labels, got {x.shape} and {y.shape}"
            )
        data.append(x)
        labels.append(y)
    # Rows are 1024 red, 1024 green, 1024 blue values, each a 32×32 image in row-major order.
    images = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    meta = _read_cifar_pickle(base / meta_file)
    return np.ascontiguousarray(images), np.concatenate(labels), _decode_names(meta[names_key])


def _load_svhn(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    path = folder / f"{split}_32x32.mat"
    mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[2] != 3:
        raise DatasetError(f"{path}: expected X (32, 32, 3, N) and y (N, 1)")
    images = np.ascontiguousarray(x.transpose(3, 0, 1, 2), dtype=np.uint8)
    labels = y.astype(np.int64).reshape(-1)
    if len(labels) != len(images):
        raise DatasetError(f"{path}: {len(labels)} labels for {len(images)} images")
    labels[labels == 10] = 0  # SVHN labels the digit 0 as 10
    return images, labels


def _load_stl10(
    spec: TorchvisionSpec, folder: Path, split: str, keep: Any
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """STL-10 binaries, memory-mapped so that ``keep(labels, n)`` (the index selection)
    reads only the chosen images of the 2.7 GB unlabeled file."""
    assert spec.archive_folder is not None
    base = folder / spec.archive_folder
    prefix = {"train": "train", "test": "test", "unlabeled": "unlabeled"}[split]
    x_path = base / f"{prefix}_X.bin"
    size = 3 * 96 * 96
    raw = np.memmap(x_path, dtype=np.uint8, mode="r")
    if raw.size % size:
        raise DatasetError(f"{x_path}: {raw.size} bytes is not a whole number of 96×96×3 images")
    raw = raw.reshape(-1, 3, 96, 96)
    labels = None
    if split != "unlabeled":
        y_path = base / f"{prefix}_y.bin"
        labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1  # 1-based on disk
        if len(labels) != len(raw):
            raise DatasetError(f"{y_path}: {len(labels)} labels for {len(raw)} images")
    idx = keep(labels, len(raw))
    # Each image is stored channel by channel, column-major: (C, W, H) → (H, W, C).
    images = np.ascontiguousarray(np.asarray(raw[idx]).transpose(0, 3, 2, 1))
    del raw
    names_file = base / "class_names.txt"
    names = names_file.read_text().split("\n") if names_file.is_file() else list(spec.class_names)
    names = [n.strip() for n in names if n.strip()]
    return images, (None if labels is None else labels[idx]), names


def load_torchvision_dataset(
    name: str,
    root: str | os.PathLike,
    split: str = "train",
    classes: Sequence[int] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    base_url: str | None = None,
) -> Dataset:
    """One split of MNIST, FashionMNIST, KMNIST, CIFAR10, CIFAR100, SVHN or STL10.

    Files are downloaded (if missing) and verified into ``<root>/<NAME>/``; ``base_url``
    replaces the data set's mirrors (file URL = base_url + "/" + file name). Splits: train and
    test, plus SVHN's extra and STL-10's unlabeled (labels None).

    ``classes`` (label values) keeps a class subset; labels keep their original values and
    ``class_names`` stays the full list. ``max_samples`` caps the number of images by a
    seeded, class-stratified pick (see :func:`select_indices`). Images come back in file
    order; MNIST-family images have one channel, the others three.
    """
    spec = _get_spec(name)
    _check_split(spec, split)
    folder, files = _ensure_files(spec, root, split, base_url)

    def keep(labels: np.ndarray | None, n: int, n_classes: int) -> np.ndarray:
        if classes is not None:
            bad = sorted({int(c) for c in classes} - set(range(n_classes)))
            if bad:
                raise DatasetError(f"{spec.name} has classes 0-{n_classes - 1}; unknown {bad}")
        return select_indices(labels, n, classes, max_samples, seed)

    labels: np.ndarray | None
    if spec.fmt == "stl10":
        n_cls = len(spec.class_names)
        images, labels, class_names = _load_stl10(
            spec, folder, split, lambda y, n: keep(y, n, n_cls)
        )
    else:
        if spec.fmt == "idx":
            images, labels = _load_idx(spec, folder, split)
            class_names = list(spec.class_names)
        elif spec.fmt in ("cifar10", "cifar100"):
            images, labels, class_names = _load_cifar(spec, folder, split)
        elif spec.fmt == "svhn":
            images, labels = _load_svhn(folder, split)
            class_names = list(spec.class_names)
        else:  # pragma: no cover - registry bug
            raise AssertionError(spec.fmt)
        idx = keep(labels, len(images), len(class_names))
        if len(idx) != len(images):
            images, labels = np.ascontiguousarray(images[idx]), labels[idx]
    where = base_url or spec.mirrors[0]
    return Dataset(
        images=images,
        labels=labels,
        class_names=class_names,
        source=f"{spec.name} {split} split from {where} (files in {folder})",
        files=files,
    )


# --------------------------------------------------------------------------------------
# Image files
# --------------------------------------------------------------------------------------


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


def _resize_center_crop(im: Any, size: int) -> Any:
    """Resize so the short side is ``size`` (bicubic, antialiased), then centre-crop."""
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


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


def _from_wide_int(im: Any, bits: int | None) -> tuple[Any, tuple]:
    """Mode I;16… or I as mode L: 0…2**bits - 1 → 0…255, ``bits`` from the data when None."""
    from PIL import Image

    arr = np.asarray(im).astype(np.int64)
    low, peak = int(arr.min()), int(arr.max())
    if low < 0:
        raise ValueError(f"{im.mode} image with negative values (min {low}): no faithful 0-255 map")
    bits = max(bits or 0, _wide_bits(peak))
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


def _check_wide_colour(im: Any, data: bytes) -> None:
    """Refuse a 16-bit colour image whose data would come out nearly black.

    Pillow reads 16-bit colour (PNG, TIFF) by the top 8 bits of each sample: faithful to the
    depth the file declares, but data of 14 bits or fewer in it (12-bit camera data) would
    be stored at most a quarter bright, so such an image is refused.
    """
    declared = data[24] if data[:8] == _PNG_SIGNATURE and len(data) > 24 else 8
    tags = getattr(im, "tag_v2", None)  # TIFF: BitsPerSample
    if tags is not None:
        declared = int(max(np.atleast_1d(tags.get(258, 8))))
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


def _to_rgb(im: Any, bits: int | None = None) -> tuple[Any, tuple | None]:
    """``im`` as 8-bit RGB, with how its values were mapped (None for 8-bit images).

    * 8-bit modes (L, P, RGB, RGBA, CMYK, …): Pillow's conversion (alpha is dropped).
    * Greyscale integers wider than 8 bits (I;16…, I): scaled by their real depth, see
      :func:`_wide_bits` (at least ``bits``: a data set's images share one depth);
      negative values are refused. Note ``("int", bits, max, mode)``.
    * Float greyscale (F): values within [0, 1] are taken as 0…1, otherwise the image's own
      min…max is stretched to 0…255; NaN or infinite values are refused. Note
      ``("float", in_unit_range, low, high)``.
    * Any other mode is refused (ValueError).
    """
    note = None
    if im.mode.startswith("I;16") or im.mode == "I":
        im, note = _from_wide_int(im, bits)
    elif im.mode == "F":
        im, note = _from_float(im)
    elif im.mode not in _EIGHT_BIT_MODES:
        raise ValueError(f"unsupported image mode {im.mode!r}")
    elif im.mode in ("P", "PA") and "transparency" in im.info:
        im = im.convert("RGBA")
    return (im if im.mode == "RGB" else im.convert("RGB")), note


def _decode(
    data: bytes, path: Path, size: int | None, bits: int | None = None
) -> tuple[np.ndarray, tuple | None]:
    """Decode one image file's bytes to an (H, W, 3) uint8 array and its value-mapping note
    (see :func:`_to_rgb`); ImageReadError naming the file if it is bad or can't be mapped."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            _check_wide_colour(im, data)
            im = ImageOps.exif_transpose(im)
            im, note = _to_rgb(im, bits)
            if size is not None:
                im = _resize_center_crop(im, size)
            return np.asarray(im, dtype=np.uint8).copy(), note
    except MemoryError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageReadError(path, e) from e


def _one_depth(out: np.ndarray, notes: list, size: int | None) -> None:
    """Give the wide integer images of one data set one depth (the widest any needs), so a dim
    image is not brightened next to the others, and log the choice once."""
    wide = [(j, path, n) for j, path, n in notes if n[0] == "int"]
    if not wide:
        return
    bits = max(n[1] for _, _, n in wide)
    for j, path, n in wide:
        if n[1] < bits:
            out[j] = _decode(path.read_bytes(), path, size, bits)[0]
    peak, where, mode = max((n[2], str(path), n[3]) for _, path, n in wide)
    log.info(
        "%d image(s) wider than 8 bits (e.g. %s, mode %s): data max %d -> scaled as %d-bit "
        "(0..%d -> 0..255)", len(wide), where, mode, peak, bits, 2**bits - 1,
    )


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
    paths: Sequence[Path], names: Sequence[str], size: int | None, on_error: str
) -> tuple[np.ndarray, list[int], dict[str, str]]:
    """Decode ``paths``; returns the stacked images, the positions kept and name → sha256."""
    if on_error not in ("stop", "skip"):
        raise DatasetError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    out: np.ndarray | None = None
    first: tuple[str, tuple[int, ...]] | None = None
    kept: list[int] = []
    files: dict[str, str] = {}
    notes: list[tuple[int, Path, tuple]] = []  # (position in out, file, value-mapping note)
    with _strict_decoding():
        for i, (path, name) in enumerate(zip(paths, names, strict=True)):
            try:
                try:
                    data = path.read_bytes()
                except OSError as e:
                    raise ImageReadError(path, e) from e
                arr, note = _decode(data, path, size)
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
                    f"{first[1][1]}×{first[1][0]}; pass size= to resize and centre-crop "
                    "all images to one size"
                )
            assert out is not None
            if note is not None:
                notes.append((len(kept), path, note))
            out[len(kept)] = arr
            kept.append(i)
            files[name] = hashlib.sha256(data).hexdigest()
        if out is None:
            raise DatasetError(f"none of the {len(paths)} images could be read")
        _one_depth(out, notes, size)
    _log_floats(notes)
    return out[: len(kept)], kept, files


@dataclass
class _Scan:
    """One folder scan: links are followed, but each real folder and file is taken once;
    the files left out are counted by reason."""

    seen: set[tuple[int, int]] = field(default_factory=set)  # (st_dev, st_ino)
    skipped: collections.Counter = field(default_factory=collections.Counter)

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
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
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
    Extensions: .png .jpg .jpeg .bmp .tif .tiff .webp (any case). Links are followed, but
    each real folder and file is read once; the files left out are logged by reason.
    Pixel values are mapped as :func:`_to_rgb` says (greyscale wider than 8 bits by its
    real depth, float by [0, 1] or its own range); an image that can't be mapped faithfully
    (NaN, negative integers, 12-bit data in 16-bit colour) counts as unreadable.
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
    images, kept, files = _read_images(paths, names, size, on_error)
    return Dataset(
        images=images,
        labels=None if labels is None else labels[kept],
        class_names=class_names,
        source=f"image folder {folder.resolve()}",
        files=files,
    )


def load_images(
    paths: str | os.PathLike | Sequence[str | os.PathLike], size: int | None = None
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
    images, _, files = _read_images(plist, [str(p) for p in plist], size, "stop")
    return Dataset(
        images=images,
        labels=None,
        class_names=[],
        source="images " + ", ".join(str(p.resolve()) for p in plist),
        files=files,
    )


def load_histology(size: int | None = 224) -> Dataset:
    """scikit-image's immunohistochemistry image (512×512 RGB, ships with scikit-image, so
    this works offline), resized so its short side is ``size`` and centre-cropped; the
    stand-in for the paper's GlaS histology image. ``size=None`` keeps 512×512."""
    _check_size(size)
    import skimage.data
    from PIL import Image

    image = np.asarray(skimage.data.immunohistochemistry(), dtype=np.uint8)
    if size is not None:
        image = np.asarray(_resize_center_crop(Image.fromarray(image), size), dtype=np.uint8)
    png = Path(skimage.data.__file__).parent / "ihc.png"
    files = {"ihc.png": file_hash(png, "sha256")} if png.is_file() else {}
    return Dataset(
        images=np.ascontiguousarray(image[None]),
        labels=None,
        class_names=[],
        source="skimage.data.immunohistochemistry",
        files=files,
    )
