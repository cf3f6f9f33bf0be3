# Which layers transfer from a model's source data set to each target data set
# (convdp/transfer/): unlabelled scores from the DPGMM fits, the ground truth from
# retraining (Yosinski's AnB), and the verdict: a table, a figure, a label-map figure.


localrules:
    transfer_verdict,


rule transfer_scores:
    input:
        unpack(transfer_scores_input),
    output:
        scores="results/transfer/{model}/{dataset}/scores.json",
        maps="results/transfer/{model}/{dataset}/label_maps.npz",
    log:
        "logs/transfer_scores/{model}/{dataset}.log",
    benchmark:
        "logs/benchmarks/transfer_scores/{model}/{dataset}.tsv"
    conda:
        "../envs/cluster.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 3000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        code=code_of("transfer_scores.py"),
        layers=lambda wc: MODELS[wc.model]["layers"],
        source=lambda wc: source_of(wc.model),
        settings=transfer_score_settings(),
        weight_threshold=config["dpgmm"]["weight_threshold"],
        seed=config["seed"],
        upstream=activation_upstream,
    script:
        "../scripts/transfer_scores.py"


rule transfer_retrain:
    input:
        weights="results/models/{model}.pt",
        meta="results/models/{model}.json",
        dataset="results/data/{dataset}.zarr",
    output:
        "results/transfer/{model}/{dataset}/retrain.json",
    log:
        "logs/transfer_retrain/{model}/{dataset}.log",
    benchmark:
        "logs/benchmarks/transfer_retrain/{model}/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=1 if uses_gpu() else 0,
    params:
        code=code_of("transfer_retrain.py"),
        layers=lambda wc: MODELS[wc.model]["layers"],
        retrain=config["transfer"]["retrain"],
        epochs=config["transfer"]["epochs"],
        seeds=transfer_seeds(),
        train=transfer_train,
        device=config["extract"]["device"],
        upstream=upstream,
    script:
        "../scripts/transfer_retrain.py"


rule transfer_verdict:
    input:
        unpack(transfer_verdict_input),
    output:
        table=report(
            "results/transfer/{model}/{dataset}.csv",
            caption="../report/transfer_table.rst",
            category="Transfer",
            subcategory="{model}: {dataset}",
        ),
        summary="results/transfer/{model}/{dataset}.json",
        figure=report(
            "results/figures/transfer_{model}_{dataset}.png",
            caption="../report/transfer.rst",
            category="Transfer",
            subcategory="{model}: {dataset}",
        ),
        label_maps=report(
            "results/figures/transfer_label_maps_{model}_{dataset}.png",
            caption="../report/transfer_label_maps.rst",
            category="Transfer",
            subcategory="{model}: {dataset}",
        ),
    log:
        "logs/transfer_verdict/{model}/{dataset}.log",
    conda:
        "../envs/report.yaml"
    params:
        code=code_of("transfer_verdict.py"),
        rule=config["transfer"]["rule"],
        step_tolerance=config["transfer"]["step_tolerance"],
        shift_tolerance=config["transfer"]["shift_tolerance"],
        accuracy_tolerance=config["transfer"]["accuracy_tolerance"],
        made_from=verdict_sources,
    script:
        "../scripts/transfer_verdict.py"


# The transfer benchmark (transfer.benchmark: config/transfer_bench.yaml): how well each score
# orders the (target, cut) pairs like retraining does, across every target of a model.


rule transfer_benchmark:
    input:
        unpack(benchmark_input),
    output:
        pairs="results/transfer_benchmark/{model}/pairs.csv",
        correlations=report(
            "results/transfer_benchmark/{model}/correlations.csv",
            caption="../report/transfer_benchmark.rst",
            category="Transfer",
            subcategory="{model}: benchmark",
        ),
        recommended="results/transfer_benchmark/{model}/recommended.csv",
        summary="results/transfer_benchmark/{model}/summary.json",
        figure=report(
            "results/figures/transfer_benchmark_{model}.png",
            caption="../report/transfer_benchmark.rst",
            category="Transfer",
            subcategory="{model}: benchmark",
        ),
    log:
        "logs/transfer_benchmark/{model}.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_of("transfer_benchmark.py"),
        accuracy_tolerance=config["transfer"]["accuracy_tolerance"],
        bootstrap=config["transfer"]["bootstrap"],
        seed=config["seed"],
    script:
        "../scripts/transfer_benchmark.py"
