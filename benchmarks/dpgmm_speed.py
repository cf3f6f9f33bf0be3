"""Speed of the PyTorch DPGMM backend against scikit-learn, side by side.

1. a planted mixture (20,000 x 64, 10 clusters with random full covariances),
   fitted with 50 components, full covariance, max_iter=100, a K-means start from the
   same k-means++ seeds (same ``random_state``) by

   * scikit-learn ``BayesianGaussianMixture`` (float64; its K-means runs to convergence),
   * the torch backend with the workflow's settings on one start: float32, per-sample
     stopping rule, merge and delete moves (``delete_below``), a K-means start of at most
     ``kmeans_max_iter`` Lloyd iterations (both the config schema's defaults: 0.01, 10);
     the workflow adds restarts and adaptive truncation, which cost more starts, not a
     slower fit;
   * with ``--variants`` (each with scikit-learn's whole K-means start): torch without
     moves, torch with scikit-learn's stopping rule
     (``tol_per_sample=False``, as many iterations as scikit-learn) and the same in
     float64 with scikit-learn's E-step (``estep_reg_covar=False``: reproduces scikit-learn's
     fit; planted data only; ``--no-float64`` skips it);

2. the paper's setting (``--no-paper`` skips it): VGG16's block 4 (``features.22``, seeded
   random weights: no download) on scikit-image's histology image at 1152 px, 20,000 of its
   positions x 512 channels, diagonal covariance, 50 components, concentration 1,
   max_iter=300 (config/paper.yaml's DPGMM settings); prints ``ratio_paper``;

3. the same as 1. on real position-mode activations, if ``results/activations/*/*.zarr``
   exists (one layer, (N, H, W, C) -> (N*H*W, C), 20,000 random rows).

Every peer is fitted ``--repeats`` times (3), the peers interleaved so that load on the
machine falls on all alike; the medians are compared. For each fit it prints wall and CPU
seconds, lower bound per sample, NMI (to the planted labels, or to scikit-learn's labels for
real data), iterations; then the medians, the torch fit's time per phase (initialisation,
E-step, statistics, M-step, bound, moves) and ``efficiency``: the GEMM work of the E-step
(the log-probabilities and responsibilities of the EM iterations) per second of it, against
this machine's own ``torch.mm`` on the E-step's product shape (on a CPU a row slice of a
block), measured right after each torch fit; the same rate for the sufficient statistics
(``efficiency_statistics``, computed in the same passes) and for both together
(``efficiency_estep_and_statistics``: what runs before 3863998 printed as ``efficiency``,
benchmarks/RESULTS.md); each peer's seconds per EM iteration and their ratio
(``per iteration``: the speed-up apart from the iterations each fit runs); and the headline
``ratio: X.XX`` (median scikit-learn seconds / median torch seconds, planted data) with both
fits' lower bound per sample and NMI.

``--data FILE`` fits a mixture of your own instead (and only that): an ``.npz`` with ``X``
(n, d) and, optionally, the true labels ``y`` (n,), or an ``.npy`` of ``X``; the same peers,
repeats and profile, ``--data-covariance`` (full) and ``--components``; prints
``ratio_data`` with both fits' bound and NMI to ``y`` (or to scikit-learn's labels). This is
how a held-out mixture the project has not seen is fitted by both backends side by side.

``--device`` (default ``auto``: the GPU where torch sees one, else the CPU) is where the torch
fits run; scikit-learn runs on the CPU's cores, the peak ``torch.mm`` on the torch fits'
device, and every phase of a GPU fit is timed after the GPU has finished its work.

``--scaling`` (or ``--only-scaling``) prints torch seconds per iteration against
N (1e3..1e6, D=64) and D (8..512, N=20,000), with only ``--scaling-iters``
iterations (default 3, to keep it to ~4 minutes) from a ``random_from_data``
initialisation, the initialisation time subtracted.  Early iterations prune
little, so these per-iteration times are pessimistic.

Usage::

    python benchmarks/dpgmm_speed.py [--threads 2] [--scaling] [--no-sklearn]
    python benchmarks/dpgmm_speed.py --data heldout.npz --components 20
    python benchmarks/dpgmm_speed.py --device cuda      # the torch fits on the GPU
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def planted(n, d, n_clusters, seed):
    """Planted Gaussian mixture with random full covariances; returns X (float64), labels."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(n_clusters, d))
    y = rng.integers(0, n_clusters, n)
    X = np.empty((n, d))
    for c in range(n_clusters):
        idx = np.flatnonzero(y == c)
        mix = rng.normal(size=(d, d)) / np.sqrt(d)
        X[idx] = means[c] + rng.normal(size=(len(idx), d)) @ mix
    return X, y


