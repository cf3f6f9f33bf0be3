"""The transfer verdict: rebuilt fits, planted targets, AnB retraining, the rendered report."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from convdp import pipeline
from convdp import transfer as T

LAYERS = ["relu1", "relu2", "relu3", "relu4"]
PARAMS = {
    "preprocess": {"max_samples": 300, "pca": 8},
    "dpgmm": {"n_components": 6, "covariance_type": "full", "concentration": 1.0,
              "max_iter": 30, "tol": 1e-3, "weight_threshold": 0.01},
    "baseline": {},
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A randomly initialised DigitNet; a source (digits 0-4), the same images, pure noise.

    Returns the activations of each (Zarr groups) and the source's position-mode fits.
    """
    import zarr

    from convdp.cluster import fit_layer
    from convdp.data import load_digits_split
    from convdp.extract import extract_activations
    from convdp.models import DigitNet

    root = tmp_path_factory.mktemp("planted")
    torch.manual_seed(0)
    net = DigitNet(num_classes=5, in_channels=1).eval()
    digits = load_digits_split([0, 1, 2, 3, 4], size=16, max_samples=100)
    noise = np.random.default_rng(0).integers(0, 256, digits.images.shape, dtype=np.uint8)
    groups = {}
    for name, images in (("source", digits.images), ("noise", noise)):
        extract_activations(net, images, LAYERS, root / f"{name}.zarr", mean=[0.3], std=[0.33],
                            fingerprint={"name": name}, batch_size=50, chunk_size=50,
                            progress=False)
        groups[name] = zarr.open_group(root / f"{name}.zarr", mode="r")
    fits = {}
    for layer in LAYERS:
        arrays, record = fit_layer(groups["source"][layer], layer=layer, mode="position",
                                   method="dpgmm", params=PARAMS, seed=0, progress=False)
        fits[layer] = (arrays, record)
    return {"groups": groups, "fits": fits, "labels": digits.labels, "net": net}


def _loaded(arrays):
    from convdp.fitted import load_predictor

    return arrays, *load_predictor(arrays)


def test_rebuilt_fit_labels_like_the_original(planted):
    from convdp.samples import to_samples

    for layer in LAYERS:
        arrays, _ = planted["fits"][layer]
        _, pre, est = _loaded(arrays)
        X = to_samples(np.asarray(planted["groups"]["source"][layer][:]), "position")
        assert np.array_equal(est.predict(pre.transform(X)), arrays["labels"].ravel()), layer
        assert np.isfinite(est.score_samples(pre.transform(X[:50]))).all()


def test_rebuilt_fit_from_npz_file(planted, tmp_path):
    from convdp.io import write_npz

    arrays, _ = planted["fits"]["relu2"]
    write_npz(tmp_path / "fit.npz", **arrays)
    loaded, pre, est = T.load_fit(tmp_path / "fit.npz")
    assert pre.n_dims == 8 and est.covariance_type == "full"
    assert type(est).__name__ == "TorchBayesianGaussianMixture"  # the backend that fitted
    write_npz(tmp_path / "bad.npz", **{k: v for k, v in arrays.items() if k != "predict_torch_shift"})
    with pytest.raises(ValueError, match=r"bad.npz: .*\['shift'\] missing"):
        T.load_fit(tmp_path / "bad.npz")


def test_target_is_the_source_itself_every_layer_transfers(planted):
    src = planted["groups"]["source"]
    z = []
    for layer in LAYERS:
        arrays, _ = planted["fits"][layer]
        s = T.layer_shift(src[layer], src[layer], _loaded(arrays), "position",
                          target_labels=arrays["labels"])
        assert s["source_reference"] == "held-out" and s["n_source_scored"] >= T.MIN_HELDOUT
        assert abs(s["shift_z"]) < 0.3, (layer, s["shift_z"])
        assert s["usage_js"] < 0.02, (layer, s["usage_js"])
        assert s["target_clusters_used"] == s["source_clusters_used"]
        assert s["own_vs_source_nmi"] == pytest.approx(1.0)
        z.append(s["shift_z"])
    assert T.recommend_cut(z) == len(LAYERS)


def test_noise_target_shifts_far_at_deep_layers(planted):
    src, noise = planted["groups"]["source"], planted["groups"]["noise"]
    z = {}
    for layer in LAYERS:
        arrays, _ = planted["fits"][layer]
        same = T.layer_shift(src[layer], src[layer], _loaded(arrays), "position")
        s = T.layer_shift(src[layer], noise[layer], _loaded(arrays), "position")
        assert s["shift"] < same["shift"] - 1.0, layer
        z[layer] = s["shift_z"]
    assert z["relu3"] < -2 and z["relu4"] < -2, z
    assert T.recommend_cut(list(z.values())) < len(LAYERS)


