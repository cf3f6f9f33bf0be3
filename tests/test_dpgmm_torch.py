"""Tests of the PyTorch DPGMM backend against scikit-learn's BayesianGaussianMixture."""


import dataclasses

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import BayesianGaussianMixture

from convdp.dpgmm import OverflowInDtype, TorchBayesianGaussianMixture

K = 6


pytestmark = pytest.mark.usefixtures("single_thread")


def _blobs(n, d, centres, scales, seed, correlated=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(centres), n)
    mix = rng.normal(size=(len(centres), d, d)) / np.sqrt(d) + np.eye(d)
    if not correlated:  # axis-aligned clusters with per-axis spreads in [0.5, 1.5]
        mix = np.eye(d) * rng.uniform(0.5, 1.5, size=(len(centres), 1, d))
    noise = np.einsum("nd,nde->ne", rng.normal(size=(n, d)), mix[y])
    X = np.asarray(centres)[y] + np.asarray(scales)[y, None] * noise
    return X, y


@pytest.fixture(scope="module")
def small():
    """500 x 5, overlapping clusters, plus random soft initial responsibilities."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(4, 5))
    X, _ = _blobs(500, 5, centres, [1.0, 0.5, 2.0, 1.5], seed=1)
    resp = rng.dirichlet(np.ones(K), size=len(X))
    return X, resp


def _sk(resp, **kw):
    """scikit-learn's estimator, initialised from given responsibilities (test only)."""

    class FromResp(BayesianGaussianMixture):
        def _initialize_parameters(self, X, random_state, xp=None):
            self._initialize(X, resp)

    return FromResp(**kw)


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))


@pytest.mark.parametrize(("covariance_type", "slices"),
                         [("full", False), ("diag", False), ("full", True)])
def test_parity_each_iteration(small, covariance_type, slices, monkeypatch):
    """Every iteration's bound and the fitted parameters equal scikit-learn's (float64);
    ``slices``: the "full" Mahalanobis products run on 16-row slices of each block."""
    X, resp = small
    if slices:
        monkeypatch.setattr(TorchBayesianGaussianMixture, "_slice_elems", 1)
    n_iter = 8
    sk_bounds = []
    for k in range(1, n_iter + 1):
        sk = _sk(resp, n_components=K, covariance_type=covariance_type, max_iter=k, tol=0.0)
        sk.fit(X)
        sk_bounds.append(sk.lower_bound_)
    tm = TorchBayesianGaussianMixture(
        n_components=K,
        covariance_type=covariance_type,
        max_iter=n_iter,
        tol=0.0,
        dtype="float64",
        tol_per_sample=False,
        estep_reg_covar=False,
    ).fit(X, resp_init=resp)
    assert tm.n_iter_ == n_iter
    assert len(tm.lower_bounds_) == n_iter
    assert _rel(tm.lower_bounds_, sk_bounds) < 1e-6
    assert tm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-6)
    assert tm.lower_bound_per_sample_ == pytest.approx(sk.lower_bound_ / len(X), rel=1e-6)
    assert _rel(tm.weights_, sk.weights_) < 1e-6
    assert _rel(tm.means_, sk.means_) < 1e-6
    np.testing.assert_allclose(tm.covariances_, sk.covariances_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        tm.precisions_cholesky_, sk.precisions_cholesky_, rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(tm.precisions_, sk.precisions_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tm.weight_concentration_[0], sk.weight_concentration_[0], rtol=1e-9)
    np.testing.assert_allclose(tm.weight_concentration_[1], sk.weight_concentration_[1], rtol=1e-9)
    np.testing.assert_allclose(tm.mean_precision_, sk.mean_precision_, rtol=1e-9)
    np.testing.assert_allclose(tm.degrees_of_freedom_, sk.degrees_of_freedom_, rtol=1e-9)
    np.testing.assert_allclose(tm.mean_prior_, sk.mean_prior_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tm.covariance_prior_, sk.covariance_prior_, rtol=1e-9)
    assert tm.weight_concentration_prior_ == sk.weight_concentration_prior_
    assert tm.degrees_of_freedom_prior_ == sk.degrees_of_freedom_prior_
    np.testing.assert_allclose(tm.score_samples(X), sk.score_samples(X), rtol=1e-8)
    np.testing.assert_allclose(tm.predict_proba(X), sk.predict_proba(X), atol=1e-8)
    np.testing.assert_array_equal(tm.predict(X), sk.predict(X))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(tm, name).dtype == np.float64


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_parity_same_convergence_with_sklearn_criterion(small, covariance_type):
    """Same init (KMeans, same random_state) and tol_per_sample=False -> same run."""
    X, _ = small
    kw = dict(n_components=K, covariance_type=covariance_type, random_state=3, max_iter=200)
    sk = BayesianGaussianMixture(**kw).fit(X)
    tm = TorchBayesianGaussianMixture(**kw, dtype="float64", tol_per_sample=False,
                                      estep_reg_covar=False).fit(X)
    assert tm.n_iter_ == sk.n_iter_
    assert tm.converged_ == sk.converged_
    assert tm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-6)
    assert _rel(tm.weights_, sk.weights_) < 1e-6
    assert _rel(tm.means_, sk.means_) < 1e-6


