"""Extraction speed and memory: forward pass + Zarr write against the bare forward pass.

Runs, side by side on the same images and the same number of threads:

* the bare forward pass of the net (``model(x)``, outputs discarded), and
* ``convdp.extract.extract_activations`` (forward pass through the feature extractor,
  channels-last copy, and in a writer thread the chunk files written directly with
  ``O_DIRECT`` (``convdp.rawchunks``; through Zarr when compressed)),

for a realistic net (torchvision ResNet-18, random weights, 224×224 inputs, every block
output: ``relu, layer1 … layer4``) and for the default run's small net (DigitNet, 32×32,
``relu1 … relu4``). Both run with freed memory kept for reuse, as the extraction sets it
(``convdp.allocator``); the ``allocator`` line measures what that setting gains the bare
forward pass, in fresh processes against glibc's defaults. Peak memory is the peak RSS of a
fresh process extracting N and 4N images: streaming means it does not grow with N.

    python benchmarks/extract_speed.py            # headline lines first, then details and
                                                  # where the writer's time goes
    python benchmarks/extract_speed.py --codecs   # also: compression / chunking sweep

The realistic net is timed on N = 96 images and again on 4N: a run's fixed costs (tracing
the extractor, creating the store, the first touch of the chunk buffers, the last chunk's
write, which nothing overlaps) weigh on a short run; the difference of the two runs gives
the overhead per image of a long one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NETS = {
    "realistic": {"arch": "resnet18", "size": 224, "channels": 3, "n": 96, "chunk": 16, "batch": 16},
    "small": {"arch": "digitnet", "size": 32, "channels": 1, "n": 2048, "chunk": 256, "batch": 128},
}


def build(net: str, device: str = "cpu"):
    import torch

    from convdp.models import block_layers, build_model

    spec = NETS[net]
    torch.manual_seed(0)
    model = build_model(spec["arch"], 10, spec["channels"]).eval().to(device)
    return model, block_layers(model)


def images(net: str, n: int) -> np.ndarray:
    spec = NETS[net]
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, spec["size"], spec["size"], spec["channels"]), dtype=np.uint8)


def bare_forward(model, imgs, batch, device="cpu") -> float:
    """Seconds of the net's forward pass over ``imgs`` (inputs copied to ``device``, outputs
    left there)."""
    import torch

    from convdp.models import to_input
    from convdp.training import synchronize

    c = imgs.shape[-1]
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(imgs), batch):
            model(to_input(imgs[i : i + batch], [0.5] * c, [0.25] * c).to(device))
    synchronize(device)
    return time.perf_counter() - start


def extract(model, layers, imgs, chunk, batch, store, **kw) -> float:
    from convdp.extract import extract_activations

    c = imgs.shape[-1]
    shutil.rmtree(store, ignore_errors=True)
    start = time.perf_counter()
    extract_activations(model, imgs, layers, store, mean=[0.5] * c, std=[0.25] * c,
                        fingerprint={"bench": 1}, batch_size=batch, chunk_size=chunk,
                        progress=False, **kw)
    return time.perf_counter() - start


#: The sample store's plan (``convdp.storage.sample_plan``) under the schema's defaults, for a
#: target data set: the fits' 10,000 positions per layer (position and image mode), the
#: transfer scores' 20,000 and the mmd2 baseline's draws, every position of 3 example images.
SAMPLE_PLAN = {"modes": ["position", "image"], "max_samples": 10_000, "seed": 0,
               "transfer": {"mode": "position", "max_samples": 20_000, "n_examples": 3,
                            "role": "target"}}


def time_pair(net: str, compression: str = "none", repeats: int = 5, n: int | None = None,
              device: str = "cpu", sample: bool = False) -> dict:
    """Median (and best) of ``repeats`` seconds for bare forward and extraction of ``n``
    images (the net's default number unless given) on ``device``, interleaved so that load
    on the machine falls on both alike; with ``sample``, a sample store's extraction
    (:data:`SAMPLE_PLAN`) is a third peer, interleaved with them (``sample_s``)."""
    import torch

    from convdp.allocator import keep_freed_memory

    keep_freed_memory()  # what the extraction sets: both peers run under it (see allocator_effect)
    spec = NETS[net]
    n = n or spec["n"]
    model, layers = build(net, device)
    imgs = images(net, n)
    tmp = tempfile.mkdtemp(prefix="convdp-bench-")
    try:
        bare_forward(model, imgs[: spec["batch"]], spec["batch"], device)  # warm-up
        fwd, ext, smp = [], [], []
        for _ in range(repeats):
            fwd.append(bare_forward(model, imgs, spec["batch"], device))
            ext.append(extract(model, layers, imgs, spec["chunk"], spec["batch"], f"{tmp}/a.zarr",
                               compression=compression, device=device))
            if sample:
                smp.append(extract(model, layers, imgs, spec["chunk"], spec["batch"],
                                   f"{tmp}/s.zarr", compression=compression, device=device,
                                   sample=SAMPLE_PLAN))
        size = sum(os.path.getsize(os.path.join(d, f))
                   for d, _, fs in os.walk(f"{tmp}/a.zarr") for f in fs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    raw = sum(np.prod(s) * 4 for s in _layer_shapes(model, layers, imgs[:1], device))
    return {"net": net, "arch": spec["arch"], "layers": layers, "n": n,
            "forward_s": float(np.median(fwd)), "extract_s": float(np.median(ext)),
            "forward_best_s": min(fwd), "extract_best_s": min(ext),
            "ratios": [round(e / f, 3) for f, e in zip(fwd, ext, strict=True)],
            "sample_s": float(np.median(smp)) if smp else None,
            "sample_ratios": [round(e / f, 3) for f, e in zip(fwd, smp, strict=True)] if smp else [],
            "threads": torch.get_num_threads(), "device": device,
            "stored_mb": size / 1e6, "compression": compression, "raw_mb": raw * n / 1e6}


def _layer_shapes(model, layers, one, device="cpu"):
    import torch

    from convdp.extract import feature_extractor
    from convdp.models import to_input

    c = one.shape[-1]
    with torch.no_grad():
        out = feature_extractor(model, layers)(to_input(one, [0.5] * c, [0.25] * c).to(device))
    return [tuple(o.shape[1:]) for o in out.values()]


def peak_memory_worker(net: str, n: int, device: str) -> None:
    """(In a fresh process) extract n images on ``device``; print the peak RSS in MB."""
    spec = NETS[net]
    model, layers = build(net, device)
    one = images(net, spec["batch"])

    class Repeat:  # n images without holding n images: the input must not dominate memory
        shape = (n, *one.shape[1:])

        def __getitem__(self, sl):
            idx = np.arange(n)[sl] % len(one)
            return one[idx]

        def __len__(self):
            return n

    with tempfile.TemporaryDirectory() as tmp:
        extract(model, layers, Repeat(), spec["chunk"], spec["batch"], f"{tmp}/m.zarr",
                device=device)
    print(json.dumps({"peak_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: the high-water mark of its own address
    space (``VmHWM``). Not ``getrusage``'s ``ru_maxrss``: Linux keeps that across
    ``execve``, so a worker started by a process that had used more memory reported the
    parent's peak (1287 MB for DigitNet's extraction and for ResNet-18's, at N and at 4N
    alike, after this script's timed runs), and every ``memory`` ratio read 1.00 (fixed
    2026-12-05; the ratios before were measured that way)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # no /proc (macOS): getrusage, in bytes there
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def _in_fresh_process(*args: str) -> dict:
    """This script run with ``args`` (a ``--…-worker`` flag and its values) in a fresh
    process: the JSON line it prints last."""
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_memory(net: str, n: int, device: str) -> float:
    return _in_fresh_process("--memory-worker", net, str(n), device)["peak_mb"]


def forward_worker(mode: str, device: str) -> None:
    """(In a fresh process) the median of 3 bare forward passes of the realistic net over its
    N images, after a warm-up, under glibc's default allocator (``mode`` "default") or with
    freed memory kept (``"keep"``, :func:`convdp.allocator.keep_freed_memory`); prints seconds."""
    from convdp.allocator import keep_freed_memory

    if mode == "keep":
        keep_freed_memory()
    spec = NETS["realistic"]
    model, _ = build("realistic", device)
    imgs = images("realistic", spec["n"])
    bare_forward(model, imgs[: spec["batch"]], spec["batch"], device)
    times = [bare_forward(model, imgs, spec["batch"], device) for _ in range(3)]
    print(json.dumps({"seconds": float(np.median(times))}))


def allocator_effect(device: str, pairs: int = 2) -> None:
    """The bare forward pass with glibc's defaults against freed memory kept, in fresh
    processes (the setting is process-wide), alternated; the extraction runs under the second."""
    runs = {"default": [], "keep": []}
    for _ in range(pairs):
        for mode in runs:
            runs[mode].append(_in_fresh_process("--forward-worker", mode, device)["seconds"])
    d, k = (float(np.median(v)) for v in runs.values())
    print(f"allocator: bare forward of resnet18 over {NETS['realistic']['n']} images, fresh "
          f"processes, glibc's defaults {d:.2f} s {[round(x, 2) for x in runs['default']]}, "
          f"freed memory kept (the extraction's setting, convdp.allocator) {k:.2f} s "
          f"{[round(x, 2) for x in runs['keep']]}: {d / k:.2f}x")


def writer_breakdown(repeats: int = 7, device: str = "cpu") -> None:
    """Where the extraction's time goes beyond the forward pass, per chunk of the realistic
    net (medians of ``repeats``): the channels-last copy into the chunk buffer, the finite
    check, the Zarr write of the chunk through Zarr, the direct write the extraction does for
    uncompressed stores (``convdp.rawchunks``: the chunk files, ``O_DIRECT``) and a plain
    buffered file write of the same bytes. Wall and CPU seconds: on a machine with few
    cores the writer's CPU time is what it takes from the forward pass."""
    import torch
    import zarr

    from convdp import rawchunks
    from convdp.extract import check_finite, feature_extractor, to_channels_last
    from convdp.models import to_input
    from convdp.training import synchronize

    spec = NETS["realistic"]
    model, layers = build("realistic", device)
    ext = feature_extractor(model, layers)
    x = to_input(images("realistic", spec["chunk"]), [0.5] * 3, [0.25] * 3).to(device)
    with torch.no_grad():
        res = ext(x)
    bufs = {k: rawchunks.aligned_empty(to_channels_last(k, v).shape, np.float32)
            for k, v in res.items()}
    tmp = tempfile.mkdtemp(prefix="convdp-bench-")
    try:
        g = zarr.open_group(f"{tmp}/b.zarr", mode="w")
        arrs = {k: g.create_array(k, shape=v.shape, chunks=v.shape, dtype="float32", compressors=None,
                                  fill_value=0).with_config({"write_empty_chunks": True})
                for k, v in bufs.items()}

        def forward():
            with torch.no_grad():
                ext(x)
            synchronize(device)

        def copy():
            for k, v in res.items():
                torch.from_numpy(bufs[k]).copy_(to_channels_last(k, v))

        def check():
            for k, v in res.items():
                check_finite(k, to_channels_last(k, v), 0)

        def zarr_write():
            for k, v in bufs.items():
                arrs[k][:] = v

        direct = rawchunks.DirectWriter()

        def direct_write():
            for k, v in bufs.items():
                direct.write(Path(tmp) / f"{k}.direct", v)

        def file_write():
            for k, v in bufs.items():
                with open(f"{tmp}/{k}.raw", "wb") as f:
                    f.write(memoryview(v).cast("B"))

        parts = {"forward": forward, "channels-last copy": copy, "finite check": check,
                 "zarr write": zarr_write, "direct write": direct_write,
                 "plain file write": file_write}
        times = {name: [] for name in parts}
        cpu = {name: [] for name in parts}
        for _ in range(repeats):
            for name, f in parts.items():
                os.sync()  # no write-back of the previous part's pages inside this one's time
                t0, c0 = time.perf_counter(), time.process_time()
                f()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mb = sum(v.nbytes for v in bufs.values()) / 1e6
    fwd = float(np.median(times["forward"]))
    print(f"\nwriter breakdown, one chunk of {spec['chunk']} images ({mb:.0f} MB), medians of "
          f"{repeats}: wall, share of the forward pass, CPU (both threads)"
          f"{'' if direct.direct else ' (O_DIRECT refused here: buffered)'}")
    for name, ts in times.items():
        med = float(np.median(ts))
        rate = f", {mb / med / 1e3:.2f} GB/s" if name != "forward" else ""
        print(f"  {name:<20s}{med * 1e3:8.1f} ms  {med / fwd:6.3f}{rate}; "
              f"cpu {float(np.median(cpu[name])) * 1e3:.1f} ms")


def codec_sweep() -> None:
    """Throughput and size of the realistic net's activations under several codecs/chunks."""
    import zarr
    from zarr.codecs import BloscCodec

    model, layers = build("realistic")
    imgs = images("realistic", 32)
    import torch

    from convdp.extract import feature_extractor, to_channels_last
    from convdp.models import to_input

    with torch.no_grad():
        outs = feature_extractor(model, layers)(to_input(imgs, [0.5] * 3, [0.25] * 3))
    arrays = {k: to_channels_last(k, v).contiguous().numpy() for k, v in outs.items()}
    raw = sum(a.nbytes for a in arrays.values())
    print(f"\ncodec sweep: {raw / 1e6:.0f} MB of float32 activations (32 images, ResNet-18 blocks)")
    print(f"{'codec':<28}{'chunk':>6}{'write MB/s':>12}{'read MB/s':>11}{'ratio':>7}")
    from convdp.extract import compressor

    codecs = {
        "none": None,
        "blosc lz4 clevel 1 bitshuffle": compressor("lz4"),
        "blosc zstd clevel 1 bitshuffle": compressor("zstd"),
        "blosc lz4 clevel 1 shuffle": BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"),
        "blosc lz4 clevel 5 shuffle": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    }
    for name, codec in codecs.items():
        for chunk in (8, 32):
            with tempfile.TemporaryDirectory() as tmp:
                g = zarr.open_group(f"{tmp}/s.zarr", mode="w")
                start = time.perf_counter()
                for k, a in arrays.items():
                    arr = g.create_array(k, shape=a.shape, chunks=(chunk, *a.shape[1:]),
                                         dtype="float32", compressors=codec).with_config(
                        {"write_empty_chunks": True})
                    arr[:] = a
                w = time.perf_counter() - start
                start = time.perf_counter()
                for k in arrays:
                    g[k][:]
                r = time.perf_counter() - start
                size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp) for f in fs)
            print(f"{name:<28}{chunk:>6}{raw / w / 1e6:>12.0f}{raw / r / 1e6:>11.0f}{raw / size:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", action="store_true", help="also sweep codecs and chunk sizes")
    parser.add_argument("--compression", default="none", choices=["none", "lz4", "zstd"],
                        help="extract.compression for the timed extraction (default: none)")
    parser.add_argument("--device", default="auto",
                        help="where the nets run: auto (a GPU where there is one), cpu, cuda, cuda:N")
    parser.add_argument("--memory-worker", nargs=3, metavar=("NET", "N", "DEVICE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--forward-worker", nargs=2, metavar=("MODE", "DEVICE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        peak_memory_worker(args.memory_worker[0], int(args.memory_worker[1]), args.memory_worker[2])
        return
    if args.forward_worker:
        forward_worker(*args.forward_worker)
        return
    import torch

    from convdp.training import resolve_device

    resolved = resolve_device(args.device)
    device = str(resolved)
    where = (torch.cuda.get_device_name(resolved) if resolved.type == "cuda"
             else f"the CPU, {torch.get_num_threads()} threads")
    print(f"device: {device} ({where}); torch {torch.__version__}")
    results = {net: time_pair(net, args.compression, device=device, sample=net == "realistic")
               for net in NETS}
    long_run = time_pair("realistic", args.compression, n=4 * NETS["realistic"]["n"], device=device,
                         sample=True)
    mem = {net: (peak_memory(net, NETS[net]["n"], device), peak_memory(net, 4 * NETS[net]["n"], device))
           for net in NETS}
    r, s = results["realistic"], results["small"]
    print(f"realistic net ({r['arch']}, 224x224, {len(r['layers'])} block outputs): "
          f"overhead {r['extract_s'] / r['forward_s']:.2f} "
          f"(medians of 5 interleaved: extract {r['extract_s']:.2f} s / bare forward "
          f"{r['forward_s']:.2f} s, {r['n']} images; best {r['extract_best_s']:.2f} / "
          f"{r['forward_best_s']:.2f}; per pair {r['ratios']})")
    q = long_run
    marginal = (q["extract_s"] - r["extract_s"]) / (q["forward_s"] - r["forward_s"])
    fixed = r["extract_s"] - r["forward_s"] * marginal
    print(f"realistic net, 4N={q['n']} images: overhead {q['extract_s'] / q['forward_s']:.2f} "
          f"(medians of 5 interleaved: extract {q['extract_s']:.2f} s / bare forward "
          f"{q['forward_s']:.2f} s; per pair {q['ratios']}); per image beyond a fixed cost: "
          f"{marginal:.2f} (the 3N more images' extra time over their extra forward time), "
          f"fixed cost {fixed:.2f} s (tracing, store creation, first touch of the chunk "
          f"buffers, the last chunk's write)")
    for res in (r, q):
        print(f"realistic net, sample store (extract.store: sample, the schema's defaults), "
              f"{res['n']} images: overhead {res['sample_s'] / res['forward_s']:.2f} (medians of 5 "
              f"interleaved with the two above: extract {res['sample_s']:.2f} s; per pair "
              f"{res['sample_ratios']})")
    m1, m4 = mem["realistic"]
    print(f"realistic net: memory {m4 / m1:.2f} (peak RSS {m4:.0f} MB at 4N={4 * r['n']} "
          f"/ {m1:.0f} MB at N={r['n']})")
    print(f"small net (digitnet, 32x32, {len(s['layers'])} layers): overhead "
          f"{s['extract_s'] / s['forward_s']:.2f} (medians: extract {s['extract_s']:.2f} s / bare "
          f"forward {s['forward_s']:.2f} s, {s['n']} images)")
    m1, m4 = mem["small"]
    print(f"small net: memory {m4 / m1:.2f} (peak RSS {m4:.0f} MB at 4N / {m1:.0f} MB at N)")
    for res in results.values():
        print(f"  {res['arch']}: {res['raw_mb']:.0f} MB of activations stored as "
              f"{res['stored_mb']:.0f} MB (compression: {res['compression']}), torch threads {res['threads']}")
    if resolved.type == "cpu":
        allocator_effect(device)
    writer_breakdown(device=device)
    if args.codecs:
        codec_sweep()


if __name__ == "__main__":
    main()
