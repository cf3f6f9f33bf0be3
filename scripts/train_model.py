"""Rule train_model: train the net (or load its weights) and describe it."""

from convdp.pipeline import prepare_model, snakemake_job

with snakemake_job(snakemake):
    prepare_model(
        snakemake.params.spec,
        snakemake.output.weights,
        snakemake.output.meta,
        train_data=snakemake.input.get("train_data"),
        seed=snakemake.params.seed,
        device=snakemake.params.device,
    )
