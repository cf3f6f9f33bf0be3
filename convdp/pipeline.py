"""The workflow's jobs as plain functions: paths and config sections in, files out.

Each Snakemake rule's script calls exactly one of these through :func:`snakemake_job`,
which sends log messages and progress bars to the rule's ``log:`` file. Everything here
runs (and is tested) without Snakemake.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from convdp.io import read_json, write_json, write_npz

log = logging.getLogger("convdp")


@contextlib.contextmanager
def snakemake_job(smk):
    """Run a rule's job with logging and stderr (progress bars) going to its log file."""
    log_path = Path(smk.log[0]) if smk.log else None
    if log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _limit_threads(getattr(smk, "threads", 1))
    with open(log_path, "w", buffering=1) as fh:
        old_stderr = sys.stderr
        sys.stderr = fh
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            check_job_code(smk)
            yield
        except BaseException:
            logging.getLogger("convdp").exception("job failed")
            raise
        finally:
            root.removeHandler(handler)
            sys.stderr = old_stderr


def check_job_code(smk) -> None:
    """Refuse a job whose convdp is not the one its rule's ``code`` param was read from
    (:mod:`convdp.jobcode`): Snakemake reads the package beside the workflow to decide what
    reruns, a job imports the first convdp on its path. Where they differ (a ``pip install``
    of another version, an editable install of another clone), an edit of the one would
    rerun jobs that run the other, or none."""
    from convdp import jobcode

    script = jobcode.labelled_script(getattr(getattr(smk, "params", None), "code", None))
    scriptdir = getattr(smk, "scriptdir", None)
    if script is None or not scriptdir:
        return
    if jobcode.code_label(Path(scriptdir) / script) != smk.params.code:
        here = Path(jobcode.__file__).resolve().parent
        workflow = Path(scriptdir).resolve().parent
        raise RuntimeError(
            f"this job runs the convdp package at {here}, whose code is not the code the "
            f"workflow at {workflow} read to decide what reruns (the package beside it): "
            "its results would pass for those of other code. Install the workflow's own "
            f"package into this environment (pip install -e {workflow}), or run the workflow "
            "that comes with the installed convdp")


