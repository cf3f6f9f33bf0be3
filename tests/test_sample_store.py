"""extract.store: sample keeps only the seeded samples the fits and transfer scores read,
then labels every position in a second pass of the net; it gives the full store's results."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from convdp import pipeline
from convdp.data import read_labels
from convdp.sampled import example_images, position_index
from convdp.samples import fit_subset, iter_samples, read_samples, subsample
from convdp.transfer.baselines import BASELINE_SAMPLES
from tests.conftest import ROOT
from tests.faults.helpers import make_digits, make_model
from tests.test_workflow import TIMING, snakemake


@pytest.mark.parametrize("n, k, seed", [(10**6, 2000, 0), (50_000, 20_000, 3), (500, 1000, 1)])
def test_a_draw_from_a_count_is_the_draw_from_its_index(n, k, seed):
    assert np.array_equal(subsample(n, k, seed), subsample(np.arange(n), k, seed))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A full and a sample store of the same net and images (a target: fits, transfer)."""
    d = tmp_path_factory.mktemp("stores")
    weights, meta = make_model(d)
    data = make_digits(d / "data.zarr", n=60)
    plan = {"modes": ["position", "image"], "max_samples": 500, "seed": 0,
            "transfer": {"mode": "position", "role": "target", "max_samples": 300,
                         "n_examples": 2}}
    kw = dict(device="cpu", batch_size=16, chunk_size=25, progress=False)
    pipeline.extract(weights, meta, data, ["relu1", "relu3"], d / "full.json", **kw)
    pipeline.extract(weights, meta, data, ["relu1", "relu3"], d / "sample.json", sample=plan, **kw)
    return d, plan


@pytest.mark.parametrize("role", ["source", "target"])
def test_the_kept_positions_are_the_union_of_the_draws(role):
    """position_index: sorted, each position once, exactly the positions of the draws."""
    from convdp.draws import mmd2_draw, score_draw

    shape = (7, 30, 20, 4)
    plan = {"modes": ["position"], "max_samples": 900, "seed": 5,
            "transfer": {"mode": "position", "role": role, "max_samples": 1200,
                         "n_examples": 2}}
    total = 7 * 30 * 20
    fit = subsample(total, 900, 5)
    parts = [fit, score_draw(total, role, 5, 1200, fit)[0], mmd2_draw(total, role, 5)]
    if role == "target":
        parts.append((example_images(7, 2)[:, None] * 600 + np.arange(600)).ravel())
    index = position_index(shape, plan)
    assert index.dtype == np.int64 and np.all(np.diff(index) > 0)
    assert np.array_equal(index, np.unique(np.concatenate(parts)))
    if role == "target":  # labelled: the examples are images of classes 0 and 2, 0 and 5
        labelled = position_index(shape, plan, np.array([0, 0, 0, 1, 1, 2, 2]))
        assert np.isin(np.r_[0:600, 3000:3600], labelled).all()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_pooled_vectors_are_the_float64_sum_position_by_position(dtype):
    """Image mode's pooled vector (both stores compute it with to_samples): the float64 sum
    of the positions in order, divided, in the stored dtype, whatever NumPy's cast buffer;
    the caller's buffer size is left as it was."""
    from convdp.samples import to_samples

    rng = np.random.default_rng(0)
    # magnitudes over 6 decades: the order of a float32 sum shows in the result
    x = (rng.standard_normal((3, 37, 29, 5)) * 10.0 ** rng.uniform(-3, 3, (3, 37, 29, 5)))
    x = x.astype(dtype)
    n, h, w, c = x.shape
    ref = (np.cumsum(x.reshape(n, h * w, c), axis=1, dtype=np.float64)[:, -1] / (h * w))
    ref = ref.astype(dtype)
    if dtype == "float32":
        assert not np.array_equal(x.reshape(n, h * w, c).mean(axis=1, dtype=np.float32), ref)
    # NumPy's default buffer (8,192 elements here) and to_samples' larger one: the same bits
    assert np.array_equal(x.mean(axis=(1, 2), dtype=np.float64).astype(dtype), ref)
    before = np.getbufsize()
    assert np.array_equal(to_samples(x, "image"), ref)
    assert np.getbufsize() == before


