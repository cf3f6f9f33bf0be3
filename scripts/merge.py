"""Rules merge_dpgmm and merge_baseline: join a split fit's labelled parts into its outputs
(with a sample store: take the labels from the labelling pass instead)."""

from pathlib import Path

from convdp.labelling import fit_key, merge_labelled
from convdp.pipeline import merge_parts, snakemake_job

with snakemake_job(snakemake):
    inp, wc = snakemake.input, snakemake.wildcards
    if "labels" in inp.keys():
        method = Path(snakemake.output.npz).parts[1]  # results/{dpgmm,baseline}/...
        merge_labelled(
            inp.model,
            inp.model_json,
            inp.labels,
            fit_key(method, wc.layer, wc.mode),
            inp.dataset,
            snakemake.output.npz,
            snakemake.output.json,
            context=snakemake.params.context,
        )
    else:
        merge_parts(
            inp.model,
            inp.model_json,
            list(inp.parts),
            inp.dataset,
            snakemake.output.npz,
            snakemake.output.json,
            context=snakemake.params.context,
        )
