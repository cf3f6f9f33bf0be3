"""Does the number of clusters per layer follow the truncation level? The default run's table.

For every layer × mode of a finished run's source data set, the DPGMM is fitted at several
truncation levels ``n_components`` twice: with the old settings (no merge moves, no
adaptive truncation: the count followed the truncation) and with the workflow's settings
(merge and delete moves, adaptive truncation, restarts). Prints one row per layer × mode:
clusters kept per truncation for both, the new effective number, truncation finally used,
saturation and the comparable bound per sample, then the check of issue 11: between 40 and
80, clusters kept within 10 % and the bound within 1 %, no fit saturated.

    snakemake --cores 2                      # the default run (its activations are read)
    python benchmarks/truncation.py          # [--config config.yaml] [--model M] [--dataset D]

Fits run on one thread, as the workflow's fit jobs do.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import yaml
from threadpoolctl import threadpool_limits

from convdp.config import validate_config
from convdp.pipeline import open_layer
from convdp.truncation import FIXED_TRUNCATION, invariance, truncation_sweep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--model", default=None, help="default: the first model")
    ap.add_argument("--dataset", default=None, help="default: the model's source")
    ap.add_argument("--old", default="10,20,40,80", help="truncations, old settings")
    ap.add_argument("--new", default="40,80", help="truncations, workflow settings")
    args = ap.parse_args(argv)

    config = yaml.safe_load(Path(args.config).read_text())
    validate_config(config)
    model = args.model or next(iter(config["models"]))
    spec = config["models"][model]
    dataset = args.dataset or spec["analyse_on"][0]
    manifest = Path(f"results/activations/{model}/{dataset}.json")
    if not manifest.exists():
        sys.exit(f"{manifest} not found: run the workflow first (snakemake --cores 2)")
    new = {"preprocess": config["preprocess"], "dpgmm": config["dpgmm"]}
    old = {"preprocess": config["preprocess"], "dpgmm": config["dpgmm"] | FIXED_TRUNCATION}
    old_k = [int(k) for k in args.old.split(",")]
    new_k = [int(k) for k in args.new.split(",")]
    print(f"{model} on {dataset}; workflow settings: merge={new['dpgmm']['merge']}, "
          f"max_components={new['dpgmm']['max_components']}, "
          f"restarts={new['dpgmm']['restarts']}, delete_below={new['dpgmm']['delete_below']}")
    head = ("layer, mode | old: kept at " + "/".join(map(str, old_k))
            + " | new: kept, effective, truncation used, saturated, bound/sample at "
            + "/".join(map(str, new_k))
            + f" | {new_k[0]} vs {new_k[-1]} (the first and last of --new): kept, bound change")
    print(head)
    failures = 0
    torch.set_num_threads(1)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for layer in spec["layers"]:
            array = open_layer(manifest, layer)
            for mode in config["modes"]:
                kw = dict(layer=layer, mode=mode, seed=config["seed"])
                before = truncation_sweep(array, params=old, truncations=old_k, **kw)
                after = truncation_sweep(array, params=new, truncations=new_k, **kw)
                cells = [f"{r['clusters_kept']}, {r['clusters_effective']:.1f}, "
                         f"T{r['truncation']}, {'SAT' if r['saturated'] else 'ok'}, "
                         f"{r['elbo_per_sample']:.3f}" for r in after]
                check = invariance(after[0], after[-1])
                ok = (check["kept_change"] <= 0.10 and check["bound_change"] <= 0.01
                      and not check["saturated"])
                failures += not ok
                print(f"{layer}, {mode} | {'/'.join(str(r['clusters_kept']) for r in before)} | "
                      f"{' ; '.join(cells)} | {check['kept_change']:.1%}, "
                      f"{check['bound_change']:.2%} {'PASS' if ok else 'FAIL'}", flush=True)
    print(f"truncation invariance: {'PASS' if not failures else f'{failures} FAIL'} "
          "(clusters kept within 10 %, bound within 1 %, no fit saturated)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