def test_the_sample_stores_own_chunk_files_are_what_zarr_writes(stores, tmp_path):
    """Uncompressed (the fixture's stores), a sample store's chunks are written as their files
    directly (convdp.rawchunks); compressed, through Zarr: the same arrays, the last chunk of
    10 images (60 in chunks of 25) included."""
    import zarr

    from convdp import rawchunks
    from convdp.io import read_json

    d, plan = stores
    weights, meta = make_model(tmp_path)  # the fixture's net: the same seed
    kw = dict(device="cpu", batch_size=16, chunk_size=25, progress=False)
    pipeline.extract(weights, meta, d / "data.zarr", ["relu1", "relu3"], tmp_path / "lz4.json",
                     sample=plan, compression="lz4", **kw)

    def group(manifest):
        return zarr.open_group(manifest.parent / read_json(manifest)["store"], mode="r")

    direct, through_zarr = group(d / "sample.json"), group(tmp_path / "lz4.json")
    assert rawchunks.chunk_files(direct["positions/relu1"]) is not None  # the direct path
    assert rawchunks.chunk_files(through_zarr["positions/relu1"]) is None  # Zarr's
    # the pooled vectors' last chunk (images 50-59) is a whole chunk, zeros past the 60th
    pooled = direct["pooled/relu1"]
    last = rawchunks.chunk_path(pooled, rawchunks.chunk_files(pooled), 2)
    raw = np.frombuffer(last.read_bytes(), pooled.dtype).reshape(pooled.chunks)
    assert np.array_equal(raw[:10], pooled[50:]) and not raw[10:].any() and raw[:10].any()
    for layer in ("relu1", "relu3"):
        for part in ("index", "positions", "pooled"):
            a, b = direct[f"{part}/{layer}"], through_zarr[f"{part}/{layer}"]
            assert a.attrs.asdict() == b.attrs.asdict()
            assert np.array_equal(a[:], b[:]), (part, layer)


@pytest.mark.parametrize("part", ["positions", "pooled"])
def test_a_sample_store_that_lost_a_chunk_file_is_refused(stores, tmp_path, part):
    """A full store's missing chunk is refused; a sample store's (its arrays lie one folder
    down) was read as zeros: 132 of 300 kept positions, the pooled vectors of 16 images."""
    from convdp.extract import open_activations
    from convdp.io import read_json

    d, _ = stores
    store = tmp_path / "sample.zarr"
    shutil.copytree(d / read_json(d / "sample.json")["store"], store)
    assert open_activations(store)  # whole: read as before
    files = sorted(p for p in (store / part / "relu3" / "c").rglob("*") if p.is_file())
    files[1].unlink()
    with pytest.raises(ValueError, match=rf"layer 'relu3' is damaged \(its {part}/relu3 array\)"
                                         r": 1 of its \d+ chunk files are missing"):
        open_activations(store)


@pytest.mark.parametrize("layer", ["relu1", "relu3"])
def test_the_sample_store_holds_what_the_fits_and_scores_read(stores, layer):
    d, plan = stores
    full = pipeline.open_layer(d / "full.json", layer)
    sample = pipeline.open_layer(d / "sample.json", layer)
    assert sample.shape == full.shape and sample.chunks == full.chunks
    for mode in ("position", "image"):  # the fits' draw
        a, b = fit_subset(full, mode, 500, 0), fit_subset(sample, mode, 500, 0)
        assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])
    n, h, w, _ = full.shape
    target = subsample(n * h * w, 300, 1)  # the transfer scores' draw on a target
    assert np.array_equal(read_samples(full, "position", target),
                          read_samples(sample, "position", target))
    labels = read_labels(d / "data.zarr")
    pick = example_images(n, 2, labels)  # the transfer figure's example images, by class
    assert len(set(labels[pick])) == 2
    assert np.array_equal(full.get_orthogonal_selection((pick,)),
                          sample.get_orthogonal_selection((pick,)))
    assert np.array_equal(np.concatenate(list(iter_samples(full, "image"))),
                          np.concatenate(list(iter_samples(sample, "image"))))
    mmd = subsample(n * h * w, BASELINE_SAMPLES, 3)  # the mmd2 baseline's draw on a target
    assert np.array_equal(read_samples(full, "position", mmd), read_samples(sample, "position", mmd))
    assert len(sample.index) == len(position_index(full.shape, plan, labels))
    if n * h * w <= BASELINE_SAMPLES:  # relu3's 960 positions: the mmd2 draw reads them all
        assert len(sample.index) == n * h * w
        return
    assert len(sample.index) < n * h * w
    with pytest.raises(ValueError, match="not in the sample store"):
        read_samples(sample, "position", np.setdiff1d(np.arange(n * h * w), sample.index)[:1])