@pytest.mark.parametrize("elkan", [True, False])
@pytest.mark.parametrize("max_iter", [300, 3])
def test_kmeans_start_has_scikit_learns_labels(monkeypatch, elkan, max_iter):
    """The "kmeans" start (Elkan's iterations, or Lloyd's past ELKAN_MAX_BOUNDS) gives the
    labels of scikit-learn's own start (KMeans with its default Lloyd iterations), here on
    overlapping clusters in 40 dimensions; with ``kmeans_max_iter`` (the workflow's shorter
    start) those of KMeans stopped after as many iterations, before its labels settle."""
    from sklearn.cluster import KMeans

    from convdp.dpgmm import stats

    if not elkan:
        monkeypatch.setattr(stats, "ELKAN_MAX_BOUNDS", 0)
    rng = np.random.default_rng(5)
    X = rng.normal(scale=2.0, size=(6, 40))[rng.integers(0, 6, 3000)] + rng.normal(size=(3000, 40))
    k = K if max_iter == 300 else 20  # more components than clusters: K-means runs long
    est = TorchBayesianGaussianMixture(n_components=k, kmeans_max_iter=max_iter)
    est.n_features_in_, est._K = X.shape[1], k
    kind, labels = est._initial_resp(X, np.random.RandomState(11), "cpu", torch.float64)
    ref = KMeans(n_clusters=k, n_init=1, random_state=np.random.RandomState(11),
                 max_iter=max_iter).fit(X)
    assert kind == "labels"
    np.testing.assert_array_equal(labels.numpy(), ref.labels_)
    if max_iter < 300:
        settled = KMeans(n_clusters=k, n_init=1, random_state=np.random.RandomState(11)).fit(X)
        assert ref.n_iter_ == max_iter < settled.n_iter_
        assert (ref.labels_ != settled.labels_).any()


@pytest.mark.parametrize("seed, tol, max_iter", [(11, 1e-4, 300), (7, 1e-4, 300), (7, 0.01, 300),
                                                (11, 1e-4, 3)])
def test_kmeans_start_on_a_gpu_has_scikit_learns_labels(seed, tol, max_iter):
    """The GPU's K-means start (scikit-learn's k-means++ seeds, Lloyd's iterations in torch),
    run here on the CPU, gives the labels of scikit-learn's KMeans on overlapping clusters:
    with its default tolerance, with one so loose that both stop by the centres' shift
    before the labels settle, and stopped after ``max_iter`` iterations (the workflow's
    ``kmeans_max_iter``)."""
    from sklearn.cluster import KMeans

    from convdp.dpgmm import stats

    rng = np.random.default_rng(5)
    X = rng.normal(scale=2.0, size=(6, 40))[rng.integers(0, 6, 3000)] + rng.normal(size=(3000, 40))
    k = K if max_iter == 300 else 20  # more components than clusters: K-means runs long
    ref = KMeans(n_clusters=k, n_init=1, random_state=np.random.RandomState(seed), tol=tol,
                 algorithm="lloyd", max_iter=max_iter).fit(X)
    if tol > 1e-4 or max_iter < 300:
        settled = KMeans(n_clusters=k, n_init=1, random_state=np.random.RandomState(seed),
                         algorithm="lloyd").fit(X)
        assert ref.n_iter_ < settled.n_iter_  # stopped by the shift rule or max_iter
        assert max_iter == 300 or (ref.labels_ != settled.labels_).any()
    labels = stats.kmeans_on_device(X, k, np.random.RandomState(seed), "cpu", tol=tol,
                                    max_iter=max_iter)
    np.testing.assert_array_equal(labels.numpy(), ref.labels_)


@pytest.mark.parametrize("init_params", ["random", "random_from_data", "k-means++"])
def test_other_initialisations_match_sklearn(small, init_params):
    X, _ = small
    kw = dict(n_components=K, init_params=init_params, random_state=7, max_iter=5, tol=0.0)
    sk = BayesianGaussianMixture(**kw).fit(X)
    tm = TorchBayesianGaussianMixture(**kw, dtype="float64", tol_per_sample=False,
                                      estep_reg_covar=False).fit(X)
    assert _rel(tm.lower_bounds_, sk.lower_bounds_) < 1e-6
    assert _rel(tm.means_, sk.means_) < 1e-6


def _relu_with_rare_channels(seed, n=3000, d=16, rare=16, c=5):
    """ReLU-like features of ``c`` clusters, beside ``rare`` channels that are zero but at
    a few samples (as many of a deep layer's are): within a cluster their variance falls
    below ``reg_covar``, which then decides those components' precisions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(c, size=n)
    X = np.maximum(rng.normal(0, 1.5, (c, d))[y] + rng.normal(0, 0.5, (n, d)), 0.0)
    R = np.where(rng.random((n, rare)) < 0.005, rng.uniform(0, 0.05, (n, rare)), 0.0)
    return np.hstack([X, R])


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_bound_rises_at_every_iteration_where_reg_covar_decides(covariance_type, seed):
    """The E-step counts reg_covar as the M-step does, so EM ascends one objective: the
    bound never falls (float64, 40 iterations, tol 0). Leaving it out of the E-step, as
    scikit-learn does, the same fits' bound falls."""
    X = _relu_with_rare_channels(seed)
    kw = dict(n_components=10, covariance_type=covariance_type, max_iter=40, tol=0.0,
              random_state=0, dtype="float64")
    steps = {flag: np.diff(TorchBayesianGaussianMixture(**kw, estep_reg_covar=flag)
                           .fit(X).lower_bounds_) / len(X)
             for flag in (True, False)}
    assert steps[True].min() > -1e-9
    assert steps[False].min() < -1e-7


def test_per_sample_tolerance(small):
    X, _ = small
    kw = dict(n_components=K, random_state=0, max_iter=500, dtype="float64", tol=1e-3)
    per_sample = TorchBayesianGaussianMixture(**kw).fit(X)
    whole = TorchBayesianGaussianMixture(**kw, tol_per_sample=False).fit(X)
    assert per_sample.converged_ and whole.converged_
    assert per_sample.n_iter_ <= whole.n_iter_
    lbs = per_sample.lower_bounds_
    assert abs(lbs[-1] - lbs[-2]) / len(X) < 1e-3 <= abs(lbs[-2] - lbs[-3]) / len(X)
    assert per_sample.lower_bound_per_sample_ == pytest.approx(lbs[-1] / len(X))


