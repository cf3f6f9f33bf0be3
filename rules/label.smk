# The labelling pass of a sample store (extract.store: sample; convdp/labelling.py): one
# job per model x data set runs the net again, chunk by chunk, and writes every fit's labels
# to results/labels/{model}/{dataset}.zarr. As with the extraction, the declared output is
# the manifest, written last; the store beside it is not declared, so a rerun after a kill
# resumes from the chunks it had labelled.


rule label_activations:
    input:
        weights="results/models/{model}.pt",
        meta="results/models/{model}.json",
        dataset="results/data/{dataset}.zarr",
        manifest="results/activations/{model}/{dataset}.json",
        fits=lambda wc: labelled_fits(wc.model, wc.dataset).values(),
    output:
        manifest="results/labels/{model}/{dataset}.json",
    log:
        "logs/label_activations/{model}/{dataset}.log",
    benchmark:
        "logs/benchmarks/label_activations/{model}/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=1 if uses_gpu() or fits_use_gpu() else 0,
    params:
        code=code_of("label_activations.py"),
        fit_keys=lambda wc: list(labelled_fits(wc.model, wc.dataset)),
        extract=extract_settings,
        predict_device=config["dpgmm"]["device"],
        upstream=activation_upstream,
    script:
        "../scripts/label_activations.py"