class _NearestOf2:
    """Two clusters split on the first channel; certain far from the split."""

    means_ = np.array([[0.0], [1.0]])

    def __init__(self, cut):
        self.cut = cut

    def predict_proba(self, x):
        p = 1 / (1 + np.exp(-(x[:, 0] - self.cut) * 4))
        return np.stack([1 - p, p], 1)


class _First:
    def transform(self, x):
        return np.asarray(x, np.float64)[:, :1]


def test_the_atlas_picks_among_the_stored_positions(stores):
    from convdp.atlas import typical_positions

    d, _ = stores
    full = pipeline.open_layer(d / "full.json", "relu1")
    sample = pipeline.open_layer(d / "sample.json", "relu1")
    n, h, w, _ = full.shape
    x = read_samples(full, "position", np.arange(n * h * w))[:, 0]
    predictor = (_First(), _NearestOf2(float(np.median(x))))
    resp_f, where_f, _ = typical_positions(full, predictor, 2)
    resp_s, where_s, _ = typical_positions(sample, predictor, 2)
    flat = np.arange(n)[:, None] * (h * w) + where_s
    stored = np.isin(flat, sample.index)
    assert stored[resp_s > 0].all() and (resp_s > 0).any()  # every pick is a stored position
    assert (resp_s <= resp_f + 1e-6).all()  # never more typical than the best of all positions
    same = np.isin(np.arange(n)[:, None] * (h * w) + where_f, sample.index)
    assert np.array_equal(where_s[same], where_f[same])  # the full pick, where it is stored


# End to end: the default data (digits), two layers, both modes, both stores.


def small_config(tmp_path, store):
    config = yaml.safe_load((ROOT / "tests/config/tiny.yaml").read_text())
    for spec in config["datasets"].values():
        spec["max_samples"] = 60
    config["models"]["digitnet"]["layers"] = ["relu1", "relu3"]
    config["models"]["digitnet"]["train"]["epochs"] = 1
    # relu1 smoothed: the labelling pass must smooth it as the extraction did
    config["extract"] |= {"store": store, "chunk_size": 25, "batch_size": 10,
                          "smooth": {"relu1": 1.5}}
    config["preprocess"]["max_samples"] = 600
    config["dpgmm"] |= {"restarts": 1, "max_iter": 20}
    config["transfer"] |= {"retrain": False, "max_samples": 300}
    path = tmp_path / f"{store}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_sample_and_full_stores_give_the_same_results(tmp_path):
    runs = {}
    for store in ("full", "sample"):
        work = tmp_path / store
        if store == "sample":  # the same data and net (prepared by the full run)
            for part in ("data", "models"):
                shutil.copytree(tmp_path / "full/results" / part, work / "results" / part)
        out = snakemake(ROOT, work, "--cores", "2", "--configfile", str(small_config(tmp_path, store)))
        assert out.returncode == 0, out.stderr[-3000:]
        runs[store] = work / "results"
    full, sample = runs["full"], runs["sample"]
    assert (sample / "labels/digitnet/digits_target.json").exists()
    assert not (full / "labels").exists()
    summaries = [pd.read_csv(r / "summary.csv").drop(columns=TIMING, errors="ignore")
                 for r in (full, sample)]
    pd.testing.assert_frame_equal(*summaries)
    fits = sorted(p.relative_to(full) for p in full.glob("*/digitnet/*/*/*.npz"))
    assert len(fits) == 2 * 2 * 2 * 2  # methods x data sets x layers x modes
    for rel in fits:
        with np.load(full / rel) as a, np.load(sample / rel) as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                assert np.array_equal(a[key], b[key]), (rel, key)
    pd.testing.assert_frame_equal(pd.read_csv(full / "transfer/digitnet/digits_target.csv"),
                                  pd.read_csv(sample / "transfer/digitnet/digits_target.csv"))
    stored = {r: sum(f.stat().st_size for f in (r / "activations").rglob("*") if f.is_file())
              for r in (full, sample)}
    assert stored[sample] < stored[full]


