"""Clusters the DP keeps at VGG16's blocks 4 and 5 against the input size (the paper config).

The paper config's image (scikit-image's immunohistochemistry image) resized to each size, VGG16
with random weights as offline (``weights: none``: ``torch.manual_seed(0)``), each layer's
positions clustered with the paper's settings (config/paper.yaml: 50 components,
concentration 1, diagonal covariances, scaled to a maximum of 10, at most 20,000 samples) and
one restart. Prints size, layer, samples × dimensions, clusters kept, effective number.

    python benchmarks/paper_image_size.py 224 512 640 768 1024   # [--layers features.22,features.29]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import yaml
from torchvision.models.feature_extraction import create_feature_extractor

from convdp.cluster import fit_dpgmm
from convdp.config import validate_config
from convdp.datasets import load_histology
from convdp.models import build_model, to_input
from convdp.preprocess import Preprocess
from convdp.samples import subsample
from convdp.training import IMAGENET_MEAN, IMAGENET_STD


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", type=int, nargs="+")
    ap.add_argument("--layers", default="features.22,features.29")
    args = ap.parse_args()
    torch.set_num_threads(1)
    config = yaml.safe_load(open("config/paper.yaml"))
    config["models"]["vgg16"]["weights"] = "none"
    config = validate_config(config, check_layers=False)
    # one start, and no check fits (half the samples, dpgmm.sample_check; another seed,
    # dpgmm.seed_check): this prints only the count of each size's fit
    pre, dp = config["preprocess"], config["dpgmm"] | {"restarts": 1, "sample_check": False,
                                                       "seed_check": False}
    layers = args.layers.split(",")
    torch.manual_seed(0)
    net = build_model("vgg16", 1000, 3).eval()
    extractor = create_feature_extractor(net, layers)
    for size in args.sizes:
        images = load_histology(size).images
        with torch.no_grad():
            out = extractor(to_input(images, IMAGENET_MEAN, IMAGENET_STD))
        for layer in layers:
            a = out[layer][0].permute(1, 2, 0).reshape(-1, out[layer].shape[1]).numpy()
            a = a[subsample(np.arange(len(a)), pre["max_samples"], config["seed"])]
            X = Preprocess(pre["pca"], pre["scale_max"], config["seed"]).fit(a).transform(a)
            _, record = fit_dpgmm(X, dp, config["seed"])
            print(f"{size:5d} {layer:12s} {X.shape[0]:6d} x {X.shape[1]:3d}  kept "
                  f"{record['clusters_kept']:3d}  effective {record['clusters_effective']:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
