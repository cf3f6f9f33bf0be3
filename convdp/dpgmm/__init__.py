"""PyTorch backend for the Dirichlet-process Gaussian mixture.

:class:`TorchBayesianGaussianMixture` fits exactly the variational model of
``sklearn.mixture.BayesianGaussianMixture(weight_concentration_prior_type=
"dirichlet_process")``: a truncated stick-breaking Dirichlet process over
``n_components`` components with Normal-Wishart priors on the component means
and precisions, and the same default priors, update equations and lower bound
as scikit-learn, but for one term: the E-step counts ``reg_covar`` as the M-step does
(``estep_reg_covar``, see the estimator), so that the bound rises at every iteration;
``estep_reg_covar=False`` gives scikit-learn's E-step.  It is faster because

* the E-step and the sufficient statistics are computed block by block with
  large matrix products (one ``[x, 1] @ [[P_1 ... P_K], [-mu_1 P_1 ...]]``
  product for all Mahalanobis distances; the scatter matrices as one ``A^T X``
  product, or, on a CPU once most responsibilities are exact zeros, one product per
  component over only its samples);
* it can work in float32 (the default) while the small per-component
  quantities (M-step, Cholesky factors, lower bound, accumulated statistics) are
  always float64;
* data are centred once, never copied again, and processed in bounded blocks
  (``chunk_size``), so memory stays bounded for very large ``n_samples``;
* for "full" covariance, work that provably cannot change the result beyond
  rounding is skipped: samples are visited grouped by their previous most
  probable component, scatter matrices whose total contribution is below 1e-3
  ulp of the prior's diagonal are not computed, and bitwise-identical components
  (e.g. emptied ones) share their Mahalanobis terms (see ``fit_stats_``);
* the default convergence criterion is per sample (see ``tol_per_sample``).

Accuracy: in float64, with ``estep_reg_covar=False``, the results equal scikit-learn's to
~1e-12 relative (with the E-step's ``reg_covar`` term, to ~1e-6 where every variance is well
above ``reg_covar``).  In
float32 the limit is the representation of the centred data: covariances of
components that are very narrow compared with their distance to the data mean
get relative errors ~ eps32 * (distance / width) where a block is scattered around
its mean (dense responsibilities, a GPU); scattered around the component's own centre
(the CPU's path once components separate), a cluster of identical samples (ReLU's
all-zero positions) has an exactly zero scatter.

Shapes: ``N`` = n_samples, ``D`` = n_features, ``K`` = n_components.

Layout: :mod:`.estimator` (the parameters and the scikit-learn API), :mod:`.fitting` (the
EM driver: restarts, adaptive truncation, iterations), :mod:`.estep` (E-step: weighted log
probabilities, pruning, responsibilities), :mod:`.stats` (sufficient statistics, data
blocks, initialisation), :mod:`.state` (the variational state, the M-step per covariance
type, the lower bound), :mod:`.moves` (merge, delete and reorder moves), :mod:`.validation`.
"""

from convdp.dpgmm.estimator import TorchBayesianGaussianMixture
from convdp.dpgmm.validation import OverflowInDtype

__all__ = ["OverflowInDtype", "TorchBayesianGaussianMixture"]