def test_auto_takes_sample_above_the_projected_threshold(repo_root):
    from convdp.config import validate_config
    from convdp.storage import projected_bytes, store_kinds

    config = validate_config(yaml.safe_load((repo_root / "config/paper.yaml").read_text()))
    # one 640 x 640 image through VGG16's blocks 1-4 (the paper config): 197 MB in float32
    assert projected_bytes(config, "vgg16", "histology") == 4 * (
        640 * 640 * 64 + 320 * 320 * 128 + 160 * 160 * 256 + 80 * 80 * 512)
    models = ("vgg16", "vgg16_random")  # the net and its random-weights control
    assert store_kinds(config) == {(m, "histology"): "full" for m in models}
    config["extract"]["auto_threshold_gb"] = 0.01
    assert store_kinds(config) == {(m, "histology"): "sample" for m in models}
    config["extract"]["store"] = "full"
    assert store_kinds(config) == {(m, "histology"): "full" for m in models}


def test_dry_run_of_a_sample_store_has_a_labelling_pass_per_model_and_data_set(tmp_path):
    out = snakemake(ROOT, tmp_path, "-n", "--configfile", str(ROOT / "config.yaml"),
                    "--config", "extract={store: sample}")
    assert out.returncode == 0, out.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, re.M))
    # digitnet and its random-weights control, each on two data sets
    assert counts["label_activations"] == "4"
    # per fit: the model, then the outputs; 32 DPGMM fits, 16 baselines (not the control's)
    for method, n in (("dpgmm", "32"), ("baseline", "16")):
        assert counts[f"fit_{method}_model"] == counts[f"fit_{method}"] == n
        assert f"label_{method}" not in counts


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_dpgmm_on_cuda_asks_a_gpu_for_the_dpgmm_fits_and_the_labelling_pass(tmp_path, backend):
    """... with the torch backend: scikit-learn's fits run on the CPU, and ask for none."""
    out = snakemake(ROOT, tmp_path, "-n", "--configfile", str(ROOT / "config.yaml"), "--config",
                    "extract={store: sample, device: cpu}", f"dpgmm={{device: cuda, backend: {backend}}}")
    assert out.returncode == 0, out.stderr
    gpus = {}
    for rule, gpu in re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: .*?gpu=(\d)",
                                out.stdout, re.M):
        gpus.setdefault(rule, set()).add(gpu)
    on_gpu = {"1"} if backend == "torch" else {"0"}
    assert gpus["fit_dpgmm_model"] == gpus["label_activations"] == on_gpu
    assert gpus["fit_baseline_model"] == gpus["extract_activations"] == {"0"}


def test_the_dpgmm_device_reaches_the_estimator_and_the_rebuilt_predictor():
    from convdp.cluster import make_dpgmm
    from convdp.fitted import load_predictor, model_arrays
    from convdp.preprocess import Preprocess

    params = {"n_components": 3, "covariance_type": "diag", "concentration": 1.0,
              "max_iter": 20, "tol": 1e-3, "device": "cpu"}
    assert make_dpgmm(params, 0).device == "cpu"
    assert make_dpgmm({**params, "device": "auto"}, 0).device == "auto"
    X = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    est = make_dpgmm(params, 0).fit(X)
    pre = Preprocess(None, None, 0).fit(X, "x")
    _, rebuilt = load_predictor(model_arrays(est, pre), device="cpu")
    assert np.array_equal(rebuilt.predict(X), est.predict(X))


def test_the_labelling_pass_labels_the_activations_in_the_extractions_dtype(tmp_path):
    """A float16 sample store labelled with extract.dtype float32 (the config changed since
    the extraction) computed the labels from float32 activations, while the fit saw the
    stored float16 ones: 19 of 15,360 labels differed from the full store's, without a word.
    The pass takes the extraction's dtype, as it takes its batch size."""
    from convdp.cluster import label_images
    from convdp.labelling import label_pass, open_labels

    weights, meta = make_model(tmp_path)
    data = make_digits(tmp_path / "data.zarr", n=60)
    plan = {"modes": ["position"], "max_samples": 500, "seed": 0, "transfer": None}
    kw = dict(device="cpu", batch_size=16, chunk_size=25, progress=False, dtype="float16")
    pipeline.extract(weights, meta, data, ["relu1"], tmp_path / "full.json", **kw)
    pipeline.extract(weights, meta, data, ["relu1"], tmp_path / "sample.json", sample=plan, **kw)
    params = {"preprocess": {"max_samples": 500, "pca": None, "scale_max": None},
              "dpgmm": {"backend": "sklearn", "n_components": 30, "covariance_type": "full",
                        "concentration": 1.0, "max_iter": 200, "tol": 1e-3,
                        "weight_threshold": 0.01, "sample_check": False, "seed_check": False}}
    model_npz = tmp_path / "position.model.npz"
    pipeline.fit_model(tmp_path / "sample.json", "relu1", "position", "dpgmm", params,
                       model_npz, tmp_path / "position.model.json")
    with np.load(model_npz) as z:
        model = dict(z)
    full = label_images(pipeline.open_layer(tmp_path / "full.json", "relu1"), model,
                        mode="position")
    out = tmp_path / "labels.json"
    record = label_pass(weights, meta, data, tmp_path / "sample.json",
                        {"dpgmm/relu1/position": model_npz}, out, device="cpu", batch_size=16,
                        chunk_size=25, dtype="float32", progress=False)
    assert record["fingerprint"]["dtype"] == "float16"
    labels, _ = open_labels(out, "dpgmm/relu1/position")
    assert np.array_equal(labels.ravel(), full)


