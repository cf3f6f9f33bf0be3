"""The labelling pass of a sample store (config ``extract.store: sample``).

With a sample store the activations of most positions were never written, so the fits
(``fit_*_model``, on the stored seeded samples) cannot label them. One job per model × data
set (:func:`label_pass`) runs the net again, chunk by chunk with the extraction's own batches
(so every activation equals the one a full store holds), applies every fitted layer's
predictor (:func:`convdp.fitted.load_predictor`; every method and mode) to the chunk and
writes the labels, int16, to ``results/labels/{model}/{dataset}.zarr``: one array per fit,
``{method}/{layer}/{mode}``, (N, H, W) label maps or (N,), chunked along N like the
extraction (the layers it smoothed, ``extract.smooth``, smoothed alike). A chunk is recorded
in ``complete_chunks`` once all its labels are written, so a rerun after a kill resumes from
the chunks done; the manifest beside the store (the rule's declared output) is written last.
:func:`merge_labelled` then writes each fit's ``{mode}.npz`` / ``.json`` exactly as a fit on
a full store does (timings aside).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from convdp.io import read_json, write_json, write_npz

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def fit_key(method: str, layer: str, mode: str) -> str:
    """The label array of one fit in the label store."""
    return f"{method}/{layer}/{mode}"


@torch.no_grad()
def label_pass(
    weights: str | Path,
    meta_path: str | Path,
    dataset: str | Path,
    manifest: str | Path,
    fits: dict[str, str | Path],
    out_manifest: str | Path,
    *,
    device: str = "auto",
    batch_size: int = 128,
    chunk_size: int = 256,
    dtype: str = "float32",
    predict_device: str = "cpu",
    progress: bool = True,
    code: str | None = None,
    **_unused,
) -> dict:
    """Label every sample of every fit of one model × data set; write the store and manifest.

    ``fits`` maps :func:`fit_key` to the fit's ``.model.npz``; ``manifest`` is the
    extraction's (its layers, shapes, chunking and fingerprint); ``device`` runs the net,
    ``predict_device`` the torch DPGMM's predictions (other estimators stay on the CPU);
    ``code``: a digest of the code that runs (the rule's, :mod:`convdp.jobcode`), kept in the
    store's fingerprint so that chunks labelled by other code are not resumed from.
    """
    import zarr
    from tqdm import tqdm

    from convdp import data as data_mod
    from convdp import models
    from convdp.allocator import keep_freed_memory
    from convdp.download import file_hash
    from convdp.extract import check_finite, feature_extractor, open_store, to_channels_last
    from convdp.fitted import load_npz, load_predictor
    from convdp.samples import to_samples

    info = read_json(manifest)
    # the extraction's batches, so that every activation is bit for bit the stored one (a
    # net's output can differ in its last bits between batch sizes); manifests from before
    # it was recorded: the configured one
    batch_size = info.get("batch_size", batch_size)
    # and the extraction's dtype: the fits were made on the stored samples, and a float16
    # store's activations labelled as float32 (a config changed since) give other labels
    stored = {spec["dtype"] for spec in info["layers"].values() if "dtype" in spec}
    if len(stored) == 1:
        dtype = stored.pop()
    if info.get("chunk_size", chunk_size) != chunk_size:
        raise ValueError(f"{manifest}: extracted in chunks of {info['chunk_size']} images, "
                         f"but extract.chunk_size is {chunk_size}; rerun the extraction")
    meta = read_json(meta_path)
    data_group = data_mod.open_dataset(dataset)
    images = data_group["images"]
    n = images.shape[0]
    # the net and the images the extraction ran: the fits were made on its samples, and a
    # net retrained (or a data set rebuilt) since would label other activations than theirs
    now = {"model_sha256": (file_hash(weights), weights),
           "dataset_checksum": (data_group.attrs.get("checksum"), dataset)}
    changed = [str(path) for k, (value, path) in now.items()
               if k in info["fingerprint"] and info["fingerprint"][k] != value]
    if changed:
        raise ValueError(f"{manifest}: the extraction read other contents of "
                         f"{' and '.join(changed)} than they hold now; rerun the extraction "
                         "and the fits")
    predictors, shapes = {}, {}
    for key, path in sorted(fits.items()):
        _, layer, mode = key.split("/")
        pre, est = load_predictor(load_npz(path), str(path), device=predict_device)
        predictors[key] = (layer, mode, pre, est)
        _, h, w, _ = info["layers"][layer]["shape"]
        shapes[key] = (n, h, w) if mode == "position" else (n,)
    layers = list(dict.fromkeys(p[0] for p in predictors.values()))
    # the layers the extraction stored smoothed are labelled from the same smoothed maps
    smooth = {layer: s for layer, s in (info.get("smooth") or {}).items() if layer in layers}
    fingerprint = {"format": FORMAT_VERSION, "extraction": info["fingerprint"],
                   "chunk_size": chunk_size, "batch_size": batch_size, "dtype": dtype,
                   "fits": {k: file_hash(p) for k, p in sorted(fits.items())}}
    if smooth:
        fingerprint["smooth"] = smooth
    if code:
        fingerprint["code"] = code
    store_path = Path(out_manifest).with_suffix(".zarr")
    group = open_store(store_path, fingerprint)
    if group is None:
        group = zarr.open_group(store_path, mode="w")
        for key, shape in shapes.items():
            group.create_array(key, shape=shape, chunks=(min(chunk_size, n), *shape[1:]),
                               dtype="int16", compressors=None, fill_value=-1)
        group.attrs.update({"fingerprint": fingerprint, "complete_chunks": [], "complete": False,
                            "seconds": {k: 0.0 for k in shapes}})
    arrays = {k: group[k].with_config({"write_empty_chunks": True}) for k in shapes}
    done = set(group.attrs.get("complete_chunks", []))
    n_chunks = -(-n // chunk_size)
    todo = [i for i in range(n_chunks) if i not in done]
    if done:
        log.info("%s: resuming, %d of %d chunks already labelled", store_path, len(done), n_chunks)

    dev = models.resolve_device(device)
    keep_freed_memory()  # as the extraction (convdp.allocator)
    net = models.load_model(meta, weights)
    extractor = feature_extractor(net, layers, smooth).to(dev)
    seconds = dict(group.attrs["seconds"])
    start_time = time.perf_counter()
    for index in tqdm(todo, desc=f"label {store_path.name}", disable=not progress):
        start, stop = index * chunk_size, min((index + 1) * chunk_size, n)
        chunk_images = np.asarray(images[start:stop])
        blocks = {layer: [] for layer in layers}
        for b in range(0, stop - start, batch_size):  # the extraction's batches
            x = models.to_input(chunk_images[b : b + batch_size], meta["mean"], meta["std"])
            result = extractor(x.to(dev))
            for layer in layers:
                out = to_channels_last(layer, result[layer]).to(getattr(torch, dtype))
                check_finite(layer, out, start + b)
                blocks[layer].append(out.cpu().numpy())
        blocks = {layer: np.concatenate(parts) for layer, parts in blocks.items()}
        for key, (layer, mode, pre, est) in predictors.items():
            t0 = time.perf_counter()
            labels = est.predict(pre.transform(to_samples(blocks[layer], mode))).astype(np.int16)
            arrays[key][start:stop] = labels.reshape((stop - start, *shapes[key][1:]))
            seconds[key] += time.perf_counter() - t0
        group.attrs.update({"seconds": seconds,
                            "complete_chunks": sorted({*group.attrs["complete_chunks"], index})})
    group.attrs["complete"] = True
    out = {"store": store_path.name, "fingerprint": fingerprint, "n_images": n,
           "n_chunks": n_chunks, "chunks_resumed": len(done), "fits": sorted(shapes),
           "predict_seconds": seconds, "seconds": time.perf_counter() - start_time,
           "device": str(dev), "predict_device": predict_device}
    write_json(out_manifest, out)
    return out


def open_labels(manifest: str | Path, key: str,
                model_npz: str | Path | None = None) -> np.ndarray:
    """The labels of fit ``key`` from the label store behind ``manifest``, checked complete
    and, given ``model_npz``, made with that very model file (the pass records the hash of
    each ``.model.npz`` it labelled with: a model refitted since, the pass not rerun, would be
    joined to another's labels)."""
    import zarr

    from convdp.download import file_hash

    info = read_json(manifest)
    made_with = info["fingerprint"].get("fits", {}).get(key)
    if model_npz is not None and made_with is not None and made_with != file_hash(model_npz):
        raise ValueError(f"{manifest}: the labels {key!r} were made with another "
                         f"{model_npz} than the one there now (refitted since); rerun the "
                         "labelling pass")
    store = Path(manifest).parent / info["store"]
    group = zarr.open_group(store, mode="r")
    if not group.attrs.get("complete") or group.attrs.get("fingerprint") != info["fingerprint"]:
        raise ValueError(f"{store} is incomplete or not the one {manifest} describes; "
                         "delete both and rerun the labelling pass")
    if key not in info["fits"]:
        raise ValueError(f"{manifest} holds no labels of {key!r}; it has {info['fits']}")
    labels = group[key]
    if labels.nchunks_initialized < labels.nchunks:  # every chunk is written: one was lost
        raise ValueError(f"{store}: the labels {key!r} are damaged: "
                         f"{labels.nchunks - labels.nchunks_initialized} of their "
                         f"{labels.nchunks} chunk files are missing (read as -1); delete the "
                         f"store and {manifest} and rerun the labelling pass")
    return labels[:], float(info["predict_seconds"][key])


def merge_labelled(
    model_npz: str | Path,
    model_json: str | Path,
    labels_manifest: str | Path,
    key: str,
    dataset: str | Path,
    out_npz: str | Path,
    out_json: str | Path,
    *,
    context: dict | None = None,
) -> dict:
    """A fit's ``{mode}.npz`` / ``.json`` from its model and the labelling pass's labels: the
    arrays and record a fit on the full store writes (timings aside)."""
    from convdp.cluster import merge_labels
    from convdp.datasets.store import read_labels
    from convdp.fitted import load_npz

    t0 = time.perf_counter()
    labels, predict_seconds = open_labels(labels_manifest, key, model_npz)
    model, record = load_npz(model_npz), read_json(model_json)
    arrays, record = merge_labels(model, record, [(0, len(labels), labels.ravel())],
                                  class_labels=read_labels(dataset),
                                  seconds=record["fit_seconds"] + predict_seconds,
                                  names=[f"{labels_manifest}:{key}"])
    record |= dict(context or {})
    record["wall_seconds"] += predict_seconds + time.perf_counter() - t0
    write_npz(out_npz, **arrays)
    write_json(out_json, record)
    return record
