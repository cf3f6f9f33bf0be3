rule train_model:
    input:
        unpack(train_input),
    output:
        weights="results/models/{model}.pt",
        meta="results/models/{model}.json",
    log:
        "logs/train_model/{model}.log",
    benchmark:
        "logs/benchmarks/train_model/{model}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1 if uses_gpu() else 0,
    params:
        code=code_of("train_model.py"),
        spec=lambda wc: provenance.model_params(MODELS[wc.model]),
        train_on=lambda wc: model_sources(wc.model)["train_on"],
        seed=config["seed"],
        device=config["extract"]["device"],
    script:
        "../scripts/train_model.py"
