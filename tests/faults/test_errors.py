"""Case 4: bad input gives a clear error naming the culprit and damages no earlier result."""

from __future__ import annotations

import copy
import logging
import pathlib
import shutil

import numpy as np
import pytest
import torch
import yaml

from convdp import pipeline
from convdp.config import ConfigError, validate_config
from convdp.extract import open_activations
from convdp.models import DigitNet, load_pretrained, load_state_dict

from .helpers import PARAMS, ROOT, make_model, snapshot, store_attrs, tmp_files

TINY = yaml.safe_load((ROOT / "tests/config/tiny.yaml").read_text())


def extract(a, manifest, layers=("relu1", "relu2", "relu3", "relu4"), weights=None, meta=None,
            data=None, **kw):
    return pipeline.extract(weights or a.weights, meta or a.meta, data or a.data, list(layers),
                            manifest, device="cpu", batch_size=20, chunk_size=40, model_name="net",
                            progress=False, **kw)


def fit(manifest, data, layer, mode, out, params=PARAMS, method="dpgmm"):
    return pipeline.fit(manifest, data, layer, mode, method, params, f"{out}.npz", f"{out}.json",
                        progress=False)


def assert_no_output(out):
    """Neither output of a failed fit exists, nor a temporary file beside them."""
    assert not pathlib.Path(f"{out}.npz").exists() and not pathlib.Path(f"{out}.json").exists()
    if pathlib.Path(out).parent.exists():
        assert not tmp_files(pathlib.Path(out).parent)


@pytest.fixture
def work(assets, tmp_path):
    """A copy of the assets with one finished fit; ``snap()`` proves nothing was changed."""
    a = assets.copy(tmp_path / "w")
    fit(a.manifest, a.data, "relu2", "image", tmp_path / "w/fits/relu2/image")
    before = snapshot(a.root)
    a.snap = lambda: snapshot(a.root) == before
    return a


# ---- configuration -------------------------------------------------------------------------

@pytest.mark.parametrize("mutate, culprit", [
    (lambda c: c.update(sed=1), "'sed' was unexpected"),
    (lambda c: c["dpgmm"].update(n_componets=4), "dpgmm: Additional properties are not allowed ('n_componets'"),
    (lambda c: c["datasets"]["digits_source"].update(colour=True), "datasets.digits_source: Additional properties"),
    (lambda c: c["dpgmm"].update(n_components="ten"), "dpgmm.n_components: 'ten' is not of type 'integer'"),
    (lambda c: c["extract"].update(batch_size=2.5), "extract.batch_size: 2.5 is not of type 'integer'"),
    (lambda c: c["dpgmm"].update(max_iter=-3), "dpgmm.max_iter: -3 is less than the minimum of 1"),
    (lambda c: c["dpgmm"].update(weight_threshold=1.5), "dpgmm.weight_threshold: 1.5 is greater than the maximum"),
    (lambda c: c["baseline"].update(k_min=9, k_max=3), "baseline.k_min (9) is larger than baseline.k_max (3)"),
    (lambda c: c["models"]["digitnet"].update(analyse_on=["digits_nowhere"]), "models.digitnet.analyse_on: unknown data set 'digits_nowhere'"),
    (lambda c: c["models"]["digitnet"].update(layers=["relu1", "fc7"]), "models.digitnet.layers: layer(s) ['fc7'] not found in digitnet"),
], ids=["unknown-key", "unknown-nested-key", "unknown-dataset-key", "wrong-type", "float-not-int",
        "negative", "above-maximum", "kmin-gt-kmax", "unknown-dataset", "unknown-layer"])
def test_config_error_names_the_key(mutate, culprit):
    config = copy.deepcopy(TINY)
    mutate(config)
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert culprit in str(err.value)


# ---- model and data ------------------------------------------------------------------------

def test_layer_the_model_lacks_is_named(work, tmp_path):
    with pytest.raises(ValueError, match=r"layer\(s\) \['fc7'\] not found in net; its layers are: conv1, relu1"):
        extract(work, work.manifest, layers=("relu1", "fc7"))
    with pytest.raises(ValueError, match=rf"layer 'fc7' was not extracted in {work.manifest}"):
        fit(work.manifest, work.data, "fc7", "image", tmp_path / "w/fits/fc7/image")
    assert_no_output(tmp_path / "w/fits/fc7/image")
    assert work.snap()


