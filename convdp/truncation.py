"""Does a layer's cluster count come from the data or from the settings? A sweep of the
DPGMM's truncation level on one layer, and the comparison the workflow's claim rests on.

With merge moves and adaptive truncation (``dpgmm.merge``, ``dpgmm.max_components``) the
count should not move when ``n_components`` does; without them it follows the truncation.
``benchmarks/truncation.py`` prints the sweep for every layer of the default run.
"""

from __future__ import annotations

import time

from convdp.cluster import fit_model

#: The settings that made the count follow the truncation (no merges, no growth; scikit-learn's
#: K-means start).
FIXED_TRUNCATION = {"merge": False, "max_components": None, "restarts": 1, "kmeans_max_iter": 300}


def truncation_sweep(array, *, layer: str, mode: str, params: dict, truncations,
                     seed: int = 0) -> list[dict]:
    """Fit the layer's DPGMM once per truncation level (``params`` as the workflow's:
    ``{"preprocess": ..., "dpgmm": ...}``); one record per level with clusters kept,
    effective number, truncation finally used, saturated, the comparable bound per sample
    (``elbo_per_sample``) and seconds."""
    rows = []
    for k in truncations:
        # the truncation's effect alone: no check fits (half the samples, another seed)
        dp = params["dpgmm"] | {"n_components": int(k), "sample_check": False,
                                "seed_check": False}
        start = time.perf_counter()
        _, rec = fit_model(array, layer=layer, mode=mode, method="dpgmm",
                           params={"preprocess": params["preprocess"], "dpgmm": dp}, seed=seed)
        rows.append({
            "n_components": int(k),
            "clusters_kept": rec["clusters_kept"],
            "clusters_effective": rec["clusters_effective"],
            "truncation": rec["truncation"],
            "saturated": rec["saturated"],
            "elbo_per_sample": rec.get("elbo_per_sample", float("nan")),
            "seconds": time.perf_counter() - start,
        })
    return rows


def relative_change(a: float, b: float) -> float:
    """|a - b| relative to the larger magnitude (0 when both are 0)."""
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale else 0.0


def invariance(low: dict, high: dict) -> dict:
    """How much the count and the bound moved between two sweep records (e.g. 40 and 80):
    relative change of clusters kept and of the bound per sample, and whether either fit was
    saturated (then the comparison says nothing)."""
    return {
        "kept_change": relative_change(low["clusters_kept"], high["clusters_kept"]),
        "bound_change": relative_change(low["elbo_per_sample"], high["elbo_per_sample"]),
        "saturated": bool(low["saturated"] or high["saturated"]),
    }
