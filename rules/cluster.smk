# One job per model × data set × layer × mode: independent, so they run in parallel.
# The DPGMM rules are written once; the baseline's are the same rules with their own paths
# (`use rule ... with:`) and their own section of the config as params, so editing one
# method's settings reruns only that method's fits.
#
# Which rules write a model's layer's {mode}.npz/.json (the model wildcard's constraint,
# models_labelled in common.smk, decides from label_jobs of that model.layer or layer):
# - label_jobs 1 (the default): fit_{method} fits and labels every image in one job;
# - label_jobs n > 1: fit_{method}_model fits, n label_{method} jobs label one range of
#   images each, merge_{method} writes the same {mode}.npz/.json as an unsplit fit;
# - a sample store (extract.store; rules/label.smk): fit_{method}_model fits on the stored
#   samples, label_activations labels every fit, and fit_{method} (merge_{method} for a split
#   layer) writes the same {mode}.npz/.json from those labels.


rule fit_dpgmm:
    input:
        unpack(fit_input("dpgmm", split=False)),
    output:
        npz="results/dpgmm/{model}/{dataset}/{layer}/{mode}.npz",
        json="results/dpgmm/{model}/{dataset}/{layer}/{mode}.json",
    log:
        "logs/fit_dpgmm/{model}/{dataset}/{layer}/{mode}.log",
    benchmark:
        "logs/benchmarks/fit_dpgmm/{model}/{dataset}/{layer}/{mode}.tsv"
    wildcard_constraints:
        model=models_labelled(split=False),
    conda:
        "../envs/cluster.yaml"
    threads: 1
    resources:
        mem_mb=fit_mem_mb,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=1 if fits_use_gpu() else 0,
    params:
        code=code_of("fit.py"),
        method="dpgmm",
        params=fit_params("dpgmm"),
        seed=config["seed"],
        context=fit_context,
        upstream=activation_upstream,
    script:
        "../scripts/fit.py"


use rule fit_dpgmm as fit_baseline with:
    input:
        unpack(fit_input("baseline", split=False)),
    output:
        npz="results/baseline/{model}/{dataset}/{layer}/{mode}.npz",
        json="results/baseline/{model}/{dataset}/{layer}/{mode}.json",
    log:
        "logs/fit_baseline/{model}/{dataset}/{layer}/{mode}.log",
    benchmark:
        "logs/benchmarks/fit_baseline/{model}/{dataset}/{layer}/{mode}.tsv"
    # scikit-learn's mixtures: on the CPU whatever dpgmm.device says
    resources:
        mem_mb=fit_mem_mb,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=0,
    params:
        method="baseline",
        params=fit_params("baseline"),
        seed=config["seed"],
        context=fit_context,
        upstream=activation_upstream,


rule fit_dpgmm_model:
    input:
        manifest="results/activations/{model}/{dataset}.json",
    output:
        npz="results/dpgmm/{model}/{dataset}/{layer}/{mode}.model.npz",
        json="results/dpgmm/{model}/{dataset}/{layer}/{mode}.model.json",
    log:
        "logs/fit_dpgmm_model/{model}/{dataset}/{layer}/{mode}.log",
    benchmark:
        "logs/benchmarks/fit_dpgmm_model/{model}/{dataset}/{layer}/{mode}.tsv"
    conda:
        "../envs/cluster.yaml"
    threads: 1
    resources:
        mem_mb=fit_mem_mb,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=1 if fits_use_gpu() else 0,
    params:
        code=code_of("fit_model.py"),
        method="dpgmm",
        params=fit_params("dpgmm"),
        seed=config["seed"],
        upstream=activation_upstream,
    script:
        "../scripts/fit_model.py"


use rule fit_dpgmm_model as fit_baseline_model with:
    output:
        npz="results/baseline/{model}/{dataset}/{layer}/{mode}.model.npz",
        json="results/baseline/{model}/{dataset}/{layer}/{mode}.model.json",
    log:
        "logs/fit_baseline_model/{model}/{dataset}/{layer}/{mode}.log",
    benchmark:
        "logs/benchmarks/fit_baseline_model/{model}/{dataset}/{layer}/{mode}.tsv"
    resources:
        mem_mb=fit_mem_mb,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=0,
    params:
        method="baseline",
        params=fit_params("baseline"),
        seed=config["seed"],
        upstream=activation_upstream,


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
        "logs/benchmarks/label_dpgmm/{model}/{dataset}/{layer}/{mode}.part{part}of{parts}.tsv"
    wildcard_constraints:
        model=models_labelled(split=True),
        part="[0-9]+",
        parts="[0-9]+",
    conda:
        "../envs/cluster.yaml"
    threads: 1
    resources:
        mem_mb=label_mem_mb,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        code=code_of("label.py"),
    script:
        "../scripts/label.py"


use rule label_dpgmm as label_baseline with:
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
        "logs/benchmarks/label_baseline/{model}/{dataset}/{layer}/{mode}.part{part}of{parts}.tsv"


rule merge_dpgmm:
    input:
        unpack(fit_input("dpgmm", split=True)),
    output:
        npz="results/dpgmm/{model}/{dataset}/{layer}/{mode}.npz",
        json="results/dpgmm/{model}/{dataset}/{layer}/{mode}.json",
    log:
        "logs/merge_dpgmm/{model}/{dataset}/{layer}/{mode}.log",
    wildcard_constraints:
        model=models_labelled(split=True),
    conda:
        "../envs/cluster.yaml"
    threads: 1
    resources:
        mem_mb=merge_mem_mb,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        code=code_of("merge.py"),
        context=fit_context,
        # what the fit's model is made from, as fit_{method}_model names it: a fit_*_model
        # job that fails or is killed loses its outputs (its record keeps the new params),
        # and the merge, their only reader, must name them for the model to be fitted again
        # (else "Nothing to be done", the fit made with the old settings kept)
        params=fit_params("dpgmm"),
        seed=config["seed"],
        upstream=activation_upstream,
    script:
        "../scripts/merge.py"


use rule merge_dpgmm as merge_baseline with:
    input:
        unpack(fit_input("baseline", split=True)),
    output:
        npz="results/baseline/{model}/{dataset}/{layer}/{mode}.npz",
        json="results/baseline/{model}/{dataset}/{layer}/{mode}.json",
    log:
        "logs/merge_baseline/{model}/{dataset}/{layer}/{mode}.log",
    params:
        params=fit_params("baseline"),
