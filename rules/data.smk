rule download:
    output:
        "results/downloads/{dataset}.json",
    log:
        "logs/download/{dataset}.log",
    conda:
        "../envs/torch.yaml"
    params:
        code=code_of("download.py"),
        spec=lambda wc: {
            k: DATASETS[wc.dataset].get(k) for k in ("name", "split", "base_url")
        },
        data_root=config["data_root"],
    script:
        "../scripts/download.py"


rule prepare_dataset:
    input:
        download_input,
        lambda wc: provenance.dataset_inputs(DATASETS[wc.dataset]),
    output:
        directory("results/data/{dataset}.zarr"),
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "logs/benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_of("prepare_dataset.py"),
        spec=lambda wc: image_spec(wc.dataset),
        sources=lambda wc: provenance.dataset_fingerprint(DATASETS[wc.dataset]),
        data_root=config["data_root"],
        seed=config["seed"],
    script:
        "../scripts/prepare_dataset.py"
