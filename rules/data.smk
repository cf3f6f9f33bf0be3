rule download:
    output:
        "results/downloads/{dataset}.json",
    params:
        spec=lambda wc: DATASETS[wc.dataset],
        data_root=config["data_root"],
    log:
        "logs/download/{dataset}.log",
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/download.py"


rule prepare_dataset:
    input:
        download_input,
    output:
        directory("results/data/{dataset}.zarr"),
    params:
        spec=lambda wc: DATASETS[wc.dataset],
        data_root=config["data_root"],
        seed=config["seed"],
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/runs/prepare_dataset/{dataset}.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/prepare_dataset.py"