def _png_folder(root: pathlib.Path, per_class: int = 3) -> list[pathlib.Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            p = root / cls / f"{i}.png"
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(p)
            paths.append(p)
    return paths


def test_images_with_wrong_channel_count_are_named(work, tmp_path):
    _png_folder(tmp_path / "rgb")
    rgb = tmp_path / "w/rgb.zarr"
    pipeline.prepare_dataset({"kind": "folder", "path": str(tmp_path / "rgb"), "size": 16}, rgb)
    before = snapshot(work.root / "acts")
    manifest = tmp_path / "w/acts/net/rgb.json"
    with pytest.raises(ValueError, match=rf"{rgb}: images have 3 channel\(s\) but model 'net' takes 1"):
        extract(work, manifest, data=rgb)
    assert not manifest.exists() and not pipeline.activation_store(manifest).exists()
    assert snapshot(work.root / "acts") == before


@pytest.mark.parametrize("damage", ["truncated", "not-an-image", "empty"])
def test_unreadable_image_stops_naming_the_file_or_is_skipped(tmp_path, caplog, damage):
    paths = _png_folder(tmp_path / "imgs")
    bad = paths[4]
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:60])
    elif damage == "not-an-image":
        bad.write_text("this is not a PNG\n")
    else:
        bad.write_bytes(b"")
    spec = {"kind": "folder", "path": str(tmp_path / "imgs"), "size": 16}
    # An earlier, good store at the destination survives a failed rerun.
    out = tmp_path / "data.zarr"
    pipeline.prepare_dataset({"kind": "digits", "classes": [0, 1], "size": 16, "max_samples": 10}, out)
    before = snapshot(out)
    with pytest.raises(ValueError, match=rf"cannot read image {bad}: .*\(the data set's "
                       r"on_error: skip leaves unreadable images out\)"):
        pipeline.prepare_dataset({**spec, "on_error": "stop"}, out)
    assert snapshot(out) == before
    assert not tmp_files(tmp_path) and not list(tmp_path.glob(".tmp-*"))

    caplog.set_level(logging.WARNING)
    info = pipeline.prepare_dataset({**spec, "on_error": "skip"}, tmp_path / "skip.zarr")
    assert info["n_images"] == len(paths) - 1
    assert f"skipping unreadable image {bad}" in caplog.text
    from convdp.data import read_dataset

    ds = read_dataset(tmp_path / "skip.zarr")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert bad.relative_to(tmp_path / "imgs").as_posix() not in ds.files and len(ds.files) == 5


# ---- activations ---------------------------------------------------------------------------

def test_float_images_and_images_too_small_for_a_layer_are_refused_by_the_extraction(tmp_path):
    """Float images in [0, 1] were divided by 255 once more (the net saw black images) without
    a word; 4 × 4 images through DigitNet's relu4 failed in torch ("Output size is too small")
    naming neither the images' size nor the layers. Nothing is written either way."""
    from convdp.extract import extract_activations

    torch.manual_seed(0)
    net = DigitNet(num_classes=2, in_channels=1).eval()
    images = np.random.default_rng(0).integers(0, 255, (4, 28, 28, 1), dtype=np.uint8)
    kwargs = dict(mean=[0.5], std=[0.25], fingerprint={"d": 1}, progress=False)
    with pytest.raises(ValueError, match=r"the images are float32: extract_activations takes "
                                         r"uint8 images"):
        extract_activations(net, images.astype(np.float32) / 255, ["relu1"],
                            tmp_path / "f.zarr", **kwargs)
    with pytest.raises(ValueError, match=r"fails on the 4×4 images: .*Output size is too small "
                                         r"\(images too small for these layers\?"):
        extract_activations(net, images[:, :4, :4], ["relu1", "relu4"], tmp_path / "t.zarr",
                            **kwargs)
    assert not (tmp_path / "f.zarr").exists() and not (tmp_path / "t.zarr").exists()

    class Sliceable:  # an array-like without a dtype (extract_speed.py's repeated images)
        shape = images.shape

        def __getitem__(self, sl):
            return images[sl]

        def __len__(self):
            return len(images)

    extract_activations(net, Sliceable(), ["relu1"], tmp_path / "s.zarr", **kwargs)
    assert open_activations(tmp_path / "s.zarr")["relu1"].shape[0] == 4


def test_a_data_set_store_opened_as_activations_is_named_for_what_it_is(tmp_path):
    """It was called an incomplete activation store ("0 chunks written; rerun
    extract_activations")."""
    from convdp.datasets.base import Dataset
    from convdp.datasets.store import write_dataset

    write_dataset(tmp_path / "d.zarr", Dataset(np.zeros((2, 8, 8, 1), np.uint8), None, [], "t"))
    with pytest.raises(ValueError, match=r"d.zarr is not an activation store \(a data set "
                                         r"store, or another Zarr group: it holds images"):
        open_activations(tmp_path / "d.zarr")


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_nan_or_inf_activations_name_the_layer(work, tmp_path, value):
    weights, meta = make_model(tmp_path, "poisoned", poison={"conv3.bias": value})
    manifest = tmp_path / "p/acts/poisoned/digits.json"
    with pytest.raises(ValueError, match=r"layer 'relu3' produced NaN or Inf activations for image\(s\) \[0, 1,"):
        extract(work, manifest, weights=weights, meta=meta)
    store = pipeline.activation_store(manifest)
    assert not manifest.exists() and store_attrs(store)["complete"] is False
    with pytest.raises(ValueError, match=rf"{store} is incomplete"):
        open_activations(store)
    assert work.snap()


