"""extract.smooth: a layer's maps averaged over a Gaussian neighbourhood before they are stored
(:mod:`convdp.smoothing`): the values, what it leaves alone, the store, the receptive field
and the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from convdp import pipeline
from convdp.config import ConfigError, smoothing, validate_config
from convdp.extract import feature_extractor
from convdp.models import DigitNet, build_model
from convdp.receptive import trace_fields, widen
from convdp.smoothing import RIPPLE_TO_REGIONS, SIGMA_GRID, SigmaChooser, radius, smooth_maps
from tests.conftest import ROOT
from tests.faults.helpers import make_digits, make_model
from tests.test_receptive import _gradient_support


def test_a_point_becomes_the_gaussian_and_a_constant_stays_constant():
    sigma = 1.5
    point = torch.zeros(1, 1, 25, 25, dtype=torch.float64)
    point[0, 0, 12, 12] = 1.0
    out = smooth_maps(point, sigma)[0, 0].numpy()
    r = radius(sigma)
    assert r == 5
    x = np.arange(-r, r + 1)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    expect = np.zeros((25, 25))
    expect[12 - r : 12 + r + 1, 12 - r : 12 + r + 1] = np.outer(g, g)
    np.testing.assert_allclose(out, expect, atol=1e-12)
    # at the border the weights are renormalised: a constant map keeps its value everywhere
    const = torch.full((2, 3, 7, 10), 2.5)
    np.testing.assert_allclose(smooth_maps(const, 3.0).numpy(), 2.5, rtol=1e-6)


def test_the_padded_ring_does_not_leak_into_the_average():
    """Only the positions no padding reached are averaged: whatever the border ring holds,
    every position (the ring's too) gets the same smoothed value."""
    torch.manual_seed(0)
    maps = torch.rand(2, 3, 12, 15, dtype=torch.float64)
    valid = torch.zeros(12, 15, dtype=torch.bool)
    valid[1:-1, 1:-1] = True
    other = maps.clone()
    other[..., 0, :], other[..., :, -1] = 50.0, -7.0  # the ring: padding's own edges
    a, b = smooth_maps(maps, 2.0, valid=valid), smooth_maps(other, 2.0, valid=valid)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(smooth_maps(maps, 2.0), smooth_maps(other, 2.0))
    # a corner of the ring, convolved: the weighted mean of the interior positions within
    # the kernel (what the edge rule, below, replaces it by)
    g = np.exp(-0.5 * (np.arange(7) / 2.0) ** 2)
    w = np.outer(g[1:7], g[1:7])
    expect = (maps[0, 0, 1:7, 1:7].numpy() * w).sum() / w.sum()
    convolved = smooth_maps(maps, 2.0, valid=valid, edges=False)
    assert convolved[0, 0, 0, 0].item() == pytest.approx(expect, rel=1e-12)
    np.testing.assert_allclose(smooth_maps(torch.full((1, 2, 12, 15), 3.0), 2.0, valid=valid), 3.0,
                               rtol=1e-6)


def test_border_positions_take_the_nearest_value_whose_kernel_is_whole(caplog, monkeypatch):
    """Positions nearer than ⌈1.5 σ⌉ to the edge of the padding-free area take the smoothed
    value of the nearest position that far in: a kernel cut by the edge averages one side
    only and leaves a texture's ripple, which made a band of clusters along the border."""
    from convdp import smoothing
    from convdp.smoothing import EDGE_MARGIN, inner_box

    monkeypatch.setattr(smoothing, "_WARNED", set())  # a layer is warned of once a process

    valid = _ring(20, 24)
    assert EDGE_MARGIN == 1.5 and inner_box(valid, (20, 24), 2.0) == (4, 16, 4, 20)
    assert inner_box(None, (20, 24), 2.0) == (3, 17, 3, 21)
    assert inner_box(_ring(8, 24), (8, 24), 2.0) is None  # no position 3 in from rows 1-6
    maps = torch.rand(2, 3, 20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a, b = smooth_maps(maps, 2.0, valid=valid), smooth_maps(maps, 2.0, valid=valid, edges=False)
    torch.testing.assert_close(a[..., 4:16, 4:20], b[..., 4:16, 4:20], rtol=0, atol=0)
    for (i, j), (k, m) in {(0, 0): (4, 4), (10, 0): (10, 4), (19, 23): (15, 19),
                           (2, 11): (4, 11), (17, 21): (15, 19)}.items():
        torch.testing.assert_close(a[..., i, j], b[..., k, m], rtol=0, atol=0)
    # stripes of period 4 px: σ 3 averages them out inside; the cut kernel does not at the border
    stripes = torch.from_numpy((np.arange(64) // 2 % 2).astype(np.float64)).expand(1, 1, 64, 64)
    cut = smooth_maps(stripes, 3.0, valid=_ring(64, 64), edges=False)
    kept = smooth_maps(stripes, 3.0, valid=_ring(64, 64))
    # (small in the stripes' own units, but many times the spread left inside a region: the
    # clusters see it); the edge rule copies values whose kernel is cut by less: half the leak
    inside = (cut[..., 20:44, 20:44] - 0.5).abs().max()
    border = (cut[..., 20:44, :3] - 0.5).abs().max()
    assert inside < 1e-3 and border > 15 * inside
    assert (kept - 0.5).abs().max() < 0.5 * border
    # too small a map for σ: convolved as it is, with a warning
    small = maps[..., :8, :]
    torch.testing.assert_close(smooth_maps(small, 2.0, "tiny", _ring(8, 24)),
                               smooth_maps(small, 2.0, valid=_ring(8, 24), edges=False))
    assert "layer tiny: its 8 x 24 maps have no position 3 in" in caplog.text


def _ring(h: int, w: int) -> torch.Tensor:
    """DigitNet's relu1 (3 × 3, padding 1): every position but the outer ring is padding-free."""
    valid = torch.zeros(h, w, dtype=torch.bool)
    valid[1:-1, 1:-1] = True
    return valid


def test_a_layer_whose_field_cannot_be_traced_leaves_the_others_rings_out(caplog):
    """relu1 traces, relu2 does not (a flip on its path): relu2 is averaged over every
    position, with a warning naming it, and relu1 still over the positions no padding
    reached (both fell back to the plain average: relu1's maps depended on what else was
    smoothed)."""
    from torch import nn

    class Flipped(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.relu1 = nn.Conv2d(1, 3, 3, padding=1), nn.ReLU()
            self.c2, self.relu2 = nn.Conv2d(3, 3, 3, padding=1), nn.ReLU()

        def forward(self, x):
            return self.relu2(self.c2(torch.flip(self.relu1(self.c1(x)), [3])))

    from convdp.receptive import padding_free

    torch.manual_seed(0)
    net, x = Flipped().eval(), torch.rand(2, 1, 12, 12)
    ring = padding_free(trace_fields(net, ["relu1"], (12, 12), 1)["relu1"], (12, 12), (12, 12))
    plain = feature_extractor(net, ["relu1"])(x)["relu1"]
    with caplog.at_level("WARNING", logger="convdp.smoothing"):
        both = feature_extractor(net, ["relu1", "relu2"], {"relu1": 1.0, "relu2": 1.0})(x)
    assert torch.allclose(both["relu1"], smooth_maps(plain, 1.0, valid=ring))
    assert "smoothing relu2 over every position" in caplog.text and "relu1" not in caplog.text


def test_only_spatial_maps_and_positive_sigmas():
    with pytest.raises(ValueError, match=r"layer 'fc' has output shape \(2, 10\).*extract.smooth"):
        smooth_maps(torch.zeros(2, 10), 1.0, "fc")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        radius(0)


def test_the_extractor_smooths_the_returned_output_only():
    torch.manual_seed(0)
    net = DigitNet(num_classes=4, in_channels=1).eval()
    x = torch.rand(3, 1, 28, 28)
    plain = feature_extractor(net, ["relu1", "relu2"])(x)
    smoothed = feature_extractor(net, ["relu1", "relu2"], {"relu1": 2.0})(x)
    torch.testing.assert_close(smoothed["relu1"], smooth_maps(plain["relu1"], 2.0, valid=_ring(28, 28)))
    assert not torch.allclose(smoothed["relu1"], plain["relu1"])
    # relu2 computes from the net's own relu1, not from the smoothed copy
    torch.testing.assert_close(smoothed["relu2"], plain["relu2"])
    with pytest.raises(ValueError, match=r"smoothing asked for layer\(s\) \['relu3'\]"):
        feature_extractor(net, ["relu1"], {"relu3": 1.0})


@pytest.mark.parametrize("arch,layer,size,sigma", [("digitnet", "relu1", 40, 2.0),
                                                   ("digitnet", "relu2", 64, 1.0),
                                                   ("resnet18", "layer1", 160, 1.0)])
def test_the_widened_field_is_the_gradient_support(arch, layer, size, sigma):
    """A smoothed position sees its neighbours' fields: the support of the input gradient of
    a position away from the borders is the traced field widened by the kernel's radius."""
    torch.manual_seed(0)
    model = (DigitNet(in_channels=3) if arch == "digitnet" else build_model(arch, 10)).eval()
    field = widen(trace_fields(model, [layer], size)[layer], radius(sigma))
    support, (i, j) = _gradient_support(model, layer, size, 3, smooth={layer: sigma})
    top, left, bottom, right = field.box(i, j)
    assert top >= 0 and left >= 0 and bottom <= size and right <= size
    expect = np.zeros_like(support)
    expect[top:bottom, left:right] = True
    assert np.array_equal(support, expect), (field, np.argwhere(support).min(0),
                                             np.argwhere(support).max(0))
    # and unsmoothed it is the traced field itself (the test above, for comparison)
    plain, _ = _gradient_support(model, layer, size, 3, (i, j))
    assert plain.sum() < support.sum()


def test_the_store_holds_the_smoothed_maps_and_knows_it(tmp_path):
    weights, meta = make_model(tmp_path)
    data = make_digits(tmp_path / "data.zarr", n=30)
    kw = dict(device="cpu", batch_size=8, chunk_size=10, progress=False)
    plain = pipeline.extract(weights, meta, data, ["relu1", "relu2"], tmp_path / "a.json", **kw)
    smooth = pipeline.extract(weights, meta, data, ["relu1", "relu2"], tmp_path / "b.json",
                              smooth={"relu1": 1.5}, **kw)
    assert plain["smooth"] == {} and smooth["smooth"] == {"relu1": 1.5}
    a1, b1 = (pipeline.open_layer(tmp_path / f"{s}.json", "relu1")[:] for s in "ab")
    expect = smooth_maps(torch.from_numpy(a1).permute(0, 3, 1, 2), 1.5,
                         valid=_ring(*a1.shape[1:3])).permute(0, 2, 3, 1)
    np.testing.assert_allclose(b1, expect.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pipeline.open_layer(tmp_path / "a.json", "relu2")[:],
                                  pipeline.open_layer(tmp_path / "b.json", "relu2")[:])
    # the same path with another smoothing: the store is written anew, not reused
    again = pipeline.extract(weights, meta, data, ["relu1", "relu2"], tmp_path / "b.json", **kw)
    assert again["chunks_resumed"] == 0
    np.testing.assert_array_equal(pipeline.open_layer(tmp_path / "b.json", "relu1")[:], a1)


def _parts_like(tmp_path, smooth):
    config = yaml.safe_load((ROOT / "tests/config/tiny.yaml").read_text())
    config["models"]["digitnet"]["control"] = "random"
    config["models"]["other"] = {**config["models"]["digitnet"], "control": None}
    config["extract"]["smooth"] = smooth
    return validate_config(config)


def test_the_config_names_layers_as_label_jobs_does(tmp_path):
    config = _parts_like(tmp_path, {"digitnet.relu1": 2, "relu2": 1})
    assert smoothing(config, "digitnet") == {"relu1": 2.0, "relu2": 1.0}
    assert smoothing(config, "digitnet_random") == {"relu1": 2.0, "relu2": 1.0}  # as its model
    assert smoothing(config, "other") == {"relu2": 1.0}
    assert smoothing(_parts_like(tmp_path, {"relu2": 1, "other.relu2": 0}), "other") == {}
    with pytest.raises(ConfigError, match=r"extract.smooth.relu9: 'relu9' is not a layer"):
        _parts_like(tmp_path, {"relu9": 1})
    with pytest.raises(ConfigError, match=r"extract.smooth"):
        _parts_like(tmp_path, {"relu1": -1})


def _regions(n: int, size: int, seed: int, period: float | None, channels: int = 6,
             noise: float = 0.05, amplitude: float = 1.0) -> torch.Tensor:
    """(n, channels, size, size) maps of 3-5 Voronoi regions, each with its own value per
    channel; ``period``: each region's values also ripple along its own direction with that
    period (a texture), ``amplitude`` times the regions' own contrast; pixel noise on top."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    maps = np.empty((n, channels, size, size))
    for i in range(n):
        seeds = rng.uniform(0, size, (rng.integers(3, 6), 2))
        region = ((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2).argmin(-1)
        level = rng.normal(0, 1, (len(seeds), channels))[region]  # (size, size, channels)
        if period:
            angle = rng.uniform(0, np.pi, len(seeds))[region]
            phase = 2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period
            level = level + amplitude * np.sin(phase)[..., None] * rng.normal(1, 0.2, channels)
        maps[i] = (level + noise * rng.normal(size=level.shape)).transpose(2, 0, 1)
    return torch.from_numpy(maps)


def _choose(maps: torch.Tensor, valid=None) -> dict:
    chooser = SigmaChooser("relu1", tuple(maps.shape[2:]), valid)
    for s in range(0, len(maps), 8):
        chooser.add(maps[s : s + 8])
    return chooser.result()


def _left(result: dict, sigma: float) -> float:
    """The ripple's share of the variance that smoothing at ``sigma`` leaves within regions, by
    a chooser's evidence: ``R`` less what it takes away beyond the edge term."""
    net = result["removed"][f"{sigma:g}"] - result["edge_slope"] * sigma
    return result["ripple_share"] - net


@pytest.mark.parametrize("period, size, sigma", [(None, 64, 0.0), (4, 64, 1.5), (8, 64, 3.0),
                                                 (12, 128, 4.0)])
def test_auto_sigma_is_the_smallest_that_leaves_the_ripple_small_against_the_regions(
        period, size, sigma):
    """Regions of flat values are left unsmoothed; regions whose values ripple with period P
    (here a third of the variance) get the smallest σ of the grid whose smoothing leaves at
    most RIPPLE_TO_REGIONS of the variance that is not ripple (the regions' differences) as
    ripple: the longer the period, the larger the σ."""
    result = _choose(_regions(24, size, seed=1, period=period))
    assert result["sigma"] == sigma, result
    allowed = RIPPLE_TO_REGIONS * (1 - result["ripple_share"])
    if period:
        assert 0.25 < result["ripple_share"] < 0.4, result
        before = SIGMA_GRID[SIGMA_GRID.index(sigma) - 1]
        assert _left(result, sigma) <= allowed < _left(result, before), result
    else:
        assert result["ripple_share"] < allowed, result
    assert result["edge_fit"] == [size / 16, size / 8]
    assert list(result["removed"])[:8] == ["0.5", "1", "1.5", "2", "3", "4", "6", "8"]


def test_auto_sigma_grows_with_the_ripple_against_the_regions():
    """One period (8 positions), the ripple 0.6, 1 and 3 times the regions' own contrast: a
    ripple within the bound unsmoothed is left as it is; the larger it is against the regions,
    the more of it must go (the rule before a2e8ae0, a tenth of any ripple's amplitude, chose 3
    for all three: it smoothed the first for nothing and left the third 0.08 of the variance
    as ripple, a third of the regions' 0.25)."""
    chosen = {a: _choose(_regions(24, 64, seed=1, period=8, amplitude=a)) for a in (0.6, 1, 3)}
    assert [chosen[a]["sigma"] for a in (0.6, 1, 3)] == [0.0, 3.0, 4.0], chosen
    assert chosen[0.6]["reason"].endswith("that is not ripple: not smoothed")
    # the weakest ripple is more than the rule before left unsmoothed (0.1), the strongest
    # most of the variance
    assert chosen[0.6]["ripple_share"] > 0.1 and chosen[3]["ripple_share"] > 0.7, chosen
    # another draw of the regions, the same choices
    assert [_choose(_regions(24, 64, seed=2, period=8, amplitude=a))["sigma"]
            for a in (0.6, 3)] == [0.0, 4.0]


def test_auto_sigma_stops_at_a_sixteenth_of_the_map():
    """The edge term is read at 1/16 and 1/8 of the map, so no σ above 1/16 is chosen: a
    strong ripple of period 12 gets σ 6 on 128 positions, but 4 on 64, where its share reads
    low."""
    big = _choose(_regions(24, 128, seed=1, period=12, amplitude=3))
    small = _choose(_regions(24, 64, seed=1, period=12, amplitude=3))
    assert big["sigma"] == 6.0 and big["ripple_share"] > 0.7, big
    assert small["sigma"] == 4.0 and small["ripple_share"] < 0.5, small


def test_auto_sigma_reads_the_positions_no_padding_reached_only():
    """A border ring of padding's own values (here: large) changes nothing."""
    maps = _regions(16, 48, seed=2, period=6)
    other = maps.clone()
    other[..., 0, :], other[..., -1, :] = 40.0, -40.0
    valid = torch.ones(48, 48, dtype=torch.bool)
    valid[0], valid[-1] = False, False
    a, b = _choose(maps, valid), _choose(other, valid)
    assert a == b and a["sigma"] == 2.0, a
    # the ring counted: other evidence (its variance read as ripple)
    assert _choose(other)["ripple_share"] > a["ripple_share"] + 0.1


def test_auto_sigma_needs_maps_it_can_read_an_edge_term_from():
    with pytest.raises(ValueError, match=r"layer 'relu3' has 12 x 40 positions: extract.smooth "
                                         r"auto needs maps of 16 to 4096 positions a side"):
        SigmaChooser("relu3", (12, 40))
    with pytest.raises(ValueError, match=r"layer 'fc' has output shape \(4, 10\)"):
        SigmaChooser("fc", (16, 16)).add(torch.zeros(4, 10))
    with pytest.raises(ValueError, match=r"layer 'fc' has no spatial maps.*extract.smooth"):
        SigmaChooser("fc", ())
    # maps that do not vary: their sums leave rounding (~1e-16), which read as variance gave
    # shares in the hundreds and a σ; here nothing is smoothed
    for value in (0.513, 1.913, 0.1):
        constant = _choose(torch.full((3, 4, 40, 56), value))
        assert constant["sigma"] == 0.0 and constant["ripple_share"] == 0.0, constant
        assert constant["reason"] == "the maps do not vary: not smoothed"
    maps = _regions(4, 16, seed=0, period=4)
    maps[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'relu1': its maps hold NaN"):
        _choose(maps)
    with pytest.raises(ValueError, match=r"layer 'relu1' has output shape \(4, 6, 16, 17\)"):
        SigmaChooser("relu1", (16, 16)).add(torch.zeros(4, 6, 16, 17))
    assert SigmaChooser("conv1", (1024, 2048)).edge_fit == (64.0, 128.0)
    # the largest maps auto takes: two σ's for the edge term (it was 256 and 256: 0 / 0)
    assert SigmaChooser("conv1", (4096, 4096)).edge_fit == (192.0, 256.0)
    with pytest.raises(ValueError, match=r"'conv1' has 4100 x 4100 positions.*16 to 4096"):
        SigmaChooser("conv1", (4100, 4100))


def test_auto_sigma_through_the_jobs(tmp_path):
    """choose_smoothing writes each auto layer's σ with its evidence; an extraction with
    ``auto`` stores the maps at that σ (the manifest says the number, as for a σ given as
    one), and one without the choice, or whose choice lacks the layer, is refused."""
    weights, meta = make_model(tmp_path)
    data = make_digits(tmp_path / "data.zarr", n=30, size=32)
    choice = pipeline.choose_smoothing(weights, meta, data, ["relu1"], tmp_path / "choice.json",
                                       device="cpu", max_images=12)
    assert choice["images"] == 12 and set(choice["layers"]) == {"relu1"}
    picked = choice["layers"]["relu1"]
    assert picked["sigma"] in (0.0, *SIGMA_GRID) and picked["reason"]
    assert set(picked["removed"]) == {"0.5", "1", "1.5", "2", "3", "4"}
    kw = dict(device="cpu", batch_size=8, chunk_size=10, progress=False)
    auto = pipeline.extract(weights, meta, data, ["relu1", "relu2"], tmp_path / "a.json",
                            smooth={"relu1": "auto"}, smoothing=tmp_path / "choice.json", **kw)
    fixed = pipeline.extract(weights, meta, data, ["relu1", "relu2"], tmp_path / "b.json",
                             smooth={"relu1": 2.0}, **kw)
    assert fixed["smooth"] == {"relu1": 2.0}
    # force a σ the data would not choose: the extraction takes the file's
    forced = {**choice, "layers": {"relu1": {**picked, "sigma": 2.0}}}
    (tmp_path / "forced.json").write_text(__import__("json").dumps(forced))
    again = pipeline.extract(weights, meta, data, ["relu1", "relu2"], tmp_path / "c.json",
                             smooth={"relu1": "auto"}, smoothing=tmp_path / "forced.json", **kw)
    assert again["smooth"] == {"relu1": 2.0}
    np.testing.assert_array_equal(pipeline.open_layer(tmp_path / "c.json", "relu1")[:],
                                  pipeline.open_layer(tmp_path / "b.json", "relu1")[:])
    assert auto["smooth"] == ({"relu1": picked["sigma"]} if picked["sigma"] else {})
    with pytest.raises(ValueError, match=r"layer\(s\) \['relu1'\] are 'auto' but no smoothing "
                                         r"choice"):
        pipeline.extract(weights, meta, data, ["relu1"], tmp_path / "d.json",
                         smooth={"relu1": "auto"}, **kw)
    with pytest.raises(ValueError, match=r"choice.json: no smoothing sigma \(a number >= 0\) "
                                         r"for layer 'relu2'"):
        pipeline.extract(weights, meta, data, ["relu1", "relu2"], tmp_path / "d.json",
                         smooth={"relu2": "auto"}, smoothing=tmp_path / "choice.json", **kw)
    for bad in (None, -1.0, "2"):  # a choice edited by hand
        forced["layers"]["relu1"]["sigma"] = bad
        (tmp_path / "forced.json").write_text(__import__("json").dumps(forced))
        with pytest.raises(ValueError, match=r"forced.json: no smoothing sigma .* 'relu1'"):
            pipeline.extract(weights, meta, data, ["relu1"], tmp_path / "d.json",
                             smooth={"relu1": "auto"}, smoothing=tmp_path / "forced.json", **kw)
    assert not (tmp_path / "d.json").exists()


def test_the_config_takes_auto_and_a_control_reads_its_models_choice(tmp_path):
    from tests.test_control import with_control
    from tests.test_workflow import TINY, snakemake

    config = _parts_like(tmp_path, {"relu1": "auto", "other.relu2": 1})
    assert smoothing(config, "digitnet") == {"relu1": "auto"}
    assert smoothing(config, "digitnet_random") == {"relu1": "auto"}
    assert smoothing(config, "other") == {"relu1": "auto", "relu2": 1.0}
    with pytest.raises(ConfigError, match=r"extract.smooth"):
        _parts_like(tmp_path, {"relu1": "automatic"})
    # the plan: one choice per model, read by the model's extractions and its control's
    cfg = with_control(yaml.safe_load(TINY.read_text()))
    cfg["extract"]["smooth"] = {"relu1": "auto"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(ROOT, tmp_path, "-n", "--configfile", str(tmp_path / "c.yaml"))
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = out.stdout.split("\nrule ")
    choose = [j for j in jobs if j.startswith("choose_smoothing:")]
    assert len(choose) == 1 and "results/smoothing/digitnet.json" in choose[0]
    extract = [j for j in jobs if j.startswith("extract_activations:")]
    assert len(extract) == 4 and all("results/smoothing/digitnet.json" in j for j in extract)
