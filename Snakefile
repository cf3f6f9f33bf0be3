# convdp: what each layer of a convnet has learned, by Dirichlet-process Gaussian mixtures.
# The rules are thin: each runs one script in scripts/, which calls the convdp package.

import os
import time

from snakemake.utils import min_version

min_version("9.0")


# A config file given on the command line (--configfile) is the run's whole configuration,
# with the schema's defaults (convdp/schema.yaml), not a merge into config.yaml: otherwise
# `--configfile config/paper.yaml` would add the default digits data sets and models to the
# paper's. --config overrides apply on top of either. Without one: config.yaml of the run's
# directory (--directory) where it has one, else the workflow's own.
OWN_CONFIG = os.path.join(workflow.basedir, "config.yaml")
if not workflow.overwrite_configfiles:

    configfile: "config.yaml" if os.path.exists("config.yaml") else OWN_CONFIG


report: "report/workflow.rst"


RUN_STARTED = time.time()


onsuccess:
    # a warning of a job that succeeded is in its log alone: say so at the end of the run
    from convdp.runlog import print_job_warnings, print_stale_outputs

    print_job_warnings("logs", RUN_STARTED)
    # figures and verdicts of targets the config no longer has stay beside the current ones
    print_stale_outputs(FINAL_OUTPUTS)


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/extract.smk"
include: "rules/cluster.smk"
include: "rules/label.smk"
include: "rules/atlas_common.smk"
include: "rules/atlas.smk"
include: "rules/report.smk"
include: "rules/transfer.smk"


localrules:
    all,
    aggregate,
    download,


FINAL_OUTPUTS = [
    "results/summary.csv",
    *FIGURES.values(),
    *transfer_outputs(),
    *atlas_outputs(),
]


rule all:
    default_target: True
    input:
        FINAL_OUTPUTS,
