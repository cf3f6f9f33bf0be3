"""Rule aggregate: summary table and figures."""

from convdp.aggregate import aggregate
from convdp.pipeline import snakemake_job

with snakemake_job(snakemake):
    out = snakemake.output
    aggregate(
        snakemake.input.fits,
        snakemake.params.datasets,
        out.summary,
        {"clusters": out.clusters, "nmi": out.nmi, "label_maps": out.label_maps, "heatmap": out.heatmap},
        n_examples=snakemake.params.n_examples,
    )
