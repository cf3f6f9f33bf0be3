"""A layer's fit split into jobs: fit once, label ranges of images, merge (config ``label_jobs``).

The split must give what :func:`convdp.cluster.fit_layer` gives in one go: the same arrays
(labels, fit index, model, preprocessing) and the same record except the timings.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import yaml
import zarr

from convdp.cluster import (
    fit_layer,
    fit_model,
    label_images,
    label_memory_mb,
    label_ranges,
    merge_labels,
    merge_memory_mb,
)
from convdp.config import ConfigError, label_jobs, validate_config
from convdp.fitted import PREDICT
from convdp.fitted import load_predictor as predictor_from_state
from convdp.io import write_npz
from convdp.samples import chunk_bounds, chunk_size

TIMING = {"fit_seconds", "seconds", "wall_seconds"}

# (method, backend or baseline method, covariance type, PCA components)
FITS = [
    ("dpgmm", "sklearn", "full", 3),
    ("dpgmm", "sklearn", "diag", None),
    ("dpgmm", "torch", "full", 3),
    ("dpgmm", "torch", "diag", None),
    ("baseline", "gmm", "full", 3),
    ("baseline", "kmeans", "full", None),
]


def params_for(method, kind, covariance_type, pca):
    return {
        "preprocess": {"max_samples": 150, "pca": pca, "scale_max": 10.0},
        "dpgmm": {"backend": kind if method == "dpgmm" else "sklearn", "n_components": 6,
                  "concentration": 1.0, "covariance_type": covariance_type, "max_iter": 40,
                  "tol": 1e-3, "init": "kmeans", "weight_threshold": 0.01, "dtype": "float32",
                  "delete_below": 0.05, "merge": False, "max_components": None},
        "baseline": {"method": kind if method == "baseline" else "gmm",
                     "covariance_type": covariance_type, "k_min": 2, "k_max": 5, "max_iter": 40},
    }


@pytest.fixture(scope="module")
def layer():
    """A (25, 3, 4, 5) layer in a Zarr array of 7-image chunks (4 chunks), with structure:
    a bright left half of every map, and two groups of images."""
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((25, 3, 4, 5)).astype(np.float32)
    acts[:, :, :2, :2] += 4.0
    acts[:12, :, :, 2:] += 3.0
    z = zarr.create_array(store={}, shape=acts.shape, chunks=(7, 3, 4, 5), dtype="float32")
    z[:] = acts
    classes = np.repeat([0, 1, 2], [12, 8, 5])
    return z, classes


def saved(model, tmp_path):
    """The model as a label job gets it: written to an ``.npz`` and read back."""
    write_npz(tmp_path / "model.npz", **model)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def split_fit(array, parts, tmp_path, **kw):
    """fit_model, then ``parts`` label jobs (each with the model from disk), then the merge."""
    class_labels = kw.pop("class_labels")
    model, record = fit_model(array, **kw)
    model = saved(model, tmp_path)
    labelled = [(start, stop, label_images(array, model, mode=kw["mode"], start=start, stop=stop))
                for start, stop in label_ranges(array.shape[0], chunk_size(array), parts)]
    return merge_labels(model, record, labelled, class_labels=class_labels)


def assert_same_fit(a, b):
    (arrays_a, record_a), (arrays_b, record_b) = a, b
    assert list(arrays_a) == list(arrays_b)
    for key in arrays_a:
        assert arrays_a[key].dtype == arrays_b[key].dtype, key
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    assert set(record_a) == set(record_b)
    for key in set(record_a) - TIMING:
        x, y = record_a[key], record_b[key]
        assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), key


@pytest.mark.parametrize("mode", ["position", "image"])
@pytest.mark.parametrize(("method", "kind", "covariance_type", "pca"), FITS)
def test_three_label_jobs_give_the_unsplit_fit(layer, mode, method, kind, covariance_type, pca,
                                                tmp_path):
    array, classes = layer
    kw = dict(layer="l", mode=mode, method=method, seed=3,
              params=params_for(method, kind, covariance_type, pca), class_labels=classes)
    whole = fit_layer(array, progress=False, **kw)
    split = split_fit(array, 3, tmp_path, **kw)
    assert_same_fit(whole, split)
    assert whole[1]["clusters_used"] >= 2  # the comparison is not between trivial labellings
    assert str(split[0][f"{PREDICT}estimator"]) in ("TorchBayesianGaussianMixture",
                                                    "BayesianGaussianMixture",
                                                    "GaussianMixture", "KMeans")


def test_more_jobs_than_chunks_still_gives_the_unsplit_fit(layer, tmp_path):
    array, classes = layer
    kw = dict(layer="l", mode="position", method="dpgmm", seed=0,
              params=params_for("dpgmm", "sklearn", "full", 3), class_labels=classes)
    assert_same_fit(fit_layer(array, progress=False, **kw), split_fit(array, 6, tmp_path, **kw))


def test_the_rebuilt_predictor_labels_like_the_fitted_one(layer, tmp_path):
    """Other samples than the layer's: the rebuilt estimator is the fitted one."""
    array, _ = layer
    for method, kind, covariance_type, pca in FITS:
        model, _ = fit_model(array, layer="l", mode="position", method=method, seed=1,
                             params=params_for(method, kind, covariance_type, pca))
        pre, est = predictor_from_state(saved(model, tmp_path))
        pre_again, est_again = predictor_from_state(model)
        x = np.random.default_rng(5).normal(0, 3, (500, 5)).astype(np.float32)
        np.testing.assert_array_equal(est.predict(pre.transform(x)),
                                      est_again.predict(pre_again.transform(x)))
        assert str(model[f"{PREDICT}estimator"]) == type(est).__name__


