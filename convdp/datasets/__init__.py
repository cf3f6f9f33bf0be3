"""Data sets: loading every kind the config knows, resizing, and the Zarr store.

Every loader returns a :class:`Dataset`: ``images`` (N, H, W, C) uint8, ``labels`` (N,)
int64 or ``None``, ``class_names`` (indexed by label value), ``source`` (provenance) and
``files`` (source file name → md5 or sha256 hex digest of the files used).

Modules, one job each:

- :mod:`~convdp.datasets.base`: :class:`Dataset`, the errors, the registry's entry types,
  :func:`select_indices` (class subset and seeded cap);
- :mod:`~convdp.datasets.fetch`: verified atomic downloads, mirrors, unpacking archives;
- :mod:`~convdp.datasets.mnist`, :mod:`~convdp.datasets.cifar`, :mod:`~convdp.datasets.svhn`,
  :mod:`~convdp.datasets.stl10`: one source format each, its files and MD5s beside its parser;
- :mod:`~convdp.datasets.registry`: the torchvision registry, fetching and loading a split;
- :mod:`~convdp.datasets.images`: image folders, single images, histology, decoding;
- :mod:`~convdp.datasets.digits`: scikit-learn's digits;
- :mod:`~convdp.datasets.resize`: the one resize (short side, centre crop) of every kind;
- :mod:`~convdp.datasets.kinds`: the config's ``kind`` → loader (:func:`load_dataset`);
- :mod:`~convdp.datasets.store`: the Zarr data set store.
"""

from convdp.datasets.base import (
    Dataset,
    DatasetError,
    ImageReadError,
    RemoteFile,
    TorchvisionSpec,
    select_indices,
)
from convdp.datasets.digits import load_digits_split
from convdp.datasets.images import IMAGE_EXTENSIONS, load_histology, load_image_folder, load_images
from convdp.datasets.kinds import load_dataset
from convdp.datasets.mnist import read_idx
from convdp.datasets.registry import (
    TORCHVISION_DATASETS,
    TORCHVISION_REGISTRY,
    fetch_torchvision_dataset,
    load_torchvision_dataset,
)
from convdp.datasets.resize import resize_center_crop, resize_dataset
from convdp.datasets.store import (
    UNLABELLED,
    content_checksum,
    open_dataset,
    read_dataset,
    read_labels,
    write_dataset,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "TORCHVISION_DATASETS",
    "TORCHVISION_REGISTRY",
    "UNLABELLED",
    "Dataset",
    "DatasetError",
    "ImageReadError",
    "RemoteFile",
    "TorchvisionSpec",
    "content_checksum",
    "fetch_torchvision_dataset",
    "load_dataset",
    "load_digits_split",
    "load_histology",
    "load_image_folder",
    "load_images",
    "load_torchvision_dataset",
    "open_dataset",
    "read_dataset",
    "read_labels",
    "read_idx",
    "resize_center_crop",
    "resize_dataset",
    "select_indices",
    "write_dataset",
]
