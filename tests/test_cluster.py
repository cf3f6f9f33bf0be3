"""DPGMM and baseline fits of one layer: the right clusters, clear errors, the right shapes."""

import numpy as np
import pytest

from convdp.cluster import SAMPLE_GROWTH, Preprocess, fit_layer, kmeans_bic
from tests.conftest import planted_mixture

PARAMS = {
    "preprocess": {"max_samples": None, "pca": None, "scale_max": None},
    "dpgmm": {"backend": "sklearn", "n_components": 15, "concentration": 1.0,
              "covariance_type": "full", "max_iter": 300, "tol": 1e-3, "init": "kmeans",
              "weight_threshold": 0.02},
    "baseline": {"method": "gmm", "covariance_type": "full", "k_min": 1, "k_max": 8, "max_iter": 100},
}


def as_image_layer(X):
    """(n, d) samples as an image-mode layer (n, 1, 1, d)."""
    return X[:, None, None, :].astype(np.float32)


@pytest.mark.parametrize("backend", ["sklearn", "torch"])
@pytest.mark.parametrize("k", [3, 5])
def test_dpgmm_finds_planted_number_of_clusters(k, backend):
    rng = np.random.default_rng(k)
    centres = rng.uniform(-10, 10, (k, 4))
    X, y = planted_mixture(150, centres, scale=0.4, seed=k)
    params = {**PARAMS, "dpgmm": {**PARAMS["dpgmm"], "backend": backend}}
    arrays, rec = fit_layer(as_image_layer(X), layer="planted", mode="image", method="dpgmm",
                            params=params, class_labels=y, progress=False)
    assert rec["clusters_kept"] == k
    assert rec["clusters_used"] == k
    assert rec["nmi"] > 0.99
    assert arrays["labels"].shape == (len(X),)
    assert arrays["weights"].shape == (15,)


def test_baseline_bic_picks_planted_k():
    centres = np.array([[0, 0], [8, 0], [0, 8], [8, 8]], float)
    X, y = planted_mixture(100, centres, scale=0.5)
    for method in ("gmm", "kmeans"):
        params = {**PARAMS, "baseline": {**PARAMS["baseline"], "method": method}}
        _, rec = fit_layer(as_image_layer(X), layer="p", mode="image", method="baseline",
                           params=params, class_labels=y, progress=False)
        assert rec["clusters_kept"] == 4, method
        assert rec["method"] == f"{method}-bic"


def test_position_mode_gives_label_maps_and_uses_a_subset():
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((6, 5, 7, 3)).astype(np.float32)
    acts[:, :, :3] += 8.0  # left part of every map is its own cluster
    params = {**PARAMS, "preprocess": {**PARAMS["preprocess"], "max_samples": 100}}
    arrays, rec = fit_layer(acts, layer="grid", mode="position", method="dpgmm", params=params,
                            progress=False)
    assert arrays["labels"].shape == (6, 5, 7)
    assert rec["n_samples"] == 6 * 5 * 7 and rec["n_samples_fit"] == 100
    left, right = arrays["labels"][:, :, :3], arrays["labels"][:, :, 3:]
    assert not set(np.unique(left)) & set(np.unique(right))


def test_dead_channels_are_dropped():
    centres = np.array([[0, 0], [10, 10]], float)
    X, _ = planted_mixture(100, centres)
    X = np.concatenate([X, np.zeros((len(X), 2)), np.full((len(X), 1), 3.0)], axis=1)
    _, rec = fit_layer(as_image_layer(X), layer="deadish", mode="image", method="dpgmm",
                       params=PARAMS, progress=False)
    assert rec["dims_dropped"] == 3 and rec["n_dims"] == 2
    assert rec["clusters_kept"] == 2


def test_all_constant_layer_is_a_clear_error():
    with pytest.raises(ValueError, match=r"layer 'dead' .*all 4 channels are constant"):
        fit_layer(np.ones((50, 2, 2, 4), np.float32), layer="dead", mode="image",
                  method="dpgmm", params=PARAMS, progress=False)


