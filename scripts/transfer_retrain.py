"""Rule transfer_retrain: Yosinski's AnB on the target, one run per cut and seed."""

from convdp.io import write_json
from convdp.pipeline import snakemake_job, transfer_retrain

with snakemake_job(snakemake):
    p = snakemake.params
    if p.retrain:
        transfer_retrain(
            snakemake.input.weights,
            snakemake.input.meta,
            snakemake.input.dataset,
            p.layers,
            snakemake.output[0],
            epochs=p.epochs,
            seeds=p.seeds,
            train=p.train,
            device=p.device,
        )
    else:
        write_json(snakemake.output[0], {"cuts": [], "runs": [], "epochs": p.epochs,
                                         "seeds": p.seeds, "skipped": "transfer.retrain is false"})
