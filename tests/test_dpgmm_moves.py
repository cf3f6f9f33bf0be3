"""The number of clusters comes from the data, not from the truncation: merge and delete
moves, adaptive truncation and restarts of the torch DPGMM (convdp/dpgmm/moves.py)."""


import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import BayesianGaussianMixture

from convdp.dpgmm import TorchBayesianGaussianMixture

MOVES = dict(merge=True, delete_below=0.01, weight_concentration_prior=1.0, max_iter=300,
             random_state=0)


pytestmark = pytest.mark.usefixtures("single_thread")


def planted(k, d, n, seed):
    """k anisotropic Gaussian clusters in d dimensions with unequal weights (1:4 at most)."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(1.0, 4.0, k)
    y = rng.choice(k, n, p=weights / weights.sum())
    centres = rng.normal(scale=6.0, size=(k, d))
    mix = rng.normal(size=(k, d, d)) / np.sqrt(d) * rng.uniform(0.3, 1.5, size=(k, 1, d))
    X = centres[y] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), mix[y])
    return X, y


@pytest.fixture(scope="module", params=[(3, 16), (8, 32), (15, 64), (30, 16)],
                ids=lambda p: f"{p[0]}clusters-{p[1]}d")
def mixture(request):
    k, d = request.param
    X, y = planted(k, d, 100 * k + 40 * d, seed=k)
    return k, X, y


@pytest.mark.parametrize("truncation", [20, 50, 100])
def test_planted_clusters_are_recovered_whatever_the_truncation(mixture, truncation):
    k, X, y = mixture
    est = TorchBayesianGaussianMixture(n_components=truncation, max_components=400, **MOVES)
    labels = est.fit(X).predict(X)
    assert est.n_active_ == k
    assert int((est.weights_ > 0.01).sum()) == k
    assert adjusted_rand_score(y, labels) >= 0.95
    assert not est.saturated_
    # the truncation grew (doubling) only while k was above grow_at of it
    expected = truncation
    while k > est.grow_at * expected:
        expected *= 2
    assert est.truncation_ == expected


def test_bound_is_comparable_across_truncations_and_beats_scikit_learn(mixture):
    """``elbo_per_sample_`` (the bound with the per-component constants restored) is the same
    at every truncation, and at least scikit-learn's at the same truncation."""
    k, X, _ = mixture
    fits = [TorchBayesianGaussianMixture(n_components=t, max_components=400, **MOVES).fit(X)
            for t in (20, 50)]
    a, b = (f.elbo_per_sample_ for f in fits)
    assert abs(a - b) <= 2e-3 * abs(a) + 1e-3
    sk = BayesianGaussianMixture(n_components=20, weight_concentration_prior=1.0, max_iter=300,
                                 weight_concentration_prior_type="dirichlet_process",
                                 random_state=0).fit(X)
    sk_elbo = (sk.lower_bound_ - 20 * fits[0]._empty_component_bound()) / len(X)
    assert a >= sk_elbo - 1e-6 * abs(sk_elbo)


def test_moves_off_is_scikit_learns_fit():
    """With every move off (the defaults) the fit is scikit-learn's, iteration for iteration."""
    X, _ = planted(4, 5, 600, seed=1)
    kw = dict(n_components=12, covariance_type="full", max_iter=40, tol=0.0, random_state=0)
    sk = BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_process", **kw).fit(X)
    tm = TorchBayesianGaussianMixture(dtype="float64", tol_per_sample=False, **kw).fit(X)
    np.testing.assert_allclose(tm.lower_bound_, sk.lower_bound_, rtol=1e-9)
    np.testing.assert_allclose(tm.weights_, sk.weights_, rtol=1e-6, atol=1e-9)
    assert tm.fit_stats_["merges"] == 0 and tm.truncation_ == 12