def _planted(seed, n=3000, d=4, c=4):
    """c well-separated clusters (centres ~15 apart, unit-ish spread) in d dims."""
    rng = np.random.default_rng(seed)
    centres = 15.0 * np.eye(c, max(c, d))[:, :d] + rng.normal(size=(c, d))
    if d < c:
        centres = rng.normal(size=(c, d)) * 15.0
    return _blobs(n, d, centres, np.full(c, 1.0), seed, correlated=False)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_float32_planted_mixture(covariance_type):
    X, y = _planted(0, n=2000)
    kw = dict(n_components=10, covariance_type=covariance_type, random_state=0, max_iter=200)
    sk = BayesianGaussianMixture(**kw).fit(X)
    assert int((sk.weights_ > 0.01).sum()) == 4
    # float32, scikit-learn's stopping rule: the same fit as float64 scikit-learn
    tm = TorchBayesianGaussianMixture(**kw, dtype="float32", tol_per_sample=False).fit(X)
    assert adjusted_rand_score(sk.predict(X), tm.predict(X)) >= 0.99
    assert adjusted_rand_score(y, tm.predict(X)) >= 0.99
    assert int((tm.weights_ > 0.01).sum()) == 4
    assert tm.weights_.dtype == np.float64 and tm.means_.dtype == np.float64
    assert tm.lower_bound_per_sample_ == pytest.approx(sk.lower_bound_ / len(X), rel=1e-4)
    # per-sample stopping rule.  NB: with tol=1e-3 this fit stops on a plateau
    # (|change| / N = 9.8e-4 at iteration 33) while a duplicate component is still
    # draining, so the test uses tol=1e-4.
    tm = TorchBayesianGaussianMixture(**kw, dtype="float32", tol=1e-4).fit(X)
    assert tm.converged_
    assert adjusted_rand_score(sk.predict(X), tm.predict(X)) >= 0.99
    assert int((tm.weights_ > 0.01).sum()) == 4


