"""The cluster atlas (exemplar crops under receptive fields) and the mask path end to end."""

import math

import numpy as np
import pandas as pd
import pytest

from convdp.atlas import (
    CAPTION,
    CELL,
    atlas_mosaic,
    atlas_rows,
    crop,
    exemplars,
    plot_atlas,
    typical_positions,
)
from convdp.io import read_json
from convdp.parts import make_parts
from convdp.plotting import cluster_colours
from convdp.receptive import Field
from tests.conftest import ROOT
from tests.test_workflow import snakemake


def test_crop_pads_outside_the_image_with_a_checkerboard():
    """Not white: in the digits' atlas white padding read as strokes."""
    image = np.arange(36, dtype=np.uint8).reshape(6, 6, 1)
    field = Field((2, 2), (-1, -1), (4, 4))
    inside = crop(image, field, 1, 1)  # pixels 1..4
    assert (inside[..., 0] == image[1:5, 1:5, 0]).all()
    corner = crop(image, field, 0, 0)  # pixels -1..2
    assert corner.shape == (4, 4, 1)
    assert corner[0, :, 0].tolist() == [150, 205, 150, 205]
    assert corner[:, 0, 0].tolist() == [150, 205, 150, 205]
    assert (corner[1:, 1:, 0] == image[:3, :3, 0]).all()
    rgb = crop(np.zeros((6, 6, 3), np.uint8), field, 0, 0)
    assert (rgb[0, 0] == 150).all() and (rgb[0, 1] == 205).all()  # grey in every channel
    # a field wholly outside the image (a 1 x 1 conv padded by 3 after a 3 x 3 one): all
    # checkerboard; the box's clipped sides crossed and the crop failed, taking the atlas down
    beyond = Field((1, 1), (-4, -4), (3, 3))
    for i, j in ((0, 0), (13, 13)):
        far = crop(image, beyond, i, j)
        assert far.shape == (3, 3, 1) and set(far.ravel().tolist()) == {150, 205}


def test_rows_are_kept_clusters_with_distinct_images():
    labels = np.array([[[0, 0], [1, 1]], [[0, 0], [0, 0]], [[2, 2], [2, 1]]])
    weights = np.array([0.5, 0.3, 0.195, 0.005])
    best = np.array([[0.9, 0.8, 0.1, 0], [0.99, 0.2, 0, 0], [0.3, 0.7, 0.95, 0]])
    where = np.array([[0, 2, 1, 0], [3, 0, 0, 0], [0, 3, 0, 0]])
    rows = atlas_rows(labels, weights, best, where, n=2, weight_threshold=0.01, max_clusters=10)
    assert [r["cluster"] for r in rows] == [0, 1, 2]
    assert rows[0]["exemplars"] == [(1, 3, 0.99), (0, 0, 0.9)]
    assert rows[1]["image_share"] == pytest.approx(2 / 3)
    assert [e[0] for e in rows[2]["exemplars"]] == [2]  # below 0.5 responsibility left out
    assert exemplars(best, where, 1, 5, min_responsibility=0.0)[0][0] == 0


class _Certain:
    """A stand-in mixture: two clusters, cluster 0 certain wherever x[0] < 5."""

    means_ = np.array([[0.0, 0.0], [10.0, 0.0]])

    def predict_proba(self, x):
        p0 = (x[:, 0] < 5).astype(float)
        return np.stack([p0, 1 - p0], 1)


class _Identity:
    def transform(self, x):
        return x


