"""Rule transfer_retrain: Yosinski's AnB on the target, one run per cut and seed, and the
price of each cut (parameters retrained, training compute saved)."""

import logging

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
    if not record.get("costs"):  # retraining skipped: the price of each cut all the same
        try:
            meta = read_json(snakemake.input.meta)
            record["costs"] = dataset_cut_costs(meta, snakemake.input.dataset, p.layers)
        except Exception as err:  # the price is extra information; never fail the job on it
            logging.getLogger("convdp").warning("could not count the cuts' costs: %s", err)
        write_json(snakemake.output[0], record)
