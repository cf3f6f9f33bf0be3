"""Rule prepare_dataset: one data set to Zarr."""

from convdp.pipeline import prepare_dataset, snakemake_job

with snakemake_job(snakemake):
    prepare_dataset(snakemake.params.spec, snakemake.output[0], snakemake.params.data_root)
