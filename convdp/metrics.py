"""Scores of a clustering: against class labels (used only where labels exist), and the
effective number of clusters of its weights."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def purity(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Fraction of samples whose cluster's majority class is their own class."""
    table = contingency(labels_true, labels_pred)[0]
    return float(table.max(axis=0).sum() / max(table.sum(), 1))


def contingency(labels_true: np.ndarray, labels_pred: np.ndarray):
    """(classes × clusters) count table, with the class and cluster values of its rows/columns."""
    classes, ci = np.unique(labels_true, return_inverse=True)
    clusters, ki = np.unique(labels_pred, return_inverse=True)
    table = np.zeros((len(classes), len(clusters)), np.int64)
    np.add.at(table, (ci, ki), 1)
    return table, classes, clusters


def cluster_scores(labels_true: np.ndarray, labels_pred: np.ndarray) -> dict[str, float]:
    """NMI, adjusted Rand index and purity of ``labels_pred`` against ``labels_true``; all
    three NaN where ``labels_true`` holds fewer than two classes (one cluster would score 1,
    any split 0: nothing about the clusters)."""
    labels_true = np.asarray(labels_true).ravel()
    labels_pred = np.asarray(labels_pred).ravel()
    if labels_true.shape != labels_pred.shape:
        raise ValueError(f"{labels_true.shape[0]} class labels for {labels_pred.shape[0]} samples")
    if len(np.unique(labels_true)) < 2:
        return {"nmi": math.nan, "ari": math.nan, "purity": math.nan}
    return {
        "nmi": float(normalized_mutual_info_score(labels_true, labels_pred)),
        "ari": float(adjusted_rand_score(labels_true, labels_pred)),
        "purity": purity(labels_true, labels_pred),
    }


def is_saturated(n_active: int, truncation: int, grow_at: float) -> bool:
    """Whether the truncation may have bound a fit's count: more than ``grow_at`` of its
    components occupied, or all of them (so that ``grow_at`` 1 still flags a full one)."""
    return bool(n_active > grow_at * truncation or n_active >= truncation)


def effective_number(weights: np.ndarray) -> float:
    """exp(entropy) of mixing weights: the number of equally weighted clusters that would be
    as spread out (a count that small leftover components barely move)."""
    w = np.asarray(weights, np.float64)
    w = w[w > 0] / w.sum()
    return float(np.exp(-np.sum(w * np.log(w))))
