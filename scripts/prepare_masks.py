"""Rule prepare_masks: a data set's part masks, aligned with its stored images."""

from convdp.atlas_jobs import prepare_masks
from convdp.pipeline import snakemake_job

with snakemake_job(snakemake):
    prepare_masks(
        snakemake.input.dataset,
        snakemake.params.folder,
        snakemake.params.size,
        snakemake.params.background,
        snakemake.output[0],
        images=snakemake.params.images,
        ignore=snakemake.params.ignore,
    )
