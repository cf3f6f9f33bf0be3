"""Rule transfer_benchmark: each score against the retraining accuracy, over every target."""

from convdp.pipeline import snakemake_job
from convdp.transfer.benchmark import benchmark_job

with snakemake_job(snakemake):
    inp, out, p = snakemake.input, snakemake.output, snakemake.params
    benchmark_job(
        inp.tables,
        inp.summaries,
        out.pairs,
        out.correlations,
        out.recommended,
        out.summary,
        out.figure,
        accuracy_tolerance=p.accuracy_tolerance,
        bootstrap=p.bootstrap,
        seed=p.seed,
    )
