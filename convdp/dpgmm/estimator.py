"""The torch DP mixture's parameters and scikit-learn API (see the package docstring)."""

from __future__ import annotations

import contextlib
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from convdp.dpgmm.estep import _EStep, expected_log_weights
from convdp.dpgmm.fitting import _Fitting
from convdp.dpgmm.state import STATE_FIELDS, State, new_fit_stats, to_numpy64
from convdp.dpgmm.stats import _Statistics
from convdp.dpgmm.validation import _Validation


class TorchBayesianGaussianMixture(_Fitting, _EStep, _Statistics, _Validation, BaseEstimator):
    """Dirichlet-process Gaussian mixture (variational), PyTorch implementation.

    Fits the same model as ``sklearn.mixture.BayesianGaussianMixture`` with
    ``weight_concentration_prior_type="dirichlet_process"`` (same priors,
    updates and lower bound; the E-step also counts ``reg_covar``, see
    ``estep_reg_covar``), vectorised over components and chunked over
    samples.

    Parameters
    ----------
    n_components : int, default=50
        Truncation level ``K`` of the stick-breaking process.
    covariance_type : {"full", "diag"}, default="full"
        "tied" and "spherical" raise ``NotImplementedError``.
    tol : float, default=1e-3
        Convergence threshold on the change of the lower bound between two
        iterations.  With ``tol_per_sample=True`` (default) the change is
        divided by ``n_samples``, i.e. the fit stops when
        ``|lb_t - lb_{t-1}| / n_samples < tol``.  scikit-learn applies ``tol``
        to the un-normalised lower bound of the whole data set, which is why
        it rarely converges for large ``n_samples``; ``tol_per_sample=False``
        reproduces scikit-learn's criterion exactly.
    reg_covar : float, default=1e-6
        Added to the diagonal of every component's empirical covariance (and counted by
        the E-step, see ``estep_reg_covar``).
    max_iter : int, default=100
        Maximum number of variational EM iterations (0 = only initialise).
    n_init : int, default=1
        Number of restarts (different initialisations); the fit with the highest lower
        bound is kept, and every restart's result is in ``init_results_``.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How the initial responsibilities are obtained; as scikit-learn
        (``KMeans(n_clusters=K, n_init=1, random_state=rs)`` on the original data, with
        ``rs = check_random_state(random_state)``), so the same ``random_state`` gives
        the same initialisation as scikit-learn. "kmeans" runs Elkan's exact
        acceleration of scikit-learn's default Lloyd iterations (up to
        ``ELKAN_MAX_BOUNDS`` samples x components): the same labels, faster, but where
        a sample lies at exactly equal distances from two centres (data on an integer
        grid), which each algorithm may break its own way: scikit-learn's fit can then
        start, and end, elsewhere.
    kmeans_max_iter : int >= 1, default=300
        Lloyd iterations of the "kmeans" start at most (scikit-learn's ``KMeans``
        ``max_iter``): 300, scikit-learn's, gives its start. The K-means of a start with
        more components than clusters spends most of its iterations moving the borders
        between pieces of one cluster, which the EM moves again: the workflow's default
        is 10 (benchmarks/RESULTS.md, "A shorter K-means start").
    weight_concentration_prior : float > 0 or None, default=None
        Concentration ``alpha`` of the Dirichlet process; None -> ``1 / K``.
    mean_precision_prior : float > 0 or None, default=None
        ``beta_0``; None -> 1.
    mean_prior : array-like of shape (D,) or None, default=None
        ``m_0``; None -> mean of X.
    degrees_of_freedom_prior : float > D - 1 or None, default=None
        ``nu_0``; None -> D.
    covariance_prior : array-like or None, default=None
        ``W_0^{-1}``; shape (D, D) for "full", (D,) for "diag".  None -> the
        empirical covariance of X (``np.cov(X.T)``) for "full", the per-feature
        variance with ``ddof=1`` for "diag".
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation (as in scikit-learn).
    device : str or torch.device, default="cpu"
        "cpu", "cuda", "cuda:1", ... or "auto" (cuda if available).
    dtype : {"float32", "float64"}, default="float32"
        Precision of the per-sample computations (E-step, statistics).  Small
        per-component quantities are always float64.
    chunk_size : int, default=65536
        Maximum number of samples processed at once.  For "full" covariance
        the block is further limited so that the (block, K, D) temporaries
        stay below ``_block_elems`` elements.
    estep_reg_covar : bool, default=True
        The E-step counts ``reg_covar`` as the M-step does: as a noise of that variance on
        every feature of every sample, whose expected cost ``-reg_covar / 2 tr E[Lambda_k]``
        enters each component's log-probability, so that EM ascends one objective and the
        lower bound rises at every iteration. False leaves it out, as scikit-learn does
        (its fits to the last digit); the bound can then fall where a component's
        variance in some feature is near ``reg_covar`` (a ReLU channel at zero across a
        cluster), and the fit wanders: 139 iterations against 95 in the speed benchmark's
        paper setting (benchmarks/RESULTS.md).
    tol_per_sample : bool, default=True
        See ``tol``.
    delete_below : float in [0, 1), default=0.0
        After convergence, try emptying every component holding fewer than
        ``delete_below * n_samples`` samples, and keep the result only if the
        lower bound rises (see ``convdp.dpgmm.moves.delete_moves``).  The model and the objective
        are scikit-learn's; only the optimum reached differs, and its lower
        bound is never lower.  A K-means start with many components leaves
        small pieces of the true clusters that the Dirichlet process empties
        very slowly: this move removes them.  0 (default) = never, which
        reproduces scikit-learn's fit (with ``estep_reg_covar=False``).  The workflow's default is 0.01.
    merge : bool, default=False
        After convergence, try merging pairs of components that share responsibility
        (memoized merge moves, Hughes & Sudderth): a merge is kept only if the lower bound
        rises, then EM runs on; rounds repeat while merges are kept (see
        ``convdp.dpgmm.moves``).  False reproduces scikit-learn's fit (with
        ``estep_reg_covar=False``).
    early_moves : int >= 0, default=10
        With ``merge`` or ``delete_below``: the moves are tried once already after this many
        EM iterations (if not converged by then), each judged after a few iterations of EM,
        then again at convergence (see ``convdp.dpgmm.moves.early_moves``). It spares the
        iterations in which the DP drains a K-means start's pieces slowly, with every
        component in every E-step. 0 = the moves only at convergence.
    max_components : int or None, default=None
        Adaptive truncation: when a fit holds more than ``grow_at * K`` occupied components
        (>= 1 sample each), or all K, it is refitted with ``2 K``, up to ``max_components``, so that
        the truncation is not what limits the number of clusters.  None = never.
    init_sizes : {"same", "halving"}, default="same"
        Size of each restart's start: "same" = every restart initialises all K components
        (differently seeded, scikit-learn's ``n_init``); "halving" = restart r starts from
        ``ceil(K / 2^r)`` components with that truncation (grown while saturated), all from
        one seed, then from twice the best fit's truncation for as long as that raises the
        bound: truncations K and 2K share every start but the largest, so the kept fit does
        not depend on where the truncation started (``_fit_ladder``).
    grow_at : float in (0, 1], default=0.6
        The occupied fraction of the truncation above which a fit is ``saturated_`` (a fit
        with every component occupied is, whatever ``grow_at``).
    n_threads : int or None, default=None
        Torch intra-op threads used by ``fit`` / ``predict`` / ... (restored
        afterwards); None keeps ``torch.get_num_threads()``.  On a busy machine
        (e.g. several workflow jobs sharing the cores) oversubscribed threads
        make small block operations very slow: give each job its share.
    verbose : int, default=0
        Print the lower bound per sample at each iteration when > 0.
    effective_samples : int >= 1 or None, default=None
        Temper the likelihood to this many samples: every sample's terms of the lower bound
        (its counts in the statistics, its entropy) are weighted by
        ``zeta = min(1, effective_samples / n_samples)``, the weighted-data form of the
        coarsened posterior of Miller & Dunson (JASA 2019). The components' sample means and
        scatter are those of all the samples, weighed against the prior as ``zeta`` times
        their counts; the evidence for a split is that of ``effective_samples`` samples. A
        Gaussian mixture fitted to clusters that are not Gaussian (a curved or rippled cloud)
        spends more components on each the more samples it is given; tempered, the count
        stops following ``n_samples`` above ``effective_samples``. Counts are then in
        effective samples everywhere: ``tol`` and the bounds per sample are per effective
        sample, a component is occupied (``n_active_``) from one effective sample, and
        ``delete_below`` is a fraction of the effective samples. None (default) =
        untempered, scikit-learn's model. Fitting three copies of a data set with
        ``effective_samples`` = its size gives the fit of one copy (from the same start,
        ``resp_init``, and the same ``covariance_prior``: the default one divides by
        ``n_samples - 1``).

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
    means_ : ndarray of shape (K, D)
    covariances_ : ndarray of shape (K, D, D) ("full") or (K, D) ("diag")
    precisions_ : ndarray, same shape as ``covariances_``
    precisions_cholesky_ : ndarray, same shape as ``covariances_``
        Upper-triangular ``P_k`` with ``precision_k = P_k P_k^T`` (scikit-learn's
        convention); ``1 / sqrt(covariances_)`` for "diag".
    weight_concentration_ : tuple of two ndarrays of shape (K,)
        Beta parameters of the sticks, as in scikit-learn.
    mean_precision_ : ndarray of shape (K,)
    degrees_of_freedom_ : ndarray of shape (K,)
    lower_bound_ : float
        scikit-learn's lower bound (whole data set, constant terms dropped)
        after the last iteration.
    lower_bound_per_sample_ : float
        ``lower_bound_ / n_samples`` (divided by ``likelihood_power_ * n_samples``, the
        effective samples, in a tempered fit).
    likelihood_power_ : float
        The weight ``zeta`` of every sample's terms (1 unless ``effective_samples`` is below
        ``n_samples``).
    elbo_per_sample_ : float
        The lower bound per sample without the constant scikit-learn drops per component
        (see ``_empty_component_bound``): comparable across truncations and restarts, and
        the criterion that picks the kept restart.
    lower_bounds_ : list of float
        Lower bound after each EM iteration of the kept path; ``n_iter_`` also counts the
        iterations of moves tried and rejected, so it can be longer.
    n_iter_ : int
    converged_ : bool
    truncation_ : int
        The truncation K of the kept fit (``n_components`` or grown, see ``max_components``).
    n_active_ : int
        Components holding at least one sample (sum of responsibilities >= 1).
    saturated_ : bool
        ``n_active_ > grow_at * truncation_`` or ``n_active_ == truncation_``: the
        truncation may have bound the count.
    n_effective_ : float
        Effective number of clusters, ``exp(entropy of weights_)``.
    init_results_ : list of dict
        Per start (restart, and with "halving" the larger starts tried after them):
        lower_bound, lower_bound_per_sample, elbo_per_sample, n_iter, converged,
        truncation, start (components its initialisation filled), n_active, n_effective,
        weights, saturated, fit_stats.
    weight_concentration_prior_, mean_precision_prior_, mean_prior_,
    degrees_of_freedom_prior_, covariance_prior_ : the priors actually used.
    n_features_in_ : int
    fit_stats_ : dict
        Diagnostics of the last fit: ``scatter_skipped`` = number of (block,
        component) scatter-matrix contributions skipped because provably
        negligible, ``mahalanobis_shared`` = number of (iteration, component)
        Mahalanobis evaluations shared with an identical component; the moves'
        counts ``merges`` (``refined_merges`` of them after EM refinement),
        ``merge_rounds``, ``reordered``, ``delete_moves`` (tried), ``delete_moves_kept``,
        ``deleted`` (components emptied by the kept moves) and ``early_moves_kept`` (1 when
        a move before convergence was kept, see ``early_moves``); the time profile
        ``seconds_init`` (initialisation), ``seconds_estep`` (the EM iterations' E-steps:
        log-probabilities and responsibilities), ``seconds_statistics`` (their sufficient
        statistics, computed in the same passes), ``seconds_mstep``, ``seconds_bound``,
        ``seconds_moves`` (the moves without the EM iterations they run), ``gemm_flops``
        (floating-point operations of the E-step's and the statistics' matrix products, in
        every pass of the fit: initialisation, EM iterations, moves), ``gemm_flops_estep``
        and ``gemm_flops_statistics`` (those of the EM iterations' E-steps and statistics
        alone, the work of ``seconds_estep`` and ``seconds_statistics``); ``em_iterations``,
        every EM iteration the fit ran (those of the seconds above): ``n_iter_`` and those
        of rejected refined merges, which do not count towards ``max_iter``.

    All arrays are numpy float64.
    """

    #: Maximum number of elements of the (block, K, D) temporaries ("full"): 16 MB in float32;
    #: blocks twice as large as with 2**21 raised the E-step from 0.51 to 0.59-0.67 of this
    #: machine's GEMM rate on the speed benchmark (fewer, larger operations).
    _block_elems = 1 << 22
    #: The same bound on a GPU (256 MB in float32: one block of the speed benchmark's 20,000
    #: rows at K 50, D 64). With the CPU's blocks an H200 ran the E-step at 0.04 of its GEMM
    #: rate, bound by the launches of many small kernels (benchmarks/RESULTS.md); not yet
    #: timed on a GPU: ``bash benchmarks/gpu.sh`` with ``DPGMM_ARGS="--block-elems 4194304"``
    #: fits with the CPU's size too, interleaved.
    _device_block_elems = 1 << 26
    #: On a CPU the Mahalanobis product and its norms ("full") run on row slices of a block
    #: of at most this many (slice, U, D) elements (8 MB in float32), so that the norms read
    #: the product from cache, while the block's other operations keep its size: the speed
    #: benchmark's planted fit, E-step 1.92 -> 1.74 s with slices of 2**20 on an Intel 2-core
    #: machine; 2**21 there was faster on some shapes, slower on others, and on an AMD EPYC
    #: Zen 4 2-core machine faster than 2**20 in 11 of 14 interleaved pairs of fits (median
    #: E-step 2.5-3.0 s against 3.0-3.7 s; benchmarks/RESULTS.md).
    _slice_elems = 1 << 21
    #: On a CPU a "diag" fit whose ``[x, x^2]`` has at most this many elements (256 MB in
    #: float32) keeps a transposed copy of it for the statistics' product (see _transposed).
    _transposed_elems = 1 << 26
    #: Skip scatter contributions that are provably below rounding (see fit).
    _skip_negligible = True
    #: Compute the Mahalanobis terms of bitwise-identical components once.
    _share_identical = True
    #: Normalise components that share their terms as one column ("diag", see _EStep).
    _group_shared = True
    #: Visit samples grouped by their previous most probable component ("full").
    _sort_blocks = True
    #: On a CPU, scatter a block per component over only its samples with nonzero
    #: responsibility ("full") when at most this share of the block's (sample, component)
    #: pairs is nonzero; above it, as one GEMM over all (benchmarks/RESULTS.md).
    _own_rows_share = 0.5

    def __init__(
        self,
        *,
        n_components=50,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        kmeans_max_iter=300,
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        device="cpu",
        dtype="float32",
        chunk_size=65536,
        tol_per_sample=True,
        estep_reg_covar=True,
        delete_below=0.0,
        merge=False,
        early_moves=10,
        max_components=None,
        grow_at=0.6,
        init_sizes="same",
        n_threads=None,
        verbose=0,
        effective_samples=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.kmeans_max_iter = kmeans_max_iter
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.tol_per_sample = tol_per_sample
        self.estep_reg_covar = estep_reg_covar
        self.delete_below = delete_below
        self.merge = merge
        self.early_moves = early_moves
        self.max_components = max_components
        self.grow_at = grow_at
        self.init_sizes = init_sizes
        self.n_threads = n_threads
        self.verbose = verbose
        self.effective_samples = effective_samples

    # --- public API ---------------------------------------------------------------
    def fit(self, X, y=None, resp_init=None):
        """Fit the model.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (N, D)
        y : ignored
        resp_init : array-like of shape (N, K) or None
            Initial responsibilities (non-negative, finite); replaces the
            ``init_params`` initialisation (used for parity tests).

        Returns
        -------
        self
        """
        with self._threads(), self._unchanged_on_error():
            self._fit(X, resp_init)
        return self

    def fit_predict(self, X, y=None, resp_init=None):
        """Fit, then return the labels of X, shape (N,) (as ``fit(X).predict(X)``)."""
        with self._threads():
            with self._unchanged_on_error():
                Xc = self._fit(X, resp_init)
            return self._predict_centred(Xc).cpu().numpy()

    @contextlib.contextmanager
    def _unchanged_on_error(self):
        """A fit that raises leaves the estimator as it was before it (as scikit-learn's
        estimators, which check their parameters before touching the fitted ones).

        ``_fit`` overwrites the centring shift, the dtype, the truncation and the E-step's
        cached quantities as it goes, while the public attributes (``means_``, ...) change
        only at its end: a refit that failed (a ``mean_prior`` of the wrong shape, a
        covariance that is not positive definite mid-EM) left a model whose ``predict`` /
        ``score_samples`` used the old state with the new data's shift (scores off by
        thousands of nats, most labels changed) while ``means_`` still showed the old fit.
        Every attribute is reassigned, never mutated in place, so a shallow copy restores."""
        before = dict(self.__dict__)
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def predict(self, X):
        """Most probable component of each sample, int64 array of shape (N,)."""
        with self._threads():
            return self._predict_centred(self._prepare_new(X)).cpu().numpy()

    def predict_proba(self, X):
        """Responsibilities, float64 array of shape (N, K) (rows sum to 1)."""
        return self._per_block(X, lambda wlp: torch.softmax(wlp, dim=1))

    def score_samples(self, X):
        """``logsumexp`` over components of the weighted log probabilities, shape (N,).

        Same definition as scikit-learn's ``BaseMixture.score_samples`` for the
        Bayesian mixture (``_estimate_log_prob + _estimate_log_weights``), with the
        E-step's ``reg_covar`` term where ``estep_reg_covar`` (see there).
        """
        return self._per_block(X, lambda wlp: torch.logsumexp(wlp, dim=1))

    def _estimate_log_weights(self):
        """E[log pi_k] of the fitted stick-breaking weights, float64 array (K,) (scikit-learn's
        name and meaning)."""
        check_is_fitted(self, "means_")
        return to_numpy64(expected_log_weights(self._state))

    def _estimate_log_prob(self, X):
        """The expected log density of each sample under each component, without the mixing
        weights, float64 array (N, K) (scikit-learn's name and meaning: the weighted log
        probabilities less :meth:`_estimate_log_weights`; with ``estep_reg_covar``, less
        ``reg_covar / 2 tr E[Lambda_k]`` too)."""
        return self._per_block(X, lambda wlp: wlp) - self._estimate_log_weights()

    def _per_block(self, X, reduce):
        """``reduce`` of the weighted log probabilities (block, K) of new data, block by
        block, as one float64 NumPy array."""
        with self._threads():
            Xc = self._prepare_new(X)
            out = [reduce(self._weighted_log_prob(Xc[s:e])).to(torch.float64).cpu()
                   for s, e in self._blocks(Xc.shape[0])]
            return torch.cat(out).numpy()

    def score(self, X, y=None):
        """Mean of :meth:`score_samples` (float)."""
        return float(np.mean(self.score_samples(X)))

    def get_state(self):
        """The fitted model as plain arrays (no pickles): what :meth:`from_state` needs to
        rebuild an estimator whose ``predict`` / ``predict_proba`` / ``score_samples``
        give the same results bit for bit.

        Returns a dict of NumPy arrays: ``covariance_type``, ``dtype``, ``chunk_size``,
        ``reg_covar`` and ``estep_reg_covar`` (the E-step's constants depend on both),
        ``shift`` (D,) (the fitting data's mean; the state is centred on it), the
        variational state ``wc_a``, ``wc_b``, ``mean_precision``, ``dof`` (K,),
        ``means_centred`` (K, D), ``cov`` and ``prec_chol`` ((K, D, D) full, (K, D) diag),
        ``log_det_prec_chol`` (K,).
        """
        check_is_fitted(self, "means_")
        np64 = to_numpy64
        st = self._state
        # the settings the fit ran with (and its E-step cached), not the parameters as they
        # are now: a set_params after the fit does not change this model's predictions, and
        # must not change those of the one rebuilt from its state
        covariance_type, reg_covar, estep_reg_covar = getattr(
            self, "_fitted_settings", (self.covariance_type, self.reg_covar, self.estep_reg_covar))
        return {
            "covariance_type": np.array(covariance_type),
            "dtype": np.array(str(self._dtype).removeprefix("torch.")),
            "chunk_size": np.int64(self.chunk_size),
            "reg_covar": np.float64(reg_covar),
            "estep_reg_covar": np.bool_(estep_reg_covar),
            "shift": np64(self._shift),
            **{name: np64(getattr(st, name)) for name in STATE_FIELDS},
        }

    @classmethod
    def from_state(cls, state, device="cpu"):
        """A fitted estimator rebuilt from :meth:`get_state`'s arrays, on ``device``. A state
        saved before ``estep_reg_covar`` existed is of a fit whose E-step left ``reg_covar``
        out (scikit-learn's), and of the default ``reg_covar``: it is rebuilt so."""
        missing = [k for k in ("covariance_type", "dtype", "chunk_size", "shift", *STATE_FIELDS)
                   if k not in state]
        if missing:
            raise ValueError(f"not a TorchBayesianGaussianMixture state: {missing} missing")
        wc_a = np.asarray(state["wc_a"])
        est = cls(n_components=len(wc_a), covariance_type=str(state["covariance_type"]),
                  dtype=str(state["dtype"]), chunk_size=int(state["chunk_size"]), device=device,
                  reg_covar=float(state.get("reg_covar", 1e-6)),
                  estep_reg_covar=bool(state.get("estep_reg_covar", False)))
        est._device, est._dtype = est._check_params()
        est._K = len(wc_a)
        est._shift = torch.as_tensor(np.asarray(state["shift"], np.float64), device=est._device)
        est.n_features_in_ = est._shift.shape[0]
        st = State(**{
            name: torch.as_tensor(np.asarray(state[name], np.float64), device=est._device)
            for name in STATE_FIELDS
        })
        est._state = st
        est._set_attributes(st)
        est._fitted_settings = (est.covariance_type, est.reg_covar, est.estep_reg_covar)
        est._perm, est._deleted = None, None
        est.fit_stats_ = new_fit_stats()
        est._prepare_estep(st)
        return est

    @contextlib.contextmanager
    def _threads(self):
        n = self.n_threads
        if n is None or isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            yield  # invalid values are reported by _check_params
            return
        old = torch.get_num_threads()
        torch.set_num_threads(int(n))
        try:
            yield
        finally:
            torch.set_num_threads(old)

    # --- prediction ------------------------------------------------------------
    def _prepare_new(self, X):
        check_is_fitted(self, "means_")
        X = self._check_X(X, reset=False)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but the model was fitted with "
                f"{self.n_features_in_} features"
            )
        src = X if isinstance(X, torch.Tensor) else torch.from_numpy(X)
        n, d = X.shape
        out = torch.empty((n, d + self._n_aug_cols(d)), dtype=self._dtype, device=self._device)
        rows = max(1, min(self.chunk_size, (1 << 22) // d))
        for s in range(0, n, rows):
            out[s : s + rows, :d] = src[s : s + rows].to(self._device, torch.float64) - self._shift
            self._augment(out[s : s + rows], d)
        return out

    def _predict_centred(self, Xc):
        out = []
        for s, e in self._blocks(Xc.shape[0]):
            out.append(self._weighted_log_prob(Xc[s:e]).argmax(1))
        return torch.cat(out)