def test_float32_full_keeps_tight_clusters_far_from_the_block_mean():
    """Two unit-variance clusters 1,000 widths from the data's mean in 8 dimensions: the
    float32 fit's covariances and bound are float64's (the scatter of a block centred both
    its factors at the block mean: variances of 0.37 for 0.84, a bound 254 nats high, and
    no warning)."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(1000, 8)) + 1000.0, rng.normal(size=(1000, 8)) - 1000.0])
    kw = dict(n_components=4, random_state=0)
    f32 = TorchBayesianGaussianMixture(**kw).fit(X)
    f64 = TorchBayesianGaussianMixture(**kw, dtype="float64").fit(X)
    assert f32.fit_stats_.get("psd_repairs", 0) == 0
    assert f32.lower_bound_ == pytest.approx(f64.lower_bound_, abs=1.0)
    for est in (f32, f64):
        assert np.sort(est.weights_)[-2:] == pytest.approx([0.5, 0.5], abs=0.01)
    big = [np.argsort(-est.weights_)[:2] for est in (f32, f64)]
    np.testing.assert_allclose(f32.covariances_[big[0]], f64.covariances_[big[1]], atol=2e-3)


def test_float32_diag_warns_where_its_rounding_reaches_the_result():
    """Unit-width clusters 600 widths from the data's mean: a "diag" fit's expanded products
    lose ~4 % in float32 (the bound 130 nats off): a warning says so; at 30 widths, none."""
    import warnings

    kw = dict(n_components=2, covariance_type="diag", random_state=0,
              covariance_prior=np.ones(2), mean_precision_prior=1e-6)
    for off, warns in ((600.0, True), (30.0, False)):
        rng = np.random.default_rng(0)
        X = np.concatenate([rng.normal(size=(2000, 2)) + off, rng.normal(size=(2000, 2)) - off])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            TorchBayesianGaussianMixture(**kw).fit(X)
            TorchBayesianGaussianMixture(**kw, dtype="float64").fit(X)
        said = [str(w.message) for w in caught if "of its own widths" in str(w.message)]
        assert len(said) == warns, said
        if warns:
            assert "float32 rounds" in said[0] and "dtype='float64'" in said[0]


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_float32_refuses_samples_whose_squares_overflow(covariance_type):
    """At 1e19 (diag) the fit returned NaN weights with a convergence warning only; "full"
    raised from inside a linear-algebra routine."""
    X = np.random.default_rng(0).normal(size=(200, 3)) * 1e19
    with pytest.raises(OverflowInDtype, match=r"squares overflow float32.*dtype='float64'"):
        TorchBayesianGaussianMixture(n_components=3, covariance_type=covariance_type).fit(X)
    est = TorchBayesianGaussianMixture(n_components=3, covariance_type=covariance_type,
                                       dtype="float64").fit(X)
    assert np.isfinite(est.weights_).all()


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_chunking_does_not_change_result(small, covariance_type):
    X, resp = small
    kw = dict(n_components=K, covariance_type=covariance_type, max_iter=10, tol=0.0)
    kw.update(dtype="float64")
    whole = TorchBayesianGaussianMixture(**kw, chunk_size=100_000).fit(X, resp_init=resp)
    chunked = TorchBayesianGaussianMixture(**kw, chunk_size=97).fit(X, resp_init=resp)
    np.testing.assert_allclose(chunked.lower_bounds_, whole.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(chunked.means_, whole.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(chunked.covariances_, whole.covariances_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(chunked.weights_, whole.weights_, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(chunked.score_samples(X), whole.score_samples(X), rtol=1e-10)
    # float32: also chunk-invariant up to float32 rounding
    kw.update(dtype="float32")
    whole = TorchBayesianGaussianMixture(**kw, chunk_size=100_000).fit(X, resp_init=resp)
    chunked = TorchBayesianGaussianMixture(**kw, chunk_size=97).fit(X, resp_init=resp)
    np.testing.assert_allclose(chunked.lower_bounds_, whole.lower_bounds_, rtol=1e-4)


def test_full_blocks_follow_the_device_bound_and_do_not_change_the_fit(small):
    """"full" blocks are bounded by elements of the (rows, K, D) temporaries: the CPU's bound
    on the CPU, a larger one on a GPU (whose small kernels were launch-bound). The block
    size is the only difference: 500 rows in blocks of 32 and in one block, the same fit."""
    X, resp = small
    est = TorchBayesianGaussianMixture(n_components=K, covariance_type="full", max_iter=10,
                                       tol=0.0, dtype="float64")
    est._block_elems = 32 * K * X.shape[1]  # blocks of 32 rows
    blocked = est.fit(X, resp_init=resp)
    assert blocked._block_rows() == 32
    whole = TorchBayesianGaussianMixture(n_components=K, covariance_type="full", max_iter=10,
                                         tol=0.0, dtype="float64").fit(X, resp_init=resp)
    assert whole._block_rows() >= len(X)
    np.testing.assert_allclose(blocked.lower_bounds_, whole.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(blocked.covariances_, whole.covariances_, rtol=1e-9, atol=1e-12)
    # off the CPU the bound is _device_block_elems (checked without a GPU: the rule only)
    est._device = torch.device("cuda")
    est._device_block_elems = 64 * K * X.shape[1]
    assert est._block_rows() == 64


def test_skipping_negligible_components_is_exact():
    """Skipped scatter contributions / shared Mahalanobis terms change nothing."""
    X, y = _planted(1, n=2000, d=3)
    X = X[np.argsort(y, kind="stable")]  # sorted by cluster: blocks see one cluster
    y = np.sort(y)
    # start from a split of the true clusters into 2 + 4 empty components
    resp = np.zeros((len(X), 12))
    resp[np.arange(len(X)), 2 * y + (np.arange(len(X)) % 2)] = 1.0
    kw = dict(n_components=12, max_iter=20, tol=0.0, chunk_size=128)
    # float64: identical to 1e-9.  float32: the sample order (hence the summation
    # order) differs, so only equal up to float32 noise amplified over 20 iterations.
    for dtype, rtol, atol in (("float64", 1e-9, 1e-9), ("float32", 1e-5, 1e-2)):
        fast = TorchBayesianGaussianMixture(**kw, dtype=dtype).fit(X, resp_init=resp)
        slow = TorchBayesianGaussianMixture(**kw, dtype=dtype)
        for flag in ("_skip_negligible", "_share_identical", "_sort_blocks"):
            setattr(slow, flag, False)
        slow.fit(X, resp_init=resp)
        assert fast.fit_stats_["scatter_skipped"] > 0
        skips = ("scatter_skipped", "mahalanobis_shared")
        assert {slow.fit_stats_[k] for k in skips} == {0}
        if dtype == "float32":
            assert fast.fit_stats_["mahalanobis_shared"] > 0
        np.testing.assert_allclose(fast.lower_bounds_, slow.lower_bounds_, rtol=rtol)
        np.testing.assert_allclose(fast.means_, slow.means_, rtol=rtol, atol=atol)
        np.testing.assert_allclose(fast.weights_, slow.weights_, rtol=rtol, atol=atol / 10)


def test_fit_predict_and_api(small):
    X, _ = small
    tm = TorchBayesianGaussianMixture(n_components=K, random_state=0, max_iter=20)
    labels = tm.fit_predict(X)
    np.testing.assert_array_equal(labels, tm.predict(X))
    proba = tm.predict_proba(X)
    assert proba.shape == (len(X), K) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(1), labels)
    assert tm.score_samples(X).shape == (len(X),)
    assert tm.score(X) == pytest.approx(tm.score_samples(X).mean())
    assert tm.covariances_.shape == (K, 5, 5)
    assert tm.means_.shape == (K, 5) and tm.weights_.shape == (K,)
    assert tm.weights_.sum() == pytest.approx(1.0)
    assert isinstance(tm.n_iter_, int) and isinstance(tm.converged_, bool)
    assert tm.n_features_in_ == 5
    # torch tensors and float32 arrays are accepted too
    np.testing.assert_array_equal(tm.predict(torch.from_numpy(X)), labels)
    assert tm.predict(X.astype(np.float32)).shape == (len(X),)
    # max_iter=0: initialisation only
    tm0 = TorchBayesianGaussianMixture(n_components=K, random_state=0, max_iter=0).fit(X)
    assert tm0.n_iter_ == 0 and tm0.lower_bounds_ == []
    # n_threads is applied during the call and restored afterwards
    before = torch.get_num_threads()
    tm2 = TorchBayesianGaussianMixture(n_components=K, max_iter=3, n_threads=2).fit(X)
    assert torch.get_num_threads() == before and tm2.n_iter_ == 3
    # sklearn-style params
    assert tm.get_params()["chunk_size"] == 65536
    assert TorchBayesianGaussianMixture(device="auto").fit(X[:60]).means_.shape[1] == 5


def test_a_failed_refit_leaves_the_fitted_model_as_it_was(small):
    """A refit that raises (here a mean_prior of the wrong shape, checked once the new
    data's shift is computed) keeps the previous fit whole: its predictions agree with its
    attributes. It used to keep ``means_`` but predict with the new data's shift (scores off
    by thousands of nats, most labels changed)."""
    X, _ = small
    tm = TorchBayesianGaussianMixture(n_components=K, random_state=0, max_iter=20).fit(X)
    labels, scores, means = tm.predict(X), tm.score_samples(X), tm.means_.copy()
    with pytest.raises(ValueError, match="mean_prior should have shape"):
        tm.set_params(mean_prior=np.zeros(2)).fit(X + 100.0)
    np.testing.assert_array_equal(tm.means_, means)
    np.testing.assert_array_equal(tm.score_samples(X), scores)
    np.testing.assert_array_equal(tm.predict(X), labels)
    with pytest.raises(ValueError, match="mean_prior should have shape"):
        tm.fit_predict(X + 100.0)
    np.testing.assert_array_equal(tm.score_samples(X), scores)
    # a first fit that fails leaves the estimator unfitted
    fresh = TorchBayesianGaussianMixture(n_components=K, mean_prior=np.zeros(2))
    with pytest.raises(ValueError, match="mean_prior should have shape"):
        fresh.fit(X)
    with pytest.raises(NotFittedError):
        fresh.predict(X)


def test_explicit_priors_match_sklearn(small):
    X, resp = small
    d = X.shape[1]
    kw = dict(
        n_components=K,
        max_iter=4,
        tol=0.0,
        weight_concentration_prior=0.5,
        mean_precision_prior=0.1,
        mean_prior=np.ones(d),
        degrees_of_freedom_prior=d + 2.5,
    )
    for ct, cp in (("full", np.eye(d) * 2.0), ("diag", np.full(d, 2.0))):
        sk = _sk(resp, covariance_type=ct, covariance_prior=cp, **kw).fit(X)
        tm = TorchBayesianGaussianMixture(
            **kw, covariance_type=ct, covariance_prior=cp, dtype="float64", estep_reg_covar=False
        ).fit(X, resp_init=resp)
        assert _rel(tm.lower_bounds_, sk.lower_bounds_) < 1e-6
        assert _rel(tm.means_, sk.means_) < 1e-6


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(n_components=0), ValueError, "n_components"),
        (dict(n_components=2.5), ValueError, "n_components"),
        (dict(covariance_type="banana"), ValueError, "covariance_type"),
        (dict(covariance_type="tied"), NotImplementedError, "tied"),
        (dict(covariance_type="spherical"), NotImplementedError, "spherical"),
        (dict(n_init=0), ValueError, "n_init"),
        (dict(kmeans_max_iter=0), ValueError, "kmeans_max_iter must be an integer >= 1"),
        (dict(max_components=2), ValueError, "max_components"),
        (dict(grow_at=1.5), ValueError, "grow_at"),
        (dict(merge="yes"), ValueError, "merge"),
        (dict(init_params="nope"), ValueError, "init_params"),
        (dict(tol=-1.0), ValueError, "tol"),
        (dict(reg_covar=-1e-3), ValueError, "reg_covar"),
        (dict(max_iter=-1), ValueError, "max_iter"),
        (dict(chunk_size=0), ValueError, "chunk_size"),
        (dict(dtype="float16"), ValueError, "dtype"),
        (dict(device="tpu9"), ValueError, "device"),
        (dict(weight_concentration_prior=0.0), ValueError, "weight_concentration_prior"),
        (dict(mean_precision_prior=-1.0), ValueError, "mean_precision_prior"),
        (dict(degrees_of_freedom_prior=2.0), ValueError, "degrees_of_freedom_prior"),
        (dict(mean_prior=np.zeros(3)), ValueError, "mean_prior"),
        (dict(covariance_prior=np.zeros((5, 5))), ValueError, "positive-definite"),
        (dict(covariance_prior=np.eye(3)), ValueError, "covariance_prior"),
        (dict(tol_per_sample="yes"), ValueError, "tol_per_sample"),
        (dict(estep_reg_covar=1), ValueError, "estep_reg_covar"),
        (dict(n_threads=0), ValueError, "n_threads"),
        (dict(delete_below=1.0), ValueError, "delete_below"),
        (dict(delete_below=-0.1), ValueError, "delete_below"),
    ],
)
def test_bad_parameters(small, kwargs, exc, match):
    X, _ = small
    kw = dict(n_components=3, max_iter=2)
    kw.update(kwargs)
    with pytest.raises(exc, match=match):
        TorchBayesianGaussianMixture(**kw).fit(X)


def test_bad_input(small):
    X, resp = small
    est = TorchBayesianGaussianMixture(n_components=K, max_iter=2)
    with pytest.raises(ValueError, match=r"n_samples=4 should be >= n_components=6"):
        est.fit(X[:4])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        est.fit(bad)
    with pytest.raises(ValueError, match="contains NaN"):
        est.fit(torch.as_tensor(bad))
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        est.fit(bad)
    with pytest.raises(ValueError, match="Reshape your data"):
        est.fit(X[:, 0])
    with pytest.raises(ValueError, match="Reshape your data"):
        est.fit(torch.as_tensor(X[:, 0]))
    with pytest.raises(ValueError, match="could not convert|numeric"):
        est.fit(np.array([["a", "b"]] * 10))
    with pytest.raises(ValueError, match="resp_init should have shape"):
        est.fit(X, resp_init=resp[:, :3])
    with pytest.raises(ValueError, match="non-negative"):
        est.fit(X, resp_init=-resp)
    with pytest.raises(NotFittedError):
        TorchBayesianGaussianMixture().predict(X)
    est.fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but .* is expecting 5"):
        est.predict(X[:, :3])
    with pytest.raises(ValueError, match="X has 3 features, but .* is expecting 5"):
        est.predict(torch.as_tensor(X[:, :3]))


def test_scikit_learn_estimator_checks():
    """scikit-learn's own estimator test suite accepts the torch estimator (input
    validation messages, n_features_in_, cloning, fit idempotence, ...)."""
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(TorchBayesianGaussianMixture(n_components=3), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]
    assert len(results) >= 40
    assert failed == []


def _random_covariance_mixture(n, d, clusters, seed):
    """Clusters with random full covariances and means ~ N(0, 3^2) (as benchmarks/dpgmm_speed.py)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(clusters, d))
    y = rng.integers(0, clusters, n)
    mix = rng.normal(size=(clusters, d, d)) / np.sqrt(d)
    X = means[y] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), mix[y])
    return X, y


