"""Rules fit_dpgmm and fit_baseline: cluster one layer in one mode."""

from convdp.pipeline import fit, snakemake_job

with snakemake_job(snakemake):
    fit(
        snakemake.input.manifest,
        snakemake.input.dataset,
        snakemake.wildcards.layer,
        snakemake.wildcards.mode,
        snakemake.params.method,
        snakemake.params.params,
        snakemake.output.npz,
        snakemake.output.json,
        seed=snakemake.params.seed,
        context=snakemake.params.context,
    )
