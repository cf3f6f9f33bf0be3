"""Rule aggregate: summary table and figures."""

from convdp.aggregate import aggregate
from convdp.pipeline import snakemake_job

with snakemake_job(snakemake):
    out = snakemake.output
    aggregate(
        snakemake.input.fits,
        snakemake.params.datasets,
        out.summary,
        {k: getattr(out, k) for k in ("clusters", "nmi", "label_maps", "heatmap", "comparison")},
        n_examples=snakemake.params.n_examples,
        mask_jsons=snakemake.input.masks,
        controls=snakemake.params.controls,
    )
