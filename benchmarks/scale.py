"""A real net on many images: disk, memory and time of the full and the sample store.

VGG16 (random weights), 224×224 crops of scikit-image's sample photos, its five block
outputs (``features.3/8/15/22/29``), position mode. For each store (``full``, ``sample``) and
for N and 4N images, a fresh process runs the workflow's own job functions in a row:

* ``full``: extraction of every layer (``convdp.pipeline.extract``), then per layer a DPGMM
  fit that labels every position from the stored activations (``convdp.pipeline.fit``);
* ``sample``: extraction of the seeded samples (``extract(..., sample=plan)``), per layer a
  fit on them (``convdp.pipeline.fit_model``), one labelling pass of the net
  (``convdp.labelling.label_pass``), and each fit's outputs (``merge_labelled``);

and reports the bytes it left on disk (activations, labels, fits) per image, its peak RSS,
and the seconds of each stage per image against one bare forward pass of VGG16 per image.
The fits are small (``--max-samples``, PCA 16, 10 components) so that their fixed cost does
not hide the per-image costs; both stores fit the same samples.

    python benchmarks/scale.py                 # N = 16, 4N = 64, CPU
    python benchmarks/scale.py --n 64          # N = 64, 4N = 256
    python benchmarks/scale.py --device cuda   # the net on a GPU (the DPGMM: --fit-device cuda)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from extract_speed import peak_rss_mb  # noqa: E402 - this folder's own script

LAYERS = ["features.3", "features.8", "features.15", "features.22", "features.29"]
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
          "hubble_deep_field", "retina", "stereo_motorcycle"]
SIZE = 224


def crops(n: int, seed: int = 0) -> np.ndarray:
    """``n`` seeded 224×224 RGB crops of scikit-image's sample photos, (n, 224, 224, 3) uint8."""
    import skimage.data

    photos = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        photos.append(np.asarray(photo[0] if isinstance(photo, tuple) else photo)[..., :3])
    rng = np.random.default_rng(seed)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = rng.integers(0, p.shape[0] - SIZE + 1), rng.integers(0, p.shape[1] - SIZE + 1)
        out[i] = p[y : y + SIZE, x : x + SIZE]
    return out


def prepare(folder: Path, n: int, device: str) -> tuple[Path, Path, Path]:
    """The data set store and the saved net (random weights, seeded) the workers read."""
    import torch

    from convdp.data import Dataset, write_dataset
    from convdp.io import write_json
    from convdp.models import build_model, layer_names, save_state_dict

    data = folder / "data.zarr"
    write_dataset(data, Dataset(crops(n), None, [], "scikit-image sample photos, cropped"))
    torch.manual_seed(0)
    net = build_model("vgg16", 1000, 3).eval()
    weights, meta = folder / "vgg16.pt", folder / "vgg16.json"
    save_state_dict(net, weights)
    write_json(meta, {"arch": "vgg16", "weights": "none", "input_size": SIZE, "num_classes": 1000,
                      "in_channels": 3, "mean": [0.485, 0.456, 0.406],
                      "std": [0.229, 0.224, 0.225], "layer_names": layer_names(net), "seed": 0})
    return data, weights, meta


