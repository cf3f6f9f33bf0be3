"""Rule atlas: one layer's cluster atlas (most typical positions of each cluster)."""

from convdp.atlas_jobs import cluster_atlas
from convdp.pipeline import snakemake_job

with snakemake_job(snakemake):
    wc = snakemake.wildcards
    cluster_atlas(
        snakemake.input.fit,
        snakemake.input.manifest,
        snakemake.input.dataset,
        snakemake.input.meta,
        wc.layer,
        snakemake.output.png,
        snakemake.output.json,
        n_exemplars=snakemake.params.atlas["n_exemplars"],
        max_clusters=snakemake.params.atlas["max_clusters"],
        weight_threshold=snakemake.params.weight_threshold,
        title=f"{wc.model} on {wc.dataset}, {wc.layer}",
    )
