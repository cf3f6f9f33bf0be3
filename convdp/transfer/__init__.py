"""Which layers transfer: a per-layer verdict from the DPGMM fits, checked against retraining.

For a net trained on a *source* data set and a *target* data set it was not trained on,
each configured layer gets, from unlabelled activations only:

- **domain shift**: the mean log-likelihood per sample of the target's activations under
  the DPGMM fitted on the source, minus that of *held-out* source activations (samples
  that are not in the source fit's ``fit_index``). The fitted estimator (either backend) and
  the fit's preprocessing are rebuilt from the arrays saved in the fit's ``.npz`` (no
  pickles; :mod:`convdp.fitted`). The log-likelihood is ``score_samples`` of the variational
  model (scikit-learn's definition: expected log-density under the variational posterior; the
  torch backend's also counts ``reg_covar``, see ``estep_reg_covar``). 0 means the target looks like unseen source data; more negative means less
  transferable. ``shift_z`` is the same difference in units of the standard deviation of
  the held-out source log-likelihoods (an effect size, comparable across layers);
- **coverage** (``cover``, ``cover_z``): the same shift once the mixing weights are refitted
  to each side (EM on the weights of the source's kept clusters alone): a target that uses
  the source's clusters in other proportions keeps it near 0, one whose samples fall between
  the source's clusters does not;
- **cluster usage**: which of the source's clusters the target's samples fall in: how many
  hold more than ``weight_threshold`` of the target's samples, and the Jensen–Shannon
  divergence (base 2, 0…1) between the target's and the source's cluster-usage
  distributions; and how the target's own clusters relate to the source's (NMI);
- clusters kept on each side and the NMI of the target's own clusters with the target's
  classes (read from the fits' JSON records).

And, using the target's labels:

- **linear probe**: cross-validated (stratified, seeded) accuracy of a logistic regression
  on the spatially averaged layer features of the target images;
- **retraining** (the ground truth; Yosinski et al. 2014, "AnB"): for each cut ``n = 0…L``
  the parameters of every module up to and including the n-th configured layer keep the
  source weights and are frozen; everything above is re-initialised (a new head for the
  target's classes) and trained on the target for ``epochs`` epochs. The held-out target
  accuracy is recorded per cut and seed (``n = 0`` is training from scratch).

The **recommended cut** uses the unlabelled score only — by default the shift each layer
adds (:func:`recommend_cut_by_step`, ``transfer.rule: step``), or the shift's level
(:func:`recommend_cut`, ``transfer.rule: level``) — and the
Spearman rank correlation across layers between each score and the retraining accuracy
at that layer's cut says how well the unlabelled score predicts the real outcome.

Mode: by default the *position*-mode fits are scored (``transfer.mode``): the paper's mode,
many samples per image, so a source fit capped at ``preprocess.max_samples`` leaves plenty of
held-out positions, and it gives the label maps. Held-out positions come from the same images
as some fitted ones, so the held-out reference is slightly optimistic (the shift slightly more
negative) than a fresh-image reference would be. In *image* mode, and wherever fewer than
:data:`MIN_HELDOUT` samples are held out, the fitted samples themselves are the reference
(``source_reference = "in-sample"``), which biases the shift towards more negative values.

Beside them in the table: the baselines (:mod:`~convdp.transfer.baselines`: depth alone, the
squared MMD between source and target activations, LogME and H-score of the target's pooled
features) and the price of each cut (:mod:`~convdp.transfer.cost`: parameters retrained, the
training FLOPs per image that freezing saves, counted from the net); the verdict's
``decision`` reads "freeze up to X: retrain Y% of the parameters, Z% of the training compute".

The package's modules: :mod:`~convdp.transfer.scores` (the scores, from the activations and
the saved fits), :mod:`~convdp.transfer.baselines`, :mod:`~convdp.transfer.cost`,
:mod:`~convdp.transfer.retrain` (AnB), :mod:`~convdp.transfer.verdict` (records in, table
out), :mod:`~convdp.transfer.plots` (the figures) and :mod:`~convdp.transfer.benchmark` (every
score against retraining over a model's targets). The workflow's jobs that run them are
``transfer_scores``, ``transfer_retrain`` and ``transfer_verdict`` in :mod:`convdp.pipeline`
and :func:`convdp.transfer.benchmark.benchmark_job`.
"""

from convdp.samples import read_samples, subsample
from convdp.transfer.baselines import hscore, linear_cka, logme, mmd2
from convdp.transfer.cost import cut_costs, price
from convdp.transfer.plots import plot_transfer, plot_transfer_label_maps, plot_verdict
from convdp.transfer.retrain import anb_retrain, frozen_parameters
from convdp.transfer.scores import (
    MIN_HELDOUT,
    coverage_shift,
    js_divergence,
    layer_shift,
    linear_probe,
    load_fit,
    own_to_source,
    pooled_features,
    refitted_log_likelihood,
    score_layer,
)
from convdp.transfer.verdict import (
    COLUMNS,
    MIN_SCORED,
    best_retrain_cut,
    level_passes,
    recommend_cut,
    recommend_cut_by_step,
    spearman,
    verdict,
)

__all__ = [
    "COLUMNS", "MIN_HELDOUT", "MIN_SCORED", "anb_retrain", "best_retrain_cut", "coverage_shift",
    "cut_costs", "frozen_parameters", "hscore", "linear_cka", "logme", "mmd2", "price",
    "js_divergence", "layer_shift", "level_passes", "linear_probe", "load_fit", "own_to_source",
    "plot_transfer", "plot_transfer_label_maps", "plot_verdict", "pooled_features",
    "read_samples", "recommend_cut", "recommend_cut_by_step", "refitted_log_likelihood",
    "score_layer", "spearman", "subsample", "verdict",
]