def test_labels_of_a_model_refitted_since_the_labelling_pass_are_refused(tmp_path):
    """merge_labelled joined the pass's labels to whatever .model.npz is there: a 2-means
    model's labels were written beside a 5-means model refitted since (clusters_kept 5,
    clusters_used 2, the centres of one fit and the labels of the other), without a word.
    The pass records each model's hash; another model there now is refused."""
    from convdp.labelling import label_pass, merge_labelled

    weights, meta = make_model(tmp_path)
    data = make_digits(tmp_path / "data.zarr", n=60)
    plan = {"modes": ["image"], "max_samples": 500, "seed": 0, "transfer": None}
    pipeline.extract(weights, meta, data, ["relu1"], tmp_path / "sample.json", sample=plan,
                     device="cpu", batch_size=16, chunk_size=25, progress=False)

    def fit(k):
        params = {"preprocess": {"max_samples": 500, "pca": None, "scale_max": None},
                  "baseline": {"method": "kmeans", "k_min": k, "k_max": k, "k_limit": k,
                               "covariance_type": "full"}}
        pipeline.fit_model(tmp_path / "sample.json", "relu1", "image", "baseline", params,
                           model, model_json)

    model, model_json = tmp_path / "image.model.npz", tmp_path / "image.model.json"
    key, labels = "baseline/relu1/image", tmp_path / "labels.json"
    fit(2)
    label_pass(weights, meta, data, tmp_path / "sample.json", {key: model}, labels,
               device="cpu", batch_size=16, chunk_size=25, progress=False)
    args = (model, model_json, labels, key, data, tmp_path / "image.npz", tmp_path / "image.json")
    assert merge_labelled(*args)["clusters_used"] == 2  # the model it labelled with: joined
    fit(5)
    with pytest.raises(ValueError, match=r"labels 'baseline/relu1/image' were made with another "
                                         r".*image\.model\.npz.*rerun the labelling pass"):
        merge_labelled(*args)


def test_the_labelling_pass_refuses_a_net_changed_since_the_extraction(tmp_path):
    """The pass runs the net again: with weights other than the extraction's (retrained since)
    it labelled their activations, not the stored ones the fit was made on, without a word."""
    from convdp.labelling import label_pass

    weights, meta = make_model(tmp_path)
    data = make_digits(tmp_path / "data.zarr", n=30)
    plan = {"modes": ["image"], "max_samples": 500, "seed": 0, "transfer": None}
    pipeline.extract(weights, meta, data, ["relu1"], tmp_path / "sample.json", sample=plan,
                     device="cpu", batch_size=16, chunk_size=25, progress=False)
    params = {"preprocess": {"max_samples": 500, "pca": None, "scale_max": None},
              "baseline": {"method": "kmeans", "k_min": 2, "k_max": 2, "k_limit": 2,
                           "covariance_type": "full"}}
    model = tmp_path / "image.model.npz"
    pipeline.fit_model(tmp_path / "sample.json", "relu1", "image", "baseline", params, model,
                       tmp_path / "image.model.json")
    make_model(tmp_path, seed=1)  # the same paths, other weights
    with pytest.raises(ValueError, match=r"sample\.json: the extraction read other contents of "
                                         r".*net\.pt than they hold now; rerun the extraction"):
        label_pass(weights, meta, data, tmp_path / "sample.json", {"baseline/relu1/image": model},
                   tmp_path / "labels.json", device="cpu", batch_size=16, chunk_size=25,
                   progress=False)