def test_a_missing_activation_store_is_named_with_the_way_to_extract_it_again(tmp_path):
    """It was zarr's "does not exist" under "not a readable activation store", with no word
    of the manifest that makes Snakemake take the extraction as done."""
    store = tmp_path / "results/activations/net/digits.zarr"
    with pytest.raises(ValueError, match=rf"{store} does not exist .*; run `snakemake "
                       rf"--forcerun {store.with_suffix('.json')}` to extract it again"):
        open_activations(store)


def test_float16_overflow_is_caught_at_extraction(work, tmp_path):
    weights, meta = make_model(tmp_path, "loud")
    state = torch.load(weights, weights_only=True)
    state["conv1.weight"] *= 1e5
    torch.save(state, weights)
    manifest = tmp_path / "w/acts/loud/digits.json"
    with pytest.raises(ValueError, match=r"layer 'relu1' produced NaN or Inf activations \(as float16: values beyond ±65504 overflow"):
        extract(work, manifest, weights=weights, meta=meta, dtype="float16")
    assert not manifest.exists()


def test_nan_in_stored_activations_names_the_layer(tmp_path):
    from convdp.cluster import fit_layer

    acts = np.random.default_rng(0).random((30, 2, 2, 4)).astype(np.float32)
    acts[7, 1, 0, 2] = np.inf
    for mode in ("position", "image"):
        with pytest.raises(ValueError, match=rf"layer 'conv9' \({mode} mode\): the activations hold NaN or Inf"):
            fit_layer(acts, layer="conv9", mode=mode, method="dpgmm", params=PARAMS, progress=False)


def test_dead_layer_is_named(work, tmp_path):
    weights, meta = make_model(tmp_path, "dead", poison={"conv3.weight": 0.0, "conv3.bias": 0.0})
    manifest = tmp_path / "w/acts/dead/digits.json"
    extract(work, manifest, weights=weights, meta=meta)
    for mode in ("position", "image"):
        out = tmp_path / f"w/fits/dead/relu3/{mode}"
        with pytest.raises(ValueError, match=rf"layer 'relu3' \({mode} mode\): all 64 channels are constant"):
            fit(manifest, work.data, "relu3", mode, out)
        assert_no_output(out)
    fit(manifest, work.data, "relu2", "image", tmp_path / "w/fits/dead/relu2/image")  # the rest works


@pytest.mark.parametrize("method", ["dpgmm", "baseline"])
def test_fewer_samples_than_components_is_named(work, tmp_path, method):
    params = {**PARAMS, "dpgmm": {**PARAMS["dpgmm"], "n_components": 500},
              "baseline": {**PARAMS["baseline"], "k_min": 500, "k_max": 600}}
    out = tmp_path / "w/fits/relu4/image"
    with pytest.raises(ValueError, match=r"layer 'relu4' \(image mode\): 120 samples are fewer than the 500 mixture components"):
        fit(work.manifest, work.data, "relu4", "image", out, params, method)
    assert_no_output(out)
    assert work.snap()


# ---- damaged or foreign activation stores --------------------------------------------------

def _chunk_files(store, layer):
    return sorted(p for p in (store / layer / "c").rglob("*") if p.is_file())


def test_deleted_chunk_is_refused_naming_store_and_layer(work, tmp_path):
    store = pipeline.activation_store(work.manifest)
    _chunk_files(store, "relu3")[1].unlink()
    out = tmp_path / "w/fits/relu3/position"
    msg = rf"{store}: layer 'relu3' is damaged: 1 of its 3 chunk files are missing"
    with pytest.raises(ValueError, match=msg):
        pipeline.open_layer(work.manifest, "relu1")
    with pytest.raises(ValueError, match=msg):
        fit(work.manifest, work.data, "relu3", "position", out)
    assert_no_output(out)
    assert (tmp_path / "w/fits/relu2/image.json").exists()