def real_activations(pattern, n_rows, seed, layer=None, want_channels=64):
    """One layer's (N, H, W, C) zarr array as (<= n_rows, C) float64 rows, or (None, None).

    Every array of every store matching `pattern` is a candidate (a store may be
    a group of layers); `layer` keeps those whose "store/name" contains it.  The
    pick: at least `n_rows` positions if possible, then channels closest to
    `want_channels`.
    """
    import zarr

    arrays = []
    for p in sorted(glob.glob(pattern)):
        try:
            node = zarr.open(p, mode="r")
        except Exception as err:  # report and skip unreadable stores
            print(f"  (cannot open {p}: {err})")
            continue
        if hasattr(node, "shape"):
            arrays.append((p, node))
        else:
            arrays.extend((f"{p}/{name}", arr) for name, arr in node.arrays())
    arrays = [(p, a) for p, a in arrays if a.ndim in (2, 4) and (layer is None or layer in p)]
    if not arrays:
        return None, None

    def rows_of(a):
        return int(np.prod(a.shape[:-1]))

    path, arr = min(
        arrays,
        key=lambda pa: (rows_of(pa[1]) < n_rows, abs(pa[1].shape[-1] - want_channels), pa[0]),
    )
    c, rows = arr.shape[-1], rows_of(arr)
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(rows, size=min(n_rows, rows), replace=False))
    X = np.asarray(arr[...]).reshape(rows, c)[take]  # (N, H, W, C) -> (N*H*W, C)
    return np.asarray(X, dtype=np.float64), f"{path} {tuple(arr.shape)}"


def run_fit(name, make, X, y_ref, quiet=False):
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    est = make()
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    labels = est.predict(X)
    lb = est.lower_bound_ / len(X)
    nmi = normalized_mutual_info_score(y_ref, labels) if y_ref is not None else float("nan")
    ari = adjusted_rand_score(y_ref, labels) if y_ref is not None else float("nan")
    n_used = int((est.weights_ > 0.01).sum())
    if not quiet:
        print(
            f"  {name:<40s} {sec:7.2f} s (cpu {cpu:7.2f} s)  lb/sample {lb:10.5f}  NMI {nmi:6.4f}  ARI {ari:6.4f}  "
            f"iters {est.n_iter_:3d}  converged {str(est.converged_):5s}  comps>0.01 {n_used}",
            flush=True,
        )
    return dict(sec=sec, cpu=cpu, lb=lb, n_iter=est.n_iter_, labels=labels, nmi=nmi,
                ari=ari, stats=dict(getattr(est, "fit_stats_", {})), est=est)


def gemm_gflops(rows, inner, cols, repeats=30, b_transposed=False, device="cpu"):
    """This machine's float32 ``torch.mm`` throughput (GFLOP/s, median of ``repeats``) on
    a (rows, inner) @ (inner, cols) product on ``device``: the E-step's own shape and layout
    (the right operand stored (cols, inner) and transposed with ``b_transposed``, as "diag"
    does)."""
    import torch

    from convdp.training import synchronize

    a = torch.randn(rows, inner, device=device)
    b = (torch.randn(cols, inner, device=device).T if b_transposed
         else torch.randn(inner, cols, device=device))
    torch.mm(a, b)  # warm-up
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return 2.0 * rows * inner * cols / float(np.median(times)) / 1e9


