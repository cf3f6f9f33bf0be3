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
from convdp.smoothing import radius, smooth_maps
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
    # a corner of the ring: the weighted mean of the interior positions within the kernel
    g = np.exp(-0.5 * (np.arange(7) / 2.0) ** 2)
    w = np.outer(g[1:7], g[1:7])
    expect = (maps[0, 0, 1:7, 1:7].numpy() * w).sum() / w.sum()
    assert a[0, 0, 0, 0].item() == pytest.approx(expect, rel=1e-12)
    np.testing.assert_allclose(smooth_maps(torch.full((1, 2, 12, 15), 3.0), 2.0, valid=valid), 3.0,
                               rtol=1e-6)


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