def test_label_ranges_end_on_stored_chunks():
    assert label_ranges(120, 50, 3) == [(0, 50), (50, 100), (100, 120)]
    assert label_ranges(25, 7, 3) == [(0, 7), (7, 14), (14, 25)]
    assert label_ranges(25, 7, 1) == [(0, 25)]
    assert label_ranges(25, 7, 4) == [(0, 7), (7, 14), (14, 21), (21, 25)]
    assert label_ranges(10, 7, 4) == [(0, 2), (2, 5), (5, 7), (7, 10)]  # 4 jobs, 2 chunks
    for n, chunk, parts in [(1000, 64, 7), (5, 5, 3), (257, 256, 2), (3, 1, 5)]:
        ranges = label_ranges(n, chunk, parts)
        assert len(ranges) == parts and ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        if parts <= -(-n // chunk):
            assert all(start % chunk == 0 and start < stop for start, stop in ranges)
    with pytest.raises(ValueError, match="parts >= 1"):
        label_ranges(10, 5, 0)


def test_chunk_bounds_of_a_range():
    assert chunk_bounds(120, 50) == [0, 50, 100, 120]
    assert chunk_bounds(120, 50, 30, 110) == [30, 50, 100, 110]
    assert chunk_bounds(120, 50, 50, 100) == [50, 100]
    assert chunk_bounds(120, 50, 60, 60) == [60]
    with pytest.raises(ValueError, match=r"image range \[100, 130\) is not within the 120"):
        chunk_bounds(120, 50, 100, 130)


def test_merge_names_a_missing_or_wrong_part(layer):
    array, _ = layer
    model, record = fit_model(array, layer="l", mode="image", method="dpgmm", seed=0,
                              params=params_for("dpgmm", "sklearn", "full", None))
    parts = [(s, e, label_images(array, model, mode="image", start=s, stop=e))
             for s, e in label_ranges(25, 7, 3)]
    names = ["a.npz", "b.npz", "c.npz"]
    with pytest.raises(ValueError, match=r"layer 'l' \(image mode\): c.npz labels images 14–24, "
                                         r"but the next unlabelled image is 7"):
        merge_labels(model, record, [parts[0], parts[2]], names=["a.npz", "c.npz"])
    with pytest.raises(ValueError, match="the parts label images 0–13 of 25; some are missing"):
        merge_labels(model, record, parts[:2], names=names[:2])
    short = (parts[1][0], parts[1][1], parts[1][2][:-1])
    with pytest.raises(ValueError, match="b.npz holds 6 labels for images 7–13, which have 7"):
        merge_labels(model, record, [parts[0], short, parts[2]], names=names)


def test_a_damaged_model_is_named(layer):
    array, _ = layer
    model, _ = fit_model(array, layer="l", mode="image", method="dpgmm", seed=0,
                         params=params_for("dpgmm", "torch", "full", None))
    broken = {k: v for k, v in model.items() if k != f"{PREDICT}torch_shift"}
    with pytest.raises(ValueError, match=r"m.npz: .*\['shift'\] missing"):
        predictor_from_state(broken, "m.npz")
    with pytest.raises(ValueError, match="m.npz: unknown estimator 'Pickle'"):
        predictor_from_state(model | {f"{PREDICT}estimator": np.array("Pickle")}, "m.npz")


def test_label_job_memory_follows_the_chunk_not_the_fit():
    shape = (50_000, 28, 28, 512)
    one = label_memory_mb(shape, 256, "position", 20, parts=8)
    assert label_memory_mb(shape, 512, "position", 20, parts=8) > 1.9 * one - 1000
    assert label_memory_mb(shape, 256, "position", 20, parts=16) < one
    assert label_memory_mb(shape, 256, "image", 20, parts=8) < 1100
    assert merge_memory_mb(50_000 * 28 * 28) > merge_memory_mb(50_000) >= 1000


# --------------------------------------------------------------------------------------
# The config key


@pytest.fixture(scope="module")
def tiny_config(request):
    root = request.config.rootpath
    return yaml.safe_load((root / "tests/config/tiny.yaml").read_text())


@pytest.mark.parametrize(("value", "relu1", "relu2"),
                         [(None, 1, 1), (3, 3, 3), ({"relu2": 4}, 1, 4)])
def test_label_jobs_per_layer(tiny_config, value, relu1, relu2):
    config = copy.deepcopy(tiny_config)
    if value is not None:
        config["label_jobs"] = value
    validate_config(config)
    assert (label_jobs(config, "digitnet", "relu1"),
            label_jobs(config, "digitnet", "relu2")) == (relu1, relu2)


def two_models(tiny_config, jobs):
    """The tiny config with a second DigitNet (``other``, layers relu2 and relu3) and
    ``label_jobs: jobs``."""
    config = copy.deepcopy(tiny_config)
    config["models"]["other"] = copy.deepcopy(config["models"]["digitnet"]) | {
        "layers": ["relu2", "relu3"]}
    config["label_jobs"] = jobs
    return config


@pytest.mark.parametrize(("jobs", "digitnet", "other"), [
    ({"other.relu2": 3}, 1, 3),  # model.layer: that model only
    ({"relu2": 3}, 3, 3),  # a bare layer name: every model with that layer
    ({"relu2": 2, "other.relu2": 4}, 2, 4),  # model.layer counts before the bare name
])
def test_label_jobs_by_model_and_layer(tiny_config, jobs, digitnet, other):
    config = validate_config(two_models(tiny_config, jobs))
    assert label_jobs(config, "digitnet", "relu2") == digitnet
    assert label_jobs(config, "other", "relu2") == other
    assert label_jobs(config, "other", "relu3") == label_jobs(config, "digitnet", "relu3") == 1


def test_two_models_share_a_layer_and_one_is_split(tiny_config, repo_root, tmp_path):
    """label_jobs {other.relu2: 3}: other's relu2 fits are split (model fit, 3 label jobs,
    merge); digitnet's relu2, and every other layer, is fitted by the fit job."""
    import re
    import subprocess
    import sys

    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(two_models(tiny_config, {"other.relu2": 3})))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s",
                          str(repo_root / "Snakefile"), "--directory", str(tmp_path),
                          "--configfile", str(config)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = {r: int(n) for r, n in re.findall(r"^(\w+)\s+(\d+)$", out.stdout, re.M)}
    for method in ("dpgmm", "baseline"):  # 2 data sets × 2 modes each
        assert counts[f"fit_{method}_model"] == 2 * 2
        assert counts[f"label_{method}"] == 3 * 2 * 2
        assert counts[f"merge_{method}"] == 2 * 2
        assert counts[f"fit_{method}"] == (4 + 1) * 2 * 2  # digitnet: 4 layers; other: relu3
    split = set(re.findall(r"results/dpgmm/(\w+)/\w+/(\w+)/\w+\.model\.npz", out.stdout))
    assert split == {("other", "relu2")}