def test_fewer_samples_than_components_is_a_clear_error():
    X = np.random.default_rng(0).standard_normal((10, 1, 1, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"layer 'small' .*10 samples are fewer than the 15"):
        fit_layer(X, layer="small", mode="image", method="dpgmm", params=PARAMS, progress=False)


def test_image_mode_on_one_image_is_refused_for_what_it_is():
    """It was refused as "all 4 channels are constant … (a dead layer)" (one vector is
    constant), on random activations."""
    X = np.random.default_rng(0).random((1, 6, 6, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"layer 'one' \(image mode\): image mode clusters one "
                                         r"vector per image, and there is 1"):
        fit_layer(X, layer="one", mode="image", method="dpgmm", params=PARAMS, progress=False)


def test_activations_whose_squares_overflow_name_the_layer_and_the_config_keys():
    X = np.random.default_rng(0).standard_normal((40, 1, 1, 3)).astype(np.float32) * 1e18
    params = PARAMS | {"dpgmm": PARAMS["dpgmm"] | {"backend": "torch"}}
    with pytest.raises(ValueError, match=r"layer 'huge' \(image mode\): samples as far as .* "
                                         r"overflow float32 .*dpgmm\.dtype: float64"):
        fit_layer(X, layer="huge", mode="image", method="dpgmm", params=params, progress=False)


def test_nan_activations_are_refused_naming_the_layer():
    X = np.random.default_rng(0).standard_normal((40, 1, 1, 3)).astype(np.float32)
    X[3, 0, 0, 1] = np.inf
    with pytest.raises(ValueError, match="layer 'bad'.*NaN or Inf"):
        fit_layer(X, layer="bad", mode="image", method="dpgmm", params=PARAMS, progress=False)


def test_nan_outside_the_fitted_samples_is_refused_naming_the_image():
    """The fit checks its own (capped) samples; the labelling of every sample afterwards
    named nothing (scikit-learn's advice on imputers) where a position outside them is NaN."""
    X = np.random.default_rng(0).standard_normal((40, 4, 4, 3)).astype(np.float32)
    params = PARAMS | {"preprocess": PARAMS["preprocess"] | {"max_samples": 100}}
    from convdp.samples import subsample

    outside = sorted(set(range(40 * 16)) - set(subsample(40 * 16, 100, 0).tolist()))[-1]
    X.reshape(-1, 3)[outside, 2] = np.nan
    with pytest.raises(ValueError, match=rf"layer 'bad' \(position mode\): the activations of "
                                         rf"image {outside // 16} hold NaN or Inf"):
        fit_layer(X, layer="bad", mode="position", method="dpgmm", params=params,
                  progress=False)


def test_preprocess_scale_and_pca():
    X = np.random.default_rng(0).standard_normal((200, 6)) * [1, 2, 3, 4, 5, 0]
    pre = Preprocess(pca=3, scale_max=10.0).fit(X)
    out = pre.transform(X)
    assert out.shape == (200, 3)
    assert np.isclose(np.abs(X[:, :5] * pre.scale_).max(), 10.0)


def test_preprocess_of_a_float16_store_fits_its_pca_as_float32_would():
    """A float16 store's samples were scaled in float16 before the PCA (rounded twice; the
    transform scales in float64): up to 0.0075 off on a range of 8."""
    X = (np.random.default_rng(0).standard_normal((500, 6)) * [1, 2, 3, 4, 5, 6])
    X16 = X.astype(np.float16)
    pre16 = Preprocess(pca=3, scale_max=8.0).fit(X16)
    pre32 = Preprocess(pca=3, scale_max=8.0).fit(X16.astype(np.float32))
    np.testing.assert_allclose(pre16.transform(X16), pre32.transform(X16), atol=1e-5)


def test_kmeans_bic_prefers_true_k():
    from sklearn.cluster import KMeans

    centres = np.array([[0, 0], [6, 0], [0, 6]], float)
    X, _ = planted_mixture(100, centres, scale=0.5)
    fits = {k: KMeans(k, n_init=3, random_state=0).fit(X) for k in range(1, 7)}
    bics = {k: kmeans_bic(X, f.inertia_, np.bincount(f.labels_)) for k, f in fits.items()}
    assert min(bics, key=bics.get) == 3


def test_same_seed_same_labels():
    X, _ = planted_mixture(80, np.array([[0, 0], [5, 5], [0, 5]], float))
    a, _ = fit_layer(as_image_layer(X), layer="p", mode="image", method="dpgmm", params=PARAMS,
                     seed=3, progress=False)
    b, _ = fit_layer(as_image_layer(X), layer="p", mode="image", method="dpgmm", params=PARAMS,
                     seed=3, progress=False)
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_array_equal(a["means"], b["means"])


def test_bic_baseline_grows_past_k_max_or_says_it_is_bound():
    """20 well-separated blobs and k_max 6: the search grows past k_max and picks about 20;
    capped at 12 it stops there and marks the choice saturated."""
    from convdp.cluster import fit_bic_baseline

    rng = np.random.default_rng(0)
    centres = rng.uniform(-50, 50, (20, 3))
    X = np.concatenate([rng.normal(c, 1.0, (80, 3)) for c in centres])
    params = {"method": "gmm", "covariance_type": "full", "k_min": 2, "k_max": 6}
    _, grown = fit_bic_baseline(X, params, 0)
    assert 18 <= grown["clusters_kept"] < grown["truncation"] and not grown["saturated"]
    _, capped = fit_bic_baseline(X, params | {"k_limit": 12}, 0)
    assert capped["clusters_kept"] == capped["truncation"] == 12 and capped["saturated"]


def test_the_gmm_baseline_takes_its_reg_covar_from_the_config():
    """``baseline.reg_covar`` reaches the Gaussian mixtures of the BIC search (it was 1e-6
    whatever the config said): every fitted variance is at least the setting."""
    from convdp.cluster import fit_bic_baseline

    X = np.random.default_rng(0).normal(0, 0.01, (300, 3))
    params = {"method": "gmm", "covariance_type": "diag", "k_min": 1, "k_max": 3}
    est, _ = fit_bic_baseline(X, params | {"reg_covar": 0.5}, 0)
    assert est.reg_covar == 0.5 and est.covariances_.min() >= 0.5
    est, _ = fit_bic_baseline(X, params, 0)
    assert est.covariances_.max() < 1e-3


def test_the_kmeans_baselines_effective_number_reads_its_cluster_sizes():
    """k-means has no weights_: its effective number must come from the clusters' shares of the
    samples (the mixing proportions its BIC reads), as the GMM's does, not be k itself."""
    from convdp.cluster import fit_bic_baseline
    from convdp.metrics import effective_number

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (900, 2)), rng.normal(5, 0.1, (50, 2)),
                        rng.normal(-5, 0.1, (50, 2))])
    params = {"method": "kmeans", "covariance_type": "full", "k_min": 2, "k_max": 5}
    est, rec = fit_bic_baseline(X, params, 0)
    assert rec["clusters_kept"] == 3
    shares = np.bincount(est.labels_, minlength=3) / len(X)
    assert rec["clusters_effective"] == pytest.approx(effective_number(shares))  # about 1.48
    assert rec["clusters_effective"] < 2
    _, gmm = fit_bic_baseline(X, params | {"method": "gmm"}, 0)
    assert rec["clusters_effective"] == pytest.approx(gmm["clusters_effective"], rel=0.01)