def test_a_saturated_fit_grows_until_the_cap_and_says_so():
    X, _ = planted(30, 8, 3000, seed=2)
    est = TorchBayesianGaussianMixture(n_components=10, max_components=20, **MOVES).fit(X)
    assert est.truncation_ == 20 and est.saturated_
    assert [r["truncation"] for r in est.init_results_] == [20]


def test_a_fit_with_every_component_occupied_is_saturated_whatever_grow_at():
    """grow_at 1 (the largest the schema allows): no count is above the truncation, but one
    equal to it may be what the truncation allowed; the scikit-learn backend alike."""
    from convdp.cluster import fit_dpgmm

    X, _ = planted(12, 3, 1200, seed=5)
    est = TorchBayesianGaussianMixture(n_components=4, grow_at=1.0, **MOVES).fit(X)
    assert est.n_active_ == 4 and est.saturated_
    params = {"backend": "sklearn", "n_components": 4, "covariance_type": "full",
              "concentration": 1.0, "max_iter": 100, "tol": 1e-3, "weight_threshold": 0.01,
              "restarts": 1, "sample_check": False, "grow_at": 1.0}
    assert fit_dpgmm(X, params, 0)[1]["saturated"] is True


def test_the_kept_fits_concentration_is_the_one_reported():
    """Without a concentration set, each truncation's is 1 / K: after halving starts and a
    larger one that lost, the estimator reports the kept fit's (it reported the last
    start's, which no M-step of the kept sticks reproduces)."""
    X, _ = planted(5, 2, 600, seed=0)
    est = TorchBayesianGaussianMixture(n_components=8, n_init=3, init_sizes="halving",
                                       max_components=32, random_state=0, dtype="float64",
                                       merge=True).fit(X)
    assert {r["truncation"] for r in est.init_results_} > {est.truncation_}  # the case arises
    assert est.weight_concentration_prior_ == 1.0 / est.truncation_
    assert est.weight_concentration_[1][-1] == pytest.approx(1.0 / est.truncation_)
    assert "priors" not in est.init_results_[0]


def test_restarts_keep_the_best_bound_and_report_each():
    X, _ = planted(6, 8, 1500, seed=3)
    est = TorchBayesianGaussianMixture(n_components=20, n_init=3, init_params="random", **MOVES)
    est.fit(X)
    runs = est.init_results_
    assert len(runs) == 3
    assert est.elbo_per_sample_ == max(r["elbo_per_sample"] for r in runs)
    assert est.n_effective_ == pytest.approx(np.exp(-np.sum(est.weights_ * np.log(est.weights_))))


def test_state_round_trip_predicts_the_same():
    """The E-step's constants depend on reg_covar and estep_reg_covar: both travel with the
    state (a large reg_covar makes the difference visible in score_samples)."""
    X, _ = planted(5, 6, 800, seed=4)
    for covariance_type, extra in [("full", {}), ("diag", {}),
                                   ("full", {"reg_covar": 1e-2}),
                                   ("diag", {"reg_covar": 1e-2, "estep_reg_covar": False})]:
        est = TorchBayesianGaussianMixture(n_components=10, covariance_type=covariance_type,
                                           **MOVES, **extra).fit(X)
        again = TorchBayesianGaussianMixture.from_state(est.get_state())
        assert np.array_equal(again.predict(X), est.predict(X))
        np.testing.assert_array_equal(again.score_samples(X), est.score_samples(X))
        np.testing.assert_array_equal(again.weights_, est.weights_)
    # a state saved before the two keys: scikit-learn's E-step, the default reg_covar
    old = {k: v for k, v in est.get_state().items() if k not in ("reg_covar", "estep_reg_covar")}
    rebuilt = TorchBayesianGaussianMixture.from_state(old)
    assert (rebuilt.reg_covar, rebuilt.estep_reg_covar) == (1e-6, False)
    with pytest.raises(ValueError, match=r"\['shift'\] missing"):
        TorchBayesianGaussianMixture.from_state({k: v for k, v in est.get_state().items()
                                                 if k != "shift"})


