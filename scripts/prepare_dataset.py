"""Rule prepare_dataset: one data set to Zarr."""

from convdp.pipeline import prepare_dataset, snakemake_job

with snakemake_job(snakemake):
    p = snakemake.params
    prepare_dataset(p.spec, snakemake.output[0], p.data_root, p.seed)
