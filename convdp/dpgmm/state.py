"""The variational state of the DP mixture, its M-step and its lower bound (float64, small).

The M-step and the bound are pure functions of the statistics, the priors and the state;
what differs between covariance types is in a :class:`Covariance` strategy (:data:`FULL`,
:data:`DIAG`). Shapes: ``K`` components, ``D`` features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

PRECISION_ERROR = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)


@dataclass
class State:
    """Variational parameters, float64 tensors on the compute device.

    ``means`` are in the centred coordinates used internally (data minus the fitting
    data's mean). ``cov`` / ``prec_chol`` are (K, D, D) for "full" and (K, D) for "diag".
    """

    wc_a: torch.Tensor  # (K,) first Beta parameter of the sticks: 1 + N_k
    wc_b: torch.Tensor  # (K,) second Beta parameter: alpha + sum_{j>k} N_j
    mean_precision: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, D)
    dof: torch.Tensor  # (K,)
    cov: torch.Tensor
    prec_chol: torch.Tensor
    log_det_prec_chol: torch.Tensor  # (K,) log det of prec_chol


STATE_FIELDS = ("wc_a", "wc_b", "mean_precision", "means", "dof", "cov", "prec_chol",
                "log_det_prec_chol")


@dataclass(frozen=True)
class Priors:
    """The priors actually used (float64 tensors, means centred)."""

    concentration: float  # alpha of the Dirichlet process
    mean_precision: float  # beta_0
    dof: float  # nu_0
    mean: torch.Tensor  # m_0, (D,), centred
    covariance: torch.Tensor  # W_0^{-1}: (D, D) full, (D,) diag


class Covariance:
    """What one covariance type does differently in the M-step (subclasses below)."""

    name = ""

    def posterior(self, priors, nk, sk, diff, beta, dof, reg_covar, repair):
        """The posterior covariance (K, ...), the Cholesky factor of its precision, and
        the log-determinant of that factor (K,). ``repair`` (float32 fits) projects
        rounding-indefinite scatter matrices onto the PSD cone; returns how many it fixed."""
        raise NotImplementedError

    def precisions(self, prec_chol):
        raise NotImplementedError


class _Full(Covariance):
    name = "full"

    def posterior(self, priors, nk, sk, diff, beta, dof, reg_covar, repair):
        beta0 = priors.mean_precision

        def posterior_cov(sk):
            outer = diff[:, :, None] * diff[:, None, :]
            cov = (priors.covariance + nk[:, None, None] * sk
                   + (nk * beta0 / beta)[:, None, None] * outer)
            return cov / dof[:, None, None]

        cov = posterior_cov(sk)
        L, info = torch.linalg.cholesky_ex(cov)
        repaired = 0
        if bool((info != 0).any()) and repair:
            # A component of (nearly) identical samples far from the block centre: its
            # float32 scatter matrix can come out indefinite by rounding (~eps32 |x|^2 per
            # sample). An empirical covariance is positive semi-definite, so project the
            # failed ones onto that cone (eigenvalues clipped at reg_covar) and retry.
            bad = torch.nonzero(info != 0).squeeze(1)
            vals, vecs = torch.linalg.eigh(0.5 * (sk[bad] + sk[bad].mT))
            sk = sk.clone()
            sk[bad] = (vecs * vals.clamp_min(reg_covar)[:, None, :]) @ vecs.mT
            cov = posterior_cov(sk)
            L, info = torch.linalg.cholesky_ex(cov)
            repaired = bad.numel()
        if bool((info != 0).any()):
            raise ValueError(PRECISION_ERROR)
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        prec_chol = torch.linalg.solve_triangular(L, eye.expand_as(L), upper=False).mT
        logdet = torch.log(torch.diagonal(prec_chol, dim1=1, dim2=2)).sum(1)
        return cov, prec_chol, logdet, repaired

    def precisions(self, prec_chol):
        return prec_chol @ prec_chol.mT


class _Diag(Covariance):
    name = "diag"

    def posterior(self, priors, nk, sk, diff, beta, dof, reg_covar, repair):
        beta0 = priors.mean_precision
        cov = priors.covariance + nk[:, None] * (sk + (beta0 / beta)[:, None] * diff**2)
        cov = cov / dof[:, None]
        if bool((cov <= 0).any()):
            raise ValueError(PRECISION_ERROR)
        prec_chol = 1.0 / torch.sqrt(cov)
        return cov, prec_chol, torch.log(prec_chol).sum(1), 0

    def precisions(self, prec_chol):
        return prec_chol**2


FULL, DIAG = _Full(), _Diag()
COVARIANCES = {"full": FULL, "diag": DIAG}


def sticks(nk: torch.Tensor, concentration: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The Beta parameters of the sticks for the counts ``nk`` (K,) (or rows of counts
    (P, K)), in their order: ``1 + N_k`` and ``alpha + sum_{j>k} N_j``."""
    rc = torch.cumsum(nk.flip(-1), -1)  # rc[..., j] = sum of the last j+1 entries
    tail = torch.cat([rc[..., :-1].flip(-1), nk.new_zeros(nk.shape[:-1] + (1,))], -1)
    return 1.0 + nk, concentration + tail


def m_step(cov_type: Covariance, priors: Priors, nk, xk, sk, reg_covar=0.0, repair=False):
    """The variational parameters from scikit-learn-style statistics: ``nk`` (K,), ``xk``
    (K, D), ``sk`` (K, D, D) or (K, D). Returns ``(State, PSD repairs made)``."""
    beta0 = priors.mean_precision
    wc_a, wc_b = sticks(nk, priors.concentration)
    beta = beta0 + nk
    means = (beta0 * priors.mean + nk[:, None] * xk) / beta[:, None]
    dof = priors.dof + nk
    diff = xk - priors.mean
    cov, prec_chol, logdet, repaired = cov_type.posterior(priors, nk, sk, diff, beta, dof,
                                                          reg_covar, repair)
    return State(wc_a, wc_b, beta, means, dof, cov, prec_chol, logdet), repaired


def _log_wishart_norm(st: State) -> torch.Tensor:
    """Each component's Wishart log-normaliser, as scikit-learn computes it (K,)."""
    D = st.means.shape[1]
    ldpc = st.log_det_prec_chol - 0.5 * D * torch.log(st.dof)
    i = torch.arange(D, dtype=torch.float64, device=st.dof.device)
    return -(st.dof * ldpc + st.dof * D * 0.5 * math.log(2.0)
             + torch.lgamma(0.5 * (st.dof[:, None] - i)).sum(1))


def _betaln(wc_a: torch.Tensor, wc_b: torch.Tensor) -> torch.Tensor:
    """log B(a, b) of each stick (K,)."""
    lgamma = torch.lgamma
    return lgamma(wc_a) + lgamma(wc_b) - lgamma(wc_a + wc_b)


def component_terms(st: State) -> torch.Tensor:
    """The part of :func:`lower_bound` that each component adds by itself (K,): minus its
    Wishart normaliser and ``-D/2 log beta_k``. A component's term depends on its own
    statistics only, so a move that changes two components changes two terms."""
    D = st.means.shape[1]
    return -_log_wishart_norm(st) - 0.5 * D * torch.log(st.mean_precision)


def stick_terms(nk: torch.Tensor, concentration: float) -> float:
    """The sticks' part of :func:`lower_bound` for the counts ``nk`` (K,), in their order."""
    return float(_betaln(*sticks(nk, concentration)).sum())


def stick_terms_rows(counts: torch.Tensor, concentration: float) -> torch.Tensor:
    """:func:`stick_terms` of each row of ``counts`` (P, K): (P,) float64."""
    return _betaln(*sticks(counts, concentration)).sum(-1)


def lower_bound(st: State, ent: float) -> float:
    """scikit-learn's ``_compute_lower_bound`` (constant terms dropped) of the state after an
    M-step, with ``ent`` = sum of R log R of the responsibilities it was computed from.
    (``-ent + component_terms(st).sum() + stick_terms(nk)``, summed as scikit-learn does.)"""
    D = st.means.shape[1]
    lb = (-ent - _log_wishart_norm(st).sum() + _betaln(st.wc_a, st.wc_b).sum()
          - 0.5 * D * torch.log(st.mean_precision).sum())
    return float(lb)


def to_numpy64(t: torch.Tensor) -> np.ndarray:
    """A float64 NumPy copy of a tensor (on any device)."""
    return t.detach().to(torch.float64).cpu().numpy().copy()


def new_fit_stats() -> dict:
    """The E-step diagnostics and the time profile of a fit, zeroed (see ``fit_stats_``)."""
    return {"scatter_skipped": 0, "mahalanobis_shared": 0,
            "gemm_flops": 0.0, "gemm_flops_estep": 0.0, "gemm_flops_statistics": 0.0,
            "seconds_init": 0.0, "seconds_estep": 0.0, "seconds_statistics": 0.0,
            "seconds_mstep": 0.0, "seconds_bound": 0.0, "seconds_moves": 0.0,
            "em_iterations": 0}


def expected_weights(st: State) -> np.ndarray:
    """Expected mixing weights of the stick-breaking posterior, float64 numpy (K,)."""
    a, b = st.wc_a, st.wc_b
    tmp = b / (a + b)
    w = a / (a + b) * torch.cat([tmp.new_ones(1), torch.cumprod(tmp[:-1], 0)])
    return (w / w.sum()).detach().to(torch.float64).cpu().numpy()
