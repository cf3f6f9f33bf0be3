"""Rule transfer_verdict: the per-layer verdict table, its summary and the two figures."""

from convdp.pipeline import snakemake_job, transfer_verdict

with snakemake_job(snakemake):
    out = snakemake.output
    transfer_verdict(
        snakemake.input.scores,
        snakemake.input.retrain,
        snakemake.input.maps,
        out.table,
        out.summary,
        out.figure,
        out.label_maps,
        rule=snakemake.params.rule,
        step_tolerance=snakemake.params.step_tolerance,
        shift_tolerance=snakemake.params.shift_tolerance,
        accuracy_tolerance=snakemake.params.accuracy_tolerance,
        control_scores_json=snakemake.input.get("control_scores"),
        control_retrain_json=snakemake.input.get("control_retrain"),
    )
