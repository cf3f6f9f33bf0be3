"""Rules merge_dpgmm and merge_baseline: join a split fit's labelled parts into its outputs."""

from convdp.pipeline import merge_parts, snakemake_job

with snakemake_job(snakemake):
    merge_parts(
        snakemake.input.model,
        snakemake.input.model_json,
        list(snakemake.input.parts),
        snakemake.input.dataset,
        snakemake.output.npz,
        snakemake.output.json,
        context=snakemake.params.context,
    )
