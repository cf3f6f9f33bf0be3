"""PyTorch backend for the Dirichlet-process Gaussian mixture.

:class:`TorchBayesianGaussianMixture` fits exactly the variational model of
``sklearn.mixture.BayesianGaussianMixture(weight_concentration_prior_type=
"dirichlet_process")``: a truncated stick-breaking Dirichlet process over
``n_components`` components with Normal-Wishart priors on the component means
and precisions, and the same default priors, update equations and lower bound
as scikit-learn.  It is faster because

* the E-step and the sufficient statistics are computed block by block with
  large matrix products (one ``[x, 1] @ [[P_1 ... P_K], [-mu_1 P_1 ...]]``
  product for all Mahalanobis distances, one ``A^T X`` product for all scatter
  matrices), with no Python loop over components;
* it can work in float32 (the default) while the small per-component
  quantities (M-step, Cholesky factors, lower bound, accumulated statistics) are
  always float64;
* data are centred once, never copied again, and processed in bounded blocks
  (``chunk_size``), so memory stays bounded for very large ``n_samples``;
* for "full" covariance, work that provably cannot change the result beyond
  rounding is skipped: samples are visited grouped by their previous most
  probable component, Mahalanobis terms of components whose responsibilities
  in a block are bounded below the flush threshold (``eps^2 / N``) are not
  computed (bound: ``lambda_min(Lambda_k) ||x - m_k||^2``), nor are scatter
  matrices whose total contribution is below 1e-3 ulp of the prior's diagonal,
  and bitwise-identical components (e.g. emptied ones) share their
  Mahalanobis terms (see ``fit_stats_``);
* the default convergence criterion is per sample (see ``tol_per_sample``).

Accuracy: in float64 the results equal scikit-learn's to ~1e-12 relative.  In
float32 the limit is the representation of the centred data: covariances of
components that are very narrow compared with their distance to the data mean
get relative errors ~ eps32 * (distance / width).

Shapes: ``N`` = n_samples, ``D`` = n_features, ``K`` = n_components.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["TorchBayesianGaussianMixture"]

_INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
_COV_TYPES = ("full", "diag")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}

_PRECISION_ERROR = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)


@dataclass
class _State:
    """Variational parameters, float64 tensors on the compute device.

    ``means`` are in the centred coordinates used internally (data minus
    ``_shift``).  ``cov`` / ``prec_chol`` are (K, D, D) for "full" and (K, D)
    for "diag".
    """

    wc_a: torch.Tensor  # (K,) first Beta parameter of the sticks: 1 + N_k
    wc_b: torch.Tensor  # (K,) second Beta parameter: alpha + sum_{j>k} N_j
    mean_precision: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, D)
    dof: torch.Tensor  # (K,)
    cov: torch.Tensor
    prec_chol: torch.Tensor
    log_det_prec_chol: torch.Tensor  # (K,) log det of prec_chol


_STATE_FIELDS = ("wc_a", "wc_b", "mean_precision", "means", "dof", "cov", "prec_chol",
                 "log_det_prec_chol")


def _expected_weights(st):
    """Expected mixing weights of the stick-breaking posterior, float64 numpy (K,)."""
    a, b = st.wc_a, st.wc_b
    tmp = b / (a + b)
    w = a / (a + b) * torch.cat([tmp.new_ones(1), torch.cumprod(tmp[:-1], 0)])
    return (w / w.sum()).detach().to(torch.float64).cpu().numpy()


def _dedupe_components(st, P, muP):
    """Group components with bitwise-identical (dof, beta, P_k, mu_k P_k).

    Returns ``uniq`` (list of representative indices) and ``inverse`` (list of
    length K: position in ``uniq`` of each component's representative).
    """
    keys = list(zip(st.dof.tolist(), st.mean_precision.tolist(), strict=True))
    reps: dict = {}
    uniq: list = []
    inverse: list = []
    for k, key in enumerate(keys):
        for j in reps.get(key, ()):
            r = uniq[j]
            if torch.equal(P[k], P[r]) and torch.equal(muP[k], muP[r]):
                inverse.append(j)
                break
        else:
            reps.setdefault(key, []).append(len(uniq))
            inverse.append(len(uniq))
            uniq.append(k)
    return uniq, inverse


class TorchBayesianGaussianMixture(BaseEstimator):
    """Dirichlet-process Gaussian mixture (variational), PyTorch implementation.

    Fits the same model as ``sklearn.mixture.BayesianGaussianMixture`` with
    ``weight_concentration_prior_type="dirichlet_process"`` (same priors,
    updates and lower bound), vectorised over components and chunked over
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
        Added to the diagonal of every component's empirical covariance.
    max_iter : int, default=100
        Maximum number of variational EM iterations (0 = only initialise).
    n_init : int, default=1
        Number of restarts (different initialisations); the fit with the highest lower
        bound is kept, and every restart's result is in ``init_results_``.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How the initial responsibilities are obtained; identical to
        scikit-learn (``KMeans(n_clusters=K, n_init=1, random_state=rs)`` on the
        original data, with ``rs = check_random_state(random_state)``), so the
        same ``random_state`` gives the same initialisation as scikit-learn.
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
    tol_per_sample : bool, default=True
        See ``tol``.
    delete_below : float in [0, 1), default=0.0
        After convergence, try emptying every component holding fewer than
        ``delete_below * n_samples`` samples, and keep the result only if the
        lower bound rises (see ``_delete_moves``).  The model and the objective
        are scikit-learn's; only the optimum reached differs, and its lower
        bound is never lower.  A K-means start with many components leaves
        small pieces of the true clusters that the Dirichlet process empties
        very slowly: this move removes them.  0 (default) = never, which
        reproduces scikit-learn's fit.  The workflow's default is 0.01.
    merge : bool, default=False
        After convergence, try merging pairs of components that share responsibility
        (memoized merge moves, Hughes & Sudderth): a merge is kept only if the lower bound
        rises, then EM runs on; rounds repeat while merges are kept (see
        ``convdp.dpgmm_moves``).  False reproduces scikit-learn's fit.
    max_components : int or None, default=None
        Adaptive truncation: when a fit holds more than ``grow_at * K`` occupied components
        (>= 1 sample each), it is refitted with ``2 K``, up to ``max_components``, so that
        the truncation is not what limits the number of clusters.  None = never.
    grow_at : float in (0, 1], default=0.6
        The occupied fraction of the truncation above which a fit is ``saturated_``.
    n_threads : int or None, default=None
        Torch intra-op threads used by ``fit`` / ``predict`` / ... (restored
        afterwards); None keeps ``torch.get_num_threads()``.  On a busy machine
        (e.g. several workflow jobs sharing the cores) oversubscribed threads
        make small block operations very slow: give each job its share.
    verbose : int, default=0
        Print the lower bound per sample at each iteration when > 0.

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
        ``lower_bound_ / n_samples``.
    elbo_per_sample_ : float
        The lower bound per sample without the constant scikit-learn drops per component
        (see ``_empty_component_bound``): comparable across truncations and restarts, and
        the criterion that picks the kept restart.
    lower_bounds_ : list of float
        Lower bound after each iteration (length ``n_iter_``).
    n_iter_ : int
    converged_ : bool
    truncation_ : int
        The truncation K of the kept fit (``n_components`` or grown, see ``max_components``).
    n_active_ : int
        Components holding at least one sample (sum of responsibilities >= 1).
    saturated_ : bool
        ``n_active_ > grow_at * truncation_``: the truncation may have bound the count.
    n_effective_ : float
        Effective number of clusters, ``exp(entropy of weights_)``.
    init_results_ : list of dict
        Per restart: lower_bound, lower_bound_per_sample, elbo_per_sample, n_iter,
        converged, truncation, n_active, n_effective, weights, saturated, fit_stats.
    weight_concentration_prior_, mean_precision_prior_, mean_prior_,
    degrees_of_freedom_prior_, covariance_prior_ : the priors actually used.
    n_features_in_ : int
    fit_stats_ : dict
        Diagnostics of the last fit: ``scatter_skipped`` = number of (block,
        component) scatter-matrix contributions skipped because provably
        negligible, ``mahalanobis_shared`` = number of (iteration, component)
        Mahalanobis evaluations shared with an identical component; with
        ``delete_below > 0`` also ``delete_moves`` (tried), ``delete_moves_kept``
        and ``deleted`` (components emptied by the kept moves).

    All arrays are numpy float64.
    """

    #: Maximum number of elements of the (block, K, D) temporaries ("full").
    _block_elems = 1 << 21
    #: Skip scatter contributions that are provably below rounding (see fit).
    _skip_negligible = True
    #: Compute the Mahalanobis terms of bitwise-identical components once.
    _share_identical = True
    #: Visit samples grouped by their previous most probable component ("full").
    _sort_blocks = True
    #: Skip Mahalanobis terms of components that are provably negligible ("full").
    _prune_components = True

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
        delete_below=0.0,
        merge=False,
        max_components=None,
        grow_at=0.6,
        n_threads=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
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
        self.delete_below = delete_below
        self.merge = merge
        self.max_components = max_components
        self.grow_at = grow_at
        self.n_threads = n_threads
        self.verbose = verbose

    # ------------------------------------------------------------------ #
    # validation
    # ------------------------------------------------------------------ #
    def _check_params(self):
        def _int(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")

        def _real(name, lo, strict, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or (v <= lo if strict else v < lo):
                op = ">" if strict else ">="
                extra = " or None" if allow_none else ""
                raise ValueError(f"{name} must be a finite number {op} {lo}{extra}, got {v!r}")

        _int("n_components", 1)
        _int("max_iter", 0)
        _int("chunk_size", 1)
        _int("n_init", 1)
        if self.covariance_type in ("tied", "spherical"):
            raise NotImplementedError(
                f"covariance_type={self.covariance_type!r} is not implemented in the torch "
                "backend; use 'full' or 'diag' (or sklearn.mixture.BayesianGaussianMixture)"
            )
        if self.covariance_type not in _COV_TYPES:
            raise ValueError(
                f"covariance_type must be one of {_COV_TYPES}, got {self.covariance_type!r}"
            )
        if self.init_params not in _INIT_PARAMS:
            raise ValueError(f"init_params must be one of {_INIT_PARAMS}, got {self.init_params!r}")
        _real("tol", 0.0, strict=False)
        _real("reg_covar", 0.0, strict=False)
        _real("weight_concentration_prior", 0.0, strict=True, allow_none=True)
        _real("mean_precision_prior", 0.0, strict=True, allow_none=True)
        if self.degrees_of_freedom_prior is not None:
            _real("degrees_of_freedom_prior", -math.inf, strict=True)
        if not isinstance(self.tol_per_sample, (bool, np.bool_)):
            raise ValueError(f"tol_per_sample must be a bool, got {self.tol_per_sample!r}")
        _real("delete_below", 0.0, strict=False)
        if self.delete_below >= 1.0:
            raise ValueError(f"delete_below must be < 1 (a fraction of n_samples), got {self.delete_below!r}")
        if self.n_threads is not None:
            _int("n_threads", 1)
        if not isinstance(self.merge, (bool, np.bool_)):
            raise ValueError(f"merge must be a bool, got {self.merge!r}")
        if self.max_components is not None:
            _int("max_components", self.n_components)
        _real("grow_at", 0.0, strict=True)
        if self.grow_at > 1.0:
            raise ValueError(f"grow_at must be in (0, 1] (a fraction of the truncation), got {self.grow_at!r}")
        return self._resolve_device(), self._resolve_dtype()

    def _resolve_dtype(self):
        if isinstance(self.dtype, torch.dtype) and self.dtype in _DTYPES.values():
            return self.dtype
        if self.dtype in _DTYPES:
            return _DTYPES[self.dtype]
        raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def _resolve_device(self):
        dev = self.device
        if isinstance(dev, str) and dev == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(dev)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must be 'cpu', 'cuda[:i]' or 'auto', got {dev!r}") from err
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available")
        return dev

    def _check_X(self, X, reset):
        """X as a C-contiguous 2-D float32/float64 numpy array or torch tensor.

        Arrays go through scikit-learn's ``validate_data`` (its messages for sparse,
        complex, object, 1-D and empty input; ``n_features_in_`` set on fit, checked on
        predict); torch tensors are checked here with the same rules.
        """
        if not isinstance(X, torch.Tensor):
            return validate_data(
                self, X, reset=reset, dtype=[np.float64, np.float32], order="C",
                ensure_min_samples=2 if reset else 1,
            )
        arr = X.detach()
        if arr.dtype not in (torch.float32, torch.float64):
            if arr.is_complex():
                raise ValueError("Complex data not supported")
            arr = arr.to(torch.float64)
        if arr.ndim != 2:
            raise ValueError(
                f"Expected 2D array, got shape {tuple(arr.shape)}. Reshape your data: X must be "
                "of shape (n_samples, n_features)"
            )
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"X is empty: shape {tuple(arr.shape)}")
        if not bool(torch.isfinite(arr).all()):
            raise ValueError("Input X contains NaN or infinity")
        if reset:
            self.n_features_in_ = arr.shape[1]
        elif arr.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {arr.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return arr

    # ------------------------------------------------------------------ #
    # public API
    # ------------------------------------------------------------------ #
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
        with self._threads():
            self._fit(X, resp_init)
        return self

    def fit_predict(self, X, y=None, resp_init=None):
        """Fit, then return the labels of X, shape (N,) (as ``fit(X).predict(X)``)."""
        with self._threads():
            Xc = self._fit(X, resp_init)
            return self._predict_centred(Xc).cpu().numpy()

    def predict(self, X):
        """Most probable component of each sample, int64 array of shape (N,)."""
        with self._threads():
            return self._predict_centred(self._prepare_new(X)).cpu().numpy()

    def predict_proba(self, X):
        """Responsibilities, float64 array of shape (N, K) (rows sum to 1)."""
        with self._threads():
            Xc = self._prepare_new(X)
            out = []
            for s, e in self._blocks(Xc.shape[0]):
                wlp = self._weighted_log_prob(Xc[s:e])
                out.append(torch.softmax(wlp, dim=1).to(torch.float64).cpu())
            return torch.cat(out).numpy()

    def score_samples(self, X):
        """``logsumexp`` over components of the weighted log probabilities, shape (N,).

        Same definition as scikit-learn's ``BaseMixture.score_samples`` for the
        Bayesian mixture (``_estimate_log_prob + _estimate_log_weights``).
        """
        with self._threads():
            Xc = self._prepare_new(X)
            out = []
            for s, e in self._blocks(Xc.shape[0]):
                wlp = self._weighted_log_prob(Xc[s:e])
                out.append(torch.logsumexp(wlp, dim=1).to(torch.float64).cpu())
            return torch.cat(out).numpy()

    def score(self, X, y=None):
        """Mean of :meth:`score_samples` (float)."""
        return float(np.mean(self.score_samples(X)))

    def get_state(self):
        """The fitted model as plain arrays (no pickles): what :meth:`from_state` needs to
        rebuild an estimator whose ``predict`` / ``predict_proba`` / ``score_samples``
        give the same results bit for bit.

        Returns a dict of NumPy arrays: ``covariance_type``, ``dtype``, ``chunk_size``,
        ``shift`` (D,) (the fitting data's mean; the state is centred on it), the
        variational state ``wc_a``, ``wc_b``, ``mean_precision``, ``dof`` (K,),
        ``means_centred`` (K, D), ``cov`` and ``prec_chol`` ((K, D, D) full, (K, D) diag),
        ``log_det_prec_chol`` (K,).
        """
        check_is_fitted(self, "means_")

        def np64(t):
            return t.detach().to(torch.float64).cpu().numpy().copy()

        st = self._state
        return {
            "covariance_type": np.array(self.covariance_type),
            "dtype": np.array(str(self._dtype).removeprefix("torch.")),
            "chunk_size": np.int64(self.chunk_size),
            "shift": np64(self._shift),
            **{name: np64(getattr(st, name)) for name in _STATE_FIELDS},
        }

    @classmethod
    def from_state(cls, state, device="cpu"):
        """A fitted estimator rebuilt from :meth:`get_state`'s arrays, on ``device``."""
        missing = [k for k in ("covariance_type", "dtype", "chunk_size", "shift", *_STATE_FIELDS)
                   if k not in state]
        if missing:
            raise ValueError(f"not a TorchBayesianGaussianMixture state: {missing} missing")
        wc_a = np.asarray(state["wc_a"])
        est = cls(n_components=len(wc_a), covariance_type=str(state["covariance_type"]),
                  dtype=str(state["dtype"]), chunk_size=int(state["chunk_size"]), device=device)
        est._device, est._dtype = est._check_params()
        est._n_aug = 1 if est.covariance_type == "full" else 0
        est._K = len(wc_a)
        est._shift = torch.as_tensor(np.asarray(state["shift"], np.float64), device=est._device)
        est.n_features_in_ = est._shift.shape[0]
        st = _State(**{
            name: torch.as_tensor(np.asarray(state[name], np.float64), device=est._device)
            for name in _STATE_FIELDS
        })
        est._state = st
        est._set_attributes(st)
        est._perm, est._prune_now, est._deleted = None, False, None
        est.fit_stats_ = {"scatter_skipped": 0, "mahalanobis_shared": 0, "mahalanobis_pruned": 0}
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

    # ------------------------------------------------------------------ #
    # fitting
    # ------------------------------------------------------------------ #
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
        self._n_aug = 1 if self.covariance_type == "full" else 0
        self.n_features_in_ = n_features

        # --- priors (float64) and centred copy of the data ----------------
        Xc, shift, gram, absmax = self._centre(X, device, dtype)
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
            cp = gram / (n_samples - 1)
            if not full:
                cp = torch.diagonal(cp).clone()
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
        self._prune_log = math.log(self._flush)
        self._prune = self._prune_components and self.covariance_type == "full"

        # --- restarts × truncation levels; the best lower bound is kept ------
        best = None
        self.init_results_ = []
        for rs in self._init_random_states():
            K = self.n_components
            while True:
                fit = self._fit_once(Xc, X, K, rs(), resp_init)
                grow = self.max_components is not None and fit["saturated"] and K < self.max_components
                if not grow:
                    break
                K = min(2 * K, self.max_components)
            self.init_results_.append({k: v for k, v in fit.items() if k != "state"})
            if best is None or fit["elbo_per_sample"] > best["elbo_per_sample"]:
                best = fit
        if not best["converged"] and self.max_iter > 0:
            warnings.warn(
                "The torch DPGMM did not converge within max_iter iterations. Try a "
                "larger max_iter or tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._set_fitted(best, n_samples)
        return Xc

    def _init_random_states(self):
        """One factory of the initialisation's random state per restart (``n_init``).

        Restart 0 uses ``random_state`` itself (scikit-learn's initialisation); the others a
        seed derived from it. An int seed gives every truncation level of a restart the
        same stream, so a fit grown to K equals a fit started at K.
        """
        base = self.random_state
        if base is not None and not isinstance(base, numbers.Integral):
            return [lambda: check_random_state(base)] * self.n_init  # a shared RandomState
        seeds = [base] + [
            None if base is None else int(np.random.SeedSequence([int(base), i]).generate_state(1)[0])
            for i in range(1, self.n_init)
        ]
        return [lambda s=s: check_random_state(s) for s in seeds]

    def _fit_once(self, Xc, X, K, random_state, resp_init):
        """One variational fit at truncation K: initialise, EM, moves (see convdp.dpgmm_moves).

        Returns a dict: state, lower_bound, lower_bounds, n_iter, converged, truncation,
        n_active (components holding >= 1 sample), saturated, fit_stats.
        """
        from convdp import dpgmm_moves

        n_samples = Xc.shape[0]
        if n_samples < K:
            raise ValueError(f"n_samples={n_samples} should be >= n_components={K}")
        self._K = K
        self.weight_concentration_prior_ = (
            1.0 / K if self.weight_concentration_prior is None else float(self.weight_concentration_prior)
        )
        self._prune_now = self._prune
        self._prune_pause = 0  # iterations left without pruning (it did not pay off)
        self.fit_stats_ = {"scatter_skipped": 0, "mahalanobis_shared": 0, "mahalanobis_pruned": 0}
        self._deleted = None
        if resp_init is not None:
            resp_src = ("dense", torch.as_tensor(resp_init, device=self._device, dtype=self._dtype))
        else:
            resp_src = self._initial_resp(X, random_state, self._device, self._dtype)
        state = self._m_step(*self._stats_from_resp(Xc, resp_src))
        state, lower_bounds, converged = self._iterate(Xc, state, [], self.max_iter)
        state, lower_bounds, n_iter, converged = dpgmm_moves.run_moves(
            self, Xc, state, lower_bounds, converged
        )
        n_active = int(((state.wc_a - 1.0) >= 1.0).sum())
        lower_bound = lower_bounds[-1] if lower_bounds else -math.inf
        elbo = lower_bound - K * self._empty_component_bound()
        weights = _expected_weights(state)
        w = weights[weights > 0]
        return {
            "state": state,
            "lower_bound": float(lower_bound),
            "lower_bound_per_sample": float(lower_bound) / n_samples,
            "elbo_per_sample": float(elbo) / n_samples,
            "lower_bounds": [float(v) for v in lower_bounds],
            "n_iter": n_iter if self.max_iter > 0 else 0,
            "converged": converged,
            "truncation": K,
            "n_active": n_active,
            "n_effective": float(np.exp(-np.sum(w * np.log(w)))),
            "weights": weights,
            "saturated": n_active > self.grow_at * K,
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
        return self._lower_bound(self._m_step(nk, xk, (self.reg_covar * eye)[None]), 0.0)

    def _set_fitted(self, fit, n_samples):
        """Public attributes and the predict cache from the kept fit."""
        state = fit["state"]
        self._K = fit["truncation"]
        self._state = state
        self._set_attributes(state)
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
        self._prune_now = False
        self._deleted = None
        self.fit_stats_ = dict(fit["fit_stats"])
        self._prepare_estep(state)  # cache the E-step quantities for predict()
        self.fit_stats_ = dict(fit["fit_stats"])

    def _iterate(self, Xc, state, lower_bounds, max_iter):
        """Variational EM from `state` until converged or `max_iter` more iterations.

        Returns the last state, `lower_bounds` with this run's appended, and whether it
        converged.
        """
        n_samples = Xc.shape[0]
        lower_bound = lower_bounds[-1] if lower_bounds else -math.inf
        for _ in range(max_iter):
            prev = lower_bound
            nk, xk, sk, ent = self._e_step_stats(Xc, state)
            self._deleted = None  # a deletion lasts one E-step; the components may come back
            state = self._m_step(nk, xk, sk)
            lower_bound = self._lower_bound(state, ent)
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

    @staticmethod
    def _check_resp(resp, n_samples, K):
        if isinstance(resp, torch.Tensor):
            resp = resp.detach().cpu().numpy()
        resp = np.asarray(resp, dtype=np.float64)
        if resp.shape != (n_samples, K):
            raise ValueError(
                f"resp_init should have shape (n_samples, n_components)=({n_samples}, {K}), "
                f"got {resp.shape}"
            )
        if not np.isfinite(resp).all() or (resp < 0).any():
            raise ValueError("resp_init must be finite and non-negative")
        return resp

    def _blocks(self, n, rows=None):
        if rows is None:
            rows = self._block_rows()
        for s in range(0, n, rows):
            yield s, min(s + rows, n)

    def _block_rows(self):
        rows = self.chunk_size
        if self.covariance_type == "full":
            # (rows, K, D) temporaries bounded by _block_elems, but rows >= 2 D so
            # that the O(K D^2) work per block stays small next to the products
            per_row = self._K * self.n_features_in_
            rows = min(rows, max(16, 2 * self.n_features_in_, self._block_elems // per_row))
        return max(1, rows)

    def _centre(self, X, device, dtype):
        """Centred copy of X in `dtype` on `device` plus float64 mean, Gram, max|x|.

        Returns
        -------
        Xc : tensor (N, D) of `dtype`, or (N, D + 1) for "full" where the last
            column is 1 (it folds ``- mu_k P_k`` into the Mahalanobis product)
        shift : tensor (D,) float64, the column means of X
        gram : tensor (D, D) float64, sum of centred outer products
        absmax : tensor (D,) float64, max |Xc| per feature
        """
        f64 = torch.float64
        n, d = X.shape
        rows = max(1, min(self.chunk_size, (1 << 22) // d))
        src = X if isinstance(X, torch.Tensor) else torch.from_numpy(X)
        total = torch.zeros(d, dtype=f64, device=device)
        for s in range(0, n, rows):
            total += src[s : s + rows].to(device=device, dtype=f64).sum(0)
        shift = total / n
        Xc = torch.empty((n, d + self._n_aug), dtype=dtype, device=device)
        if self._n_aug:
            Xc[:, d] = 1.0
        gram = torch.zeros((d, d), dtype=f64, device=device)
        absmax = torch.zeros(d, dtype=f64, device=device)
        for s in range(0, n, rows):
            blk = src[s : s + rows].to(device=device, dtype=f64) - shift
            gram += blk.T @ blk
            absmax = torch.maximum(absmax, blk.abs().amax(0))
            Xc[s : s + rows, :d] = blk
        return Xc, shift, gram, absmax

    def _initial_resp(self, X, random_state, device, dtype):
        """Initial responsibilities exactly as scikit-learn's ``_initialize_parameters``."""
        n, _ = X.shape
        K = self._K
        Xn = X.cpu().numpy() if isinstance(X, torch.Tensor) else X
        if self.init_params == "kmeans":
            from sklearn.cluster import KMeans

            labels = KMeans(n_clusters=K, n_init=1, random_state=random_state).fit(Xn).labels_
            return ("labels", torch.as_tensor(labels, device=device, dtype=torch.int64))
        if self.init_params == "k-means++":
            from sklearn.cluster import kmeans_plusplus

            _, idx = kmeans_plusplus(Xn, K, random_state=random_state)
            labels = np.full(n, -1, dtype=np.int64)
            labels[idx] = np.arange(K)
            return ("labels", torch.as_tensor(labels, device=device))
        if self.init_params == "random":
            resp = random_state.uniform(size=(n, K)).astype(Xn.dtype)
            resp /= resp.sum(axis=1)[:, np.newaxis]
            return ("dense", torch.as_tensor(resp, device=device, dtype=dtype))
        # random_from_data
        idx = random_state.choice(n, size=K, replace=False)
        labels = np.full(n, -1, dtype=np.int64)
        labels[idx] = np.arange(K)
        return ("labels", torch.as_tensor(labels, device=device))

    def _resp_block(self, resp_src, s, e):
        kind, data = resp_src
        if kind == "dense":
            return data[s:e]
        ar = torch.arange(self._K, device=data.device)
        return (data[s:e, None] == ar).to(self._dtype)

    # --- sufficient statistics ----------------------------------------------
    def _new_acc(self, centres):
        K, D = self._K, self.n_features_in_
        z = dict(dtype=torch.float64, device=self._device)
        acc = {
            "nk": torch.zeros(K, **z),
            "sx": torch.zeros(K, D, **z),
            "nk_inc": torch.zeros(K, **z),
            "sx_inc": torch.zeros(K, D, **z),
            "ent": torch.zeros((), **z),
        }
        if self.covariance_type == "full":
            acc["S"] = torch.zeros(K, D, D, **z)
            acc["centres64"] = centres
        else:
            acc["sxx"] = torch.zeros(K, D, **z)
        return acc

    def _accumulate(self, acc, Xb, R, F=None):
        """Add the statistics of one block.

        Xb : (b, D) centred data; R : (b, K) responsibilities; F : (b, 2D)
        ``[Xb**2, Xb]`` for "diag" (computed here when None).
        """
        b = Xb.shape[0]
        f64 = torch.float64
        D = Xb.shape[1]
        bnk = R.sum(0)
        acc["nk"] += bnk
        if self.covariance_type == "diag":
            if F is None:
                F = torch.cat([Xb * Xb, Xb], dim=1)
            G = R.T @ F  # (K, 2D): [sum r x^2, sum r x]
            acc["sxx"] += G[:, :D]
            acc["sx"] += G[:, D:]
            return
        bsx = R.T @ Xb
        acc["sx"] += bsx
        if self._skip_negligible:
            active = bnk.to(f64) * self._skip_ratio > self._skip_thr * b
            idx = torch.nonzero(active).squeeze(1)
            n_act = idx.numel()
        else:
            active = None
            n_act = self._K
        self.fit_stats_["scatter_skipped"] += self._K - n_act
        if n_act == 0:
            return
        full_set = active is None or n_act == self._K
        if full_set:
            Ra, nb, c = R, bnk.to(f64), acc["centres64"]
        else:
            Ra, nb, c = R[:, idx], bnk[idx].to(f64), acc["centres64"][idx]
        # Block-centred scatter, one GEMM for all components: with cb the block
        # mean, Sb_k = sum_n r_nk (x_n - cb)(x_n - cb)^T.  It is moved to the
        # component's reference centre c_k in float64:
        #   sum r (x - c_k)(x - c_k)^T = Sb_k + u d^T + d u^T + n d d^T,
        # with u = sum r (x - cb), d = cb - c_k.  As samples are sorted by
        # component, cb is close to the centres that matter (float32 accuracy).
        cb = Xb.mean(0)
        Xcb = Xb - cb
        A = Xcb.unsqueeze(1) * Ra.unsqueeze(2)  # (b, n_act, D)
        Sb = (A.view(b, n_act * D).T @ Xcb).view(n_act, D, D).to(f64)
        u = (Ra.T @ Xcb).to(f64)
        d = cb.to(f64) - c
        ud = u[:, :, None] * d[:, None, :]
        Sb += ud + ud.mT + nb[:, None, None] * d[:, :, None] * d[:, None, :]
        if full_set:
            acc["S"] += Sb
            acc["nk_inc"] += bnk
            acc["sx_inc"] += bsx
        else:
            acc["S"].index_add_(0, idx, Sb)
            acc["nk_inc"].index_add_(0, idx, bnk[idx].to(f64))
            acc["sx_inc"].index_add_(0, idx, bsx[idx].to(f64))

    def _finish_stats(self, acc):
        """(nk, xk, sk) exactly as scikit-learn's ``_estimate_gaussian_parameters``."""
        eps = torch.finfo(self._dtype).eps
        nk_raw = acc["nk"]
        nk = nk_raw + 10 * eps
        xk = acc["sx"] / nk[:, None]
        D = xk.shape[1]
        if self.covariance_type == "diag":
            sk = acc["sxx"] / nk[:, None] - xk**2 + self.reg_covar
            return nk, xk, sk
        c = acc["centres64"]
        # acc["S"] = sum_inc r (x - c)(x - c)^T over the included blocks
        u = acc["sx_inc"] - acc["nk_inc"][:, None] * c  # sum_inc r (x - c)
        S = 0.5 * (acc["S"] + acc["S"].mT)
        # shift the centre from c to xk: sum r (x-xk)(x-xk)^T
        d = xk - c
        ud = u[:, :, None] * d[:, None, :]
        S = S - ud - ud.mT + acc["nk_inc"][:, None, None] * d[:, :, None] * d[:, None, :]
        sk = S / nk[:, None, None]
        sk = sk + self.reg_covar * torch.eye(D, dtype=sk.dtype, device=sk.device)
        return nk, xk, sk

    def _stats_from_resp(self, Xc, resp_src):
        rows = self._block_rows()
        K, D = self._K, self.n_features_in_
        zeros = torch.zeros(K, D, dtype=torch.float64, device=self._device)
        acc = self._new_acc(zeros)
        if self.covariance_type == "full":
            # first pass: centres = xk (two-pass algorithm, as accurate as sklearn)
            nk = torch.zeros(K, dtype=torch.float64, device=self._device)
            sx = torch.zeros(K, D, dtype=torch.float64, device=self._device)
            for s, e in self._blocks(Xc.shape[0], rows):
                R = self._resp_block(resp_src, s, e)
                nk += R.sum(0)
                sx += R.T @ Xc[s:e, :D]
            acc = self._new_acc(sx / (nk + 10 * torch.finfo(self._dtype).eps)[:, None])
        labels = []
        for s, e in self._blocks(Xc.shape[0], rows):
            R = self._resp_block(resp_src, s, e)
            labels.append(R.argmax(1))
            self._accumulate(acc, Xc[s:e, :D], R)
        self._perm = None
        if self.covariance_type == "full" and self._sort_blocks:
            self._perm = torch.argsort(torch.cat(labels), stable=True)
        return self._finish_stats(acc)

    # --- E-step --------------------------------------------------------------
    def _prepare_estep(self, st):
        """Cache the compute-dtype quantities of the E-step for state `st`."""
        D = self.n_features_in_
        dt = self._dtype
        digamma = torch.special.digamma
        i = torch.arange(D, dtype=torch.float64, device=self._device)
        log_lambda = D * math.log(2.0) + digamma(0.5 * (st.dof[:, None] - i)).sum(1)
        dsum = digamma(st.wc_a + st.wc_b)
        cum = torch.cumsum(digamma(st.wc_b) - dsum, 0)
        log_weights = digamma(st.wc_a) - dsum + torch.cat([cum.new_zeros(1), cum[:-1]])
        const = (
            -0.5 * D * math.log(2 * math.pi)
            + st.log_det_prec_chol
            - 0.5 * D * torch.log(st.dof)
            + 0.5 * (log_lambda - D / st.mean_precision)
            + log_weights
        )
        if getattr(self, "_deleted", None) is not None:  # a deletion move: these components take no samples
            const = const.masked_fill(self._deleted, -math.inf)
        if self.covariance_type == "full":
            P = st.prec_chol.to(dt)  # (K, D, D)
            muP = torch.einsum("kd,kde->ke", st.means, st.prec_chol).to(dt)
            # Components whose (P_k, mu_k P_k) are bitwise identical in the
            # compute dtype have identical Mahalanobis distances: compute them
            # once.  This is exact; it happens for "dead" components whose
            # responsibilities underflow to 0 (their parameters all equal the
            # prior's), which is most of them once the DP has pruned.
            if self._share_identical:
                uniq, inverse = _dedupe_components(st, P, muP)
            else:
                uniq = list(range(P.shape[0]))
            U = len(uniq)
            if U < P.shape[0]:
                self.fit_stats_["mahalanobis_shared"] += P.shape[0] - U
                idx = torch.as_tensor(uniq, device=P.device)
                P, muP = P[idx], muP[idx]
                self._inverse = torch.as_tensor(inverse, device=P.device)
            else:
                self._inverse = None
            # [x, 1] @ [[P_1 ... P_U], [-mu_1 P_1 ... -mu_U P_U]] = [(x - mu_k) P_k]_k
            self._Pcat = torch.cat(
                [P.permute(1, 0, 2).reshape(D, U * D), -muP.reshape(1, U * D)], 0
            ).contiguous()
            self._n_unique = U
            self._const = const.to(dt)
            if self._prune_now:
                self._prepare_prune(st, uniq, self._inverse, const)
        else:
            prec = st.prec_chol**2  # (K, D)
            c2 = (st.means**2 * prec).sum(1)
            # wlp = [x^2, x] @ W^T + const'
            self._W = (-0.5 * torch.cat([prec, -2.0 * st.means * prec], 1)).T.to(dt).contiguous()
            self._const = (const - 0.5 * c2).to(dt)

    def _prepare_prune(self, st, uniq, inverse, const):
        """Quantities for :meth:`_wlp_full_pruned` (float64 except ``_mu_t``)."""
        idx = torch.as_tensor(uniq, device=self._device)
        means = st.means[idx]  # (U, D)
        # lambda_min(precision_u) = 1 / lambda_max(cov_u), slightly shrunk for safety
        lam_max = torch.linalg.eigvalsh(st.cov[idx])[:, -1]
        self._lam_u = (1.0 - 1e-6) / lam_max
        if inverse is None:
            self._const_u = const.clone()
        else:
            self._const_u = torch.full_like(lam_max, -math.inf)
            self._const_u.scatter_reduce_(0, inverse, const, reduce="amax")
        self._mu_t = means.T.to(self._dtype).contiguous()  # (D, U)
        self._mu2 = (means**2).sum(1).to(self._dtype)  # (U,)
        self._d2_rel_err = 4.0 * (self.n_features_in_ + 2) * torch.finfo(self._dtype).eps

    def _maha_subset(self, Xa, idx):
        """Mahalanobis distances (b, len(idx)) of a block to the unique components idx."""
        D = self.n_features_in_
        b, n = Xa.shape[0], idx.numel()
        if n == self._n_unique:
            Pc = self._Pcat
        else:
            Pc = self._Pcat.view(D + 1, self._n_unique, D).index_select(1, idx).view(D + 1, n * D)
        Y = torch.mm(Xa, Pc).view(b, n, D)
        return torch.linalg.vector_norm(Y, dim=2).square_()

    def _wlp_full_pruned(self, Xa):
        """Weighted log probabilities (b, K) of a block, skipping negligible components.

        For every sample x and unique component u, ``UB_u(x) = max_{k in u} const_k
        - 0.5 * lambda_min(Lambda_u) * ||x - mu_u||^2`` bounds the weighted log
        probability from above.  The exact values are computed for the
        components that maximise the bound for some row of the block (A), which
        gives a lower bound L(x) of the row's log-normaliser, and then for every
        other component whose bound comes within ``log(flush) - margin`` of L(x)
        for some row (B).  The remaining components have responsibilities below
        ``self._flush * e^-10`` everywhere in the block: they would be flushed to
        0 by the E-step anyway and their share of the normaliser is far below
        rounding.  They get -inf.
        """
        D = self.n_features_in_
        U = self._n_unique
        b = Xa.shape[0]
        f64 = torch.float64
        Xb = Xa[:, :D]
        x2 = (Xb * Xb).sum(1, keepdim=True)  # (b, 1)
        s2 = x2 + self._mu2  # (b, U)
        d2 = torch.addmm(s2, Xb, self._mu_t, alpha=-2.0)
        d2 = torch.clamp_min_(d2 - self._d2_rel_err * s2, 0.0).to(f64)
        ub = self._const_u - 0.5 * self._lam_u * d2  # (b, U), float64
        a_idx = torch.unique(ub.argmax(1))
        maha = torch.full((b, U), math.inf, dtype=Xa.dtype, device=Xa.device)
        m_a = self._maha_subset(Xa, a_idx)
        maha[:, a_idx] = m_a
        if a_idx.numel() < U:
            low = (self._const_u[a_idx] - 0.5 * m_a.to(f64)).amax(1, keepdim=True)  # (b, 1)
            margin = self._prune_log - 10.0 - 1e-4 * low.abs()
            cand = ((ub - low) > margin).any(0)
            cand[a_idx] = False
            b_idx = torch.nonzero(cand).squeeze(1)
            if b_idx.numel():
                maha[:, b_idx] = self._maha_subset(Xa, b_idx)
            self._pruned_now += U - a_idx.numel() - b_idx.numel()
        if self._inverse is not None:
            maha = maha.index_select(1, self._inverse)
        return torch.add(self._const, maha, alpha=-0.5)

    def _weighted_log_prob(self, Xb, F=None):
        """``_estimate_log_prob + _estimate_log_weights`` of a centred block, (b, K).

        Xb : (b, D + 1) for "full" (last column 1, see ``_centre``), (b, D) for
        "diag"; F : optional ``[Xb**2, Xb]`` for "diag".
        """
        if self.covariance_type == "full":
            b = Xb.shape[0]
            Y = torch.mm(Xb, self._Pcat).view(b, self._n_unique, -1)
            maha = torch.linalg.vector_norm(Y, dim=2).square_()
            if self._inverse is not None:
                maha = maha.index_select(1, self._inverse)
            return torch.add(self._const, maha, alpha=-0.5)
        if F is None:
            F = torch.cat([Xb * Xb, Xb], dim=1)
        return torch.addmm(self._const, F, self._W)

    def _e_step_stats(self, Xc, st):
        """One pass over the data: E-step + sufficient statistics + entropy.

        For "full", samples are visited in the order ``self._perm`` (sorted by
        their most probable component at the previous iteration), so that a
        block mostly holds samples of a few components and the scatter matrices
        of the others can be skipped (their responsibilities are exactly 0 or
        provably negligible there).  The order changes only the summation order.
        """
        # Pruning (see _wlp_full_pruned) is paused for 5 iterations when it
        # removed < 10% of the Mahalanobis terms: then its overhead is wasted.
        self._prune_now = self._prune and self._prune_pause == 0
        self._prune_pause = max(0, self._prune_pause - 1)
        self._pruned_now = 0
        self._prepare_estep(st)
        acc = self._new_acc(st.means)
        D = self.n_features_in_
        perm = self._perm
        labels = []
        n_blocks = 0
        for s, e in self._blocks(Xc.shape[0]):
            n_blocks += 1
            Xa = Xc[s:e] if perm is None else Xc.index_select(0, perm[s:e])
            Xb = Xa[:, :D]
            F = torch.cat([Xb * Xb, Xb], dim=1) if self.covariance_type == "diag" else None
            if self._prune_now:
                wlp = self._wlp_full_pruned(Xa)
            else:
                wlp = self._weighted_log_prob(Xa, F)
            mx, lab = wlp.max(1, keepdim=True)
            if perm is not None:
                labels.append(lab.squeeze(1))
            R = torch.exp(wlp - mx)
            ssum = R.sum(1, keepdim=True)
            R /= ssum
            log_resp = wlp - (mx + torch.log(ssum))
            R.masked_fill_(R < self._flush, 0.0)  # see _fit
            acc["ent"] += torch.where(R > 0, R * log_resp, 0.0).sum(dtype=torch.float64)
            self._accumulate(acc, Xb, R, F)
        if perm is not None:
            self._perm = perm[torch.argsort(torch.cat(labels), stable=True)]
        if self._prune_now:
            self.fit_stats_["mahalanobis_pruned"] += self._pruned_now
            if self._pruned_now < 0.1 * n_blocks * self._n_unique:
                self._prune_pause = 5
        nk, xk, sk = self._finish_stats(acc)
        return nk, xk, sk, float(acc["ent"])

    # --- M-step / lower bound (float64, small) ----------------------------------
    def _m_step(self, nk, xk, sk):
        """Update the variational parameters from sklearn-style (nk, xk, sk)."""
        alpha = self.weight_concentration_prior_
        beta0 = self.mean_precision_prior_
        nu0 = self.degrees_of_freedom_prior_
        m0 = self._mean_prior_c
        wc_a = 1.0 + nk
        rc = torch.cumsum(nk.flip(0), 0)  # rc[j] = sum of the last j+1 entries
        tail = torch.cat([rc[:-1].flip(0), nk.new_zeros(1)])  # sum_{j>k} nk_j
        wc_b = alpha + tail
        beta = beta0 + nk
        means = (beta0 * m0 + nk[:, None] * xk) / beta[:, None]
        dof = nu0 + nk
        diff = xk - m0
        if self.covariance_type == "full":

            def posterior_cov(sk):
                cov = (
                    self._cov_prior
                    + nk[:, None, None] * sk
                    + (nk * beta0 / beta)[:, None, None] * diff[:, :, None] * diff[:, None, :]
                )
                return cov / dof[:, None, None]

            cov = posterior_cov(sk)
            L, info = torch.linalg.cholesky_ex(cov)
            if bool((info != 0).any()) and self._dtype != torch.float64:
                # A component of (nearly) identical samples far from the block centre: its
                # float32 scatter matrix can come out indefinite by rounding (~eps32 |x|^2 per
                # sample). An empirical covariance is positive semi-definite, so project the
                # failed ones onto that cone (eigenvalues clipped at reg_covar) and retry.
                bad = torch.nonzero(info != 0).squeeze(1)
                vals, vecs = torch.linalg.eigh(0.5 * (sk[bad] + sk[bad].mT))
                sk = sk.clone()
                sk[bad] = (vecs * vals.clamp_min(self.reg_covar)[:, None, :]) @ vecs.mT
                cov = posterior_cov(sk)
                L, info = torch.linalg.cholesky_ex(cov)
                self.fit_stats_["psd_repairs"] = self.fit_stats_.get("psd_repairs", 0) + bad.numel()
            if bool((info != 0).any()):
                raise ValueError(_PRECISION_ERROR)
            eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
            prec_chol = torch.linalg.solve_triangular(L, eye.expand_as(L), upper=False).mT
            logdet = torch.log(torch.diagonal(prec_chol, dim1=1, dim2=2)).sum(1)
        else:
            cov = self._cov_prior + nk[:, None] * (sk + (beta0 / beta)[:, None] * diff**2)
            cov = cov / dof[:, None]
            if bool((cov <= 0).any()):
                raise ValueError(_PRECISION_ERROR)
            prec_chol = 1.0 / torch.sqrt(cov)
            logdet = torch.log(prec_chol).sum(1)
        return _State(wc_a, wc_b, beta, means, dof, cov, prec_chol, logdet)

    def _lower_bound(self, st, ent):
        """scikit-learn's ``_compute_lower_bound`` (constant terms dropped)."""
        D = self.n_features_in_
        lgamma = torch.lgamma
        ldpc = st.log_det_prec_chol - 0.5 * D * torch.log(st.dof)
        i = torch.arange(D, dtype=torch.float64, device=self._device)
        log_wishart_norm = -(
            st.dof * ldpc
            + st.dof * D * 0.5 * math.log(2.0)
            + lgamma(0.5 * (st.dof[:, None] - i)).sum(1)
        )
        betaln = lgamma(st.wc_a) + lgamma(st.wc_b) - lgamma(st.wc_a + st.wc_b)
        lb = (
            -ent
            - log_wishart_norm.sum()
            + betaln.sum()
            - 0.5 * D * torch.log(st.mean_precision).sum()
        )
        return float(lb)

    def _set_attributes(self, st):
        def np64(t):
            return t.detach().to(torch.float64).cpu().numpy()

        self.weights_ = _expected_weights(st)
        self.weight_concentration_ = (np64(st.wc_a), np64(st.wc_b))
        self.mean_precision_ = np64(st.mean_precision)
        self.means_ = np64(st.means + self._shift)
        self.degrees_of_freedom_ = np64(st.dof)
        self.covariances_ = np64(st.cov)
        self.precisions_cholesky_ = np64(st.prec_chol)
        if self.covariance_type == "full":
            self.precisions_ = np64(st.prec_chol @ st.prec_chol.mT)
        else:
            self.precisions_ = np64(st.prec_chol**2)

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
        out = torch.empty((n, d + self._n_aug), dtype=self._dtype, device=self._device)
        if self._n_aug:
            out[:, d] = 1.0
        rows = max(1, min(self.chunk_size, (1 << 22) // d))
        for s in range(0, n, rows):
            out[s : s + rows, :d] = src[s : s + rows].to(self._device, torch.float64) - self._shift
        return out

    def _predict_centred(self, Xc):
        out = []
        for s, e in self._blocks(Xc.shape[0]):
            out.append(self._weighted_log_prob(Xc[s:e]).argmax(1))
        return torch.cat(out)
