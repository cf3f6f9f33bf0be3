"""Rule transfer_retrain: Yosinski's AnB on the target, one run per cut and seed, and the
price of each cut (parameters retrained, training compute saved)."""

from convdp.io import read_json, write_json
from convdp.pipeline import snakemake_job, transfer_retrain
from convdp.transfer.cost import dataset_cut_costs

with snakemake_job(snakemake):
    p = snakemake.params
    if p.retrain:
        record = transfer_retrain(
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
        record = {"cuts": [], "runs": [], "epochs": p.epochs, "seeds": p.seeds,
                  "skipped": "transfer.retrain is false"}
    if not record.get("costs"):
        meta = read_json(snakemake.input.meta)
        record["costs"] = dataset_cut_costs(meta, snakemake.input.dataset, p.layers)
        write_json(snakemake.output[0], record)