def _limit_threads(threads: int) -> None:
    """Keep torch to the threads Snakemake gave the job (parallel jobs must not oversubscribe)."""
    import os

    from threadpoolctl import threadpool_limits

    threads = max(int(threads), 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when it is first imported
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    threadpool_limits(threads)


def download(spec: dict, data_root: str | Path, out: str | Path) -> dict:
    """Fetch and verify (md5) a torchvision data set's files for one split; list them in ``out``."""
    from convdp.datasets import fetch_torchvision_dataset

    folder = fetch_torchvision_dataset(spec["name"], data_root, spec.get("base_url"),
                                       spec.get("split", "train"))
    files = {str(p.relative_to(folder)): p.stat().st_size
             for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}
    record = {"name": spec["name"], "folder": str(folder), "files": files}
    write_json(out, record)
    return record


def prepare_dataset(spec: dict, out: str | Path, data_root: str | Path = "data", seed: int = 0) -> dict:
    """Load the data set ``spec`` describes and write it to the Zarr store ``out``."""
    from convdp import data as data_mod
    ds = data_mod.load_dataset(spec, data_root, seed)
    checksum = data_mod.write_dataset(out, ds)
    log.info("%s: %d images of %s from %s", out, len(ds.images), ds.images.shape[1:], ds.source)
    return {"checksum": checksum, "n_images": len(ds.images)}


def prepare_model(
    spec: dict,
    out_weights: str | Path,
    out_meta: str | Path,
    *,
    train_data: str | Path | None = None,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Train the net (``weights: train``) or build it with the configured weights; save both files.

    Writes the ``state_dict`` to ``out_weights`` and the description (architecture, classes,
    input channels and size, normalisation, layer names, held-out accuracy) to ``out_meta``.
    """
    from convdp import data as data_mod
    from convdp import models
    from convdp.control import build_control
    from convdp.training import default_normalisation, fixed_normalisation, normalisation

    arch, weights = spec["arch"], spec.get("weights", "train")
    control_of = spec.get("control_of")  # a random-weights control (convdp.control)
    meta: dict = {"arch": arch, "weights": "random" if control_of else weights,
                  "input_size": spec.get("input_size")}
    if control_of:
        meta["control_of"] = control_of
        log.info("%s: random-weights control of %s (seed %d, not trained)", arch, control_of, seed)
    if weights == "train":
        ds = data_mod.read_dataset(train_data)
        if ds.labels is None:
            raise ValueError(f"{train_data} has no labels: a net can't be trained on it")
        classes = np.unique(ds.labels)
        y = np.searchsorted(classes, ds.labels)
        in_channels = ds.images.shape[-1]
        mean, std = normalisation(spec, ds.images)
        if control_of:  # the weights training would start from, not trained
            net, _ = build_control(spec, seed, len(classes), in_channels)
            metrics = {"val_accuracy": None}
        else:
            torch_seed(seed)
            net = models.build_model(arch, len(classes), in_channels)
            metrics = models.train_classifier(
                net, ds.images, y, mean=mean, std=std, seed=seed, device=device,
                data_name=str(train_data), **spec.get("train", {})
            )
            log.info("trained %s: held-out accuracy %.4f", arch, metrics["val_accuracy"])
        meta |= {
            "num_classes": len(classes),
            "in_channels": in_channels,
            "classes": classes.tolist(),
            "class_names": [ds.class_names[c] if c < len(ds.class_names) else str(c) for c in classes],
            "val_accuracy": metrics["val_accuracy"],
        }
        meta |= ({"normalised_on": str(train_data)} if control_of else {
            "trained_on": str(train_data),
            "training": {k: v for k, v in metrics.items() if k != "val_accuracy"},
        })
    else:
        net, extra = (build_control(spec, seed) if control_of
                      else models.load_pretrained(spec, seed))  # `none`: drawn from the seed
        # what load_model's rebuilt net must compute (a weights name's builder can set what
        # the name alone does not); taken before any forward pass could set an attribute
        extra["structure"] = models.structure_digest(net.eval())
        # the config's normalize, else the weights' own, else the default for the channels
        mean, std = extra.pop("mean", None), extra.pop("std", None)
        fixed = fixed_normalisation(spec, extra["in_channels"])
        if fixed is not None:
            mean, std = fixed
        elif mean is None:
            mean, std = default_normalisation(extra["in_channels"])
        meta |= {"val_accuracy": None, **extra}
    meta |= {
        "mean": list(map(float, mean)),
        "std": list(map(float, std)),
        "layer_names": models.layer_names(net),
        "seed": seed,
    }
    models.save_state_dict(net, out_weights)
    write_json(out_meta, meta)
    return meta


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def activation_store(manifest: str | Path) -> Path:
    """The Zarr store that belongs to an extraction manifest (same name, ``.zarr``)."""
    return Path(manifest).with_suffix(".zarr")


def extract(
    weights: str | Path,
    meta_path: str | Path,
    dataset: str | Path,
    layers: list[str],
    manifest: str | Path,
    *,
    device: str = "auto",
    batch_size: int = 128,
    chunk_size: int = 256,
    dtype: str = "float32",
    compression: str = "none",
    model_name: str = "model",
    progress: bool = True,
    sample: dict | None = None,
    smooth: dict | None = None,
    source: str | Path | None = None,
    code: str | None = None,
    smoothing: str | Path | None = None,
) -> dict:
    """Extract ``layers`` of the net over ``dataset``; write the store and its manifest
    (``sample``: the plan of a sample store, :mod:`convdp.sampled`; None = a full store;
    ``smooth``: {layer: σ} of the layers stored smoothed, :mod:`convdp.smoothing`, a σ
    ``auto`` read from ``smoothing``, the model's :func:`choose_smoothing` JSON;
    ``source``: the model's source data set, whose images' depth ``dataset``'s must share,
    :func:`check_depth`; ``code``: a digest of the code that runs, the rule's
    (:mod:`convdp.jobcode`), kept in the store's fingerprint so that a rerun after an edit of
    that code does not resume from the chunks the old code wrote).

    The manifest (the rule's declared output) is written last, so it exists only once the
    store is complete. The store itself is not a declared output: Snakemake would delete it
    before a rerun, and its completed chunks are what a rerun after a crash resumes from.
    """
    from convdp import data as data_mod
    from convdp import models
    from convdp.download import file_hash
    from convdp.extract import extract_activations

    smooth = resolve_smoothing(smooth, smoothing)
    meta = read_json(meta_path)
    net = models.load_model(meta, weights)
    models.check_layers(net, layers, model_name)
    group = data_mod.open_dataset(dataset)
    images = group["images"]
    # both sides: a data set of one non-square size (``size: null``) whose height is the
    # net's input size passed a check of the height alone
    if meta.get("input_size") and tuple(images.shape[1:3]) != (meta["input_size"],) * 2:
        raise ValueError(
            f"{dataset}: images are {images.shape[1]}×{images.shape[2]} but model {model_name!r} "
            f"expects {meta['input_size']}×{meta['input_size']}; set the data set's size to "
            f"{meta['input_size']}"
        )
    if images.shape[-1] != meta["in_channels"]:
        raise ValueError(
            f"{dataset}: images have {images.shape[-1]} channel(s) but model {model_name!r} "
            f"takes {meta['in_channels']}"
        )
    if source is not None and Path(source) != Path(dataset):
        check_depth(group.attrs.get("depth"), data_mod.open_dataset(source).attrs.get("depth"),
                    dataset, source, model_name)
    fingerprint = {
        "model_sha256": file_hash(weights),
        # what the weights are used by (load_model checked the JSON's, where it has one)
        "net_structure": meta.get("structure") or models.structure_digest(net),
        "dataset_checksum": group.attrs["checksum"],
    }
    if code:
        fingerprint["code"] = code
    dev = models.resolve_device(device)
    store = activation_store(manifest)
    result = extract_activations(
        net, images, layers, store, mean=meta["mean"], std=meta["std"], fingerprint=fingerprint,
        batch_size=batch_size, chunk_size=chunk_size, device=dev, dtype=dtype,
        compression=compression, progress=progress, sample=sample, smooth=smooth,
        labels=data_mod.read_labels(dataset, group) if sample is not None else None,
    )
    out = {"store": store.name, "fingerprint": fingerprint, "model": model_name,
           "dataset": str(dataset), **result}
    write_json(manifest, out)
    return out


def choose_smoothing(
    weights: str | Path,
    meta_path: str | Path,
    dataset: str | Path,
    layers: list[str],
    out: str | Path,
    *,
    model_name: str = "model",
    device: str = "auto",
    max_images: int = 32,
    positions: int = 1 << 17,
) -> dict:
    """Choose the σ of each of ``layers`` (config ``extract.smooth: {layer: auto}``) from the
    net's unsmoothed maps of images spread evenly over ``dataset`` (the model's source: every
    data set of the model, and its random-weights control, is then smoothed alike, so that
    their maps and scores compare); write ``out`` (JSON: per layer the σ, 0 for none, and the
    evidence, :class:`convdp.smoothing.SigmaChooser`).

    The images: as many as give the largest of ``layers``' maps ``positions`` positions
    (32 of 64 × 64), at least 4 and at most ``max_images``; smoothed a few
    at a time (their maps' elements up to 2^22, the smoothing's temporaries ~20 times that)."""
    import torch

    from convdp import data as data_mod
    from convdp import models
    from convdp.extract import feature_extractor
    from convdp.smoothing import SigmaChooser, valid_positions
    from convdp.training import to_input

    meta = read_json(meta_path)
    net = models.load_model(meta, weights)
    models.check_layers(net, layers, model_name)
    images = data_mod.open_dataset(dataset)["images"]
    n = images.shape[0]
    dev = models.resolve_device(device)
    net = net.to(dev)
    extractor = feature_extractor(net, layers).to(dev)

    def forward(idx):
        x = to_input(images.get_orthogonal_selection((idx,)), meta["mean"], meta["std"]).to(dev)
        return x, extractor(x)

    with torch.no_grad():
        x, maps = forward(np.arange(1))  # the maps' sizes
        valid = valid_positions(net, layers, x, maps)
        choosers = {name: SigmaChooser(name, tuple(maps[name].shape[2:]), valid[name])
                    for name in layers}
        size = max(maps[name][0].numel() for name in layers)
        grid = max(maps[name][0, 0].numel() for name in layers)
        count = min(n, max_images, max(4, -(-positions // grid)))
        pick = np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))
        batch = max(1, (1 << 22) // size)
        for s in range(0, len(pick), batch):
            _, maps = forward(pick[s : s + batch])
            for name in layers:
                choosers[name].add(maps[name].float())
            log.info("%s: maps of %d of %d images read", model_name, min(s + batch, len(pick)),
                     len(pick))
    chosen = {name: c.result() for name, c in choosers.items()}
    for name, r in chosen.items():
        log.info("%s %s: smoothing sigma %g (%s)", model_name, name, r["sigma"], r["reason"])
    result = {"model": model_name, "dataset": str(dataset), "images": len(pick), "layers": chosen}
    write_json(out, result)
    return result


def resolve_smoothing(smooth: dict | None, chosen: str | Path | None) -> dict:
    """``smooth`` ({layer: σ or "auto"}) with each ``auto`` replaced by the σ the model's
    :func:`choose_smoothing` wrote to ``chosen``; layers it left unsmoothed (σ 0) dropped."""
    smooth = dict(smooth or {})
    auto = [name for name, sigma in smooth.items() if sigma == "auto"]
    if not auto:
        return smooth
    if chosen is None:
        raise ValueError(f"extract.smooth: layer(s) {auto} are 'auto' but no smoothing choice "
                         "(results/smoothing/MODEL.json) was given")
    layers = read_json(chosen).get("layers") or {}
    for name in auto:
        sigma = (layers.get(name) or {}).get("sigma")
        if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not 0 <= sigma < math.inf:
            raise ValueError(f"{chosen}: no smoothing sigma (a number >= 0) for layer {name!r} "
                             f"(it holds {layers.get(name, sorted(layers))!r}); delete it to "
                             "choose again")
        smooth[name] = float(sigma)
    return {name: sigma for name, sigma in smooth.items() if sigma}


def check_depth(depth: dict | None, ref: dict | None, dataset: str | Path,
                source: str | Path, model_name: str) -> None:
    """Refuse a data set whose images wider than 8 bits were scaled by another depth than its
    model's source's (``depth``, ``ref``: each store's, :func:`convdp.datasets.images._one_depth`)
    unless both depths were set (``bit_depth: auto`` picks each data set's from its largest
    value, so one bright pixel moves it): the same value would be another brightness, which
    the transfer scores would report as a domain shift."""
    if not depth or not ref or depth["bits"] == ref["bits"] or (depth["set"] and ref["set"]):
        return
    name, src = Path(dataset).stem, Path(source).stem
    how = {True: "as bit_depth says", False: "by bit_depth auto"}
    raise ValueError(
        f"{dataset}: its images were scaled as {depth['bits']}-bit (data max {depth['max']}, "
        f"{how[depth['set']]}), those of {src}, model {model_name!r}'s source, as "
        f"{ref['bits']}-bit (data max {ref['max']}, {how[ref['set']]}): one value would be "
        f"{2 ** abs(depth['bits'] - ref['bits'])}x as bright in one as in the other. Set "
        f"bit_depth on both datasets {name} and {src} (the sensor's depth, e.g. 12, 14 or 16)"
    )


def open_layer(manifest: str | Path, layer: str):
    """The Zarr array of ``layer`` from the store behind ``manifest`` (checked to belong to it)."""
    from convdp.extract import open_activations
    from convdp.sampled import SampledLayer

    info = read_json(manifest)
    if layer not in info["layers"]:
        raise ValueError(f"layer {layer!r} was not extracted in {manifest}; it has {list(info['layers'])}")
    group = open_activations(Path(manifest).parent / info["store"], info["fingerprint"])
    array = (SampledLayer(group, layer, info["layers"][layer]["shape"], info["chunk_size"])
             if info.get("store_kind") == "sample" else group[layer])
    if list(array.shape) != info["layers"][layer]["shape"]:
        raise ValueError(f"{manifest}: layer {layer!r} has shape {array.shape}, manifest says "
                         f"{info['layers'][layer]['shape']}")
    return array


def fit(
    manifest: str | Path,
    dataset: str | Path,
    layer: str,
    mode: str,
    method: str,
    params: dict,
    out_npz: str | Path,
    out_json: str | Path,
    *,
    seed: int = 0,
    context: dict | None = None,
    progress: bool = True,
) -> dict:
    """Cluster one layer in one mode with one method; write ``.npz`` (arrays) and ``.json`` (scalars)."""
    from convdp import data as data_mod
    from convdp.cluster import fit_layer

    array = open_layer(manifest, layer)
    labels = data_mod.read_labels(dataset)
    start = time.perf_counter()
    arrays, record = fit_layer(array, layer=layer, mode=mode, method=method, params=params,
                               seed=seed, class_labels=labels, progress=progress)
    record |= dict(context or {})
    record["wall_seconds"] = time.perf_counter() - start
    write_npz(out_npz, **arrays)
    write_json(out_json, record)
    return record


# A big layer's fit as separate jobs (config ``label_jobs``): fit once, label ranges, merge.


def fit_model(
    manifest: str | Path,
    layer: str,
    mode: str,
    method: str,
    params: dict,
    out_npz: str | Path,
    out_json: str | Path,
    *,
    seed: int = 0,
) -> dict:
    """Sample, preprocess and fit one layer; write the model (``.npz``) and its record (``.json``)."""
    from convdp.cluster import fit_model as fit_layer_model

    array = open_layer(manifest, layer)
    start = time.perf_counter()
    model, record = fit_layer_model(array, layer=layer, mode=mode, method=method, params=params,
                                    seed=seed)
    record["wall_seconds"] = time.perf_counter() - start
    write_npz(out_npz, **model)
    write_json(out_json, record)
    return record


def _load_npz(path: str | Path, what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read the {what} ({type(exc).__name__}: {exc}); "
                         "delete it and rerun") from exc


def label_part(
    manifest: str | Path,
    model_npz: str | Path,
    layer: str,
    mode: str,
    part: int,
    parts: int,
    out_npz: str | Path,
    *,
    progress: bool = True,
) -> dict:
    """Label the ``part``-th (1-based) of ``parts`` ranges of the layer's images (ranges aligned
    to the stored chunks) with the saved model; write ``labels``, ``start``, ``stop``,
    ``seconds`` to ``out_npz``."""
    from convdp.cluster import label_images, label_ranges
    from convdp.fitted import load_predictor
    from convdp.samples import chunk_size

    if not 1 <= part <= parts:
        raise ValueError(f"{out_npz}: part {part} of {parts} does not exist (parts are 1…{parts})")
    array = open_layer(manifest, layer)
    t0 = time.perf_counter()
    model = _load_npz(model_npz, "fitted model")
    predictor = load_predictor(model, str(model_npz))
    start, stop = label_ranges(array.shape[0], chunk_size(array), parts)[part - 1]
    log.info("layer %r (%s mode): labelling images %d–%d (part %d of %d)",
             layer, mode, start, stop - 1, part, parts)
    labels = label_images(array, model, mode=mode, start=start, stop=stop, layer=layer,
                          predictor=predictor, progress=progress)
    out = {"start": start, "stop": stop, "seconds": time.perf_counter() - t0}
    write_npz(out_npz, labels=labels, **{k: np.asarray(v) for k, v in out.items()})
    return out


def merge_parts(
    model_npz: str | Path,
    model_json: str | Path,
    parts: list[str | Path],
    dataset: str | Path,
    out_npz: str | Path,
    out_json: str | Path,
    *,
    context: dict | None = None,
) -> dict:
    """Join the labelled parts of a split fit into the fit's ``.npz`` and ``.json``: the same
    files, with the same arrays and record (timings aside), as :func:`fit` writes."""
    from convdp import data as data_mod
    from convdp.cluster import merge_labels

    t0 = time.perf_counter()
    model = _load_npz(model_npz, "fitted model")
    record = read_json(model_json)
    loaded, part_seconds = [], 0.0
    for path in parts:
        z = _load_npz(path, "labels part")
        missing = [k for k in ("labels", "start", "stop", "seconds") if k not in z]
        if missing:
            raise ValueError(f"{path}: not a labels part, it lacks {missing}; delete it and rerun")
        loaded.append((int(z["start"]), int(z["stop"]), z["labels"]))
        part_seconds += float(z["seconds"])
    labels = data_mod.read_labels(dataset)
    # seconds: fitting plus labelling, as in one job; wall_seconds: the jobs' own times
    arrays, record = merge_labels(model, record, loaded, class_labels=labels,
                                  seconds=record["fit_seconds"] + part_seconds,
                                  names=[str(p) for p in parts])
    record |= dict(context or {})
    record["wall_seconds"] += part_seconds + time.perf_counter() - t0
    write_npz(out_npz, **arrays)
    write_json(out_json, record)
    return record


# Which layers transfer (convdp.transfer): scores, AnB retraining, verdict.


def transfer_scores(
    source_manifest: str | Path,
    target_manifest: str | Path,
    source_fits: dict[str, str | Path],
    target_fits: dict[str, str | Path],
    target_dataset: str | Path,
    layers: list[str],
    out_json: str | Path,
    out_maps: str | Path,
    *,
    mode: str = "position",
    target_image_fits: dict[str, str | Path] | None = None,
    max_samples: int | None = 20000,
    probe_folds: int = 5,
    weight_threshold: float = 0.01,
    n_examples: int = 3,
    seed: int = 0,
    context: dict | None = None,
) -> dict:
    """Every unlabelled score (and the linear probe) per layer; example label maps.

    ``source_fits`` / ``target_fits`` map each layer to its DPGMM fit's ``.npz`` in ``mode``
    (the ``.json`` beside it is read too); ``target_image_fits`` (optional) to the image-mode
    fit's ``.npz``, for its NMI. Writes the record to ``out_json`` and the label maps of
    ``n_examples`` target images to ``out_maps`` (position mode only).
    """
    from convdp import data as data_mod
    from convdp.sampled import example_images
    from convdp.transfer import score_layer

    group = data_mod.open_dataset(target_dataset)
    # the extraction checks this too, but a changed source does not rerun the target's
    source_dataset = read_json(source_manifest)["dataset"]
    check_depth(group.attrs.get("depth"), data_mod.open_dataset(source_dataset).attrs.get("depth"),
                target_dataset, source_dataset, (context or {}).get("model", "?"))
    images = group["images"]
    classes = data_mod.read_labels(target_dataset, group)
    pick = example_images(images.shape[0], n_examples, classes)
    maps: dict[str, np.ndarray] = {"images": images.get_orthogonal_selection((pick,)),
                                   "examples": pick}
    rows = []
    for i, layer in enumerate(layers):
        own = _load_npz(target_fits[layer], "target fit")["labels"]
        row, layer_maps = score_layer(
            open_layer(source_manifest, layer), open_layer(target_manifest, layer),
            source_fits[layer], own, mode, pick=pick, classes=classes, max_samples=max_samples,
            probe_folds=probe_folds, weight_threshold=weight_threshold, seed=seed)
        # source_, target_ (label maps) and weights_ (the source's, for their colours)
        maps |= {f"{side}_{layer}": m for side, m in layer_maps.items()}
        src_json, tgt_json = (read_json(Path(fits[layer]).with_suffix(".json"))
                              for fits in (source_fits, target_fits))
        image_fit = (target_image_fits or {}).get(layer)
        nmi_image = (read_json(Path(image_fit).with_suffix(".json")).get("nmi", float("nan"))
                     if image_fit else float("nan"))
        row |= {"layer": layer, "layer_index": i, "source_clusters_kept": src_json["clusters_kept"],
                "target_clusters_kept": tgt_json["clusters_kept"],
                "target_nmi": tgt_json.get("nmi", float("nan")), "target_nmi_image": nmi_image}
        log.info("%s: shift %.3f (z %.2f), JS %.3f, probe %.3f", layer, row["shift"],
                 row["shift_z"], row["usage_js"], row["probe_accuracy"])
        rows.append(row)
    record = {"mode": mode, "layers": rows, "examples": pick.tolist(), **(context or {})}
    write_json(out_json, record)
    write_npz(out_maps, **maps)
    return record


def transfer_retrain(
    weights: str | Path,
    meta_path: str | Path,
    target_dataset: str | Path,
    layers: list[str],
    out_json: str | Path,
    *,
    epochs: int = 5,
    seeds: list[int] | tuple[int, ...] = (0, 1),
    train: dict | None = None,
    device: str = "cpu",
) -> dict:
    """Run :func:`convdp.transfer.anb_retrain` on the target data set and write its record."""
    from convdp import data as data_mod
    from convdp.transfer import anb_retrain

    ds = data_mod.read_dataset(target_dataset)
    if ds.labels is None:
        record = {"cuts": [], "runs": [], "epochs": epochs, "seeds": list(seeds),
                  "skipped": "the target data set has no labels"}
    else:
        record = anb_retrain(read_json(meta_path), weights, ds.images, ds.labels, layers,
                             epochs=epochs, seeds=seeds, train=train, device=device,
                             data_name=str(target_dataset))
    write_json(out_json, record)
    return record


def transfer_verdict(
    scores_json: str | Path,
    retrain_json: str | Path,
    maps_npz: str | Path,
    out_csv: str | Path,
    out_json: str | Path,
    out_figure: str | Path,
    out_label_maps: str | Path,
    *,
    rule: str = "step",
    step_tolerance: float = 0.5,
    shift_tolerance: float = 1.0,
    accuracy_tolerance: float = 0.02,
    control_scores_json: str | Path | None = None,
    control_retrain_json: str | Path | None = None,
) -> dict:
    """The verdict table, its summary JSON and the two figures; with the model's
    random-weights control's scores (and retraining) beside its own where given."""
    from convdp.aggregate import write_csv
    from convdp.transfer import plot_verdict, verdict

    def records(scores, retrain):
        retrain = read_json(retrain) if retrain else {}
        return read_json(scores), retrain if retrain.get("cuts") or retrain.get("costs") else None

    control = records(control_scores_json, control_retrain_json) if control_scores_json else None
    df, summary = verdict(*records(scores_json, retrain_json), rule=rule,
                          step_tolerance=step_tolerance, shift_tolerance=shift_tolerance,
                          accuracy_tolerance=accuracy_tolerance, control=control)
    write_csv(df, out_csv)
    summary["layers"] = df.to_dict(orient="records")
    write_json(out_json, summary)
    plot_verdict(df, summary, _load_npz(maps_npz, "label maps"), out_figure, out_label_maps)
    return summary