def test_heldout_falls_back_to_in_sample_when_the_fit_used_everything(planted):
    from convdp.cluster import fit_layer

    src = planted["groups"]["source"]["relu4"]  # 100 images × 2 × 2 = 400 positions
    params = PARAMS | {"preprocess": {"max_samples": None, "pca": 8}}
    arrays, _ = fit_layer(src, layer="relu4", mode="position", method="dpgmm", params=params,
                          seed=0, progress=False)
    s = T.layer_shift(src, src, _loaded(arrays), "position")
    assert s["source_reference"] == "in-sample" and s["shift"] == pytest.approx(0.0, abs=0.2)


def test_image_mode_scores(planted):
    from convdp.cluster import fit_layer

    src, noise = planted["groups"]["source"]["relu3"], planted["groups"]["noise"]["relu3"]
    params = PARAMS | {"preprocess": {"max_samples": None, "pca": 4},
                       "dpgmm": PARAMS["dpgmm"] | {"n_components": 3}}
    arrays, _ = fit_layer(src, layer="relu3", mode="image", method="dpgmm", params=params,
                          seed=0, progress=False)
    fit = _loaded(arrays)
    same = T.layer_shift(src, src, fit, "image")
    s = T.layer_shift(src, noise, fit, "image")
    assert same["n_target_scored"] == 100 and same["source_reference"] == "in-sample"
    assert s["shift"] < same["shift"] - 1.0 and 0 <= s["usage_js"] <= 1


def test_a_fit_of_the_other_mode_or_other_activations_is_refused(planted):
    """layer_shift scored a fit made in the other mode (target = source gave usage_js 0.6-0.9
    instead of 0), a source array the fit was not made on, or another layer's target, without
    a word; NaN in the target gave scikit-learn's advice on imputers."""
    from convdp.cluster import fit_layer

    src = planted["groups"]["source"]["relu3"]
    params = PARAMS | {"preprocess": {"max_samples": None, "pca": 4},
                       "dpgmm": PARAMS["dpgmm"] | {"n_components": 3}}
    image, _ = fit_layer(src, layer="relu3", mode="image", method="dpgmm", params=params,
                         seed=0, progress=False)
    with pytest.raises(ValueError, match=r"made in image mode \(labels of shape \(100,\)\), "
                                         r"not in position mode"):
        T.layer_shift(src, src, _loaded(image), "position")
    fit = _loaded(image)
    with pytest.raises(ValueError, match=r"labels samples of shape \(100,\), the source "
                                         r"activations have \(60,\)"):
        T.layer_shift(src[:60], src, fit, "image")
    with pytest.raises(ValueError, match=rf"the target activations have {src.shape[-1] - 1} "
                                         rf"channels, the source fit's layer {src.shape[-1]}"):
        T.layer_shift(src, np.array(src)[..., 1:], fit, "image")
    bad = np.array(src)
    bad[7, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"the target activations hold NaN or Inf"):
        T.layer_shift(src, bad, fit, "image")


def test_a_target_cluster_no_scored_sample_falls_in_takes_its_source_cluster_colour():
    """The target's label map recolours each of its own clusters to the source cluster most
    of its samples fall in. One that none of the scored samples (transfer.max_samples)
    falls in took its own id as a source cluster's: another cluster's colour."""
    from convdp.cluster import fit_layer
    from convdp.draws import score_draw

    rng = np.random.default_rng(0)
    n, h, w = 60, 8, 8
    centres = np.array([[0, 0, 0, 0], [8, 0, 0, 0], [0, 8, 0, 0]], float)
    acts = (centres[rng.integers(0, 3, (n, h, w))]
            + rng.normal(0, 0.5, (n, h, w, 4))).astype(np.float32)
    params = {"preprocess": {"max_samples": 2000, "pca": None},
              "dpgmm": {**PARAMS["dpgmm"], "max_iter": 50}, "baseline": {}}
    arrays, _ = fit_layer(acts, layer="l", mode="position", method="dpgmm", params=params,
                          seed=0, progress=False)
    src = arrays["labels"]
    scored, _ = score_draw(n * h * w, "target", 0, 200)
    seen = np.zeros(n * h * w, bool)
    seen[scored] = True
    unscored = ~seen.reshape(n, h, w)[0] & (src[0] == src[0, 0, 0])  # one source cluster's
    r, q = np.unravel_index(np.flatnonzero(unscored)[:6], (h, w))
    assert len(r) == 6
    own = src.copy()
    own[0, r, q] = src.max() + 1  # a small cluster of the target's own, never scored
    _, maps = T.score_layer(acts, acts, _loaded(arrays), own, "position",
                            pick=np.array([0, 30]), max_samples=200)
    assert (maps["target"][0, r, q] == maps["source"][0, r, q]).all()
    assert (maps["target"] == maps["source"]).all()  # every other cluster is the source's
    # the source fit's weights travel with the maps: the figure colours its clusters by them
    np.testing.assert_array_equal(maps["weights"], arrays["weights"])


