"""Rule label_activations: the labelling pass of a sample store (every fit, every image)."""

from convdp.labelling import label_pass
from convdp.pipeline import snakemake_job

with snakemake_job(snakemake):
    label_pass(
        snakemake.input.weights,
        snakemake.input.meta,
        snakemake.input.dataset,
        snakemake.input.manifest,
        dict(zip(snakemake.params.fit_keys, snakemake.input.fits, strict=True)),
        snakemake.output.manifest,
        predict_device=snakemake.params.predict_device,
        code=snakemake.params.code,
        **snakemake.params.extract,
    )
