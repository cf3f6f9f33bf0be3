"""Image folders through the whole workflow: class sub-folders, a flat folder, a truncated JPEG."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.test_workflow import snakemake


def make_images(folder, n, colour, seed):
    """n small RGB images: a coloured square at a random place on noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
        r, c = rng.integers(0, 10, 2)
        img[r : r + 8, c : c + 8] = colour
        Image.fromarray(img).save(folder / f"img{i:03d}.png")


def truncated_jpeg(path):
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(path, "JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def folder_config(tmp_path, labelled, flat, on_error="stop"):
    cfg = {
        "seed": 0,
        "datasets": {
            "shapes": {"kind": "folder", "path": str(labelled), "size": 16, "on_error": on_error},
            "unlabelled": {"kind": "folder", "path": str(flat), "size": 16, "on_error": on_error},
        },
        "models": {"net": {"arch": "digitnet", "weights": "train", "train_on": "shapes",
                           "analyse_on": ["shapes", "unlabelled"], "layers": ["relu2"],
                           "train": {"epochs": 2}}},
        "extract": {"device": "cpu", "batch_size": 16, "chunk_size": 32},
        "preprocess": {"max_samples": 800, "pca": 4},
        "dpgmm": {"n_components": 4, "max_iter": 20},
        "baseline": {"k_min": 1, "k_max": 3, "max_iter": 20},
        "report": {"n_examples": 2},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def folders(tmp_path):
    labelled, flat = tmp_path / "shapes", tmp_path / "flat"
    make_images(labelled / "red", 24, (220, 30, 30), 0)
    make_images(labelled / "blue", 24, (30, 30, 220), 1)
    make_images(flat, 20, (30, 220, 30), 2)
    return labelled, flat


@pytest.mark.slow
def test_labelled_and_flat_folders_run_end_to_end(repo_root, tmp_path, folders):
    cfg = folder_config(tmp_path, *folders)
    out = snakemake(repo_root, tmp_path / "work", "--cores", "2", "--configfile", str(cfg))
    assert out.returncode == 0, out.stderr[-3000:]
    df = pd.read_csv(tmp_path / "work/results/summary.csv")
    assert set(df["dataset"]) == {"shapes", "unlabelled"}
    # scores against labels only where there are labels: never faked for the flat folder
    assert df.loc[df["dataset"] == "shapes", "nmi"].notna().all()
    assert df.loc[df["dataset"] == "unlabelled", "nmi"].isna().all()
    assert (tmp_path / "work/results/figures/label_maps.png").stat().st_size > 5000


def test_truncated_jpeg_stops_naming_the_file_or_is_skipped(repo_root, tmp_path, folders):
    labelled, flat = folders
    truncated_jpeg(flat / "broken.jpg")
    work = tmp_path / "work"
    target = "results/data/unlabelled.zarr"
    out = snakemake(repo_root, work, target, "--cores", "1", "--configfile",
                    str(folder_config(tmp_path, labelled, flat, "stop")))
    assert out.returncode != 0
    log = (work / "logs/prepare_dataset/unlabelled.log").read_text()
    assert "broken.jpg" in log
    assert not (work / target).exists()
    out = snakemake(repo_root, work, target, "--cores", "1", "--configfile",
                    str(folder_config(tmp_path, labelled, flat, "skip")))
    assert out.returncode == 0, out.stderr[-2000:]
    from convdp.data import read_dataset

    ds = read_dataset(work / target)
    assert len(ds.images) == 20 and ds.labels is None
    assert "broken.jpg" in (work / "logs/prepare_dataset/unlabelled.log").read_text()
    # the successful job's warning is printed at the end of the run, not left in its log
    assert re.search(r"convdp: 1 warning\(s\) in this run's job logs:\n  logs/prepare_dataset/"
                     r"unlabelled\.log: skipping unreadable image .*broken\.jpg", out.stderr)