def test_transfer_label_maps_colour_a_cluster_as_the_label_maps_and_atlas_do(monkeypatch):
    """The transfer figure coloured source cluster k with PALETTE[k % 18]; the label maps and
    the atlas of the same fit colour it by weight (cluster_colours). Cluster 5, the largest,
    was green there and blue in the label maps, and clusters 0 and 18 were both blue."""
    from convdp.plotting import cluster_colours
    from convdp.transfer import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, dest: figures.append(fig))
    weights = np.full(25, 0.01)
    weights[[5, 0, 18]] = 0.5, 0.2, 0.15
    labels = np.zeros((1, 4, 4), np.int64)
    labels[0, :2], labels[0, 3] = 5, 18
    maps = {"images": np.zeros((1, 8, 8, 3), np.uint8), "source_l": labels,
            "target_l": labels, "weights_l": weights}
    plots.plot_transfer_label_maps(maps, ["l"], "unused.png")
    drawn = [np.asarray(im.get_array()) for ax in figures[0].get_axes()
             for im in ax.get_images() if im.get_array().shape[:2] == (4, 4)]
    assert len(drawn) == 2  # the source's row and the target's
    for rgb in drawn:
        np.testing.assert_allclose(rgb, cluster_colours(weights)[labels[0]])
    assert not np.allclose(drawn[0][2, 0], drawn[0][3, 0])  # clusters 0 and 18: two colours


def test_js_divergence_and_rules():
    assert T.js_divergence([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-12)
    assert T.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert T.recommend_cut([0.1, -0.5, -1.5, 0.0], tolerance=1.0) == 2
    assert T.recommend_cut([-2.0, 0.0], tolerance=1.0) == 0
    assert T.recommend_cut([0.0, float("nan")], tolerance=1.0) == 1
    # the per-layer test behind the cut, as the verdict table's `transferable`: a layer past
    # the cut can pass again, a NaN fails
    assert T.level_passes([0.1, -1.5, 0.0, float("nan")], tolerance=1.0) == [True, False, True, False]
    assert T.best_retrain_cut([0.90, 0.95, 0.94, 0.80], tolerance=0.02) == 2
    assert T.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert np.isnan(T.spearman([1, 1, 1], [1, 2, 3]))


def test_linear_probe_is_seeded_and_separates_planted_classes():
    from tests.conftest import planted_mixture

    X, y = planted_mixture(20, np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 5.0]]))
    a = T.linear_probe(X, y, folds=4, seed=0)
    assert a == T.linear_probe(X, y, folds=4, seed=0)
    assert a[0] > 0.95
    assert np.isnan(T.linear_probe(X[:3], y[:3])[0])  # one image per class


def test_frozen_parameters_follow_the_graph(digitnet):
    cuts = T.frozen_parameters(digitnet, LAYERS)
    assert cuts[0] == []
    assert cuts[1] == ["conv1.weight", "conv1.bias"]
    assert cuts[2] == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]
    assert "fc.weight" not in cuts[4] and "conv4.weight" in cuts[4]
    assert T.frozen_parameters(digitnet, ["conv2"])[1][-1] == "conv2.bias"
    with pytest.raises(ValueError, match="from the input towards the output"):
        T.frozen_parameters(digitnet, ["relu3", "relu1"])


BN_NET = """
import torch.nn as nn


def build(num_classes=2, in_channels=1):
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4, affine=False), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
"""


