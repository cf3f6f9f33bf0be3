# One job per model × data set × layer × mode: independent, so they run in parallel.
# A layer with label_jobs > 1 gets a *_model job, that many label_* jobs and a merge_* job
# instead (same {mode}.npz/.json); the layer wildcard's constraints pick the rules.


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
    wildcard_constraints:
        layer=layers_labelled(split=False),
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
    wildcard_constraints:
        layer=layers_labelled(split=False),
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


rule fit_dpgmm_model:
    input:
        manifest="results/activations/{model}/{dataset}.json",
    output:
        npz="results/dpgmm/{model}/{dataset}/{layer}/{mode}.model.npz",
        json="results/dpgmm/{model}/{dataset}/{layer}/{mode}.model.json",
    log:
        "logs/fit_dpgmm_model/{model}/{dataset}/{layer}/{mode}.log",
    benchmark:
        "benchmarks/runs/fit_dpgmm_model/{model}/{dataset}/{layer}/{mode}.tsv"
    wildcard_constraints:
        layer=layers_labelled(split=True),
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
    script:
        "../scripts/fit_model.py"


rule label_dpgmm:
    input:
        manifest="results/activations/{model}/{dataset}.json",
        model="results/dpgmm/{model}/{dataset}/{layer}/{mode}.model.npz",
    output:
        npz=temp(
            "results/dpgmm/{model}/{dataset}/{layer}/{mode}.part{part}of{parts}.npz"
        ),
    log:
        "logs/label_dpgmm/{model}/{dataset}/{layer}/{mode}.part{part}of{parts}.log",
    benchmark:
        "benchmarks/runs/label_dpgmm/{model}/{dataset}/{layer}/{mode}.part{part}of{parts}.tsv"
    wildcard_constraints:
        layer=layers_labelled(split=True),
        part="[0-9]+",
        parts="[0-9]+",
    conda:
        "../envs/cluster.yaml"
    threads: 1
    resources:
        mem_mb=label_mem_mb,
        runtime=lambda wc, attempt: 60 * attempt,
    script:
        "../scripts/label.py"


rule merge_dpgmm:
    input:
        model="results/dpgmm/{model}/{dataset}/{layer}/{mode}.model.npz",
        model_json="results/dpgmm/{model}/{dataset}/{layer}/{mode}.model.json",
        parts=label_parts("dpgmm"),
        dataset="results/data/{dataset}.zarr",
    output:
        npz="results/dpgmm/{model}/{dataset}/{layer}/{mode}.npz",
        json="results/dpgmm/{model}/{dataset}/{layer}/{mode}.json",
    log:
        "logs/merge_dpgmm/{model}/{dataset}/{layer}/{mode}.log",
    wildcard_constraints:
        layer=layers_labelled(split=True),
    conda:
        "../envs/cluster.yaml"
    threads: 1
    resources:
        mem_mb=merge_mem_mb,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        context=fit_context,
    script:
        "../scripts/merge.py"


rule fit_baseline_model:
    input:
        manifest="results/activations/{model}/{dataset}.json",
    output:
        npz="results/baseline/{model}/{dataset}/{layer}/{mode}.model.npz",
        json="results/baseline/{model}/{dataset}/{layer}/{mode}.model.json",
    log:
        "logs/fit_baseline_model/{model}/{dataset}/{layer}/{mode}.log",
    benchmark:
        "benchmarks/runs/fit_baseline_model/{model}/{dataset}/{layer}/{mode}.tsv"
    wildcard_constraints:
        layer=layers_labelled(split=True),
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
    script:
        "../scripts/fit_model.py"


rule label_baseline:
    input:
        manifest="results/activations/{model}/{dataset}.json",
        model="results/baseline/{model}/{dataset}/{layer}/{mode}.model.npz",
    output:
        npz=temp(
            "results/baseline/{model}/{dataset}/{layer}/{mode}.part{part}of{parts}.npz"
        ),
    log:
        "logs/label_baseline/{model}/{dataset}/{layer}/{mode}.part{part}of{parts}.log",
    benchmark:
        "benchmarks/runs/label_baseline/{model}/{dataset}/{layer}/{mode}.part{part}of{parts}.tsv"
    wildcard_constraints:
        layer=layers_labelled(split=True),
        part="[0-9]+",
        parts="[0-9]+",
    conda:
        "../envs/cluster.yaml"
    threads: 1
    resources:
        mem_mb=label_mem_mb,
        runtime=lambda wc, attempt: 60 * attempt,
    script:
        "../scripts/label.py"


rule merge_baseline:
    input:
        model="results/baseline/{model}/{dataset}/{layer}/{mode}.model.npz",
        model_json="results/baseline/{model}/{dataset}/{layer}/{mode}.model.json",
        parts=label_parts("baseline"),
        dataset="results/data/{dataset}.zarr",
    output:
        npz="results/baseline/{model}/{dataset}/{layer}/{mode}.npz",
        json="results/baseline/{model}/{dataset}/{layer}/{mode}.json",
    log:
        "logs/merge_baseline/{model}/{dataset}/{layer}/{mode}.log",
    wildcard_constraints:
        layer=layers_labelled(split=True),
    conda:
        "../envs/cluster.yaml"
    threads: 1
    resources:
        mem_mb=merge_mem_mb,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        context=fit_context,
    script:
        "../scripts/merge.py"