@pytest.mark.parametrize(("value", "message"), [
    ({"fc7": 2}, "label_jobs.fc7: 'fc7' is not a layer of any model (write a layer name or "
                 "model.layer); the models' layers are digitnet: relu1, relu2, relu3, relu4"),
    ({"other.relu1": 2}, "label_jobs.other.relu1: 'other.relu1' is not a layer of any model"),
    (0, "invalid config at label_jobs: 0 is not valid under any of the given schemas "
        "(label_jobs: 0 is less than the minimum of 1"),
    ({"relu2": 0}, "label_jobs.relu2: 0 is less than the minimum of 1"),
    (2.5, "invalid config at label_jobs: 2.5 is not valid"),
])
def test_bad_label_jobs_are_named(tiny_config, value, message):
    config = copy.deepcopy(tiny_config) | {"label_jobs": value}
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert message in str(err.value)


@pytest.mark.parametrize("cov", ["full", "tied", "diag", "spherical"])
def test_a_rebuilt_mixture_has_scikit_learns_parameters(cov):
    """A Gaussian mixture rebuilt from its saved arrays predicts as the fitted one and holds
    scikit-learn's own precisions for every covariance type (a tied one's was squared
    element-wise)."""
    from sklearn.mixture import GaussianMixture

    from convdp.fitted import model_arrays
    from convdp.preprocess import Preprocess

    X = np.random.default_rng(0).normal(size=(300, 4))
    X[:150] += 3.0
    est = GaussianMixture(3, covariance_type=cov, random_state=0).fit(X)
    pre = Preprocess(None, None, 0).fit(X, "x")
    _, rebuilt = predictor_from_state(model_arrays(est, pre))
    np.testing.assert_allclose(rebuilt.precisions_, est.precisions_, rtol=1e-10)
    assert np.array_equal(rebuilt.predict(X), est.predict(X))