def test_anb_retrain_keeps_the_source_statistics_of_frozen_batchnorms(tmp_path, monkeypatch):
    """A frozen BatchNorm normalises with the source's running statistics (copied with the
    frozen weights and kept in eval mode), not with a fresh one's 0 and 1; one after the cut,
    with parameters or without (affine=False), learns the target's."""
    import sys

    import convdp.models as models
    from convdp.models import save_state_dict

    (tmp_path / "bnnet.py").write_text(BN_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bnnet", raising=False)
    import bnnet

    torch.manual_seed(0)
    source = bnnet.build()
    for bn in (source[1], source[4]):  # the statistics a trained source would hold
        bn.running_mean.uniform_(1.0, 2.0)
        bn.running_var.uniform_(2.0, 3.0)
    save_state_dict(source, tmp_path / "source.pt")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    labels = np.repeat([0, 1], 20)
    meta = {"arch": "bnnet:build", "in_channels": 1, "mean": [0.5], "std": [0.25]}
    seen = []
    original = models.train_classifier

    def spy(net, *args, **kwargs):
        out = original(net, *args, **kwargs)
        seen.append({k: v.clone() for k, v in net.state_dict().items()})
        return out

    monkeypatch.setattr(models, "train_classifier", spy)
    T.anb_retrain(meta, tmp_path / "source.pt", images, labels, ["2", "5"], epochs=1,
                  seeds=(0,), train={"batch_size": 8})
    src = source.state_dict()
    _, cut1, cut2 = seen
    for stat in ("running_mean", "running_var"):
        assert torch.equal(cut1[f"1.{stat}"], src[f"1.{stat}"])  # frozen at cut 1
        assert torch.equal(cut2[f"4.{stat}"], src[f"4.{stat}"])  # frozen at cut 2
    # after the cut, the parameterless BatchNorm trained: its statistics left their start
    assert int(cut1["4.num_batches_tracked"]) > 0
    assert not torch.equal(cut1["4.running_mean"], torch.zeros(4))


def test_anb_retrain_freezes_the_cut_and_seeds_differ(planted, tmp_path, monkeypatch):
    from convdp.data import load_digits_split
    from convdp.models import save_state_dict

    save_state_dict(planted["net"], tmp_path / "source.pt")
    target = load_digits_split([5, 6, 7, 8, 9], size=16, max_samples=60)
    meta = {"arch": "digitnet", "in_channels": 1, "mean": [0.3], "std": [0.33]}
    source = {k: v.clone() for k, v in planted["net"].state_dict().items()}
    seen = []

    import convdp.models as models

    original = models.train_classifier

    def spy(net, *args, trainable=None, **kwargs):
        out = original(net, *args, trainable=trainable, **kwargs)
        seen.append((trainable, {k: v.clone() for k, v in net.state_dict().items()}))
        return out

    monkeypatch.setattr(models, "train_classifier", spy)
    r = T.anb_retrain(meta, tmp_path / "source.pt", target.images, target.labels,
                      ["relu1", "relu2"], epochs=1, seeds=(0, 1), train={"batch_size": 16})
    assert [c["cut"] for c in r["cuts"]] == [0, 1, 2]
    assert len(r["runs"]) == 6 and all(0 <= x["accuracy"] <= 1 for x in r["runs"])
    # cut 2 of seed 0: conv1, conv2 keep the source weights; conv3 and the head were trained
    trainable, state = seen[2]
    assert "conv1.weight" not in trainable and "conv3.weight" in trainable
    assert torch.equal(state["conv2.weight"], source["conv2.weight"])
    assert not torch.equal(state["conv3.weight"], source["conv3.weight"])
    assert state["fc.weight"].shape == (5, 64)
    # seeds are real repeats: not all identical
    per_seed = [[x["accuracy"] for x in r["runs"] if x["seed"] == s] for s in (0, 1)]
    assert per_seed[0] != per_seed[1]


def _scores(shift_z, probe=(0.5, 0.6, 0.7, 0.8)):
    layers = []
    for i, (z, p) in enumerate(zip(shift_z, probe, strict=True)):
        layers.append({
            "layer": LAYERS[i], "layer_index": i, "mode": "position", "shift": z * 2.0,
            "shift_z": z, "source_ll": -5.0, "target_ll": -5.0 + 2 * z, "source_ll_sd": 2.0,
            "source_reference": "held-out", "n_source_scored": 100, "n_target_scored": 100,
            "usage_js": min(abs(z) / 5, 1.0), "source_clusters_used": 5,
            "target_clusters_used": 4, "own_vs_source_nmi": 0.5, "source_clusters_kept": 6,
            "target_clusters_kept": 5, "target_nmi": 0.3, "target_nmi_image": 0.4,
            "probe_accuracy": p, "probe_std": 0.01,
        })
    return {"model": "m", "dataset": "t", "source": "s", "mode": "position", "layers": layers}


def _retrain(means):
    cuts = [{"cut": i, "layer": None if i == 0 else LAYERS[i - 1],
             "accuracies": [m - 0.01, m + 0.01], "mean": m, "std": 0.014}
            for i, m in enumerate(means)]
    return {"cuts": cuts, "runs": [], "epochs": 2, "seeds": [0, 1]}


def test_verdict_table_and_figures(tmp_path):
    from convdp.io import write_json, write_npz

    scores = _scores([0.1, -0.4, -1.5, -3.0])
    df, summary = T.verdict(scores, _retrain([0.90, 0.92, 0.91, 0.85, 0.60]), rule="level",
                            shift_tolerance=1.0)
    assert list(df["layer"]) == LAYERS and list(df["cut"]) == [1, 2, 3, 4]
    assert summary["recommended_cut"] == 2 and summary["recommendation"] == "freeze up to layer relu2"
    assert summary["retrain_best_cut"] == 2
    assert summary["spearman"]["shift"] == pytest.approx(1.0)
    assert list(df["transferable"]) == [True, True, False, False]
    assert df["retrain_gain"].iloc[0] == pytest.approx(0.02)
    # the workflow's verdict job, figures included
    write_json(tmp_path / "scores.json", scores)
    write_json(tmp_path / "retrain.json", _retrain([0.90, 0.92, 0.91, 0.85, 0.60]))
    rng = np.random.default_rng(0)
    write_npz(tmp_path / "maps.npz", images=rng.integers(0, 255, (2, 16, 16, 1), dtype=np.uint8),
              **{f"{side}_{layer}": rng.integers(0, 6, (2, 4, 4))
                 for side in ("source", "target") for layer in LAYERS})
    paths = [tmp_path / n for n in ("v.csv", "v.json", "v.png", "maps.png")]
    pipeline.transfer_verdict(tmp_path / "scores.json", tmp_path / "retrain.json",
                              tmp_path / "maps.npz", *paths)
    assert len(pd.read_csv(paths[0])) == 4
    assert json.loads(paths[1].read_text())["recommended_layer"] == "relu2"
    for png in paths[2:]:
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10000


def test_the_rule_reads_cover_z_where_every_layer_has_it(tmp_path):
    """A target whose first layer's shift is only a matter of cluster proportions (cover_z
    near 0, shift_z below the tolerance) keeps that layer frozen; without cover_z the rule
    falls back on shift_z."""
    scores = _scores([-1.3, -0.4, -1.5, -3.0])
    retrain = _retrain([0.90, 0.92, 0.91, 0.85, 0.60])
    _, plain = T.verdict(scores, retrain, rule="level")
    assert plain["rule_score"] == "shift_z" and plain["recommended_cut"] == 0
    for r, c in zip(scores["layers"], [-0.2, -0.3, -1.4, -3.0], strict=True):
        r["cover_z"], r["cover"] = c, 2 * c
    df, summary = T.verdict(scores, retrain, rule="level")
    assert summary["rule_score"] == "cover_z" and "cover_z >= -1.0" in summary["rule"]
    assert summary["recommended_cut"] == 2 and list(df["transferable"]) == [True, True, False, False]
    assert list(df["cover_z_cut"]) == [-0.2, -0.3, -1.4, -3.0]
    from convdp.transfer.plots import plot_transfer

    plot_transfer(df, summary, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 10000


def test_the_rule_falls_back_on_shift_z_where_a_cover_z_is_nan():
    """A cover_z that could not be computed (NaN) failed its layer: with every cover_z NaN
    and every shift_z within the tolerance the verdict was "retrain every layer"."""
    scores = _scores([-0.3, -0.2, -0.4, -0.5])
    for r in scores["layers"]:
        r["cover_z"], r["cover"] = float("nan"), float("nan")
    _, summary = T.verdict(scores, _retrain([0.90, 0.92, 0.91, 0.85, 0.60]), rule="level")
    assert summary["rule_score"] == "shift_z" and summary["recommended_cut"] == 4


def test_the_step_rule_freezes_while_each_layer_adds_little_shift():
    step = T.recommend_cut_by_step
    # a shift that comes in at the first layer and is carried up (rotated digits on the
    # benchmark: freezing up to relu3 was best) does not stop the freezing ...
    assert step([-2.26, -0.99, -1.24, -3.59], 0.5) == 3
    # ... a layer that adds more than the tolerance does (new classes: relu4 adds 1.6 SD)
    assert step([-0.04, -0.05, -0.15, -1.72], 0.5) == 3
    assert step([0.1, -0.45, -0.5, -0.6], 0.5) == 1  # relu2's step -0.55: over 0.5 ...
    assert step([0.1, -0.45, -0.5, -0.6], 0.6) == 4  # ... under 0.6
    assert step([0.0, -0.5], 0.5) == 2  # at the tolerance: still frozen
    assert step([float("nan"), 0.0]) == 0 and step([0.0, float("nan"), 0.0]) == 1
    assert step([]) == 0
    # one list of steps behind the rule, the table's shift_z_step and step_cut
    from convdp.transfer.verdict import added_shift, step_cut, step_passes

    np.testing.assert_allclose(added_shift([-2.26, -0.99, -1.24, -3.59]),
                               [-2.26, 1.27, -0.25, -2.35], atol=1e-12)
    assert step_passes([-2.26, -0.99, -1.24, -3.59]) == [True, True, True, False]
    assert step_passes([float("nan"), 0.0]) == [False, False]  # NaN - 0.0 is NaN too
    assert step_cut([-2.26, -0.99, -1.24, -3.59]) == pytest.approx([-2.26, -2.26, -2.26, -2.35])


def test_the_verdict_uses_the_step_rule_by_default(tmp_path):
    scores = _scores([-2.3, -1.0, -1.2, -3.6])
    retrain = _retrain([0.85, 0.82, 0.88, 0.92, 0.70])
    df, summary = T.verdict(scores, retrain)
    assert summary["rule_name"] == "step" and summary["rule_score"] == "shift_z"
    assert summary["recommended_cut"] == 3 and summary["retrain_best_cut"] == 3
    assert "at most 0.5" in summary["rule"]
    np.testing.assert_allclose(df["shift_z_step"], [np.nan, 1.3, -0.2, -2.4], atol=1e-12)
    assert list(df["transferable"]) == [True, True, True, False]
    # a first layer without a shift is not called transferable (the rule freezes nothing);
    # the column is each layer's own test: relu3 adds -0.2 only
    df_nan, summary_nan = T.verdict(_scores([float("nan"), -1.0, -1.2, -3.6]), retrain)
    assert summary_nan["recommended_cut"] == 0
    assert list(df_nan["transferable"]) == [False, False, True, False]
    # the level rule on the same scores retrains everything (relu1's shift_z is -2.3)
    assert T.verdict(scores, retrain, rule="level")[1]["recommended_cut"] == 0
    with pytest.raises(ValueError, match="transfer.rule 'deepest': choose one of step, level"):
        T.verdict(scores, retrain, rule="deepest")
    from convdp.transfer.plots import plot_transfer

    plot_transfer(df, summary, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 10000


def test_a_target_scored_on_few_samples_is_flagged(tmp_path):
    """A one-image target scores a handful of positions at deep layers: the table marks those
    layers too_few_samples and the verdict warns (in its summary and on its figure)."""
    scores = _scores([0.1, -0.4, -1.5, -3.0])
    for row, n in zip(scores["layers"], [1024, 256, 16, 4], strict=True):
        row["n_target_scored"] = n
        row["too_few_samples"] = n < T.MIN_SCORED
    df, summary = T.verdict(scores, None)
    assert list(df["too_few_samples"]) == [False, False, True, True]
    assert summary["too_few_samples"] == ["relu3", "relu4"]
    assert "fewer than 100 samples or 30 images at relu3, relu4" in summary["warning"]
    quiet = T.verdict(_scores([0.1, -0.4, -1.5, -3.0]), None)[1]
    assert quiet["too_few_samples"] == [] and "warning" not in quiet
    # retraining scored on 2 held-out images: its accuracies cannot tell the cuts apart
    retrain = _retrain([0.5, 0.5, 0.5, 0.5, 0.5])
    retrain["runs"] = [{"seed": 0, "cut": c, "n_val": 2} for c in range(5)]
    few = T.verdict(_scores([0.1, -0.4, -1.5, -3.0]), retrain)[1]
    assert "measured on 2 held-out target images (fewer than 20)" in few["warning"]


def test_a_target_of_few_images_is_flagged_however_many_positions(planted):
    """Three images hold hundreds of positions at relu1 but are no sample of a data set: the
    layer is flagged too_few_samples."""
    from convdp.cluster import fit_layer

    src = planted["groups"]["source"]["relu1"]
    arrays, _ = fit_layer(src, layer="relu1", mode="position", method="dpgmm", params=PARAMS,
                          seed=0, progress=False)
    few = T.layer_shift(src, src[:3], _loaded(arrays), "position")
    assert few["n_target_images"] == 3 and few["n_target_scored"] >= T.MIN_SCORED
    assert few["too_few_samples"]
    assert not T.layer_shift(src, src, _loaded(arrays), "position")["too_few_samples"]


def test_verdict_without_retraining(tmp_path):
    df, summary = T.verdict(_scores([0.0, 0.0, 0.0, 0.0]), None)
    assert summary["recommended_cut"] == 4 and summary["retrain_best_cut"] is None
    assert df["retrain_accuracy"].isna().all()


# --------------------------------------------------------------------------------------
# End to end: the tiny workflow, its report, rendered in headless Chromium

# The Snakemake report is a single-page app: every result is embedded as a data: URL and shown
# only after clicking through the menu (it has no URL per page). To screenshot a figure *as the
# report shows it*, a copy of the report gets this script appended: after the app has loaded it
# clicks the given menu entries (by their text) and, for ``eye:PATH``, the "eye" button of the
# result PATH, then marks <body data-nav="done">. ``--virtual-time-budget`` lets Chromium run
# the clicks' timers before it takes the screenshot.
NAVIGATE = """<script data-steps='%s'>
(function () {
  var steps = JSON.parse(document.currentScript.dataset.steps);
  function deepest(text) {
    var all = Array.prototype.slice.call(document.querySelectorAll("body *"));
    var hits = all.filter(function (e) { return e.textContent.trim() === text; });
    return hits.filter(function (e) {
      return !hits.some(function (o) { return o !== e && e.contains(o); });
    })[0];
  }
  function target(step) {
    if (step.indexOf("eye:") === 0) {
      var cell = deepest(step.slice(4));
      var row = cell && cell.closest("tr");
      return row && row.querySelector("a[iconname=eye]");
    }
    return deepest(step);
  }
  var i = 0;
  function next() {
    if (i >= steps.length) { document.body.dataset.nav = "done"; return; }
    var el = target(steps[i]);
    if (el) { el.click(); i += 1; }
    document.body.dataset.nav = "step" + i;
    setTimeout(next, 300);
  }
  window.addEventListener("load", function () { setTimeout(next, 300); });
})();
</script>
"""


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(url: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    """Debian's headless Chromium on ``url`` with ``extra`` flags (--screenshot, --dump-dom)."""
    profile = tmp_path / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def screenshot(url: str, png, tmp_path, wait_ms: int = 8000) -> None:
    r = run_chromium(url, tmp_path, f"--screenshot={png}", "--window-size=1280,2000",
                     f"--virtual-time-budget={wait_ms}")
    assert png.exists(), r.stderr[-2000:]


def navigated_copy(report, steps: list[str], dest):
    """A copy of the report that opens on the result reached by clicking ``steps``."""
    import html as html_mod

    text = report.read_text()
    i = text.rfind("</body>")
    script = NAVIGATE % html_mod.escape(json.dumps(steps))
    dest.write_text(text[:i] + script + text[i:])
    return dest


def rendered(png, left: float = 0.45) -> dict:
    """Distinct colours, share of non-white pixels and matplotlib-colour pixels right of ``left``."""
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    right = img[:, int(img.shape[1] * left):]

    def near(rgb):
        return int((np.abs(right - np.array(rgb)).sum(axis=2) < 40).sum())

    return {"colours": len(np.unique(right.reshape(-1, 3), axis=0)),
            "ink": float((right.min(axis=2) < 245).mean()),
            "orange": near((255, 127, 14)), "red": near((214, 39, 40))}


@pytest.mark.slow
def test_tiny_workflow_transfer_verdict_and_report_renders(repo_root, tiny_run, tmp_path):
    from tests.test_workflow import snakemake

    cfg = str(repo_root / "tests/config/tiny.yaml")
    res = tiny_run / "results"
    df = pd.read_csv(res / "transfer/digitnet/digits_target.csv")
    assert list(df["layer"]) == LAYERS and len(df) == 4
    assert df["shift"].notna().all() and df["usage_js"].between(0, 1).all()
    assert df["probe_accuracy"].between(0, 1).all()
    assert df["retrain_accuracy"].between(0, 1).all()
    summary = json.loads((res / "transfer/digitnet/digits_target.json").read_text())
    assert 0 <= summary["recommended_cut"] <= 4
    assert len(summary["retrain_cuts"]) == 5
    runs = json.loads((res / "transfer/digitnet/digits_target/retrain.json").read_text())["runs"]
    assert len({r["seed"] for r in runs}) == 2
    for fig in ("transfer_digitnet_digits_target", "transfer_label_maps_digitnet_digits_target"):
        assert (res / "figures" / f"{fig}.png").stat().st_size > 10000

    report = tmp_path / "report.html"
    rep = snakemake(repo_root, tiny_run, "--report", str(report), "--configfile", cfg)
    assert rep.returncode == 0, rep.stderr[-2000:]
    figure = "results/figures/transfer_digitnet_digits_target.png"
    for path in (figure, "results/figures/transfer_label_maps_digitnet_digits_target.png",
                 "results/transfer/digitnet/digits_target.csv"):
        assert f'"{path}": {{' in report.read_text(), f"{path} is not in the report"
    if chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    # The landing page renders (the app draws it with JavaScript; broken = blank page).
    landing = tmp_path / "landing.png"
    screenshot(report.as_uri(), landing, tmp_path)
    seen = rendered(landing, left=0.0)
    assert seen["colours"] > 100 and seen["ink"] > 0.005, seen
    # The transfer figure as the report shows it: Results > Transfer > the figure's eye button.
    page = navigated_copy(report, ["Transfer", f"eye:{figure}"], tmp_path / "navigated.html")
    dom = run_chromium(page.as_uri(), tmp_path, "--dump-dom", "--virtual-time-budget=8000").stdout
    assert 'data-nav="done"' in dom, "could not navigate the report to the transfer figure"
    assert "filename=transfer_digitnet_digits_target.png;base64," in dom
    shot = tmp_path / "figure.png"
    screenshot(page.as_uri(), shot, tmp_path)
    seen = rendered(shot)
    assert seen["colours"] > 1000 and seen["ink"] > 0.03, seen
    assert seen["orange"] > 100 and seen["red"] > 50, seen  # the figure's lines are on screen


def test_refitted_weights_recover_the_mixing_proportions():
    rng = np.random.default_rng(0)
    z = rng.random(4000) < 0.3  # two components that never overlap: sample n is in z_n's
    log_prob = np.where(np.stack([z, ~z], 1), -1.0, -800.0)
    expected = -1.0 + np.where(z, np.log(z.mean()), np.log(1 - z.mean()))
    np.testing.assert_allclose(T.refitted_log_likelihood(log_prob), expected, atol=1e-4)


def test_coverage_ignores_the_mix_of_the_source_clusters_not_new_clusters():
    """Source: clusters A (90 %) and B (10 %). A target of the same clusters in the other
    proportions shifts (its samples fall where the source has few) but is covered; a target
    with a cluster the source never had is not."""
    from convdp.dpgmm import TorchBayesianGaussianMixture

    rng = np.random.default_rng(1)
    a, b, c = np.zeros(4), np.full(4, 6.0), np.array([3.0, -6.0, 3.0, -6.0])

    def draw(n, share_b, centre_b=b):
        nb = int(n * share_b)
        return np.concatenate([rng.normal(a, 1, (n - nb, 4)), rng.normal(centre_b, 1, (nb, 4))])

    est = TorchBayesianGaussianMixture(n_components=6, random_state=0, dtype="float64",
                                       delete_below=0.01, merge=True).fit(draw(3000, 0.1))
    kept = np.flatnonzero(est.weights_ > 0.01)
    assert len(kept) == 2
    heldout = draw(2000, 0.1)
    ll_s = est.score_samples(heldout)
    for target, covered in ((draw(2000, 0.9), True), (draw(2000, 0.5, c), False)):
        shift_z = (est.score_samples(target).mean() - ll_s.mean()) / ll_s.std()
        cover = T.coverage_shift(est, heldout, target, kept)
        assert shift_z < -0.5, shift_z
        if covered:
            assert abs(cover["cover_z"]) < 0.1, cover
        else:
            assert cover["cover_z"] < -3, cover


def _transfer_figure(monkeypatch, scores):
    from convdp.transfer import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, dest: figures.append(fig))
    df, summary = T.verdict(scores, _retrain([0.90, 0.92, 0.91, 0.85, 0.60]), rule="level",
                            shift_tolerance=1.0)
    plots.plot_transfer(df, summary, "unused.png")
    return figures[0]


def test_the_cluster_usage_bars_of_a_target_using_more_clusters_are_not_cut_off(monkeypatch):
    """The y limit came from the source's bars alone: a target using 12 of the source's
    clusters where the source uses 5 was drawn as a bar cut off at 6.75."""
    scores = _scores([0.1, -0.4, -1.5, -3.0])
    for r, used in zip(scores["layers"], [4, 9, 12, 3], strict=True):
        r["source_clusters_used"], r["target_clusters_used"] = 5, used
    fig = _transfer_figure(monkeypatch, scores)
    ax = next(a for a in fig.axes if a.get_title().startswith("How the target uses"))
    top = ax.get_ylim()[1]
    assert max(p.get_height() for p in ax.patches) == 12
    assert all(p.get_height() <= top for p in ax.patches), top


def test_the_source_likelihood_is_not_called_held_out_where_it_is_in_sample(monkeypatch):
    """Where too few held-out source samples were left the scores fall back on the fitted
    ones (``source_reference`` in-sample): the legend still said "held-out"."""
    scores = _scores([0.1, -0.4, -1.5, -3.0])
    for r in scores["layers"][2:]:
        r["source_reference"] = "in-sample"
    fig = _transfer_figure(monkeypatch, scores)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert not any(t.startswith("held-out") for t in texts), texts
    assert any("relu3, relu4" in t for t in texts), texts
    scores = _scores([0.1, -0.4, -1.5, -3.0])
    fig = _transfer_figure(monkeypatch, scores)
    assert "held-out s" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