def test_the_kmeans_baseline_takes_its_max_iter_from_the_config():
    """``baseline.max_iter`` reaches k-means as it reaches the Gaussian mixture (k-means ran
    scikit-learn's 300 iterations whatever the config said)."""
    from convdp.cluster import fit_bic_baseline

    X = np.random.default_rng(0).normal(size=(600, 4))
    params = {"method": "kmeans", "covariance_type": "full", "k_min": 3, "k_max": 3,
              "k_limit": 3, "max_iter": 2}
    est, rec = fit_bic_baseline(X, params, 0)
    assert est.max_iter == 2 and rec["iterations"] <= 2


def test_pca_above_the_samples_is_clamped_and_a_small_fit_flagged(caplog):
    """Image mode on 12 images with preprocess.pca 16: the PCA keeps 11 components (with a
    warning naming the key; centred samples span 11 dimensions) and the fit is marked
    too_few_samples."""
    X = np.random.default_rng(0).standard_normal((12, 1, 1, 32)).astype(np.float32)
    params = {**PARAMS, "preprocess": {"max_samples": None, "pca": 16},
              "dpgmm": {**PARAMS["dpgmm"], "n_components": 3}}
    with caplog.at_level("WARNING"):
        arrays, rec = fit_layer(X, layer="few", mode="image", method="dpgmm", params=params,
                                progress=False)
    assert rec["n_dims"] == 11 and rec["too_few_samples"] is True
    assert "preprocess.pca = 16 is not below the 12 samples; keeping 11" in caplog.text
    assert "layer 'few' (image mode)" in caplog.text


