# The declared output is the manifest; the Zarr store beside it (same name, .zarr) is not
# declared, so Snakemake does not delete its completed chunks before a rerun: extraction
# resumes from them. The manifest is written last, once every chunk is on disk.


rule extract_activations:
    input:
        weights="results/models/{model}.pt",
        meta="results/models/{model}.json",
        dataset="results/data/{dataset}.zarr",
        # its source: the depth its images wider than 8 bits were scaled by is compared
        # (ancient: a newer source store does not redo the other data sets' extractions)
        source=lambda wc: ancient(f"results/data/{source_of(wc.model)}.zarr"),
        # extract.smooth auto: the σ's chosen from the model's maps of its source
        smoothing=smoothing_choice,
    output:
        manifest="results/activations/{model}/{dataset}.json",
    log:
        "logs/extract_activations/{model}/{dataset}.log",
    benchmark:
        "logs/benchmarks/extract_activations/{model}/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=1 if uses_gpu() else 0,
    params:
        code=code_of("extract_activations.py"),
        layers=lambda wc: MODELS[wc.model]["layers"],
        extract=extract_settings,
        upstream=upstream,
    script:
        "../scripts/extract_activations.py"


# extract.smooth auto: each layer's σ chosen once per model, from its maps of the source's
# images, so that every data set of the model, and its random-weights control, is smoothed
# alike (convdp/smoothing.py: SigmaChooser).


rule choose_smoothing:
    input:
        weights="results/models/{model}.pt",
        meta="results/models/{model}.json",
        # ancient, as the source an extraction reads: a newer store of the same images does
        # not choose again (and so redo every extraction of the model)
        dataset=lambda wc: ancient(f"results/data/{source_of(wc.model)}.zarr"),
    output:
        "results/smoothing/{model}.json",
    log:
        "logs/choose_smoothing/{model}.log",
    benchmark:
        "logs/benchmarks/choose_smoothing/{model}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
        gpu=1 if uses_gpu() else 0,
    params:
        code=code_of("choose_smoothing.py"),
        layers=lambda wc: auto_smoothed(wc.model),
        device=config["extract"]["device"],
        upstream=source_upstream,
    script:
        "../scripts/choose_smoothing.py"