@pytest.mark.parametrize("how", ["truncated", "emptied", "garbled"])
def test_damaged_chunk_is_refused_naming_store_and_layer(work, tmp_path, how):
    store = pipeline.activation_store(work.manifest)
    if how == "garbled":
        # Uncompressed chunks (the default) of the right size are read as they are: only a
        # codec notices garbled bytes, so this case uses a compressed store.
        shutil.rmtree(store)
        extract(work, work.manifest, compression="lz4")
    chunk = _chunk_files(store, "relu2")[2]
    data = chunk.read_bytes()
    chunk.write_bytes({"truncated": data[: len(data) // 3], "emptied": b"",
                       "garbled": data[:16] + bytes(len(data) - 16)}[how])
    earlier = snapshot(tmp_path / "w/fits")
    for mode in ("position", "image"):
        out = tmp_path / f"w/fits/relu2b/{mode}"
        with pytest.raises(ValueError, match=r"cannot read images 80-119 of layer 'relu2' from "
                           rf"file://{store}/relu2: a stored chunk is damaged or truncated"):
            fit(work.manifest, work.data, "relu2", mode, out)
        assert_no_output(out)
    assert snapshot(tmp_path / "w/fits") == earlier


def test_store_from_another_model_is_refused_and_not_reused(work, tmp_path, caplog):
    weights_b, meta_b = make_model(tmp_path, "other", seed=1)
    manifest_b = tmp_path / "w/acts/other/digits.json"
    extract(work, manifest_b, weights=weights_b, meta=meta_b)
    store_a, store_b = pipeline.activation_store(work.manifest), pipeline.activation_store(manifest_b)
    original = tmp_path / "original_a.zarr"
    shutil.copytree(store_a, original)
    shutil.rmtree(store_a)
    shutil.copytree(store_b, store_a)  # model B's activations where model A's should be
    with pytest.raises(ValueError, match=rf"{store_a} was written for another model or data set"):
        pipeline.open_layer(work.manifest, "relu1")
    out = tmp_path / "w/fits/relu1/image"
    with pytest.raises(ValueError, match="another model"):
        fit(work.manifest, work.data, "relu1", "image", out)
    assert_no_output(out)
    # Re-extracting for model A discards B's store rather than resuming from it.
    caplog.set_level(logging.INFO, logger="convdp")
    info = extract(work, work.manifest)
    assert info["chunks_resumed"] == 0
    assert (f"{store_a} was written with other inputs (model, data set, layers, input "
            "normalisation or store settings): it will be replaced") in caplog.text
    from .helpers import assert_stores_equal

    assert_stores_equal(original, store_a)
    assert_stores_equal(store_b, tmp_path / "w/acts/other/digits.zarr")  # B's own: untouched


# ---- checkpoints ---------------------------------------------------------------------------

class Payload:
    """Unpickling this creates ``marker``: proof that a file was (or was not) unpickled."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class Settings:
    """A harmless custom class (still not allowed in a checkpoint)."""

    def __init__(self):
        self.lr = 0.1


def test_payload_is_live(tmp_path):
    """The booby trap works: loading it the unsafe way does create the marker."""
    live = tmp_path / "live.pt"
    torch.save({"w": torch.zeros(2), "x": Payload(tmp_path / "live-marker")}, live)
    torch.load(live, weights_only=False)
    assert (tmp_path / "live-marker").exists()


@pytest.mark.parametrize("kind", ["nn.Module", "payload-in-dict", "payload", "custom-class",
                                  "truncated"])
def test_checkpoint_that_is_not_a_state_dict_is_refused_unopened(work, tmp_path, kind):
    marker = tmp_path / "MARKER"
    ckpt = tmp_path / f"{kind}.pt"
    state = torch.load(work.weights, weights_only=True)
    obj = {
        "nn.Module": lambda: DigitNet(5, 1),
        "payload-in-dict": lambda: {**state, "extra": Payload(marker)},
        "payload": lambda: Payload(marker),
        "custom-class": lambda: {"state_dict": state, "settings": Settings()},
        "truncated": lambda: state,
    }[kind]()
    torch.save(obj, ckpt)
    if kind == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:5000])
    reason = "truncated" if kind == "truncated" else "not a plain state_dict"
    with pytest.raises(ValueError, match=rf"{ckpt} is {reason}"):
        load_state_dict(ckpt)
    with pytest.raises(ValueError, match=rf"{ckpt} is {reason}"):
        extract(work, tmp_path / "w/acts/evil/digits.json", weights=ckpt)
    with pytest.raises(ValueError, match=rf"{ckpt} is {reason}"):
        load_pretrained({"arch": "digitnet", "weights": str(ckpt), "num_classes": 5})
    assert not marker.exists(), "the checkpoint was unpickled"
    assert not (tmp_path / "w/acts/evil").exists()
    assert work.snap()
