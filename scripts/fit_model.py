"""Rules fit_dpgmm_model and fit_baseline_model: fit one layer, save the model for label jobs."""

from convdp.pipeline import fit_model, snakemake_job

with snakemake_job(snakemake):
    fit_model(
        snakemake.input.manifest,
        snakemake.wildcards.layer,
        snakemake.wildcards.mode,
        snakemake.params.method,
        snakemake.params.params,
        snakemake.output.npz,
        snakemake.output.json,
        seed=snakemake.params.seed,
    )