def test_delete_moves_empty_the_pieces_of_an_over_split_start():
    """At convergence (``early_moves=0``): the kept path is the plain fit's, then the move's."""
    X, y = _random_covariance_mixture(4000, 16, 6, seed=0)
    kw = dict(n_components=30, random_state=0, max_iter=100, early_moves=0)
    plain = TorchBayesianGaussianMixture(**kw).fit(X)
    moved = TorchBayesianGaussianMixture(**kw, delete_below=0.02).fit(X)
    assert moved.fit_stats_["delete_moves_kept"] >= 1 and moved.fit_stats_["deleted"] >= 1
    assert moved.lower_bound_per_sample_ > plain.lower_bound_per_sample_ + 1e-3
    assert adjusted_rand_score(y, plain.predict(X)) < 0.999
    assert adjusted_rand_score(y, moved.predict(X)) >= 0.999
    assert plain.n_iter_ < moved.n_iter_ <= kw["max_iter"]
    # the kept path starts with the plain fit's iterations
    np.testing.assert_allclose(moved.lower_bounds_[: plain.n_iter_], plain.lower_bounds_, rtol=1e-12)
    # no iterations left after convergence: no move
    short = TorchBayesianGaussianMixture(**{**kw, "max_iter": plain.n_iter_ + 1}, delete_below=0.02).fit(X)
    assert short.fit_stats_["delete_moves"] == 0
    assert short.lower_bound_ == plain.lower_bound_


