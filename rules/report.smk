rule aggregate:
    input:
        fits=fits("dpgmm") + fits("baseline"),
        npz=fits("dpgmm", "npz") + fits("baseline", "npz"),
        datasets=expand("results/data/{dataset}.zarr", dataset=DATASETS),
        masks=mask_records(),
    output:
        summary=report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
        clusters=report(
            FIGURES["clusters"],
            caption="../report/clusters.rst",
            category="Figures",
        ),
        nmi=report(FIGURES["nmi"], caption="../report/nmi.rst", category="Figures"),
        label_maps=report(
            FIGURES["label_maps"],
            caption="../report/label_maps.rst",
            category="Figures",
        ),
        heatmap=report(
            FIGURES["heatmap"],
            caption="../report/heatmap.rst",
            category="Figures",
        ),
        comparison=report(
            FIGURES["comparison"],
            caption="../report/comparison.rst",
            category="Figures",
        ),
    log:
        "logs/aggregate.log",
    conda:
        "../envs/report.yaml"
    params:
        code=code_of("aggregate.py"),
        datasets={d: f"results/data/{d}.zarr" for d in DATASETS},
        n_examples=config["report"]["n_examples"],
        controls=CONTROLS,
    script:
        "../scripts/aggregate.py"
