"""Rule choose_smoothing: the σ of each layer smoothed with extract.smooth auto."""

from convdp.pipeline import choose_smoothing, snakemake_job

with snakemake_job(snakemake):
    choose_smoothing(
        snakemake.input.weights,
        snakemake.input.meta,
        snakemake.input.dataset,
        snakemake.params.layers,
        snakemake.output[0],
        model_name=snakemake.wildcards.model,
        device=snakemake.params.device,
    )
