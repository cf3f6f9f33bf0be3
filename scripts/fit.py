"""Rules fit_dpgmm and fit_baseline: cluster one layer in one mode (with a sample store: write
the fit's outputs from its model and the labelling pass's labels)."""

from convdp.labelling import fit_key, merge_labelled
from convdp.pipeline import fit, snakemake_job

with snakemake_job(snakemake):
    inp, wc = snakemake.input, snakemake.wildcards
    if "labels" in inp.keys():
        merge_labelled(
            inp.model,
            inp.model_json,
            inp.labels,
            fit_key(snakemake.params.method, wc.layer, wc.mode),
            inp.dataset,
            snakemake.output.npz,
            snakemake.output.json,
            context=snakemake.params.context,
        )
    else:
        fit(
            inp.manifest,
            inp.dataset,
            wc.layer,
            wc.mode,
            snakemake.params.method,
            snakemake.params.params,
            snakemake.output.npz,
            snakemake.output.json,
            seed=snakemake.params.seed,
            context=snakemake.params.context,
        )