def test_state_keeps_the_settings_the_fit_ran_with():
    """Parameters changed after the fit (set_params, no refit) change neither the fitted
    model's predictions nor the state it saves: the rebuilt model used to take the new
    reg_covar / estep_reg_covar and score every sample differently (0.02 nats here)."""
    X, _ = planted(4, 3, 300, seed=1)
    est = TorchBayesianGaussianMixture(n_components=6, random_state=0, reg_covar=1e-2).fit(X)
    scores = est.score_samples(X)
    est.set_params(reg_covar=1e-6, estep_reg_covar=False)
    np.testing.assert_array_equal(est.score_samples(X), scores)
    state = est.get_state()
    assert (float(state["reg_covar"]), bool(state["estep_reg_covar"])) == (1e-2, True)
    again = TorchBayesianGaussianMixture.from_state(state)
    np.testing.assert_array_equal(again.score_samples(X), scores)
    np.testing.assert_array_equal(
        TorchBayesianGaussianMixture.from_state(again.get_state()).score_samples(X), scores)


def test_halving_restarts_start_from_fewer_components():
    """init_sizes='halving' (the workflow's, with merges): restart r starts from K / 2^r
    components with that truncation, grown while saturated, then twice the best fit's
    truncation is tried; the planted count is found."""
    X, _ = planted(6, 8, 1500, seed=5)
    est = TorchBayesianGaussianMixture(n_components=20, n_init=3, init_sizes="halving",
                                       max_components=80, **MOVES).fit(X)
    runs = est.init_results_
    assert [r["start"] for r in runs[:3]] == [20, 10, 5]
    # 5 of 5 occupied is saturated: that start grew to 10 (one fit, the second restart's)
    assert runs[2]["truncation"] == 10 and runs[2]["elbo_per_sample"] == runs[1]["elbo_per_sample"]
    # the kept fit: the best bound, the smallest truncation among bounds equal to it within
    # the tolerance (here the starts of 20 and 10 end at the same six clusters, 5e-5 nats
    # per sample apart, in either order depending on the machine's floating point)
    top = max(r["elbo_per_sample"] for r in runs)
    assert est.elbo_per_sample_ >= top - est.tol
    assert est.truncation_ == min(r["truncation"] for r in runs
                                  if r["elbo_per_sample"] >= top - est.tol)
    assert 2 * est.truncation_ in [r["start"] for r in runs]  # tried, and not better
    assert est.n_active_ == 6
    tiny = TorchBayesianGaussianMixture(n_components=1, n_init=2, init_sizes="halving",
                                        **MOVES).fit(X)
    assert [r["start"] for r in tiny.init_results_] == [1, 1]