def test_typical_positions_prefer_the_nearest_of_the_certain():
    array = np.zeros((2, 2, 2, 2), np.float32)
    array[0, :, :, 0] = [[3, 1], [4, 2]]  # all certain for cluster 0; nearest its mean: (0, 1)
    array[1, :, :, 0] = [[0.5, 9], [9, 9]]  # image 1 holds the most typical of all
    resp, where, key = typical_positions(array, (_Identity(), _Certain()), 2)
    assert where[0, 0] == 1 and where[1, 0] == 0 and resp[0, 0] == 1
    assert [e[0] for e in exemplars(resp, where, 0, 2, key)] == [1, 0]
    # a smoothed layer's border positions (copies of the inner ones) are no candidates
    candidates = np.array([[False, False], [True, True]])
    resp, where, _ = typical_positions(array, (_Identity(), _Certain()), 2, candidates)
    assert where[0, 0] == 3 and where[1, 0] == 2 and resp[1, 0] == 0  # image 1: 9 and 9 left
    resp, _, _ = typical_positions(array, (_Identity(), _Certain()), 2, np.zeros((2, 2), bool))
    assert not resp.any()  # no candidate: no exemplar (not the first position's)


def test_plot_atlas(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    rows = [{"cluster": 1, "weight": 0.6, "image_share": 1.0, "exemplars": [(0, 5, 0.9)]},
            {"cluster": 0, "weight": 0.4, "image_share": 0.5, "exemplars": []}]
    plot_atlas(rows, images, Field((2, 2), (-1, -1), (4, 4)), (4, 4),
               cluster_colours(np.array([0.4, 0.6])), "t", tmp_path / "a.png", 3)
    assert (tmp_path / "a.png").stat().st_size > 1000


@pytest.mark.parametrize("jump, said", [((2, 2), "stride 2 px"), ((1, 2), "stride 1×2 px")])
def test_the_atlas_title_gives_the_stride_of_both_axes(monkeypatch, jump, said):
    """A layer strided (1, 2) was titled "stride 1": the columns' stride was dropped."""
    from convdp import plotting

    figures = []
    monkeypatch.setattr(plotting, "save_figure", lambda fig, dest: figures.append(fig))
    images = np.random.default_rng(0).integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)
    rows = [{"cluster": 0, "weight": 1.0, "image_share": 1.0, "exemplars": [(0, 5, 0.9)]}]
    plot_atlas(rows, images, Field(jump, (-1, -1), (3, 3)), (8, 8 // jump[1]),
               cluster_colours(np.array([1.0])), "t", "unused.png", 1)
    title = figures[0]._suptitle.get_text().splitlines()[0]
    assert title == f"t: receptive field 3×3 px, {said}"
    plotting.pyplot().close(figures[0])


def test_the_atlas_captions_sit_between_the_rows_crops(monkeypatch):
    """Each exemplar's caption (image #, responsibility) is drawn above its crop and below
    the crops of the row above (it touched their frames)."""
    from convdp import plotting

    figures = []
    monkeypatch.setattr(plotting, "save_figure", lambda fig, dest: figures.append(fig))
    images = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    rows = [{"cluster": k, "weight": 0.3, "image_share": 1.0,
             "exemplars": [(0, 5, 0.9), (1, 6, 0.8), (2, 7, 0.7)]} for k in range(6)]
    plot_atlas(rows, images, Field((2, 2), (-1, -1), (4, 4)), (4, 4),
               cluster_colours(np.full(6, 0.3)), "t", "unused.png", 3)
    fig = figures[0]
    fig.canvas.draw()
    (ax,) = fig.axes
    _, _, row_pitch = atlas_mosaic(rows, images, Field((2, 2), (-1, -1), (4, 4)), 4,
                                   cluster_colours(np.full(6, 0.3)), 3)
    captions = [t for t in ax.texts if t.get_text().startswith("#")]
    assert len(captions) == 18
    for i, text in enumerate(captions):
        r = i // 3
        box = text.get_window_extent()
        # display y grows upwards; the axes' data y downwards
        _, crop_top = ax.transData.transform((0, r * row_pitch + CAPTION))
        _, above = ax.transData.transform((0, r * row_pitch))  # the row above's crops end
        assert crop_top <= box.y0 and box.y1 <= above + 0.5, (i, box, crop_top, above)
    plotting.pyplot().close(fig)


def test_the_mosaic_puts_each_crop_in_its_cell_framed_in_its_colour():
    images = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8, 1)
    field = Field((2, 2), (-1, -1), (4, 4))  # 4x4 px fields, stride 2 -> a 4x4 label map
    colours = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    rows = [{"cluster": 1, "exemplars": [(1, 5, 0.9), (0, 0, 0.8)]},
            {"cluster": 0, "exemplars": [(0, 15, 0.7)]}]
    mosaic, pitch, row_pitch = atlas_mosaic(rows, images, field, 4, colours, n=3, border=3,
                                            gap=4, caption=10)
    scale = CELL // 4
    assert pitch == 4 * scale + 6 + 4 and row_pitch == 4 * scale + 6 + 10
    assert mosaic.shape == (2 * row_pitch, 3 * pitch, 3)
    assert (mosaic[:10] == 1).all()  # the caption band above the first row's crops: white
    inner = mosaic[13:13 + 4 * scale:scale, 3:3 + 4 * scale:scale, 0] * 255
    assert np.allclose(inner, crop(images[1], field, 1, 1)[..., 0])  # row 0, first exemplar
    assert (mosaic[10, 0] == colours[1]).all() and (mosaic[row_pitch + 10, 0] == colours[0]).all()
    top = row_pitch + 10 + 3
    corner = mosaic[top:top + 4 * scale:scale, 3:3 + 4 * scale:scale, 0] * 255
    assert np.allclose(corner, crop(images[0], field, 3, 3)[..., 0])  # clipped: checkers
    assert set(corner[-1].round()) == {150, 205} and (mosaic[row_pitch:, 2 * pitch:] == 1).all()


