"""Receptive fields traced from the graph equal the support of the input gradient."""

import numpy as np
import pytest
import torch

from convdp.extract import feature_extractor
from convdp.models import DigitNet, build_model
from convdp.receptive import Field, crop_box, trace_fields

CASES = [
    ("digitnet", ["relu1", "relu2", "relu3", "relu4"], 64),
    ("vgg11", ["features.1", "features.5", "features.10"], 72),
    ("resnet18", ["relu", "maxpool", "layer1.0.relu", "layer1", "layer2"], 136),
    # Conv2dNormActivation and InvertedResidual: modules torchvision keeps as one node
    ("mobilenet_v2", ["features.0", "features.1", "features.3"], 72),
    # permutes to channels-last and back (Permute modules, linear layers, LayerNorm2d)
    ("convnext_tiny", ["features.0", "features.1", "features.2"], 128),
    # a channel shuffle (views to 5-D and back, a transpose) and chunks along the channels
    ("shufflenet_v2_x0_5", ["maxpool", "stage2.0", "stage2"], 128),
]


def _gradient_support(model, layer, size, channels, pos=None, batch=6, smooth=None):
    torch.manual_seed(0)
    x = torch.randn(batch, channels, size, size, dtype=torch.float64, requires_grad=True)
    out = feature_extractor(model.double(), [layer], smooth)(x)[layer]
    i, j = pos or (out.shape[2] // 2, out.shape[3] // 2)
    # A random mix of the channels, so no position's gradient cancels by chance.
    w = torch.rand(out.shape[1], dtype=torch.float64) + 0.5
    (out[:, :, i, j] * w).sum().backward()
    return (x.grad.abs().sum((0, 1)) > 0).numpy(), (i, j)


@pytest.mark.parametrize("arch,layers,size", CASES, ids=[c[0] for c in CASES])
def test_traced_field_is_the_gradient_support(arch, layers, size):
    torch.manual_seed(0)
    model = DigitNet(in_channels=3) if arch == "digitnet" else build_model(arch, 10)
    model.eval()
    fields = trace_fields(model, layers, size)
    for layer in layers:
        support, (i, j) = _gradient_support(model, layer, size, 3)
        top, left, bottom, right = fields[layer].box(i, j)
        assert top >= 0 and left >= 0 and bottom <= size and right <= size, (arch, layer)
        expect = np.zeros_like(support)
        expect[top:bottom, left:right] = True
        assert np.array_equal(support, expect), (arch, layer, fields[layer],
                                                 np.argwhere(support).min(0),
                                                 np.argwhere(support).max(0))


class _Padded(torch.nn.Module):
    """``padding="same"`` with an odd and an even kernel, and ``F.lp_pool2d``, whose
    arguments come in another order than ``max_pool2d``'s."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding="same")
        self.conv2 = torch.nn.Conv2d(4, 4, 4, padding="same", dilation=2)
        self.conv3 = torch.nn.Conv2d(4, 4, 3, padding="valid")

    def forward(self, x):
        x = self.conv2(self.conv1(x))
        return self.conv3(torch.nn.functional.lp_pool2d(x.abs() + 1.0, 2, 3, 2))


def test_same_padding_and_lp_pooling_fields_are_the_gradient_support():
    model = _Padded().eval()
    layers = ["conv1", "conv2", "lp_pool2d", "conv3"]
    fields = trace_fields(model, layers, 32)
    for layer in layers:
        support, (i, j) = _gradient_support(model, layer, 32, 3)
        top, left, bottom, right = crop_box(fields[layer], i, j, (32, 32))
        expect = np.zeros_like(support)
        expect[top:bottom, left:right] = True
        assert np.array_equal(support, expect), (layer, fields[layer])


def test_crop_box_clips_at_the_border():
    field = trace_fields(DigitNet(), ["relu2"], 32)["relu2"]
    assert crop_box(field, 0, 0, (32, 32)) == (0, 0, 5, 5)
    assert crop_box(field, 15, 15, (32, 32)) == (27, 27, 32, 32)


def test_global_and_untraceable_layers():
    model = build_model("resnet18", 10)
    fields = trace_fields(model, ["avgpool", "flatten", "fc"], 64)
    assert all(f.global_ for f in fields.values())  # one position, which sees everything
    upsampled = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Upsample(scale_factor=2),
                                    torch.nn.Conv2d(4, 4, 3))
    with pytest.raises(ValueError, match="layer '2': its receptive field cannot be traced: an op"):
        trace_fields(upsampled, ["2"], 32)

    class Rolled(torch.nn.Module):  # the same shape, the positions moved: no field by union
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.roll(self.conv(x), 5, -1).flip(-2)

    with pytest.raises(ValueError, match="layer 'roll': .*a flip or roll"):
        trace_fields(Rolled(), ["roll"], 32)


class _Moved(torch.nn.Module):
    """Channels-last linear layers (a field kept); a transpose of rows and columns, a
    split of the rows, a flatten of both: fields that no union gives."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.linear = torch.nn.Linear(4, 4)
        self.across = torch.nn.Linear(30, 30)  # the 30 columns of conv's map at 32 px

    def forward(self, x):
        x = self.conv(x)
        last = self.linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        swapped = x.transpose(2, 3) + 1
        top, _ = x.chunk(2, dim=2)
        flat = x.flatten(2).view(x.shape) * 2
        return last, swapped, top + 0, flat, self.across(x), x.softmax(-1)  # columns mixed


def test_fields_through_permutes_and_reshapes():
    model = _Moved().eval()
    fields = trace_fields(model, ["permute_1"], 32)
    assert fields["permute_1"] == trace_fields(model, ["conv"], 32)["conv"]
    support, (i, j) = _gradient_support(model, "permute_1", 32, 3)
    top, left, bottom, right = fields["permute_1"].box(i, j)
    assert np.array_equal(np.argwhere(support)[[0, -1]], [[top, left], [bottom - 1, right - 1]])
    # the transposed map, the top half, the flatten, a linear layer across the columns
    for layer in ["add", "add_1", "mul", "across", "softmax"]:
        with pytest.raises(ValueError, match=f"layer '{layer}': its receptive field cannot"):
            trace_fields(model, [layer], 32)


class _Odd(torch.nn.Module):
    """Ops that keep a map's shape but not its positions apart, or depend on constants."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.rand(1, 3, 1, 1))  # normalisation inside the net
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.gn = torch.nn.GroupNorm(2, 4)
        self.up = torch.nn.ConvTranspose2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.conv(x - self.mean)
        pooled = torch.nn.functional.avg_pool2d(x, x.size()[3] // 4)  # a kernel from a shape
        n, c, h, w = x.shape
        flat = x.flatten(2)
        attention = (flat.transpose(1, 2) @ flat).softmax(-1)  # non-local: every position
        nonlocal_ = x + (flat @ attention).view_as(x)
        return (pooled, self.gn(x), self.up(x), nonlocal_, x + x.transpose(2, 3),
                torch.logcumsumexp(x, -1))


def test_constants_norms_and_ops_across_positions():
    """A (1, C, 1, 1) constant leaves the field local; group norm makes it global; a
    transposed convolution, attention over positions, a transposed map added to its own and
    an op that mixes the columns (caught by the gradient, no rule names it) are refused; a
    pooling kernel computed from the map's size composes."""
    model = _Odd().eval()
    fields = trace_fields(model, ["conv", "avg_pool2d", "gn"], 32)
    assert fields["conv"] == Field((1, 1), (-1, -1), (3, 3))
    assert fields["avg_pool2d"].jump == (8, 8) and fields["avg_pool2d"].size == (10, 10)
    assert fields["gn"].global_
    support, (i, j) = _gradient_support(model, "conv", 32, 3)
    assert support.sum() == 9
    for layer, why in [("up", "an op on its path"), ("add", "an op on its path"),
                       ("add_1", "an op on its path"), ("logcumsumexp", "misses input pixels")]:
        with pytest.raises(ValueError, match=f"layer '{layer}': its receptive field cannot be "
                                             f"traced: .*{why}"):
            trace_fields(model, [layer], 32)


class _AddedInPlace(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        x = self.conv1(x)
        return self.conv2(x.add_(x.mean((2, 3), keepdim=True)))  # global context, in place


def test_a_layer_changed_in_place_later_keeps_its_own_field():
    """The gradient check reads each layer as it is stored (before a later in-place op)."""
    fields = trace_fields(_AddedInPlace().eval(), ["conv1", "conv2"], 32)
    assert fields["conv1"] == Field((1, 1), (-1, -1), (3, 3)) and fields["conv2"].global_


def test_circular_padding_is_no_field_box():
    """With circular padding a border position sees the far side of the image, which no box
    of the image holds: the field is refused (the atlas leaves the layer out, mask agreement
    stretches its maps) rather than drawn as the pixels nearby."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"),
                              torch.nn.ReLU(), torch.nn.Conv2d(2, 2, 3, padding=1)).eval()
    with pytest.raises(ValueError, match="'2': its receptive field cannot be traced: .*circular"):
        trace_fields(net, ["2"], (12, 12), 1)
    zeros = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU()).eval()
    assert trace_fields(zeros, ["1"], (12, 12), 1)["1"].size == (3, 3)
