# One job per model × data set × layer × mode: independent, so they run in parallel.


rule fit_dpgmm:
    input:
        manifest="results/activations/{model}/{dataset}.json",
        dataset="results/data/{dataset}.zarr",
    output:
        npz="results/dpgmm/{model}/{dataset}/{layer}/{mode}.npz",
        json="results/dpgmm/{model}/{dataset}/{layer}/{mode}.json",
    log:
        "logs/fit_dpgmm/{model}/{dataset}/{layer}/{mode}.log",
    benchmark:
        "benchmarks/runs/fit_dpgmm/{model}/{dataset}/{layer}/{mode}.tsv"
    conda:
        "../envs/cluster.yaml"
    threads: 1
    resources:
        mem_mb=fit_mem_mb,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        method="dpgmm",
        params={k: config[k] for k in ("preprocess", "dpgmm", "baseline")},
        seed=config["seed"],
        context=fit_context,
    script:
        "../scripts/fit.py"


rule fit_baseline:
    input:
        manifest="results/activations/{model}/{dataset}.json",
        dataset="results/data/{dataset}.zarr",
    output:
        npz="results/baseline/{model}/{dataset}/{layer}/{mode}.npz",
        json="results/baseline/{model}/{dataset}/{layer}/{mode}.json",
    log:
        "logs/fit_baseline/{model}/{dataset}/{layer}/{mode}.log",
    benchmark:
        "benchmarks/runs/fit_baseline/{model}/{dataset}/{layer}/{mode}.tsv"
    conda:
        "../envs/cluster.yaml"
    threads: 1
    resources:
        mem_mb=fit_mem_mb,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        method="baseline",
        params={k: config[k] for k in ("preprocess", "dpgmm", "baseline")},
        seed=config["seed"],
        context=fit_context,
    script:
        "../scripts/fit.py"
