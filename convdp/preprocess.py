"""The preprocessing of a layer's samples before clustering, fitted once and saved as arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.decomposition import PCA


@dataclass
class Preprocess:
    """Drop constant dimensions, scale, and project: fitted on samples (n, C), applied per chunk.

    Parameters
    ----------
    pca : int or None, number of principal components kept (None or >= dims: no PCA)
    scale_max : float or None, scale so that max |x| over the fitting samples is this value
    seed : int, for the randomised PCA solver
    """

    pca: int | None = None
    scale_max: float | None = None
    seed: int = 0
    keep_: np.ndarray = field(default=None, repr=False)
    scale_: float = 1.0
    pca_: PCA | None = field(default=None, repr=False)

    def fit(self, X: np.ndarray, what: str = "layer") -> Preprocess:
        var = X.var(axis=0, dtype=np.float64)
        self.keep_ = var > 1e-12 * max(float(var.max()), 1e-30)
        if not self.keep_.any() or float(var.max()) == 0.0:
            raise ValueError(
                f"{what}: all {X.shape[1]} channels are constant over the {len(X)} samples "
                "(a dead layer); there is nothing to cluster"
            )
        Xk = X[:, self.keep_]
        if Xk.dtype == np.float16:  # scaled in float16, the PCA's input was rounded twice
            Xk = Xk.astype(np.float32)
        if self.scale_max is not None:
            self.scale_ = float(self.scale_max) / float(np.abs(Xk).max())
        if self.pca is not None and self.pca < Xk.shape[1]:
            self.pca_ = PCA(self.pca, random_state=self.seed).fit(Xk * self.scale_)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        Xk = X[:, self.keep_].astype(np.float64) * self.scale_
        return self.pca_.transform(Xk) if self.pca_ is not None else Xk

    @property
    def n_dims(self) -> int:
        return self.pca_.n_components_ if self.pca_ is not None else int(self.keep_.sum())

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that reproduce this transform (saved beside the fit)."""
        out = {"pre_keep": self.keep_, "pre_scale": np.float64(self.scale_)}
        if self.pca_ is not None:
            out |= {"pre_pca_mean": self.pca_.mean_, "pre_pca_components": self.pca_.components_}
        return out

    @classmethod
    def from_state(cls, arrays, what: str = "model") -> Preprocess:
        """The fitted transform that :meth:`state`'s arrays describe (``what`` names them in
        errors)."""
        missing = [k for k in ("pre_keep", "pre_scale") if k not in arrays]
        if missing:
            raise ValueError(f"{what}: the saved model lacks {missing}; fit the layer again")
        pre = cls()
        pre.keep_ = np.asarray(arrays["pre_keep"]).astype(bool)
        pre.scale_ = float(arrays["pre_scale"])
        if "pre_pca_components" in arrays:
            components = np.asarray(arrays["pre_pca_components"])
            pca = PCA(n_components=components.shape[0])
            pca.components_ = components
            pca.mean_ = np.asarray(arrays["pre_pca_mean"])
            pca.n_components_ = components.shape[0]
            pca.n_features_in_ = components.shape[1]
            pre.pca, pre.pca_ = components.shape[0], pca
        return pre
