"""Mask agreement: upsampling, foreground NMI / ARI, per-cluster IoU, loading and resizing."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from convdp.masks import (
    add_summary_columns,
    agreement,
    load_masks,
    mask_table,
    plot_mask_agreement,
    resize_mask,
    upsample,
)


def test_upsample_is_nearest():
    labels = np.array([[[0, 1], [2, 3]]])
    up = upsample(labels, (4, 4))
    assert up.shape == (1, 4, 4)
    assert (up[0, :2, :2] == 0).all() and (up[0, 2:, 2:] == 3).all()


def test_perfect_and_permuted_labels_score_one():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 4, (3, 8, 8))
    labels = (masks + 2) % 5  # a relabelling of the parts, background to its own cluster
    record, table = agreement(labels, masks, np.full(5, 0.2))
    assert record["nmi"] == pytest.approx(1) and record["ari"] == pytest.approx(1)
    assert record["purity"] == 1
    assert (table["iou"] == 1).all()
    assert dict(zip(table["cluster"], table["best_label"], strict=True)) == {2: 0, 3: 1, 4: 2, 0: 3}


def test_background_is_left_out_of_the_foreground_scores():
    masks = np.zeros((1, 4, 4), int)
    masks[0, :, 2:] = 1
    masks[0, 3, 2:] = 2
    labels = masks.copy()
    labels[0, :, :2] = 7 * np.arange(4)[:, None] % 5  # background split any way at all
    record, _ = agreement(labels, masks, np.full(8, 0.1), background=0)
    assert record["ari"] == pytest.approx(1)
    assert record["foreground_pixels"] == 8 and record["parts"] == 2


def test_split_parts_are_pure_but_score_a_low_ari():
    rng = np.random.default_rng(2)
    masks = rng.integers(1, 3, (2, 16, 16))
    labels = masks * 10 + rng.integers(0, 6, masks.shape)  # every part cut in six at random
    record, _ = agreement(labels, masks, np.full(30, 0.03))
    assert record["purity"] == 1 and record["ari"] < 0.3


def test_random_labels_score_near_zero():
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 4, (4, 32, 32))
    record, _ = agreement(rng.integers(0, 5, (4, 32, 32)), masks, np.full(5, 0.2))
    assert abs(record["ari"]) < 0.02 and record["nmi"] < 0.02


def test_load_masks_same_names_and_geometry(tmp_path):
    (tmp_path / "a").mkdir()
    mask = np.zeros((20, 30), np.uint8)
    mask[:, 15:] = 2
    Image.fromarray(mask).save(tmp_path / "a" / "x.png")
    out = load_masks(tmp_path, ["a/x.jpg"], 10, (10, 10))  # another extension, same stem
    assert out.shape == (1, 10, 10) and set(np.unique(out)) == {0, 2}
    assert (resize_mask(mask, 10) == out[0]).all()
    with pytest.raises(FileNotFoundError, match="no mask for image"):
        load_masks(tmp_path, ["a/y.png"], 10, (10, 10))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a" / "c.png")
    with pytest.raises(ValueError, match="single-channel"):
        load_masks(tmp_path, ["a/c.png"], None, (4, 4))


def test_summary_columns_and_figure(tmp_path):
    records = [{"model": m, "control_of": c, "dataset": "p", "layer": f"r{i}", "layer_index": i,
                "nmi": 0.1 * i + s, "ari": 0.05 * i + s, "mean_best_iou": 0.3}
               for m, c, s in (("net", None, 0.2), ("net_random", "net", 0.0)) for i in range(3)]
    df = pd.DataFrame({"model": ["net", "net"], "dataset": "p", "layer": ["r1", "r1"],
                       "mode": "position", "method": ["dpgmm", "baseline"]})
    out = add_summary_columns(df, records)
    assert out["mask_ari"].tolist()[0] == pytest.approx(0.25) and np.isnan(out["mask_purity"][0]) and np.isnan(out["mask_ari"][1])
    plot_mask_agreement(mask_table(records), tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 1000


def test_config_checks_the_mask_folder(tmp_path):
    from convdp.config import ConfigError, validate_config

    (tmp_path / "img" / "a").mkdir(parents=True)

    def config(**ds):
        return {"datasets": {"p": ds},
                "models": {"m": {"arch": "digitnet", "weights": "none", "analyse_on": ["p"],
                                 "layers": ["relu1"]}}}

    with pytest.raises(ConfigError, match="mask folder .* does not exist"):
        validate_config(config(kind="folder", path=str(tmp_path / "img"),
                               masks=str(tmp_path / "nope")), check_layers=False)
    with pytest.raises(ConfigError, match="only an image folder"):
        validate_config(config(kind="digits", masks=str(tmp_path)), check_layers=False)
