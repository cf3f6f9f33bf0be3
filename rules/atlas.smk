# What each cluster is (issue 16): the cluster atlas of every position-mode DPGMM fit, and,
# for data sets with part masks (datasets.NAME.masks), the agreement of the label maps with
# the masks. Job functions in convdp/atlas_jobs.py; target lists in rules/atlas_common.smk.


rule prepare_masks:
    input:
        dataset="results/data/{dataset}.zarr",
    output:
        "results/data/{dataset}.masks.npz",
    log:
        "logs/prepare_masks/{dataset}.log",
    # as soon as the data set is stored: a bad mask is named before training and extraction
    priority: 20
    conda:
        "../envs/torch.yaml"
    params:
        code=code_of("prepare_masks.py"),
        folder=lambda wc: DATASETS[wc.dataset]["masks"],
        images=lambda wc: DATASETS[wc.dataset]["path"],
        size=lambda wc: DATASETS[wc.dataset].get("size"),
        background=lambda wc: DATASETS[wc.dataset]["mask_background"],
        ignore=lambda wc: DATASETS[wc.dataset]["mask_ignore"],
        sources=lambda wc: _provenance.folder_fingerprint(
            DATASETS[wc.dataset]["masks"], every_file=True
        ),
    script:
        "../scripts/prepare_masks.py"


rule mask_agreement:
    input:
        fit="results/dpgmm/{model}/{dataset}/{layer}/position.npz",
        masks="results/data/{dataset}.masks.npz",
        meta="results/models/{model}.json",
    output:
        csv="results/masks/{model}/{dataset}/{layer}.csv",
        json="results/masks/{model}/{dataset}/{layer}.json",
    log:
        "logs/mask_agreement/{model}/{dataset}/{layer}.log",
    conda:
        "../envs/cluster.yaml"
    resources:
        # the net is built to trace the layer's receptive fields (placing the label maps)
        mem_mb=lambda wc, attempt: 2000 * attempt,
    params:
        code=code_of("mask_agreement.py"),
        context=mask_context,
        weight_threshold=config["dpgmm"]["weight_threshold"],
        folder=lambda wc: DATASETS[wc.dataset]["masks"],
    script:
        "../scripts/mask_agreement.py"


rule mask_summary:
    input:
        mask_records(),
    output:
        csv="results/mask_agreement.csv",
        figure=report(
            "results/figures/mask_agreement.png",
            caption="../report/mask_agreement.rst",
            category="Figures",
        ),
    log:
        "logs/mask_summary.log",
    conda:
        "../envs/report.yaml"
    params:
        code=code_of("mask_summary.py"),
    script:
        "../scripts/mask_summary.py"


rule atlas:
    input:
        fit="results/dpgmm/{model}/{dataset}/{layer}/position.npz",
        manifest="results/activations/{model}/{dataset}.json",
        dataset="results/data/{dataset}.zarr",
        meta="results/models/{model}.json",
    output:
        png=report(
            "results/figures/atlas/{model}/{dataset}/{layer}.png",
            caption="../report/atlas.rst",
            category="Cluster atlas",
            subcategory="{model}: {dataset}",
            labels={"layer": "{layer}"},
        ),
        json="results/atlas/{model}/{dataset}/{layer}.json",
    log:
        "logs/atlas/{model}/{dataset}/{layer}.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
    params:
        code=code_of("atlas.py"),
        atlas=config["atlas"],
        weight_threshold=config["dpgmm"]["weight_threshold"],
    script:
        "../scripts/atlas.py"
