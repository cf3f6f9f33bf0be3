"""Parsing the Snakefile (config validation, layer names, image sizes) builds no net's
weights: every parameter a module registers while ``snakemake -n`` parses the paper's config
(VGG16, 138 M parameters) lives on the meta device.

The count is taken in a subprocess with torch's global parameter-registration hook (no
patching): each ``nn.Parameter`` a module registers is counted by its device. Nothing is
timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

COUNTER = textwrap.dedent(
    """
    import atexit, json, sys
    from torch.nn.modules.module import register_module_parameter_registration_hook

    counts = {"meta": 0, "materialised": 0, "materialised_numel": 0}

    def hook(module, name, param):
        if param is None:
            return
        if param.device.type == "meta":
            counts["meta"] += 1
        else:
            counts["materialised"] += 1
            counts["materialised_numel"] += param.numel()

    register_module_parameter_registration_hook(hook)
    out = sys.argv.pop(1)
    atexit.register(lambda: open(out, "w").write(json.dumps(counts)))
    what = sys.argv.pop(1)
    if what == "snakemake":
        from snakemake.cli import main

        main(sys.argv[1:])
    else:  # the control: a net built the ordinary way
        from convdp.models import build_model

        build_model(what, 10, 3)
    """
)


def parameter_counts(args, tmp_path, repo_root) -> dict:
    out = tmp_path / "counts.json"
    script = tmp_path / "count.py"
    script.write_text(COUNTER)
    proc = subprocess.run([sys.executable, str(script), str(out), *args], cwd=repo_root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_the_hook_counts_a_materialised_net(tmp_path, repo_root):
    counts = parameter_counts(["digitnet"], tmp_path, repo_root)
    assert counts["materialised"] > 0 and counts["meta"] == 0


@pytest.mark.parametrize("override", [[], ["--config", "models={vgg16: {layers: blocks}}"]],
                         ids=["paper", "blocks"])
def test_dry_run_of_the_paper_config_materialises_no_parameter(tmp_path, repo_root, override):
    args = ["snakemake", "-n", "--configfile", "config/paper.yaml", "--directory",
            str(tmp_path / "run"), "--snakefile", str(repo_root / "Snakefile"), *override]
    counts = parameter_counts(args, tmp_path, repo_root)
    # the layer names and image sizes were checked on VGG16's architecture (32 tensors) ...
    assert counts["meta"] >= 32
    # ... and not one of its 138 M parameters was allocated
    assert counts["materialised"] == 0, counts
