"""Every fitted model saved and loaded as plain arrays (no pickles), in one place.

A fit's ``.npz`` (and a split fit's ``.model.npz``) holds:

- the preprocessing, ``pre_*`` (:meth:`convdp.preprocess.Preprocess.state`);
- the estimator's fitted parameters under readable names (``weights``, ``means``,
  ``covariances``, ...; :func:`estimator_arrays`);
- ``predict_*``: what rebuilding the estimator's ``predict`` (and ``score_samples``)
  exactly needs: its kind, its covariance type and, for the torch DPGMM, its
  :meth:`~convdp.dpgmm.TorchBayesianGaussianMixture.get_state` (:func:`predictor_arrays`).

:func:`load_predictor` rebuilds ``(preprocess, estimator)`` from those arrays for the four
kinds the workflow fits: scikit-learn's DP mixture, the torch DP mixture, scikit-learn's
Gaussian mixture and k-means. The fit, label, merge and transfer code all use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convdp.preprocess import Preprocess

PREDICT = "predict_"
"""Prefix of the arrays that only rebuilding the predictor needs."""

_TORCH = f"{PREDICT}torch_"


def estimator_arrays(est) -> dict[str, np.ndarray]:
    """The fitted parameters of a mixture (or k-means), under readable names."""
    out = {}
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "mean_precision_",
                 "degrees_of_freedom_", "cluster_centers_"):
        if hasattr(est, name):
            out[name.rstrip("_")] = np.asarray(getattr(est, name))
    wc = getattr(est, "weight_concentration_", None)
    if isinstance(wc, tuple):
        out["weight_concentration_a"], out["weight_concentration_b"] = map(np.asarray, wc)
    return out


def predictor_arrays(est) -> dict[str, np.ndarray]:
    """What rebuilding ``est.predict`` exactly needs beyond :func:`estimator_arrays`."""
    kind = type(est).__name__
    if kind not in _REBUILD:
        raise ValueError(f"cannot save a {kind} for labelling; known: {', '.join(_REBUILD)}")
    out = {f"{PREDICT}estimator": np.array(kind)}
    if kind != "KMeans":
        out[f"{PREDICT}covariance_type"] = np.array(est.covariance_type)
    if kind == "TorchBayesianGaussianMixture":
        out |= {_TORCH + k: v for k, v in est.get_state().items()}
    return out


def model_arrays(est, pre: Preprocess) -> dict[str, np.ndarray]:
    """Everything saved for a fitted layer: parameters, preprocessing, predictor."""
    return {**estimator_arrays(est), **pre.state(), **predictor_arrays(est)}


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of a saved fit, read into memory."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_predictor(model, what: str = "model", device: str = "cpu") -> tuple[Preprocess, object]:
    """The preprocessing and the estimator of a saved model, rebuilt from its arrays alone:
    ``est.predict(pre.transform(x))`` labels samples exactly as the fitted estimator did.
    ``what`` names the model (its file) in errors; ``device`` is where the torch DPGMM
    computes (the scikit-learn estimators stay on the CPU)."""
    _need(model, (f"{PREDICT}estimator",), what)
    kind = str(model[f"{PREDICT}estimator"])
    if kind not in _REBUILD:
        raise ValueError(f"{what}: unknown estimator {kind!r}; known: {', '.join(_REBUILD)}")
    if kind == "TorchBayesianGaussianMixture":
        return Preprocess.from_state(model, what), _rebuild_torch_dpgmm(model, what, device)
    return Preprocess.from_state(model, what), _REBUILD[kind](model, what)


def _need(model, keys, what: str) -> None:
    missing = [k for k in keys if k not in model]
    if missing:
        raise ValueError(f"{what}: the saved model lacks {missing}; fit the layer again")


_MIXTURE = ("weights", "means", "covariances", "precisions_cholesky", f"{PREDICT}covariance_type")
_DPGMM = (*_MIXTURE, "mean_precision", "degrees_of_freedom", "weight_concentration_a",
          "weight_concentration_b")


def _rebuild_sklearn_dpgmm(model, what):
    from sklearn.mixture import BayesianGaussianMixture

    _need(model, _DPGMM, what)
    covariance_type = str(model[f"{PREDICT}covariance_type"])
    est = BayesianGaussianMixture(
        n_components=len(model["means"]), covariance_type=covariance_type,
        weight_concentration_prior_type="dirichlet_process",
    )
    _set_mixture(est, model)
    est.mean_precision_ = np.asarray(model["mean_precision"])
    est.degrees_of_freedom_ = np.asarray(model["degrees_of_freedom"])
    est.weight_concentration_ = (np.asarray(model["weight_concentration_a"]),
                                 np.asarray(model["weight_concentration_b"]))
    return est


def _rebuild_torch_dpgmm(model, what, device="cpu"):
    from convdp.dpgmm import TorchBayesianGaussianMixture

    state = {k.removeprefix(_TORCH): v for k, v in model.items() if k.startswith(_TORCH)}
    try:
        return TorchBayesianGaussianMixture.from_state(state, device=device)
    except ValueError as err:
        raise ValueError(f"{what}: {err}; fit the layer again") from err


def _rebuild_gmm(model, what):
    from sklearn.mixture import GaussianMixture

    _need(model, _MIXTURE, what)
    est = GaussianMixture(len(model["means"]), covariance_type=str(model[f"{PREDICT}covariance_type"]))
    _set_mixture(est, model)
    return est


def _set_mixture(est, model) -> None:
    """The fitted attributes every scikit-learn mixture predicts and scores with."""
    est.weights_ = np.asarray(model["weights"])
    est.means_ = np.asarray(model["means"])
    est.covariances_ = np.asarray(model["covariances"])
    est.precisions_cholesky_ = pc = np.asarray(model["precisions_cholesky"])
    # scikit-learn's own: P P^T per matrix ("full": (K, D, D), "tied": (D, D)), squares else
    est.precisions_ = (pc @ np.swapaxes(pc, -1, -2) if est.covariance_type in ("full", "tied")
                       else pc**2)
    est.n_features_in_ = est.means_.shape[1]
    est.converged_, est.n_iter_, est.lower_bound_ = True, 0, float("nan")


def _rebuild_kmeans(model, what):
    from sklearn.cluster import KMeans
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    _need(model, ("cluster_centers",), what)
    centres = np.asarray(model["cluster_centers"])
    est = KMeans(len(centres))
    est.cluster_centers_ = centres
    est.n_features_in_ = centres.shape[1]
    est._n_threads = _openmp_effective_n_threads()  # what KMeans.fit sets for predict
    return est


_REBUILD = {
    "BayesianGaussianMixture": _rebuild_sklearn_dpgmm,
    "TorchBayesianGaussianMixture": _rebuild_torch_dpgmm,
    "GaussianMixture": _rebuild_gmm,
    "KMeans": _rebuild_kmeans,
}
