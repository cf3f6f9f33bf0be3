"""Every benchmark script the README names starts: its imports resolve against the package as
it is now and ``--help`` prints its usage (a script that only runs by hand is otherwise never
imported by the suite: a moved constant broke ``paper_image_size.py`` unnoticed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))


def test_the_benchmarks_folder_holds_the_scripts_the_readme_names():
    readme = (ROOT / "README.md").read_text()
    named = {name for name in SCRIPTS if f"benchmarks/{name}" in readme}
    assert named == set(SCRIPTS), f"not in the README: {sorted(set(SCRIPTS) - named)}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts_and_prints_its_usage(script):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.lstrip().startswith("usage:"), out.stdout[:500]


def test_gpu_script_runs_the_steps_it_is_given(tmp_path):
    """``benchmarks/gpu.sh OUTDIR STEP...`` runs only the named steps (a lent GPU gives one
    command 10 minutes, the three steps take 11), with ``DPGMM_ARGS`` passed on, and refuses
    a step it does not know. ``PYTHON=echo`` stands in for the interpreter: what is checked
    is which commands the script runs, not the benchmarks."""
    def gpu(*args, **env):
        return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), str(tmp_path), *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={"PATH": "/usr/bin:/bin", "PYTHON": "echo", **env})

    out = gpu("dpgmm", DPGMM_ARGS="--repeats 2")
    assert out.returncode == 0, out.stderr
    assert "benchmarks/dpgmm_speed.py --device cuda --activations none --repeats 2" in out.stdout
    assert "== agree" not in out.stdout and "extract_speed" not in out.stdout
    assert (tmp_path / "gpu_dpgmm.txt").exists() and not (tmp_path / "gpu_agree.txt").exists()
    out = gpu("agree", "warp")
    assert out.returncode == 2 and "unknown step 'warp'" in out.stderr
    assert not (tmp_path / "gpu_agree.txt").exists()


def _load_benchmark(name):
    """A benchmark script imported as a module (its folder is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}",
                                                  ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gemm_reference_is_timed_on_the_shape_of_the_fits_estep_product(monkeypatch):
    """``efficiency`` sets the E-step's GEMM rate against ``torch.mm`` on ``estep_shape``: that
    must be a product the fit runs. On a CPU a "full" block's product runs on row slices
    (``_slice_elems``); the reference was timed on the whole block (1,310 rows at D 64, K 50,
    where every product of the first E-step has 655)."""
    import numpy as np
    import torch

    from convdp.dpgmm import TorchBayesianGaussianMixture

    bench = _load_benchmark("dpgmm_speed")
    n, d, K = 3000, 64, 50
    X, _ = bench.planted(n, d, 10, 0)
    products, mm = [], torch.mm

    def recording_mm(a, b, *args, **kw):
        if a.shape[1] == b.shape[0] == d + 1 and b.shape[1] == K * d:  # [x, 1] @ [P_k | -mu_k P_k]
            products.append((a.shape[0], a.shape[1], b.shape[1]))
        return mm(a, b, *args, **kw)

    est = TorchBayesianGaussianMixture(n_components=K, max_iter=1, random_state=0,
                                       kmeans_max_iter=5)
    monkeypatch.setattr(torch, "mm", recording_mm)
    est.fit(X)
    monkeypatch.setattr(torch, "mm", mm)
    shape = bench.estep_shape(est, n, d, K, "full")
    assert products[0] == shape == (655, d + 1, K * d), (products, shape)
    assert np.mean([p == shape for p in products]) > 0.5, (products, shape)


def test_scale_bare_forward_runs_with_the_extractions_allocator_setting(tmp_path):
    """``scale.py`` sets every stage's seconds against one bare forward pass; the stages run
    in workers whose extraction keeps freed memory for reuse (``convdp.allocator``), so the
    bare pass must too (under glibc's defaults VGG16's is 1.05-1.19x slower, and every
    ``x forward`` read that much low). A fresh process, as the benchmark's own: the setting
    is process-wide."""
    script = f"""
import sys
sys.path.insert(0, {str(ROOT / "benchmarks")!r})
import numpy as np, torch
import scale
from convdp.allocator import keep_freed_memory
from convdp.data import Dataset, write_dataset
from convdp.io import write_json
from convdp.models import build_model, layer_names, save_state_dict

folder = __import__("pathlib").Path({str(tmp_path)!r})
write_dataset(folder / "d.zarr", Dataset(np.zeros((4, 32, 32, 1), np.uint8), None, [], "zeros"))
torch.manual_seed(0)
net = build_model("digitnet", 10, 1).eval()
save_state_dict(net, folder / "w.pt")
write_json(folder / "m.json", {{"arch": "digitnet", "num_classes": 10, "in_channels": 1,
                                "mean": [0.5], "std": [0.25], "layer_names": layer_names(net)}})
scale.bare_forward(folder / "w.pt", folder / "m.json", folder / "d.zarr", 2, "cpu")
print("kept", keep_freed_memory.cache_info().currsize)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "kept 1", out.stdout


def test_per_iteration_divides_torch_seconds_by_every_em_iteration_the_fit_ran(monkeypatch,
                                                                                capsys):
    """``per iteration`` sets each peer's fit seconds against its EM iterations. Torch's
    ``n_iter_`` leaves out the iterations of rejected refined merges (they do not count
    towards ``max_iter``), whose seconds are in its fit time: here 14 counted of 18 run, and
    the torch figure came out 18 / 14 too slow."""
    from sklearn.mixture import BayesianGaussianMixture

    from convdp.dpgmm import TorchBayesianGaussianMixture

    bench = _load_benchmark("dpgmm_speed")
    X, y = bench.planted(2000, 8, 10, 0)
    passes, estep = [], TorchBayesianGaussianMixture._e_step_stats

    def counted(self, *args):  # one pass over the data per EM iteration
        passes.append(1)
        return estep(self, *args)

    monkeypatch.setattr(TorchBayesianGaussianMixture, "_e_step_stats", counted)
    common = dict(n_components=20, max_iter=100, random_state=0)
    torch_fit = bench.run_fit("torch", lambda: TorchBayesianGaussianMixture(
        **common, merge=True, delete_below=0.01, kmeans_max_iter=10), X, y, quiet=True)
    sk_fit = bench.run_fit("sk", lambda: BayesianGaussianMixture(**common), X, y, quiet=True)
    run = len(passes)
    assert torch_fit["n_iter"] < run, (torch_fit["n_iter"], run)
    torch_fit["sec"], sk_fit["sec"] = 0.1 * run, 0.1 * sk_fit["n_iter"]  # the divisors are the test
    bench.per_iteration({"sk": [sk_fit], "torch": [torch_fit]})
    out = capsys.readouterr().out
    assert f"torch 0.100 s ({run} iterations)" in out, out
    assert f"scikit-learn 0.100 s ({sk_fit['n_iter']} iterations)" in out, out