def test_restart_spread_is_over_the_near_optimal_restarts():
    from convdp.cluster import fit_dpgmm, near_best

    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 0.5, (150, 4)) for c in rng.uniform(-8, 8, (5, 4))])
    params = {"backend": "torch", "n_components": 12, "concentration": 1.0,
              "covariance_type": "full", "max_iter": 200, "tol": 1e-3, "weight_threshold": 0.01,
              "restarts": 3}
    _, rec = fit_dpgmm(X, params, 0)
    elbos = rec["restart_elbo_per_sample"]
    near = [e for e in elbos if e >= max(elbos) - near_best(max(elbos))]
    # the fits the three restarts (and any larger start tried after them) reached
    assert len(elbos) >= 1 and rec["restarts_near_best"] == len(near) >= 1
    assert len(rec["restart_clusters_kept"]) == len(near)
    assert min(rec["restart_clusters_kept"]) <= rec["clusters_kept"] <= max(rec["restart_clusters_kept"])


def test_starts_that_end_at_one_fit_count_it_once():
    """Starts of several sizes can end at the same fit (each size is fitted once): the
    near-best restarts count distinct fits, never more than the starts' fits."""
    from convdp.cluster import fit_dpgmm, make_dpgmm

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6.0, (5, 6))
    X = centres[rng.integers(0, 5, 3000)] + rng.normal(0, 1, (3000, 6))
    params = {"backend": "torch", "n_components": 10, "concentration": 1.0,
              "covariance_type": "full", "max_iter": 200, "tol": 1e-3, "weight_threshold": 0.01,
              "delete_below": 0.01, "merge": True, "max_components": 40, "restarts": 3,
              "sample_check": False}
    starts = make_dpgmm(params, 0).fit(X).init_results_
    fits = {(r["truncation"], r["elbo_per_sample"]) for r in starts}
    assert len(fits) < len(starts)  # the case arises: two starts, one fit
    _, rec = fit_dpgmm(X, params, 0)
    assert rec["restarts_near_best"] <= len(fits)
    assert len(rec["restart_elbo_per_sample"]) == len(fits)