@pytest.mark.parametrize("moves, iter_ratio", [(dict(delete_below=0.02), 1.1),
                                               (dict(merge=True, delete_below=0.02), 0.7)])
def test_early_moves_reach_the_same_optimum_in_fewer_iterations(moves, iter_ratio):
    """Moves tried after 10 iterations (the default) instead of at convergence only: the
    same clusters, a bound as high; with merges far fewer iterations (34 -> 19 here; the
    delete move alone empties the pieces as fast either way). The first 10 iterations are
    the plain fit's."""
    X, y = _random_covariance_mixture(4000, 16, 6, seed=0)
    kw = dict(n_components=30, random_state=0, max_iter=200, **moves)
    late = TorchBayesianGaussianMixture(**kw, early_moves=0).fit(X)
    early = TorchBayesianGaussianMixture(**kw).fit(X)
    plain = TorchBayesianGaussianMixture(n_components=30, random_state=0, max_iter=200).fit(X)
    assert early.early_moves == 10 and early.fit_stats_["early_moves_kept"] == 1
    assert late.fit_stats_["early_moves_kept"] == 0
    assert early.converged_ and late.converged_
    assert early.lower_bound_per_sample_ >= late.lower_bound_per_sample_ - 1e-3
    assert adjusted_rand_score(y, early.predict(X)) >= 0.999
    assert early.n_iter_ <= iter_ratio * late.n_iter_
    np.testing.assert_allclose(early.lower_bounds_[:10], plain.lower_bounds_[:10], rtol=1e-12)
    # max_iter below early_moves: no move before it, and never more iterations than max_iter
    short = TorchBayesianGaussianMixture(**{**kw, "max_iter": 6}).fit(X)
    assert short.n_iter_ == 6 and short.fit_stats_["early_moves_kept"] == 0


def test_a_refinement_trial_stops_once_it_cannot_reach_the_bound():
    """``moves._trial``: the two largest of three overlapping clusters merged start below
    the fit's bound and creep back slowly: the trial stops after a few of its 15 iterations,
    where EM run to the budget would not have reached the bound either; a trial whose target
    is within reach stops at the first iteration above it, on the same path as plain EM."""
    from convdp.dpgmm import moves

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(1000, 4)) + 2.0 * i for i in range(3)])
    est = TorchBayesianGaussianMixture(n_components=3, random_state=0, dtype="float64",
                                       tol=1e-6).fit(X)
    Xc = est._centre(X, est._device, est._dtype)[0]
    stats, ent, _ = moves.stats_and_overlap(est, Xc, est._state)
    j, k = torch.argsort(stats[0], descending=True)[:2].tolist()
    start, _ = moves._score(est, moves.merge_stats(est, stats, j, k), ent)
    merged = est._m_step(*moves.merge_stats(est, stats, j, k))
    target = est.lower_bound_
    assert (target - start) / len(X) > 0.3  # nats per sample below

    _, bounds = moves._trial(est, Xc, merged, start, target, 15)
    _, full, converged = est._iterate(Xc, merged, [start], 15)
    assert not converged and max(full) < target  # the budget would not have been enough
    assert 3 <= len(bounds) <= 8 and bounds[-1] < target
    np.testing.assert_allclose(bounds, full[: len(bounds)], rtol=1e-12)

    near = full[3] - 1e-9  # reached at the third iteration of the same path
    _, bounds = moves._trial(est, Xc, merged, start, near, 15)
    assert len(bounds) == 4 and bounds[-1] > near


def test_rejected_delete_moves_leave_the_fit_as_it_was():
    """Four real clusters of ~25 % each: emptying any of them lowers the bound."""
    X, y = _planted(0, n=2000)
    kw = dict(n_components=4, random_state=0, max_iter=200, dtype="float64", early_moves=0)
    plain = TorchBayesianGaussianMixture(**kw).fit(X)
    moved = TorchBayesianGaussianMixture(**kw, delete_below=0.5).fit(X)
    assert moved.fit_stats_["delete_moves"] >= 2  # 3 candidates (never the largest), then 1
    assert moved.fit_stats_["delete_moves_kept"] == 0
    assert moved.n_iter_ > plain.n_iter_  # the rejected moves' iterations are counted
    assert moved.lower_bounds_ == plain.lower_bounds_
    np.testing.assert_array_equal(moved.means_, plain.means_)
    np.testing.assert_array_equal(moved.predict(X), plain.predict(X))


