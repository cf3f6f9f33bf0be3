rule prepare_dataset:
    output:
        directory("results/data/{dataset}.zarr"),
    params:
        spec=lambda wc: DATASETS[wc.dataset],
        data_root=config["data_root"],
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/runs/prepare_dataset/{dataset}.tsv"
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/prepare_dataset.py"