def test_halving_starts_make_the_fit_independent_of_the_truncation():
    """Truncations K and 2K share every start but the largest, and each tries twice its best
    fit's truncation: where the truncation started does not change the kept fit."""
    X, _ = planted(8, 12, 2000, seed=6)
    fits = [TorchBayesianGaussianMixture(n_components=k, n_init=4, init_sizes="halving",
                                         max_components=160, **MOVES).fit(X) for k in (20, 40)]
    a, b = fits
    assert a.truncation_ == b.truncation_ and a.n_active_ == b.n_active_ == 8
    assert a.elbo_per_sample_ == b.elbo_per_sample_
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_a_merge_is_scored_from_the_two_components_it_changes(covariance_type):
    """The merge scorer's bound (the other components' terms kept, the pair's recomputed,
    the sticks' from the counts) equals the bound of a full M-step on the merged statistics,
    for every pair; keeping a merge updates it to the merged statistics."""
    import torch

    from convdp.dpgmm import moves

    X, _ = planted(5, 8, 3000, seed=1)
    est = TorchBayesianGaussianMixture(n_components=12, covariance_type=covariance_type,
                                       random_state=0, max_iter=300).fit(X)
    Xc, *_ = est._centre(torch.from_numpy(X), est._device, est._dtype)
    stats, ent, _ = moves.stats_and_overlap(est, Xc, est._state)
    scorer = moves._MergeScorer(est, stats, ent)
    for j in range(12):
        for k in range(j + 1, 12):
            fast, _ = scorer.score(j, k, 0.25)
            full, _ = moves._score(est, moves.merge_stats(est, stats, j, k), ent + 0.25)
            assert fast == pytest.approx(full, rel=1e-12, abs=1e-9)
    assert scorer.bound == moves._score(est, stats, ent)[0]
    new, trial = scorer.score(0, 1, 0.25)
    scorer.keep(0, 1, 0.25, new, trial)
    assert scorer.bound == new
    merged = moves.merge_stats(est, stats, 0, 1)
    for got, want in zip(scorer.stats, merged, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    fast, _ = scorer.score(2, 3, 0.0)
    full, _ = moves._score(est, moves.merge_stats(est, merged, 2, 3), ent + 0.25)
    assert fast == pytest.approx(full, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("batch_elems", [1, 1 << 22])
def test_batched_merge_scores_keep_what_scoring_pair_by_pair_keeps(covariance_type, batch_elems):
    """The greedy merge pass with the pairs' terms from batched M-steps (one pair per batch,
    or all) keeps the same merges, misses the same pairs with the same bounds and ends on the
    same statistics, bit for bit, as :meth:`score` and :meth:`keep` pair by pair."""
    import torch

    from convdp.dpgmm import moves

    X, _ = planted(6, 8, 3000, seed=2)
    # a few EM iterations from 30 components: many occupied pairs, several merges kept
    est = TorchBayesianGaussianMixture(n_components=30, covariance_type=covariance_type,
                                       random_state=2, max_iter=4).fit(X)
    Xc, *_ = est._centre(torch.from_numpy(X), est._device, est._dtype)
    stats, ent, overlap = moves.stats_and_overlap(est, Xc, est._state)
    pairs = moves.merge_candidates(stats, overlap, est._state, moves.MAX_PAIRS)
    delta = moves.pair_entropy_change(est, Xc, est._state, pairs)
    one = moves._MergeScorer(est, stats, ent)
    used, kept, missed = set(), 0, []
    for (j, k), dh in zip(pairs.tolist(), delta.tolist(), strict=True):
        if j in used or k in used:
            continue
        new, trial = one.score(j, k, dh)
        if new > one.bound:
            one.keep(j, k, dh, new, trial)
            used |= {j, k}
            kept += 1
        else:
            missed.append((new, (j, k)))
    batched = moves._MergeScorer(est, stats, ent)
    batched.batch_elems = batch_elems
    assert batched.greedy(pairs, delta) == (kept, missed)
    assert kept >= 3 and len(pairs) > 100
    assert (batched.bound, batched.ent) == (one.bound, one.ent)
    for got, want in zip((*batched.stats, batched.terms), (*one.stats, one.terms), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_pairs_that_share_no_sample_skip_the_entropy_pass_with_the_same_result():
    """Pairs whose responsibility overlap is 0 have an entropy change of exactly 0: given the
    overlap, they are not computed, and every pair's change is the same, bit for bit."""
    import torch

    from convdp.dpgmm import moves

    X, _ = planted(6, 8, 3000, seed=2)
    est = TorchBayesianGaussianMixture(n_components=30, random_state=2, max_iter=4).fit(X)
    Xc, *_ = est._centre(torch.from_numpy(X), est._device, est._dtype)
    stats, _, overlap = moves.stats_and_overlap(est, Xc, est._state)
    pairs = moves.merge_candidates(stats, overlap, est._state, moves.MAX_PAIRS)
    every = moves.pair_entropy_change(est, Xc, est._state, pairs)
    some = moves.pair_entropy_change(est, Xc, est._state, pairs, overlap)
    disjoint = overlap[pairs[:, 0], pairs[:, 1]] == 0
    assert 0 < int(disjoint.sum()) < len(pairs)
    assert bool((every[disjoint] == 0).all()) and bool((every[~disjoint] > 0).any())
    torch.testing.assert_close(some, every, rtol=0, atol=0)


@pytest.mark.parametrize("covariance_type, seed, per_blob, delete_below", [
    ("full", 0, 300, 0.01), ("diag", 0, 300, 0.01),
    # components holding 0.1-0.2 samples' weight at the delete move: to be left out of the
    # candidates in both fits alike
    ("diag", 1, 100, 0.05),
])
def test_a_tempered_fit_of_copies_is_the_fit_of_one_copy(covariance_type, seed, per_blob,
                                                         delete_below):
    """``effective_samples``: every sample's terms weighted by effective / n. Three copies of a
    data set tempered to its size give the fit of one copy from the same start (moves
    included), bound and all; at or above n it changes nothing."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(c, 1, (per_blob, 3))
                        for c in ([0, 0, 0], [5, 0, 0], [0, 6, 1])]
                       + [rng.uniform(-3, 8, (per_blob // 3, 3))])
    n, K = len(X), 12
    resp = np.eye(K)[rng.integers(0, K, n)]
    prior = np.cov(X.T) if covariance_type == "full" else X.var(0, ddof=1)
    kw = dict(n_components=K, covariance_type=covariance_type, dtype="float64", max_iter=300,
              tol=1e-8, merge=True, delete_below=delete_below, covariance_prior=prior)
    one = TorchBayesianGaussianMixture(**kw).fit(X, resp_init=resp)
    three = TorchBayesianGaussianMixture(effective_samples=n, **kw).fit(
        np.concatenate([X] * 3), resp_init=np.concatenate([resp] * 3))
    assert three.likelihood_power_ == pytest.approx(1 / 3)
    assert one.fit_stats_["merges"] >= 2 and three.fit_stats_["merges"] == one.fit_stats_["merges"]
    assert three.fit_stats_["deleted"] == one.fit_stats_["deleted"]
    assert three.n_iter_ == one.n_iter_
    assert three.lower_bound_ == pytest.approx(one.lower_bound_, rel=1e-12)
    assert three.lower_bound_per_sample_ == pytest.approx(one.lower_bound_per_sample_, rel=1e-12)
    for attr in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(three, attr), getattr(one, attr), rtol=0, atol=1e-12)
    untempered = TorchBayesianGaussianMixture(effective_samples=n, **kw).fit(X, resp_init=resp)
    assert untempered.likelihood_power_ == 1.0 and untempered.lower_bound_ == one.lower_bound_


def test_tempering_stops_the_count_following_the_samples():
    """Three rings: not Gaussian, so the DP tiles each with more components the more samples
    it is given (12 kept on 2,000 samples, 18 on 16,000 here); tempered to 2,000 effective
    samples, 16,000 keep 12, and still find the rings (every component on one ring)."""
    from convdp.cluster import make_dpgmm

    def rings(n):
        rng = np.random.default_rng(1)
        t, ring = rng.uniform(0, 2 * np.pi, n), rng.integers(0, 3, n)
        centres = np.array([[0, 0], [8, 0], [4, 7]])
        return (centres[ring] + 2.5 * np.c_[np.cos(t), np.sin(t)]
                + rng.normal(0, 0.3, (n, 2))), ring

    params = dict(n_components=20, covariance_type="full", concentration=1.0, max_iter=200,
                  tol=1e-3)

    def kept(n, **extra):
        X, ring = rings(n)
        est = make_dpgmm({**params, **extra}, 0).fit(X)
        labels = est.predict(X)
        assert adjusted_rand_score(ring, labels) > 0.1  # components of one ring each:
        for k in np.unique(labels):
            assert np.bincount(ring[labels == k], minlength=3).max() >= 0.99 * (labels == k).sum()
        return int((est.weights_ > 0.01).sum())

    few, many = kept(2000), kept(16000)
    tempered = kept(16000, effective_samples=2000)
    assert many >= few + 4, (few, many)
    assert abs(tempered - few) <= 1, (few, tempered)
