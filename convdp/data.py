"""Data sets on disk and how they are loaded: kept as an import path; the code lives in the
:mod:`convdp.datasets` package (the store in :mod:`convdp.datasets.store`, the ``kind``
dispatch in :mod:`convdp.datasets.kinds`, the digits in :mod:`convdp.datasets.digits`, the
one resize in :mod:`convdp.datasets.resize`).
"""

from convdp.datasets import (
    UNLABELLED,
    Dataset,
    content_checksum,
    load_dataset,
    load_digits_split,
    open_dataset,
    read_dataset,
    read_labels,
    resize_center_crop,
    resize_dataset,
    select_indices,
    write_dataset,
)

__all__ = [
    "UNLABELLED",
    "Dataset",
    "content_checksum",
    "load_dataset",
    "load_digits_split",
    "open_dataset",
    "read_dataset",
    "read_labels",
    "resize_center_crop",
    "resize_dataset",
    "select_indices",
    "write_dataset",
]
