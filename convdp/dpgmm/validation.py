"""Parameter and input checks of the torch DP mixture (scikit-learn's rules and messages)."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.utils.validation import validate_data

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
COV_TYPES = ("full", "diag")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class OverflowInDtype(ValueError):
    """Samples too far from their mean for the fit's dtype: their squares (and the sums of
    the statistics) would overflow it, and the fit would come out inf or NaN."""


class _Validation:
    """Mixin: parameters validated up front, inputs as scikit-learn validates them."""

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
        _int("kmeans_max_iter", 1)
        if self.covariance_type in ("tied", "spherical"):
            raise NotImplementedError(
                f"covariance_type={self.covariance_type!r} is not implemented in the torch "
                "backend; use 'full' or 'diag' (or sklearn.mixture.BayesianGaussianMixture)"
            )
        if self.covariance_type not in COV_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COV_TYPES}, got {self.covariance_type!r}"
            )
        if self.init_params not in INIT_PARAMS:
            raise ValueError(f"init_params must be one of {INIT_PARAMS}, got {self.init_params!r}")
        _real("tol", 0.0, strict=False)
        _real("reg_covar", 0.0, strict=False)
        _real("weight_concentration_prior", 0.0, strict=True, allow_none=True)
        _real("mean_precision_prior", 0.0, strict=True, allow_none=True)
        if self.degrees_of_freedom_prior is not None:
            _real("degrees_of_freedom_prior", -math.inf, strict=True)
        for flag in ("tol_per_sample", "estep_reg_covar"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise ValueError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
        _real("delete_below", 0.0, strict=False)
        if self.delete_below >= 1.0:
            raise ValueError(f"delete_below must be < 1 (a fraction of n_samples), got {self.delete_below!r}")
        if self.n_threads is not None:
            _int("n_threads", 1)
        if self.init_sizes not in ("same", "halving"):
            raise ValueError(f"init_sizes must be 'same' or 'halving', got {self.init_sizes!r}")
        if not isinstance(self.merge, (bool, np.bool_)):
            raise ValueError(f"merge must be a bool, got {self.merge!r}")
        _int("early_moves", 0)
        if self.max_components is not None:
            _int("max_components", self.n_components)
        if self.effective_samples is not None:
            _int("effective_samples", 1)
        _real("grow_at", 0.0, strict=True)
        if self.grow_at > 1.0:
            raise ValueError(f"grow_at must be in (0, 1] (a fraction of the truncation), got {self.grow_at!r}")
        return self._resolve_device(), self._resolve_dtype()

    def _resolve_dtype(self):
        if isinstance(self.dtype, torch.dtype) and self.dtype in DTYPES.values():
            return self.dtype
        if self.dtype in DTYPES:
            return DTYPES[self.dtype]
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