def test_scikit_learn_saturation_counts_components_that_hold_samples():
    """An empty component of scikit-learn's fit can keep an expected weight of about 1 / n
    (its stick's prior): it is not counted as holding samples, so a fit of 4 clusters in 8
    components is not saturated (0.6 x 8)."""
    import warnings

    from convdp.cluster import fit_dpgmm

    rng = np.random.default_rng(7)
    centres = rng.normal(0, 8.0, (4, 4))
    X = centres[rng.integers(0, 4, 2000)] + rng.normal(0, 1, (2000, 4))
    params = {"backend": "sklearn", "n_components": 8, "covariance_type": "full",
              "concentration": 1.0, "max_iter": 300, "tol": 1e-3, "weight_threshold": 0.01,
              "restarts": 1, "sample_check": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est, rec = fit_dpgmm(X, params, 7)
    held = est.weight_concentration_[0] - 1.0
    assert (held >= 1).sum() == 4 and (est.weights_ * len(X) >= 1).sum() > 4  # the case arises
    assert rec["saturated"] is False


def _rectified_and_blobs(n, seed=1):
    """(n, 8) samples shaped like a ReLU layer's: a 3-dimensional Gaussian projected to 8
    channels and rectified (a DP mixture tiles its faces and corners with more Gaussians the
    more samples it has), and (n, 2) samples of five separated Gaussian blobs."""
    rng = np.random.default_rng(seed)
    rectified = np.maximum(rng.normal(size=(n, 3)) @ rng.normal(size=(3, 8)), 0)
    rectified += rng.normal(0, 0.01, (n, 8))
    centres = rng.normal(0, 10, (5, 2))
    return rectified, centres[rng.integers(0, 5, n)] + rng.normal(0, 1, (n, 2))


def test_a_count_that_grows_with_the_samples_is_marked(caplog):
    """The sample check: the same settings on half the samples. Rectified samples' count grows
    with the samples (seed 2: 15 kept on 4,000, 11 on 2,000: marked, with a warning naming
    the layer; on seeds 0 to 6 the ratio is 1.07-1.36, marked from 1.2 on two of them, 16 /
    14 on seeds 0 and 1); tempered to 2,000 effective samples, the 4,000 keep about the
    2,000's count (11), and the half (1,000 samples' evidence) fewer (10); separated blobs
    keep theirs (5 and 5: not marked); off, neither column is written."""
    from convdp.config import load_config

    rectified, blobs = _rectified_and_blobs(4000, seed=2)
    params = {"preprocess": PARAMS["preprocess"],
              "dpgmm": {**load_config("config.yaml")["dpgmm"], "n_components": 30, "restarts": 1}}
    with caplog.at_level("WARNING"):
        _, rec = fit_layer(as_image_layer(rectified), layer="relu", mode="image", method="dpgmm",
                           params=params, progress=False)
    assert rec["grows_with_samples"] is True
    assert rec["clusters_kept"] >= SAMPLE_GROWTH * rec["clusters_kept_half"], rec
    assert "layer 'relu' (image mode)" in caplog.text and "grows with the samples" in caplog.text
    assert rec["effective_samples"] == 4000
    # tempered to 2,000 samples' evidence (dpgmm.effective_samples), the 4,000 keep what
    # 2,000 kept; the check's half is tempered alike (1,000 samples' evidence)
    tempered = {**params, "dpgmm": {**params["dpgmm"], "effective_samples": 2000}}
    _, on_2000 = fit_layer(as_image_layer(rectified), layer="relu", mode="image",
                           method="dpgmm", params=tempered, progress=False)
    assert on_2000["effective_samples"] == 2000, on_2000
    assert abs(on_2000["clusters_kept"] - rec["clusters_kept_half"]) <= 1, (on_2000, rec)
    assert on_2000["clusters_kept_half"] < on_2000["clusters_kept"], on_2000
    _, rec = fit_layer(as_image_layer(blobs), layer="blobs", mode="image", method="dpgmm",
                       params=params, progress=False)
    assert rec["grows_with_samples"] is False
    assert abs(rec["clusters_kept"] - rec["clusters_kept_half"]) <= 1, rec
    off = {**params, "dpgmm": {**params["dpgmm"], "sample_check": False}}
    _, rec = fit_layer(as_image_layer(blobs), layer="blobs", mode="image", method="dpgmm",
                       params=off, progress=False)
    assert "clusters_kept_half" not in rec and "grows_with_samples" not in rec


def test_clusters_whose_variance_is_reg_covar_are_marked(caplog):
    """A kept cluster whose variance in some direction is mostly ``reg_covar`` is counted in
    ``clusters_at_floor``, with a warning naming the layer: five separated blobs keep 5
    clusters and none at the floor; the same blobs at 1e-4 of their scale (within-blob
    variance 1e-8, a hundredth of reg_covar) are no longer told apart, and every cluster
    kept is marked, by both backends."""
    from convdp.config import load_config

    _, blobs = _rectified_and_blobs(2000, seed=2)
    for backend in ("torch", "sklearn"):
        params = {"preprocess": PARAMS["preprocess"],
                  "dpgmm": {**load_config("config.yaml")["dpgmm"], "n_components": 10,
                            "restarts": 1, "sample_check": False, "backend": backend}}
        caplog.clear()
        with caplog.at_level("WARNING"):
            _, rec = fit_layer(as_image_layer(blobs), layer="blobs", mode="image",
                               method="dpgmm", params=params, progress=False)
        assert (rec["clusters_kept"], rec["clusters_at_floor"]) == (5, 0), backend
        assert "reg_covar" not in caplog.text
        with caplog.at_level("WARNING"):
            _, rec = fit_layer(as_image_layer(blobs * 1e-4), layer="tiny", mode="image",
                               method="dpgmm", params=params, progress=False)
        assert rec["clusters_kept"] != 5, backend
        assert rec["clusters_at_floor"] == rec["clusters_kept"], backend
        assert "layer 'tiny' (image mode)" in caplog.text and "reg_covar (1e-06)" in caplog.text


def test_a_count_is_checked_from_another_seeds_start():
    """The seed check: one start from another seed's draws, at the truncation the fit kept,
    on the same samples; its record is that fit's (as fitted directly). Separated blobs keep
    their five clusters from any draws: not marked. Off, no columns."""
    from convdp.cluster import fit_dpgmm, other_seed
    from convdp.config import load_config

    _, blobs = _rectified_and_blobs(2000, seed=2)
    dp = {**load_config("config.yaml")["dpgmm"], "n_components": 20, "restarts": 2,
          "sample_check": False}
    _, rec = fit_dpgmm(blobs, dp, 0)
    one_start = {**dp, "restarts": 1, "n_components": rec["truncation"], "seed_check": False}
    _, direct = fit_dpgmm(blobs, one_start, other_seed(0))
    assert rec["clusters_kept"] == rec["clusters_kept_seed"] == direct["clusters_kept"] == 5
    assert rec["elbo_per_sample_seed"] == direct["elbo_per_sample"]
    assert rec["moves_with_seed"] is False
    assert other_seed(0) != 0 and 0 <= other_seed(2**31 - 1) < 2**31
    _, rec = fit_dpgmm(blobs, {**dp, "seed_check": False}, 0)
    assert not {"clusters_kept_seed", "elbo_per_sample_seed", "moves_with_seed"} & set(rec)


@pytest.mark.parametrize("kept, other, bound, other_bound, marked", [
    (31, 36, 2.0, 2.0, True),  # 16 % apart at one bound: the README's relu3 on the source
    (31, 35, 2.0, 2.0, False),  # 13 %
    (3, 4, 2.0, 2.0, False),  # one apart
    (3, 5, None, float("nan"), True),  # scikit-learn's fits: the counts alone
    (10, 20, 5.0, 4.0, False),  # the other start ended at a worse fit
    (10, 20, 5.0, 4.96, True),  # within near_best (0.05 nat) of it
    (20, 10, 5.0, 6.0, True),  # a better fit from the other draws
])
def test_the_seed_checks_mark(kept, other, bound, other_bound, marked):
    from convdp.cluster import count_moves

    assert count_moves(kept, other, bound, other_bound) is marked


def test_too_few_samples_for_the_check_leave_it_empty_and_one_class_scores_nothing(caplog):
    """Below twice max(n_components, 100) samples the half-sample check does not run: its
    columns say nothing (not "does not grow"). Images of one class: NMI, ARI and purity
    would be 1 for one cluster and 0 for any split: empty, with a warning."""
    _, blobs = _rectified_and_blobs(150)
    params = {**PARAMS, "dpgmm": {**PARAMS["dpgmm"], "sample_check": True}}
    with caplog.at_level("WARNING"):
        _, rec = fit_layer(as_image_layer(blobs), layer="blobs", mode="image", method="dpgmm",
                           params=params, progress=False, class_labels=np.full(150, 3))
    assert rec["clusters_kept_half"] is None and rec["grows_with_samples"] is None
    assert np.isnan([rec["nmi"], rec["ari"], rec["purity"]]).all()
    assert "the images hold one class (3)" in caplog.text
    _, rec = fit_layer(as_image_layer(blobs), layer="blobs", mode="image", method="dpgmm",
                       params=params, progress=False, class_labels=np.arange(150) % 2)
    assert 0 <= rec["nmi"] <= 1 and 0 <= rec["purity"] <= 1


def test_the_estimators_warnings_are_the_jobs_naming_the_layer(caplog):
    """A fit that stops at max_iter: its ConvergenceWarning is logged as the job's (the
    run's end lists those), once, with the layer; it went to stderr alone."""
    _, blobs = _rectified_and_blobs(400)
    params = {**PARAMS, "dpgmm": {**PARAMS["dpgmm"], "backend": "torch", "max_iter": 2,
                                  "sample_check": False}}
    with caplog.at_level("WARNING", logger="convdp"):
        fit_layer(as_image_layer(blobs), layer="blobs", mode="image", method="dpgmm",
                  params=params, progress=False)
    said = [r.getMessage() for r in caplog.records if "did not converge" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("layer 'blobs' (image mode): The torch DPGMM")
    # position mode, a warning too: the label maps keep the layer's grid
    maps = np.random.default_rng(0).normal(size=(6, 5, 7, 3)).astype(np.float32)
    arrays, rec = fit_layer(maps, layer="grid", mode="position", method="dpgmm",
                            params=params, progress=False)
    assert rec["grid"] == [5, 7] and arrays["labels"].shape == (6, 5, 7)


def test_the_early_moves_setting_reaches_the_fit():
    """``dpgmm.early_moves`` (not set: 10) is passed to the torch estimator: at 0 the moves
    wait for convergence (none is kept early), at the default one is kept early on an
    over-split start. The key has no schema default, so configs without it keep the fit
    jobs' parameters (a new key in them would rerun every fit)."""
    from convdp.cluster import make_dpgmm
    from convdp.config import load_config
    from tests.test_dpgmm_torch import _random_covariance_mixture

    X, _ = _random_covariance_mixture(4000, 16, 6, seed=0)
    dpgmm = {**load_config("config.yaml")["dpgmm"], "n_components": 30, "max_components": None}
    assert "early_moves" not in dpgmm and make_dpgmm(dpgmm, 0).early_moves == 10
    early = make_dpgmm(dpgmm, 0).fit(X)
    late = make_dpgmm({**dpgmm, "early_moves": 0}, 0).fit(X)
    assert late.early_moves == 0
    assert early.fit_stats_["early_moves_kept"] == 1 and late.fit_stats_["early_moves_kept"] == 0


def test_the_kmeans_start_is_as_long_as_the_config_says():
    """``dpgmm.kmeans_max_iter`` (default 10) reaches the torch estimator, and the fit's
    start is scikit-learn's K-means stopped after that many iterations: a fit with
    ``max_iter=0`` (the start only) is the fit from that K-means' labels."""
    from sklearn.cluster import KMeans

    from convdp.cluster import make_dpgmm
    from convdp.config import load_config
    from tests.test_dpgmm_torch import _random_covariance_mixture

    X, _ = _random_covariance_mixture(3000, 8, 5, seed=1)
    dpgmm = {**load_config("config.yaml")["dpgmm"], "n_components": 12,
             "max_components": None, "restarts": 1, "max_iter": 0}
    assert dpgmm["kmeans_max_iter"] == 10 and make_dpgmm(dpgmm, 0).kmeans_max_iter == 10
    for cap in (2, 300):
        params = {**dpgmm, "kmeans_max_iter": cap}
        est = make_dpgmm(params, 0).fit(X)
        km = KMeans(12, n_init=1, random_state=np.random.RandomState(0), max_iter=cap).fit(X)
        assert (cap == 2) == (km.n_iter_ == 2)
        given = make_dpgmm(params, 0).fit(X, resp_init=np.eye(12)[km.labels_])
        np.testing.assert_allclose(est.weights_, given.weights_, rtol=1e-6)
        np.testing.assert_allclose(est.means_, given.means_, rtol=1e-5, atol=1e-6)


def test_the_jobs_memory_counts_growth_only_where_the_fit_grows():
    """The fit and label jobs' memory is sized for the most components a fit can hold: the
    torch fit's truncation after growth (``max_components``), scikit-learn's own fit its
    fixed ``n_components`` (it does not grow), or the BIC baseline's largest K."""
    from convdp.cluster import components_cap

    dpgmm = {"backend": "torch", "n_components": 40, "max_components": 320}
    baseline = {"k_max": 8, "k_limit": None}
    assert components_cap({"dpgmm": dpgmm, "baseline": baseline}) == 320
    sk = {**dpgmm, "backend": "sklearn"}
    assert components_cap({"dpgmm": sk, "baseline": baseline}) == 40
    assert components_cap({"dpgmm": sk, "baseline": {"k_max": 8, "k_limit": 60}}) == 60
    assert components_cap({"dpgmm": {**dpgmm, "max_components": None}, "baseline": baseline}) == 40
    # a truncation above max_components: the fit holds n_components (the memory was sized
    # for max_components)
    assert components_cap({"dpgmm": {**dpgmm, "n_components": 500}, "baseline": baseline}) == 500