@pytest.mark.slow
def test_parts_workflow_writes_atlas_and_mask_tables(tmp_path):
    parts = tmp_path / "parts"
    make_parts(parts, n=48, size=32, seed=0)
    config = tmp_path / "parts.yaml"
    config.write_text((ROOT / "tests/config/parts_tiny.yaml").read_text()
                      .replace("PARTS_DIR", str(parts)))
    out = snakemake(ROOT, tmp_path, "--cores", "2", "--configfile", str(config), timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    res = tmp_path / "results"
    for model in ("net", "net_random"):
        # relu1 (3 x 3 px) is smoothed at the sigma chosen from each net's maps (auto): the
        # store holds that sigma, and a position sees ceil(3 sigma) more on each side
        sigma = read_json(res / f"smoothing/{model}.json")["layers"]["relu1"]["sigma"]
        stored = read_json(res / f"activations/{model}/parts.json")["smooth"]
        assert stored == ({"relu1": sigma} if sigma else {}), (sigma, stored)
        for layer in ("relu1", "relu2"):
            assert (res / f"figures/atlas/{model}/parts/{layer}.png").stat().st_size > 1000
            atlas = read_json(res / f"atlas/{model}/parts/{layer}.json")
            grown = 3 + 2 * math.ceil(3 * sigma)
            assert atlas["rows"] and atlas["field"]["size"] == ([grown, grown] if layer == "relu1"
                                                                  else [8, 8])
            per_cluster = pd.read_csv(res / f"masks/{model}/parts/{layer}.csv")
            assert {"cluster", "best_label", "best_label_name", "iou"} <= set(per_cluster)
            assert set(per_cluster["best_label_name"]) <= {"background", "body", "head", "tail"}
    table = pd.read_csv(res / "mask_agreement.csv")
    assert len(table) == 4 and table["ari"].between(-1, 1).all()
    assert table.set_index("model")["control_of"].get("net_random").iloc[0] == "net"
    summary = pd.read_csv(res / "summary.csv")
    dp = summary[summary["method"] == "dpgmm"]
    assert dp["mask_ari"].notna().all() and summary.loc[summary["method"] != "dpgmm",
                                                        "mask_ari"].isna().all()
    assert (res / "figures/mask_agreement.png").stat().st_size > 1000
