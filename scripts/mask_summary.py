"""Rule mask_summary: every layer's mask agreement, and the figure against depth."""

from convdp.atlas_jobs import mask_summary
from convdp.pipeline import snakemake_job

with snakemake_job(snakemake):
    mask_summary(list(snakemake.input), snakemake.output.csv, snakemake.output.figure)
