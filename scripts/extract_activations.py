"""Rule extract_activations: every configured layer of one net over one data set, to Zarr."""

from convdp.pipeline import extract, snakemake_job

with snakemake_job(snakemake):
    extract(
        snakemake.input.weights,
        snakemake.input.meta,
        snakemake.input.dataset,
        snakemake.params.layers,
        snakemake.output.manifest,
        model_name=snakemake.wildcards.model,
        source=snakemake.input.source,
        smoothing=snakemake.input.smoothing or None,
        code=snakemake.params.code,
        **snakemake.params.extract,
    )
