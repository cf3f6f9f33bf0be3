"""Rules label_dpgmm and label_baseline: label one range of a layer's images with a saved model."""

from convdp.pipeline import label_part, snakemake_job

with snakemake_job(snakemake):
    label_part(
        snakemake.input.manifest,
        snakemake.input.model,
        snakemake.wildcards.layer,
        snakemake.wildcards.mode,
        int(snakemake.wildcards.part),
        int(snakemake.wildcards.parts),
        snakemake.output.npz,
    )
