"""Rule mask_agreement: one layer's label maps against the part masks."""

from convdp.atlas_jobs import mask_agreement
from convdp.pipeline import snakemake_job

with snakemake_job(snakemake):
    mask_agreement(
        snakemake.input.fit,
        snakemake.input.masks,
        snakemake.output.csv,
        snakemake.output.json,
        context=snakemake.params.context,
        weight_threshold=snakemake.params.weight_threshold,
        folder=snakemake.params.folder,
        meta_json=snakemake.input.meta,
        layer=snakemake.wildcards.layer,
    )
