"""The EM driver of the torch DP mixture: priors, restarts, adaptive truncation, variational
EM iterations, the moves between optima, and the fitted attributes."""

from __future__ import annotations

import math
import numbers
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from convdp.dpgmm import moves
from convdp.dpgmm.state import (
    COVARIANCES,
    Priors,
    expected_weights,
    lower_bound,
    m_step,
    new_fit_stats,
    to_numpy64,
)
from convdp.dpgmm.validation import OverflowInDtype
from convdp.metrics import effective_number, is_saturated
from convdp.training import synchronize


class _Fitting:
    """Mixin: ``_fit`` and what it runs."""

    _counting = False  # GEMM operations are counted into fit_stats_ during a fit only
    _scratch_bufs = None  # the fit's reusable product buffers (see _scratch), None outside it
    _Xt = None  # the fit's transposed data for the "diag" statistics (see _transposed), or None
    _zeta = 1.0  # every sample's weight in the bound (effective_samples / n_samples, at most 1)
    _flops_stats = 0.0  # the statistics' GEMM operations counted so far (see _count_flops)
    _estep_marks = ()  # the last pass's (start, end) marks of its E-step parts (see _e_step_stats)

    def _effective_samples(self, n_samples: int) -> float:
        """What ``n_samples`` samples weigh in the bound: ``n_samples`` itself, or
        ``effective_samples`` where a tempered fit weighs each by ``_zeta``."""
        return self._zeta * n_samples

    def _fit(self, X, resp_init):
        device, dtype = self._check_params()
        X = self._check_X(X, reset=True)
        n_samples, n_features = X.shape
        K = self.n_components
        if n_samples < 2:
            raise ValueError(f"n_samples={n_samples} should be >= 2")
        if n_samples < K:
            raise ValueError(f"n_samples={n_samples} should be >= n_components={K}")
        if resp_init is not None:
            resp_init = self._check_resp(resp_init, n_samples, K)
            if self.max_components is not None or self.n_init > 1:
                raise ValueError("resp_init fixes one start: use it with n_init=1 and "
                                 "max_components=None")

        self._device, self._dtype = device, dtype
        self.n_features_in_ = n_features
        self._zeta = 1.0
        if self.effective_samples is not None:
            self._zeta = min(1.0, self.effective_samples / n_samples)
        self.likelihood_power_ = self._zeta

        # --- priors (float64) and centred copy of the data ----------------
        Xc, shift, gram, absmax = self._centre(X, device, dtype)
        big = float(absmax.max())
        if big * big * n_samples > torch.finfo(dtype).max / 1e3:  # squares and their sums
            raise OverflowInDtype(
                f"samples as far as {big:.3g} from their mean: their squares overflow "
                f"{str(dtype).replace('torch.', '')} (the statistics come out inf or NaN); "
                "rescale the data or fit with dtype='float64'")
        self._shift = shift
        self.mean_precision_prior_ = (
            1.0 if self.mean_precision_prior is None else float(self.mean_precision_prior)
        )
        if self.mean_prior is None:
            mean_prior = shift.clone()
        else:
            mean_prior = torch.as_tensor(
                np.asarray(self.mean_prior, dtype=np.float64), device=device
            )
            if tuple(mean_prior.shape) != (n_features,):
                raise ValueError(
                    f"mean_prior should have shape ({n_features},), got {tuple(mean_prior.shape)}"
                )
            if not bool(torch.isfinite(mean_prior).all()):
                raise ValueError("mean_prior contains NaN or infinity")
        self.mean_prior_ = mean_prior.cpu().numpy()
        self._mean_prior_c = mean_prior - shift
        if self.degrees_of_freedom_prior is None:
            self.degrees_of_freedom_prior_ = float(n_features)
        elif self.degrees_of_freedom_prior > n_features - 1.0:
            self.degrees_of_freedom_prior_ = float(self.degrees_of_freedom_prior)
        else:
            raise ValueError(
                f"degrees_of_freedom_prior should be greater than {n_features - 1}, "
                f"got {self.degrees_of_freedom_prior}"
            )
        full = self.covariance_type == "full"
        if self.covariance_prior is None:
            cp = gram / (n_samples - 1)  # its diagonal only for "diag" (see _centre)
        else:
            cp = torch.as_tensor(np.asarray(self.covariance_prior, dtype=np.float64), device=device)
            want = (n_features, n_features) if full else (n_features,)
            if tuple(cp.shape) != want:
                raise ValueError(
                    f"covariance_prior should have shape {want} for covariance_type="
                    f"{self.covariance_type!r}, got {tuple(cp.shape)}"
                )
            if not bool(torch.isfinite(cp).all()):
                raise ValueError("covariance_prior contains NaN or infinity")
            if full:
                if not (
                    torch.allclose(cp, cp.T, rtol=1e-5, atol=1e-8)
                    and bool((torch.linalg.eigvalsh(cp) > 0).all())
                ):
                    raise ValueError("covariance_prior should be symmetric, positive-definite")
            elif bool((cp <= 0).any()):
                raise ValueError("covariance_prior should be positive")
        self._cov_prior = cp
        self.covariance_prior_ = cp.cpu().numpy()

        # Bound used to skip negligible scatter contributions: for every
        # feature i, (x_i - xbar_k,i)^2 <= (2 max|x_i|)^2 <= ratio * W0_ii.
        cp_diag = torch.diagonal(cp) if full else cp
        r2 = (2.0 * absmax) ** 2
        if bool(((cp_diag <= 0) & (r2 > 0)).any()):
            ratio = math.inf
        else:
            ratio = float(torch.where(r2 > 0, r2 / cp_diag.clamp_min(1e-300), 0.0).max())
        # skipped contributions sum to <= 1e-3 * eps * W0_ii (far below rounding)
        self._skip_ratio = ratio
        self._skip_thr = 1e-3 * torch.finfo(dtype).eps / n_samples
        # Responsibilities below `_flush` are set to 0: together they change any
        # N_k by < eps^2 (absolute), far below the 10*eps scikit-learn adds to
        # N_k, and they avoid denormals (10-100x slower arithmetic).
        fi = torch.finfo(dtype)
        self._flush = max(fi.tiny / fi.eps, fi.eps**2 / n_samples)
        self._log_flush = math.log(self._flush)

        # --- restarts × truncation levels; the best lower bound is kept ------
        self.init_results_ = []
        self._counting, self._scratch_bufs, self._flops_stats = True, {}, 0.0
        self._Xt = self._transposed(Xc)
        try:
            if self.init_sizes == "halving" and resp_init is None:
                best = self._fit_ladder(Xc, X, n_samples)
            else:
                best = self._fit_restarts(Xc, X, n_samples, resp_init)
        finally:
            self._counting, self._scratch_bufs, self._Xt = False, None, None
        if not best["converged"] and self.max_iter > 0:
            warnings.warn(
                "The torch DPGMM did not converge within max_iter iterations. Try a "
                "larger max_iter or tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._set_fitted(best, n_samples)
        self._check_diag_precision(n_samples)
        return Xc

    def _check_diag_precision(self, n_samples):
        """Warn where a "diag" fit's arithmetic cannot hold its own result: its products
        expand (x - m)^2 / v into x^2, x m and m^2 terms, whose rounding grows with eps times
        (m / sqrt(v))^2, m a held component's mean (centred) in its own widths sqrt(v). At
        1e-2 of that (600 widths in float32) the bound was 130 nats off and the variances 4 %."""
        if self.covariance_type != "diag":
            return
        held = self.weights_ * n_samples >= 1.0
        centred = self.means_[held] - self._shift.cpu().numpy()
        ratio = centred**2 / self.covariances_[held]
        worst = float(ratio.max()) if ratio.size else 0.0
        if worst * torch.finfo(self._dtype).eps > 1e-2:
            _, i = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
            warnings.warn(
                f"a component's mean lies {math.sqrt(worst):.3g} of its own widths from the "
                f"data's mean (feature {i}): {str(self._dtype).replace('torch.', '')} rounds "
                "its log-probabilities, variances and the bound by about "
                f"{worst * torch.finfo(self._dtype).eps:.0%}; fit with dtype='float64'",
                UserWarning, stacklevel=3)

    def _fit_restarts(self, Xc, X, n_samples, resp_init):
        """``init_sizes="same"`` (scikit-learn's ``n_init``): every restart starts from all
        ``n_components`` components, differently seeded; a saturated fit is refitted at
        twice its truncation up to ``max_components``. Returns the best fit."""
        best = None
        cap = min(self.max_components or self.n_components, n_samples)
        for rs in self._init_random_states():
            K = self.n_components
            while True:
                fit = self._fit_once(Xc, X, K, rs(), resp_init)
                if not (fit["saturated"] and K < cap):
                    break
                K = min(2 * K, cap)
            self._record_start(fit, self.n_components)
            if best is None or fit["elbo_per_sample"] > best["elbo_per_sample"]:
                best = fit
        return best

    def _fit_ladder(self, Xc, X, n_samples):
        """``init_sizes="halving"`` (the workflow's, with merges). Restart r starts from
        K-means with ``ceil(K / 2^r)`` components and as many as its truncation, doubled while
        saturated (up to ``max_components``); then, as long as it raises the bound, a start
        at twice the best fit's truncation. All starts share one seed, so a start of a given
        size is one fit whichever restart reaches it (each size is fitted once), and the
        starts of truncation K are those of 2K but the largest: the truncation sets where
        the search begins, not where it ends. Returns the best fit."""
        cap = min(self.max_components or self.n_components, n_samples)
        fits = {}
        seeded = self._init_random_states()[0]

        def grown(K):
            while True:
                if K not in fits:
                    fits[K] = self._fit_once(Xc, X, K, seeded(), None)
                if not (fits[K]["saturated"] and K < cap):
                    return fits[K]
                K = min(2 * K, cap)

        K = self.n_components
        ends = []  # the fits the starts end at (a saturated fit below the cap grew on)
        for r in range(self.n_init):
            start = min(K, max(2, -(-K // 2**r)))
            ends.append(grown(start))
            self._record_start(ends[-1], start)
        best = self._pick(ends, n_samples)
        while (up := min(2 * best["truncation"], cap)) not in fits:
            ends.append(grown(up))
            self._record_start(ends[-1], up)
            best, previous = self._pick(ends, n_samples), best
            if best is previous:
                break
        return best

    def _pick(self, fits, n_samples):
        """The kept fit: the highest bound, where bounds within the convergence tolerance
        (per sample) of it count as equal and the smallest truncation among them wins (a
        larger truncation holding the same clusters ends a little above or below it by
        chance)."""
        fits = list(fits)
        tie = self.tol if self.tol_per_sample else self.tol / self._effective_samples(n_samples)
        top = max(f["elbo_per_sample"] for f in fits)
        return min((f for f in fits if f["elbo_per_sample"] >= top - tie),
                   key=lambda f: f["truncation"])

    def _record_start(self, fit, start):
        """One entry of ``init_results_``: the fit reached from a start of ``start``
        components (without its state)."""
        self.init_results_.append({k: v for k, v in fit.items() if k not in ("state", "priors")}
                                  | {"start": start})

    def _init_random_states(self):
        """One factory of the initialisation's random state per restart (``n_init``).

        Restart 0 uses ``random_state`` itself (scikit-learn's initialisation); the others a
        seed derived from it (``init_sizes="same"``) or the same seed (``"halving"``: the
        restarts differ by the size of their start: see ``_fit_ladder``). An int seed gives
        every truncation level of a restart the same stream, so a fit grown to K equals a fit
        started at K.
        """
        base = self.random_state
        shared = base is not None and not isinstance(base, numbers.Integral)  # a RandomState
        if shared or self.init_sizes == "halving":  # halving: the starts differ by size
            return [lambda: check_random_state(base)] * self.n_init
        seeds = [base] + [
            None if base is None else int(np.random.SeedSequence([int(base), i]).generate_state(1)[0])
            for i in range(1, self.n_init)
        ]
        return [lambda s=s: check_random_state(s) for s in seeds]

    def _fit_once(self, Xc, X, K, random_state, resp_init):
        """One variational fit at truncation K from a start over all K components:
        initialise, EM, moves (see convdp.dpgmm.moves).

        Returns a dict: state, lower_bound, lower_bounds, n_iter, converged, truncation,
        n_active (components holding >= 1 sample), saturated, fit_stats.
        """
        n_samples = Xc.shape[0]
        if n_samples < K:
            raise ValueError(f"n_samples={n_samples} should be >= n_components={K}")
        self._K = K
        self.weight_concentration_prior_ = (
            1.0 / K if self.weight_concentration_prior is None else float(self.weight_concentration_prior)
        )
        self._priors = Priors(self.weight_concentration_prior_, self.mean_precision_prior_,
                              self.degrees_of_freedom_prior_, self._mean_prior_c, self._cov_prior)
        self.fit_stats_ = new_fit_stats()
        self._deleted = None
        stats, t0 = self.fit_stats_, time.perf_counter()
        if resp_init is not None:
            resp_src = ("dense", torch.as_tensor(resp_init, device=self._device, dtype=self._dtype))
        else:
            resp_src = self._initial_resp(X, random_state, self._device, self._dtype)
        state = self._m_step(*self._stats_from_resp(Xc, resp_src))
        stats["seconds_init"] += self._clock() - t0
        moves.new_move_stats(stats)
        em, t0 = self._seconds_em(), time.perf_counter()
        early = min(self.early_moves, self.max_iter) if (self.merge or self.delete_below > 0) else 0
        state, lower_bounds, converged = self._iterate(Xc, state, [], early or self.max_iter)
        spent = len(lower_bounds)
        if early and not converged and spent < self.max_iter:
            state, lower_bounds, spent = moves.early_moves(self, Xc, state, lower_bounds, spent)
            before = len(lower_bounds)
            state, lower_bounds, converged = self._iterate(Xc, state, lower_bounds,
                                                           self.max_iter - spent)
            spent += len(lower_bounds) - before
        state, lower_bounds, n_iter, converged = moves.run_moves(
            self, Xc, state, lower_bounds, converged, spent
        )
        # the moves' own time, without the EM iterations they run (counted as EM)
        stats["seconds_moves"] += time.perf_counter() - t0 - (self._seconds_em() - em)
        n_active = int(((state.wc_a - 1.0) >= 1.0).sum())
        lower_bound = lower_bounds[-1] if lower_bounds else -math.inf
        elbo = lower_bound - K * self._empty_component_bound()
        weights = expected_weights(state)
        return {
            "state": state,
            "lower_bound": float(lower_bound),
            "lower_bound_per_sample": float(lower_bound) / self._effective_samples(n_samples),
            "elbo_per_sample": float(elbo) / self._effective_samples(n_samples),
            "lower_bounds": [float(v) for v in lower_bounds],
            "n_iter": n_iter if self.max_iter > 0 else 0,
            "converged": converged,
            "truncation": K,
            "n_active": n_active,
            "n_effective": effective_number(weights),
            "weights": weights,
            "saturated": is_saturated(n_active, K, self.grow_at),
            "priors": self._priors,  # the concentration is 1 / K where not set
            "fit_stats": dict(self.fit_stats_),
        }

    def _empty_component_bound(self):
        """What one component without samples adds to scikit-learn's lower bound.

        scikit-learn drops constant terms per component, so its bound grows with the
        truncation by this much for every empty component (prior = posterior: no KL).
        ``lower_bound_ - K * this`` is the bound with those terms restored, equal for any
        truncation that leaves components empty.
        """
        D = self.n_features_in_
        f64 = dict(dtype=torch.float64, device=self._device)
        nk = torch.full((1,), 10 * torch.finfo(self._dtype).eps, **f64)
        xk = torch.zeros(1, D, **f64)
        eye = torch.eye(D, **f64) if self.covariance_type == "full" else torch.ones(D, **f64)
        try:
            return self._lower_bound(self._m_step(nk, xk, (self.reg_covar * eye)[None]), 0.0)
        except ValueError:  # its posterior is the prior: singular where the prior is
            raise ValueError(
                f"the covariance prior (by default the data's covariance) is singular over the "
                f"{D} features: a feature that is a linear combination of others, or fewer "
                "samples than features. An empty component's bound, by which fits of other "
                "truncations compare, has no value then; reduce the features (preprocess.pca) "
                "or give a covariance_prior") from None

    def _set_fitted(self, fit, n_samples):
        """Public attributes and the predict cache from the kept fit."""
        state = fit["state"]
        self._K = fit["truncation"]
        # the kept fit's priors, not the last start's (the default concentration is 1 / K)
        self._priors = fit["priors"]
        self.weight_concentration_prior_ = fit["priors"].concentration
        self._state = state
        self._set_attributes(state)
        # what the cached E-step quantities (predict's) depend on, for get_state
        self._fitted_settings = (self.covariance_type, float(self.reg_covar),
                                 bool(self.estep_reg_covar))
        self.n_iter_ = fit["n_iter"]
        self.converged_ = fit["converged"]
        self.lower_bound_ = fit["lower_bound"]
        self.lower_bound_per_sample_ = fit["lower_bound_per_sample"]
        self.elbo_per_sample_ = fit["elbo_per_sample"]
        self.lower_bounds_ = fit["lower_bounds"]
        self.truncation_ = fit["truncation"]
        self.n_active_ = fit["n_active"]
        self.saturated_ = bool(fit["saturated"])
        self.n_effective_ = fit["n_effective"]
        self._perm = None
        self._deleted = None
        self.fit_stats_ = dict(fit["fit_stats"])
        self._prepare_estep(state)  # cache the E-step quantities for predict()
        self.fit_stats_ = dict(fit["fit_stats"])

    def _iterate(self, Xc, state, lower_bounds, max_iter):
        """Variational EM from `state` until converged or `max_iter` more iterations.

        Returns the last state, `lower_bounds` with this run's appended, and whether it
        converged.
        """
        n_samples = self._effective_samples(Xc.shape[0])
        lower_bound = lower_bounds[-1] if lower_bounds else -math.inf
        for _ in range(max_iter):
            prev = lower_bound
            t0, counted = self._clock(), (self.fit_stats_["gemm_flops"], self._flops_stats)
            nk, xk, sk, ent = self._e_step_stats(Xc, state)
            t1 = self._clock()
            self._profile_pass(t1 - t0, *counted)
            self._deleted = None  # a deletion lasts one E-step; the components may come back
            state = self._m_step(nk, xk, sk)
            t2 = self._clock()
            lower_bound = self._lower_bound(state, ent)
            stats = self.fit_stats_
            stats["em_iterations"] += 1
            stats["seconds_mstep"] += t2 - t1
            stats["seconds_bound"] += time.perf_counter() - t2
            lower_bounds.append(lower_bound)
            change = abs(lower_bound - prev)
            if self.tol_per_sample:
                change /= n_samples
            if self.verbose:
                print(
                    f"  iteration {len(lower_bounds)}: lower bound per sample "
                    f"{lower_bound / n_samples:.6f}, change {change:.3g}"
                )
            if change < self.tol:
                return state, lower_bounds, True
        return state, lower_bounds, False

    def _clock(self):
        """``time.perf_counter()`` once the device has done the work queued so far: a GPU
        runs kernels asynchronously, and a phase's time is the work done in it."""
        synchronize(self._device)
        return time.perf_counter()

    def _profile_pass(self, seconds, flops, flops_stats):
        """Add an EM iteration's pass over the data (``seconds`` long; ``flops`` and
        ``flops_stats``: the GEMM operations counted before it, all and the statistics') to
        ``fit_stats_``: its E-step (the parts marked in ``_estep_marks``) and its statistics
        (the rest), their seconds and GEMM operations apart."""
        stats = self.fit_stats_
        estep = self._seconds_between(self._estep_marks)
        added_stats = self._flops_stats - flops_stats
        stats["seconds_estep"] += estep
        stats["seconds_statistics"] += seconds - estep
        stats["gemm_flops_estep"] += stats["gemm_flops"] - flops - added_stats
        stats["gemm_flops_statistics"] += added_stats

    def _mark(self):
        """A point in time for :meth:`_seconds_between` that does not wait for the device: an
        event queued on a GPU's stream (a wait per block would idle the GPU), else
        ``perf_counter``."""
        if self._device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self._device))
            return event
        return self._clock()

    def _seconds_between(self, marks):
        """Total seconds of the ``(start, end)`` pairs of :meth:`_mark`; on a GPU once the
        device has done the work of the last one (as after :meth:`_clock`)."""
        if self._device.type == "cuda":
            return sum(a.elapsed_time(b) for a, b in marks) / 1000.0
        return sum(b - a for a, b in marks)

    def _count_flops(self, flops, statistics=False):
        """Add a GEMM's floating-point operations to ``fit_stats_`` (while fitting only);
        ``statistics``: a product of the sufficient statistics, not of the E-step's
        log-probabilities (counted apart for the profile, see ``_iterate``)."""
        if self._counting:
            self.fit_stats_["gemm_flops"] += flops
            if statistics:
                self._flops_stats += flops

    def _seconds_em(self):
        """Seconds spent so far in this fit's EM iterations (E-step, statistics, M-step,
        bound)."""
        st = self.fit_stats_
        return (st["seconds_estep"] + st["seconds_statistics"] + st["seconds_mstep"]
                + st["seconds_bound"])

    # --- M-step / lower bound (float64, small; convdp.dpgmm.state) -----------------------
    def _m_step(self, nk, xk, sk):
        """Update the variational parameters from scikit-learn-style (nk, xk, sk)."""
        state, repaired = m_step(COVARIANCES[self.covariance_type], self._priors, nk, xk, sk,
                                 self.reg_covar, repair=self._dtype != torch.float64)
        if repaired:
            self.fit_stats_["psd_repairs"] = self.fit_stats_.get("psd_repairs", 0) + repaired
        return state

    def _lower_bound(self, st, ent):
        """scikit-learn's ``_compute_lower_bound`` (constant terms dropped)."""
        return lower_bound(st, ent)

    def _set_attributes(self, st):
        np64 = to_numpy64
        self.weights_ = expected_weights(st)
        self.weight_concentration_ = (np64(st.wc_a), np64(st.wc_b))
        self.mean_precision_ = np64(st.mean_precision)
        self.means_ = np64(st.means + self._shift)
        self.degrees_of_freedom_ = np64(st.dof)
        self.covariances_ = np64(st.cov)
        self.precisions_cholesky_ = np64(st.prec_chol)
        self.precisions_ = np64(COVARIANCES[self.covariance_type].precisions(st.prec_chol))