def test_float32_survives_a_cluster_of_identical_samples():
    """Dead pixels / background positions: many identical vectors far from the data mean.

    Scattered per component around its own centre (on a CPU, a block whose responsibilities
    are mostly zeros) their scatter matrix is exactly zero, and the float32 fit's bound is
    the float64 fit's. Scattered as one GEMM (a GPU, dense blocks), one factor centred at
    the block's mean and the weighted one at the component's own centre, it is within a few
    nats (with both factors at the block's mean it came out indefinite, was projected onto
    the positive semi-definite cone, and the bound fell over 1,000 nats short).
    """
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(2000, 16)), np.full((500, 16), 100.0),
                        rng.normal(size=(1000, 16)) + 50.0])
    y = np.repeat([0, 1, 2], [2000, 500, 1000])

    class OneGemm(TorchBayesianGaussianMixture):
        _own_rows_share = 0.0  # every block as one GEMM

    own = TorchBayesianGaussianMixture(n_components=10, random_state=0).fit(X)
    one = OneGemm(n_components=10, random_state=0).fit(X)
    f64 = TorchBayesianGaussianMixture(n_components=10, random_state=0, dtype="float64").fit(X)
    for est in (own, one, f64):
        assert "psd_repairs" not in est.fit_stats_
    assert own.lower_bound_ == pytest.approx(f64.lower_bound_, rel=1e-5)
    assert one.lower_bound_ == pytest.approx(f64.lower_bound_, abs=20.0)
    sk = BayesianGaussianMixture(n_components=10, random_state=0).fit(X)
    for tm in (own, one):  # the same clusters as scikit-learn (it splits one blob in two too)
        assert adjusted_rand_score(sk.predict(X), tm.predict(X)) >= 0.99
        assert adjusted_rand_score(y, tm.predict(X)) >= adjusted_rand_score(y, sk.predict(X)) - 0.01


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scatter_over_own_rows_equals_the_one_gemm_scatter(dtype):
    """The statistics of a pass over responsibilities that are mostly exact zeros (one-hot
    rows, a few soft ones, as in a fit's later iterations) are the same whether each block is
    scattered per component over its own nonzero rows or as one GEMM over every row, and
    both equal the float64 statistics computed directly (scikit-learn's formula)."""
    X, _ = _planted(0)
    rng = np.random.default_rng(1)
    n, K = X.shape[0], 6
    R = np.zeros((n, K))
    R[np.arange(n), rng.integers(0, K, n)] = 1.0
    soft = rng.random(n) < 0.1
    R[soft] = 0.5 * R[soft] + 0.5 * rng.dirichlet(np.ones(K), soft.sum())
    nk = R.sum(0) + 10 * np.finfo(dtype).eps
    xk = R.T @ X / nk[:, None]
    sk_ref = np.stack([(R[:, k, None] * (X - xk[k])).T @ (X - xk[k]) / nk[k] for k in range(K)])

    def stats(share):
        class Estimator(TorchBayesianGaussianMixture):
            _own_rows_share = share

        est = Estimator(n_components=K, dtype=dtype, chunk_size=700, random_state=0).fit(X)
        est.fit_stats_, est._counting = dict.fromkeys(est.fit_stats_, 0), True
        Xc, shift, _, _ = est._centre(X, est._device, est._dtype)
        nk_t, xk_t, sk_t = est._stats_from_resp(Xc, ("dense", torch.as_tensor(R, dtype=est._dtype)))
        reg = est.reg_covar * np.eye(X.shape[1])
        return nk_t.numpy(), xk_t.numpy() + shift.numpy(), sk_t.numpy() - reg, est.fit_stats_

    tol = 1e-12 if dtype == "float64" else 1e-5
    scale = np.abs(sk_ref).max()
    flops = {}
    for share in (0.0, 1.0):
        nk_t, xk_t, sk_t, st = stats(share)
        np.testing.assert_allclose(nk_t, nk, rtol=tol)
        np.testing.assert_allclose(xk_t, xk, atol=tol * np.abs(X).max())
        assert np.abs(sk_t - sk_ref).max() <= tol * scale
        flops[share] = st["gemm_flops"]
    # the own-rows pass does the products of the nonzero (sample, component) pairs only
    assert flops[1.0] < 0.5 * flops[0.0]


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_fit_stats_profile_the_fit_and_count_its_gemm_work(covariance_type):
    """fit_stats_ times each phase of the kept fit (the benchmark's profile) and counts the
    E-step's and statistics' GEMM work, at least one (N x D) by (D x K) product per
    iteration; predicting adds nothing to them."""
    import time

    X, _ = _planted(0)
    est = TorchBayesianGaussianMixture(n_components=8, covariance_type=covariance_type,
                                       merge=True, delete_below=0.01, random_state=0)
    t0 = time.perf_counter()
    est.fit(X)
    wall = time.perf_counter() - t0
    st = dict(est.fit_stats_)
    phases = [st[f"seconds_{p}"] for p in
              ("init", "estep", "statistics", "mstep", "bound", "moves")]
    assert all(t >= 0 for t in phases)
    assert st["seconds_estep"] > 0 and st["seconds_statistics"] > 0
    assert sum(phases) <= wall
    n, d = X.shape
    # the E-step's share: only the EM iterations' (timed as seconds_estep), not the
    # initialisation's or the moves' passes; each of the two at least one product over
    # every sample and feature per iteration (the log-probabilities', the statistics' R^T X)
    counted = st["gemm_flops_estep"] + st["gemm_flops_statistics"]
    assert st["gemm_flops"] > counted
    assert st["gemm_flops_estep"] >= 2 * n * d * est.n_iter_
    assert st["gemm_flops_statistics"] >= 2 * n * d * est.n_iter_
    est.predict(X)
    assert est.fit_stats_ == st


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_a_fit_on_a_gpu_times_its_e_step_and_statistics_by_events(covariance_type):
    """On a GPU each block's E-step part is timed by CUDA events (no wait per block): both
    phases are counted, and together they are no more than the fit."""
    import time

    X, _ = _planted(0)
    est = TorchBayesianGaussianMixture(n_components=8, covariance_type=covariance_type,
                                       device="cuda", random_state=0)
    t0 = time.perf_counter()
    est.fit(X)
    wall = time.perf_counter() - t0
    st = est.fit_stats_
    assert st["seconds_estep"] > 0 and st["seconds_statistics"] > 0
    assert st["seconds_estep"] + st["seconds_statistics"] <= wall


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_diag_pass_over_shared_components_matches_the_pass_over_every_component(monkeypatch, dtype):
    """A "diag" E-step pass that normalises each group of identical components as one column
    (their weights summed) and shares the group's statistics out by weight gives the
    statistics and entropy term of the pass over all K components."""
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(m, 1.0, (400, 6)) for m in (-6.0, 0.0, 6.0)])
    est = TorchBayesianGaussianMixture(n_components=12, covariance_type="diag", random_state=0,
                                       max_iter=200, dtype=dtype, merge=True)
    seen = []  # the data and state of the fit's E-step passes
    original = type(est)._e_step_stats

    def record(self, Xc, state):
        seen.append((Xc, state))
        return original(self, Xc, state)

    monkeypatch.setattr(type(est), "_e_step_stats", record)
    est.fit(X)
    monkeypatch.undo()
    Xc = seen[-1][0]
    for _, state in reversed(seen):  # the last pass where emptied components are copies
        est._prepare_estep(state)
        if est._groups is not None:
            break
    assert est._groups is not None and est._Wt.shape[0] < 12
    # and the heaviest component copied onto the next heaviest (which keeps its own
    # weight): a shared group that takes responsibility
    heavy, last = torch.argsort(state.wc_a, descending=True)[:2].tolist()
    copied = dataclasses.replace(state, **{
        f.name: _copy_row(getattr(state, f.name), heavy, last)
        for f in dataclasses.fields(state) if f.name not in ("wc_a", "wc_b")})
    tol = 1e-9 if dtype == "float64" else 1e-5
    for st in (state, copied):
        est._group_shared = True
        grouped = est._e_step_stats(Xc, st)
        est._group_shared = False
        every = est._e_step_stats(Xc, st)
        for a, b in zip(grouped[:3], every[:3], strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tol, atol=tol)
        assert grouped[3] == pytest.approx(every[3], rel=tol)
    assert every[0][last] > 1.0  # the copy took samples


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_diag_statistics_from_the_transposed_copy_match_the_plain_product(monkeypatch, dtype):
    """On a CPU a "diag" fit keeps ``[x, x^2]^T`` for its statistics' product (its own
    block's columns, over several blocks); the pass gives the statistics of the product
    from the rows themselves, the fit's passes use the copy, and it is dropped after the fit."""
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(m, s, (500, 5)) for m, s in ((-5.0, 1.0), (0.0, 0.5), (4.0, 2.0))])
    est = TorchBayesianGaussianMixture(n_components=8, covariance_type="diag", random_state=0,
                                       max_iter=50, dtype=dtype, chunk_size=256)
    seen = []
    original = type(est)._e_step_stats

    def record(self, Xc, state):
        seen.append((Xc, state, self._Xt is not None))
        return original(self, Xc, state)

    monkeypatch.setattr(type(est), "_e_step_stats", record)
    est.fit(X)
    monkeypatch.undo()
    assert est._Xt is None and all(used for *_, used in seen)
    Xc, state, _ = seen[len(seen) // 2]
    assert Xc.shape[0] > 4 * 256  # several blocks
    est._counting = False
    tol = 1e-10 if dtype == "float64" else 1e-5
    for grouped in (True, False):
        est._group_shared = grouped
        est._Xt = est._transposed(Xc)
        copy = est._e_step_stats(Xc, state)
        est._Xt = None
        plain = est._e_step_stats(Xc, state)
        for a, b in zip(copy[:3], plain[:3], strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tol, atol=tol)


def _copy_row(t, src, dst):
    t = t.clone()
    t[dst] = t[src]
    return t


def test_identical_components_are_grouped_by_value():
    """``_dedupe_components`` groups exactly the components whose (dof, beta, P_k, mu_k P_k)
    are equal as ``torch.equal`` has it (-0.0 equal to 0.0), first member as representative:
    the same groups as comparing every pair, also where many components share (dof, beta)
    but not their precisions."""
    from types import SimpleNamespace

    import torch

    from convdp.dpgmm.estep import _dedupe_components

    g = torch.Generator().manual_seed(0)
    K, D = 60, 4
    P = torch.randn(K, D, D, generator=g)
    muP = torch.randn(K, D, generator=g)
    dof = torch.full((K,), 5.0, dtype=torch.float64)  # one (dof, beta) for most of them
    beta = torch.ones(K, dtype=torch.float64)
    P[20, 0, 0] = 0.0
    for k in (*range(23, K, 3), 21):  # copies of component 20 ...
        P[k], muP[k] = P[20], muP[20]
    P[21, 0, 0] = -0.0  # ... -0.0 and 0.0 are the same value
    muP[23] = muP[20] + 1e-7  # ... not these: another value, another dof
    dof[26] = 5.5
    st = SimpleNamespace(dof=dof, mean_precision=beta)

    reference_uniq, reference_inverse = [], []
    for k in range(K):
        for j, r in enumerate(reference_uniq):
            if (dof[k] == dof[r] and beta[k] == beta[r] and torch.equal(P[k], P[r])
                    and torch.equal(muP[k], muP[r])):
                reference_inverse.append(j)
                break
        else:
            reference_inverse.append(len(reference_uniq))
            reference_uniq.append(k)
    uniq, inverse = _dedupe_components(st, P, muP)
    assert (uniq, inverse) == (reference_uniq, reference_inverse)
    assert inverse[21] == inverse[20] == inverse[29] and inverse[23] != inverse[20] != inverse[26]
    assert len(uniq) == K - len(range(23, K, 3)) - 1 + 2


def test_a_singular_covariance_prior_is_named():
    """A feature that is the sum of two others makes the default covariance prior singular;
    a float64 fit failed with "ill-defined empirical covariance … singleton or collapsed
    samples", a cause it does not have (a helper's hunt)."""
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.normal(size=(100, 2)) + c for c in ([0, 0], [6, 0], [0, 6])])
    X = np.c_[Z, Z[:, 0] + Z[:, 1]]
    est = TorchBayesianGaussianMixture(n_components=3, dtype="float64", random_state=0)
    with pytest.raises(ValueError, match=r"covariance prior .* is singular over the 3 features"):
        est.fit(X)