def bare_forward(weights: Path, meta: Path, data: Path, batch: int, device: str) -> float:
    """Seconds per image of VGG16's own forward pass (outputs discarded), with freed memory
    kept for reuse as the workers' extraction and labelling pass run (``convdp.allocator``:
    a process-wide setting, which this process had not made: under glibc's defaults VGG16's
    forward pass is slower, 1.19x in ``convdp.allocator``'s measurement and 1.05-1.08x on a
    2-core AMD EPYC at one thread, and every stage's ``x forward`` came out that much low)."""
    import torch

    from convdp.allocator import keep_freed_memory
    from convdp.data import open_dataset
    from convdp.io import read_json
    from convdp.models import load_model, to_input

    keep_freed_memory()
    m = read_json(meta)
    net = load_model(m, weights).to(device)
    images = np.asarray(open_dataset(data)["images"][:])
    with torch.no_grad():
        net(to_input(images[:1], m["mean"], m["std"]).to(device))  # warm-up
        start = time.perf_counter()
        for b in range(0, len(images), batch):
            net(to_input(images[b : b + batch], m["mean"], m["std"]).to(device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(images)


def worker(args) -> None:
    """One store, one N: the workflow's jobs in a row; prints a JSON line."""
    from convdp import pipeline
    from convdp.labelling import fit_key, label_pass, merge_labelled

    folder = Path(args.folder)
    data, weights, meta = folder / "data.zarr", folder / "vgg16.pt", folder / "vgg16.json"
    work = folder / args.store
    kw = dict(device=args.device, batch_size=args.batch, chunk_size=args.chunk, progress=False)
    params = {"preprocess": {"max_samples": args.max_samples, "pca": 16, "scale_max": 10},
              "dpgmm": {"n_components": 10, "concentration": 1.0, "covariance_type": "diag",
                        "max_iter": 100, "tol": 1e-3, "weight_threshold": 0.01, "restarts": 1,
                        "device": args.fit_device}}
    plan = {"modes": ["position"], "max_samples": args.max_samples, "seed": 0, "transfer": None}
    stages = {}
    t = time.perf_counter()
    pipeline.extract(weights, meta, data, LAYERS, work / "activations.json",
                     sample=plan if args.store == "sample" else None, **kw)
    stages["extract"] = time.perf_counter() - t
    t = time.perf_counter()
    fits = {}
    for layer in LAYERS:
        out = work / "fits" / layer
        if args.store == "full":  # fit, then label every stored position
            pipeline.fit(work / "activations.json", data, layer, "position", "dpgmm", params,
                         f"{out}.npz", f"{out}.json", progress=False)
        else:
            pipeline.fit_model(work / "activations.json", layer, "position", "dpgmm", params,
                               f"{out}.model.npz", f"{out}.model.json")
            fits[fit_key("dpgmm", layer, "position")] = f"{out}.model.npz"
    stages["fits" if args.store == "sample" else "fits+labels"] = time.perf_counter() - t
    if args.store == "sample":
        t = time.perf_counter()
        label_pass(weights, meta, data, work / "activations.json", fits, work / "labels.json",
                   predict_device=args.fit_device, **kw)
        for key, path in fits.items():
            out = work / "fits" / key.split("/")[1]
            merge_labelled(path, path.replace(".model.npz", ".model.json"), work / "labels.json",
                           key, data, f"{out}.npz", f"{out}.json")
        stages["labels"] = time.perf_counter() - t
    disk = {part: sum(f.stat().st_size for f in (work / sub).rglob("*") if f.is_file())
            for part, sub in (("activations", "activations.zarr"), ("labels", "labels.zarr"),
                              ("fits", "fits")) if (work / sub).exists()}
    print(json.dumps({"stages": stages, "disk": disk,
                      "peak_mb": peak_rss_mb()}))


def run(folder: Path, store: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--folder", str(folder), "--store", store,
           "--device", args.device, "--fit-device", args.fit_device, "--batch", str(args.batch),
           "--chunk", str(args.chunk), "--max-samples", str(args.max_samples)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{store} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="N (the second run has 4N images)")
    ap.add_argument("--device", default="cpu", help="the net's device (extract.device)")
    ap.add_argument("--fit-device", default="cpu", help="the DPGMM's device (dpgmm.device)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--max-samples", type=int, default=2000)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    import torch

    print(f"VGG16 random weights, {SIZE}x{SIZE}, layers {', '.join(LAYERS)}, position mode; "
          f"net on {args.device}, DPGMM on {args.fit_device}, {torch.get_num_threads()} threads, "
          f"max_samples {args.max_samples}, chunk {args.chunk}, batch {args.batch}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="convdp-scale-", dir=os.environ.get("TMPDIR")) as tmp:
        for n in (args.n, 4 * args.n):
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            data, weights, meta = prepare(folder, n, args.device)
            forward = bare_forward(weights, meta, data, args.batch, args.device)
            for store in ("full", "sample"):
                r = run(folder, store, args)
                results[(store, n)] = r
                total = sum(r["disk"].values())
                stages = ", ".join(f"{k} {v / n:.3f} s/img ({v / n / forward:.2f}x)"
                                   for k, v in r["stages"].items())
                print(f"  {store:6s} N={n:4d}: disk {total / 1e6:.1f} MB "
                      f"({', '.join(f'{k} {v / 1e6:.1f}' for k, v in r['disk'].items())}), "
                      f"peak {r['peak_mb']:.0f} MB; bare forward {forward:.3f} s/img; {stages}; "
                      f"whole run {sum(r['stages'].values()) / n / forward:.2f}x forward per image")
            import shutil

            shutil.rmtree(folder)
    n1, n4 = args.n, 4 * args.n
    for store in ("full", "sample"):
        a, b = (sum(results[(store, n)]["disk"].values()) for n in (n1, n4))
        marginal = (b - a) / (n4 - n1)
        print(f"{store}: bytes/image {b / n4:,.0f} at 4N={n4} ({a / n1:,.0f} at N={n1}); "
              f"marginal {marginal:,.0f} bytes/image, fixed {a - marginal * n1:,.0f} bytes")
    for store in ("full", "sample"):
        a, b = (results[(store, n)]["peak_mb"] for n in (n1, n4))
        print(f"{store}: memory peak {a:.0f} MB at N={n1}, {b:.0f} MB at 4N={n4}; "
              f"4N/N ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