def estep_shape(est, n, d, K, cov):
    """The E-step's product for a fit of ``est``'s settings with all K components:
    ``(rows, inner, cols)``, ``[x, 1]`` (D + 1) by ``[P_k | -mu_k P_k]`` (K D) for "full",
    ``[x, x^2]`` (2 D) by K (stored K by 2 D) for "diag". On a CPU a "full" block's product
    runs on row slices of at most ``_slice_elems`` elements (``_weighted_log_prob``), so the
    reference is timed on a slice: on the block (1,310 rows at the planted fit's D 64, K 50)
    it was timed on a shape that no product of the fit had (655 rows there)."""
    est._K = K
    rows = min(est._block_rows(), n)
    if cov != "full":
        return (rows, 2 * d, K)
    if est._device.type == "cpu":
        rows = min(rows, max(16, est._slice_elems // (K * d)))
    return (rows, d + 1, K * d)


def profile(results, cov="full"):
    """The torch fit's time per phase (the repeat of median time), and the E-step's achieved
    GEMM rate against this machine's ``torch.mm`` on the E-step's product shape (see
    :func:`estep_shape`), measured right after each repeat (``peak``, so that a slow or fast
    spell of the machine falls on both): ``efficiency``, the median over the repeats, their
    range beside it; the same for the statistics and for the two together."""
    result = sorted(results, key=lambda r: r["sec"])[len(results) // 2]
    st = result["stats"]
    phases = ["init", "estep", "statistics", "mstep", "bound", "moves"]
    total = result["sec"]
    parts = ", ".join(f"{p} {st[f'seconds_{p}']:.2f} s" for p in phases)
    other = total - sum(st[f"seconds_{p}"] for p in phases)
    print(f"  profile (torch, the median repeat, {total:.2f} s): {parts}, other {other:.2f} s")
    rows, inner, cols = result["shape"]
    peaks = [r["peak"] for r in results]

    def rate(r, *parts):  # GFLOP/s of the GEMM work of these phases
        flops = sum(r["stats"][f"gemm_flops_{p}"] for p in parts)
        return flops / max(sum(r["stats"][f"seconds_{p}"] for p in parts), 1e-12) / 1e9

    print(f"  torch.mm ({rows} x {inner}) @ ({inner} x {cols}) on this machine after each repeat: "
          f"{np.median(peaks):.2f} GFLOP/s (median, range {min(peaks):.2f}–{max(peaks):.2f})")
    suffix = "" if cov == "full" else "_" + cov
    for name, parts in [("", ("estep",)), ("_statistics", ("statistics",)),
                        ("_estep_and_statistics", ("estep", "statistics"))]:
        achieved = [rate(r, *parts) for r in results]
        eff = [a / p for a, p in zip(achieved, peaks, strict=True)]
        print(f"{'' if not name else '  '}efficiency{name}{suffix}: {np.median(eff):.2f} "
              f"(median of {len(eff)} repeats, range {min(eff):.2f}–{max(eff):.2f}; "
              f"{' and '.join(parts)}: {np.median(achieved):.2f} GFLOP/s of GEMM work)")


def em_iterations(result):
    """The EM iterations a fit of :func:`run_fit` ran: torch's ``fit_stats_["em_iterations"]``
    (those of the kept path, of rejected moves and of rejected refined merges, whose seconds
    its fit time holds; ``n_iter_`` leaves the last out, as they do not count towards
    ``max_iter``: 4 of the planted fit's 39, of a 2,000-sample fit's 18), else ``n_iter_``
    (scikit-learn's: every iteration it ran)."""
    return result["stats"].get("em_iterations", result["n_iter"])


def per_iteration(runs):
    """Each peer's fit seconds per EM iteration run (median over the repeats; torch's seconds
    include its moves, its iterations those of the kept path and of every move tried, see
    :func:`em_iterations`), and scikit-learn's against torch's: the speed-up without the
    difference in iterations, which the moves make (fewer where they leave a poor optimum,
    more where they buy a better one)."""
    med = {key: (float(np.median([r["sec"] / max(em_iterations(r), 1) for r in runs[key]])),
                 int(np.median([em_iterations(r) for r in runs[key]]))) for key in ("sk", "torch")}
    (sk, sk_it), (tm, tm_it) = med["sk"], med["torch"]
    print(f"  per iteration: scikit-learn {sk:.3f} s ({sk_it} iterations), torch {tm:.3f} s "
          f"({tm_it} iterations): {sk / tm:.2f}x")


def workflow_defaults():
    """The workflow's ``dpgmm:`` defaults (the config schema's) that the benchmark's torch
    fit takes: ``delete_below`` and ``kmeans_max_iter``."""
    import yaml

    from convdp.config import SCHEMA

    keys = yaml.safe_load(Path(SCHEMA).read_text())["properties"]["dpgmm"]["properties"]
    return {k: keys[k]["default"] for k in ("delete_below", "kmeans_max_iter")}


def compare(X, y, args, title, float64=True, cov="full", max_iter=None, concentration=None):
    """The peers fitted ``args.repeats`` times each, interleaved (so that load on the
    machine falls on all of them alike); medians of wall and CPU seconds."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.mixture import BayesianGaussianMixture

    from convdp.dpgmm import TorchBayesianGaussianMixture

    n, d = X.shape
    K = args.components
    max_iter = max_iter or args.max_iter
    print(f"\n== {title}: N={n} D={d} K={K} {cov} covariance, max_iter={max_iter}, "
          f"concentration {concentration or '1/K'}, "
          f"{args.repeats} repeats interleaved, medians")
    t0 = time.perf_counter()
    KMeans(n_clusters=K, n_init=1, random_state=np.random.RandomState(args.seed)).fit(X)
    print(
        f"  (scikit-learn's K-means start, which every fit below seeds alike: "
        f"{time.perf_counter() - t0:.2f} s)"
    )
    common = dict(
        n_components=K, covariance_type=cov, max_iter=max_iter, random_state=args.seed,
        weight_concentration_prior=concentration,
    )
    peers = {}
    if not args.no_sklearn:
        peers["sk"] = ("scikit-learn (float64)", lambda: BayesianGaussianMixture(**common))
    # the workflow's moves and K-means start on one start (the workflow adds restarts and
    # adaptive truncation)
    on = dict(device=args.device)
    workflow = workflow_defaults()

    def workflow_fit():
        return TorchBayesianGaussianMixture(**common, **on, dtype="float32", merge=True,
                                            delete_below=workflow["delete_below"],
                                            kmeans_max_iter=workflow["kmeans_max_iter"])

    peers["torch"] = ("torch, workflow moves (merge, delete)", workflow_fit)
    if args.block_elems is not None:
        def blocked():  # the same fit with another block bound
            est = workflow_fit()
            est._device_block_elems = args.block_elems
            return est

        peers["torch_blocks"] = (f"torch, blocks of {args.block_elems} off the CPU", blocked)
    if args.variants:
        peers["torch_no_moves"] = ("torch float32, no moves",
                                   lambda: TorchBayesianGaussianMixture(**common, **on, dtype="float32"))
        peers["torch_sk_rule"] = ("torch float32, sklearn's tol rule", lambda: TorchBayesianGaussianMixture(
            **common, **on, dtype="float32", tol_per_sample=False))
        if float64 and not args.no_float64:
            peers["torch64"] = ("torch float64, sklearn's tol rule", lambda: TorchBayesianGaussianMixture(
                **common, **on, dtype="float64", tol_per_sample=False, estep_reg_covar=False))
    if args.device.type == "cuda":  # CUDA's start, once per process, is no fit's time
        t0 = time.perf_counter()
        TorchBayesianGaussianMixture(**dict(common, max_iter=2), device=args.device).fit(X[:2000])
        print(f"  (an untimed warm-up fit on the GPU first: {time.perf_counter() - t0:.2f} s)")
    runs = {key: [] for key in peers}
    for _ in range(args.repeats):
        for key, (name, make) in peers.items():
            ref = y if y is not None else (runs["sk"][0]["labels"] if runs.get("sk") else None)
            runs[key].append(run_fit(name, make, X, ref))
            if key == "torch":  # this machine's GEMM rate on the fit's shape, at once
                fit = runs[key][-1]
                fit["shape"] = estep_shape(fit["est"], n, d, K, cov)
                fit["peak"] = gemm_gflops(*fit["shape"], b_transposed=cov == "diag",
                                          device=args.device)
    out = {}
    for key, rs in runs.items():
        out[key] = dict(rs[-1], sec=float(np.median([r["sec"] for r in rs])),
                        cpu=float(np.median([r["cpu"] for r in rs])))
        print(f"  median {peers[key][0]:<33s} {out[key]['sec']:7.2f} s (cpu {out[key]['cpu']:7.2f} s)"
              f"  over {[round(r['sec'], 2) for r in rs]}")
    profile(runs["torch"], cov)
    if "torch_blocks" in out:
        b, t = out["torch_blocks"], out["torch"]
        print(f"  blocks of {args.block_elems} elements off the CPU against the default bound: "
              f"{b['sec'] / t['sec']:.2f}x the time, lb/sample {b['lb'] - t['lb']:+.5f}"
              + (" (on the CPU both use the CPU's bound: the same fits)"
                 if args.device.type == "cpu" else ""))
    if "sk" in out:
        per_iteration(runs)
        sk = out["sk"]["sec"]
        for key in [k for k in out if k != "sk"]:
            agree = normalized_mutual_info_score(out["sk"]["labels"], out[key]["labels"])
            print(
                f"  {key}: sklearn/torch time {sk / out[key]['sec']:.2f}x "
                f"(cpu {out['sk']['cpu'] / out[key]['cpu']:.2f}x), "
                f"lb/sample {out[key]['lb'] - out['sk']['lb']:+.5f} vs sklearn, "
                f"NMI to sklearn labels {agree:.4f}"
            )
    return out


def load_data(path):
    """``(X, y, description)`` from ``--data``: an ``.npz`` with ``X`` and optionally ``y``,
    or an ``.npy`` holding ``X``; clear errors naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"--data: no file {path}")
    if path.suffix == ".npy":
        X, y = np.load(path), None
    elif path.suffix == ".npz":
        with np.load(path) as f:
            if "X" not in f:
                raise SystemExit(f"--data: {path} has no array 'X' (keys: {sorted(f.files)})")
            X, y = f["X"], (f["y"] if "y" in f else None)
    else:
        raise SystemExit(f"--data: {path} is neither .npz nor .npy")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise SystemExit(f"--data: {path}: X must be a finite (n, d) array, got shape {X.shape}")
    if y is not None and y.shape != (len(X),):
        raise SystemExit(f"--data: {path}: y has shape {y.shape}, X has {len(X)} rows")
    truth = "true labels y" if y is not None else "no labels: NMI to scikit-learn's"
    return X, y, f"{path.name}, {truth}"


def paper_activations(n_rows, seed, size=1152, layer=22):
    """The paper's setting without a download: VGG16 (torchvision's architecture, seeded
    random weights) on scikit-image's immunohistochemistry image resized to ``size``,
    ``features.{layer}`` (block 4's last ReLU, 512 channels, stride 8: 144 x 144 positions at
    1152 px), ImageNet-normalised input; positions as rows, constant channels dropped,
    scaled to max |x| = 10 (config/paper.yaml's ``scale_max``), ``n_rows`` random rows."""
    import skimage
    import torch
    import torchvision

    torch.manual_seed(seed)
    net = torchvision.models.vgg16(weights=None).features[: layer + 1].eval()
    img = torch.as_tensor(skimage.data.immunohistochemistry(), dtype=torch.float32) / 255.0
    img = img.permute(2, 0, 1)[None]
    img = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        a = net((img - mean) / std)[0]  # (C, H, W)
    X = a.flatten(1).T.double().numpy()  # (H W, C)
    X = X[:, X.std(0) > 0]
    X *= 10.0 / np.abs(X).max()
    rng = np.random.default_rng(seed)
    X = X[np.sort(rng.choice(len(X), size=min(n_rows, len(X)), replace=False))]
    return X, f"VGG16 features.{layer} (random weights), {size} px histology image, {tuple(a.shape)}"


def scaling(args):
    from convdp.dpgmm import TorchBayesianGaussianMixture

    it = args.scaling_iters
    print(
        f"\n== torch scaling (float32, K={args.components}, full, {it} iterations from "
        "random_from_data init, tol=0; seconds per iteration = (fit - init-only fit) / iterations)"
    )
    print(f"  {'N':>9s} {'D':>5s} {'s/iter':>9s} {'init s':>8s}")
    grid = [(n, 64) for n in (1_000, 10_000, 100_000, 1_000_000)]
    grid += [(20_000, d) for d in (8, 32, 128, 256, 512)]
    for n, d in grid:
        X, _ = planted(n, d, 10, args.seed)
        kw = dict(
            n_components=args.components,
            covariance_type="full",
            init_params="random_from_data",
            random_state=args.seed,
            tol=0.0,
            device=args.device,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            TorchBayesianGaussianMixture(**kw, max_iter=0).fit(X)
            t_init = time.perf_counter() - t0
            t0 = time.perf_counter()
            TorchBayesianGaussianMixture(**kw, max_iter=it).fit(X)
            t_fit = time.perf_counter() - t0
        print(f"  {n:9d} {d:5d} {(t_fit - t_init) / it:9.3f} {t_init:8.2f}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=20_000, help="samples of the planted mixture")
    p.add_argument("--d", type=int, default=64, help="features of the planted mixture")
    p.add_argument("--clusters", type=int, default=10, help="planted clusters")
    p.add_argument("--components", type=int, default=50, help="DP truncation level K")
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and BLAS threads")
    p.add_argument("--device", default="auto",
                   help="the torch fits' device: auto (a GPU where there is one), cpu, cuda, cuda:N")
    p.add_argument("--activations", default="results/activations/*/*.zarr", help="zarr glob")
    p.add_argument("--layer", default=None, help="substring selecting the activation layer")
    p.add_argument("--data", default=None,
                   help="fit only this mixture: .npz with X (and y, the true labels) or .npy of X")
    p.add_argument("--data-covariance", default="full", choices=["full", "diag"],
                   help="covariance type for --data")
    p.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn fits")
    p.add_argument("--no-float64", action="store_true", help="skip the torch float64 fit")
    p.add_argument("--no-paper", action="store_true",
                   help="skip the paper's setting (diagonal, VGG16 block 4, 512 channels)")
    p.add_argument("--repeats", type=int, default=3, help="fits per peer, interleaved")
    p.add_argument("--variants", action="store_true",
                   help="also the torch fits without moves and with sklearn's stopping rule")
    p.add_argument("--scaling", action="store_true", help="print the torch scaling table")
    p.add_argument("--scaling-iters", type=int, default=3)
    p.add_argument("--only-scaling", action="store_true", help="print only the scaling table")
    p.add_argument("--passive", action="store_true",
                   help="OMP_WAIT_POLICY=PASSIVE (for a machine shared with other work: threads "
                        "that spin while waiting then slow everyone; on a quiet machine it makes "
                        "torch's many small operations ~1.7x slower, so it is off by default)")
    p.add_argument("--block-elems", type=int, default=None,
                   help="also fit torch with this block bound for full covariances off the CPU, "
                        "interleaved with the default bound (4194304: the CPU's; on a GPU)")
    args = p.parse_args(argv)
    if args.passive:  # read by OpenMP when torch is first imported (below)
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    from convdp.training import resolve_device

    args.device = resolve_device(args.device)
    gpu = (f"; torch fits on {torch.cuda.get_device_name(args.device)} ({args.device})"
           if args.device.type == "cuda" else "; torch fits on the CPU")
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores; threads: torch {torch.get_num_threads()}"
        + gpu
    )
    print(f"torch {torch.__version__}, numpy {np.__version__}, ", end="")
    import sklearn

    print(f"scikit-learn {sklearn.__version__}; load average {os.getloadavg()}")
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset: the OpenMP default)')}")

    if args.only_scaling:
        scaling(args)
        return

    if args.data:
        X, y, desc = load_data(args.data)
        res = compare(X, y, args, f"given data: {desc}", float64=False, cov=args.data_covariance)
        if "sk" in res:
            sk, tm = res["sk"], res["torch"]
            nmi = (f", NMI {tm['nmi']:.4f} vs {sk['nmi']:.4f}, ARI {tm['ari']:.4f} vs {sk['ari']:.4f}"
                   if y is not None else "")
            print(f"ratio_data: {sk['sec'] / tm['sec']:.2f}  (medians, wall; "
                  f"lb/sample {tm['lb']:.5f} vs {sk['lb']:.5f}{nmi})")
        print(f"\nload average at the end {os.getloadavg()}")
        return

    X, y = planted(args.n, args.d, args.clusters, args.seed)
    res = compare(X, y, args, f"planted mixture ({args.clusters} clusters)")
    if "sk" in res:
        sk, tm = res["sk"], res["torch"]
        print(
            f"ratio: {sk['sec'] / tm['sec']:.2f}  (medians, torch with the workflow's moves vs "
            f"scikit-learn, wall; lb/sample {tm['lb']:.5f} vs {sk['lb']:.5f}, "
            f"NMI {tm['nmi']:.4f} vs {sk['nmi']:.4f})"
        )
        for key, label in [("torch_no_moves", "ratio_no_moves"),
                           ("torch_sk_rule", "ratio_same_stopping_rule"),
                           ("torch64", "ratio_float64_same_rule")]:
            if key in res:
                print(f"{label}: {sk['sec'] / res[key]['sec']:.2f}")

    if not args.no_paper:
        Xp, desc = paper_activations(args.n, args.seed)
        res = compare(Xp, None, args, f"paper setting: {desc}", float64=False, cov="diag",
                      max_iter=300, concentration=1.0)
        if "sk" in res:
            print(f"ratio_paper: {res['sk']['sec'] / res['torch']['sec']:.2f}  (diag, "
                  f"lb/sample {res['torch']['lb']:.5f} vs {res['sk']['lb']:.5f})")

    os.chdir(ROOT)
    Xr, desc = real_activations(args.activations, args.n, args.seed, args.layer, args.d)
    if Xr is None:
        print(f"\n(no activations matching {args.activations!r}: real-data comparison skipped)")
    else:
        compare(Xr, None, args, f"real activations {desc}", float64=False)

    if args.scaling:
        scaling(args)
    print(f"\nload average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
