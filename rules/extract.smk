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
