"""Rule transfer_scores: per-layer domain shift, cluster usage and linear probe of a target."""

from convdp.pipeline import snakemake_job, transfer_scores

with snakemake_job(snakemake):
    inp, p = snakemake.input, snakemake.params
    layers = p.layers
    s = p.settings
    transfer_scores(
        inp.source_manifest,
        inp.target_manifest,
        dict(zip(layers, inp.source_fits, strict=True)),
        dict(zip(layers, inp.target_fits, strict=True)),
        inp.dataset,
        layers,
        snakemake.output.scores,
        snakemake.output.maps,
        mode=s["mode"],
        target_image_fits=dict(zip(layers, inp.get("image_fits", []), strict=False)),
        max_samples=s["max_samples"],
        probe_folds=s["probe_folds"],
        weight_threshold=p.weight_threshold,
        n_examples=s["n_examples"],
        seed=p.seed,
        context={"model": snakemake.wildcards.model, "dataset": snakemake.wildcards.dataset,
                 "source": p.source},
    )
