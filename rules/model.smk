def train_input(wildcards):
    spec = MODELS[wildcards.model]
    if spec["weights"] == "train":
        return {"train_data": f"results/data/{spec['train_on']}.zarr"}
    return {}


rule train_model:
    input:
        unpack(train_input),
    output:
        weights="results/models/{model}.pt",
        meta="results/models/{model}.json",
    params:
        spec=lambda wc: MODELS[wc.model],
        seed=config["seed"],
        device=config["extract"]["device"],
    log:
        "logs/train_model/{model}.log",
    benchmark:
        "benchmarks/runs/train_model/{model}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1 if uses_gpu() else 0,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/train_model.py"
