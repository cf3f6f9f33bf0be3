"""Rule download (a localrule: on a cluster it runs on the submit host, which has network)."""

from convdp.pipeline import download, snakemake_job

with snakemake_job(snakemake):
    download(snakemake.params.spec, snakemake.params.data_root, snakemake.output[0])
