"""Activations in Zarr equal the layer outputs computed directly, in the NHWC layout."""

import numpy as np
import pytest
import torch
import zarr
from torch import nn

from convdp.extract import extract_activations, open_activations
from convdp.samples import to_samples

MEAN, STD = [0.5], [0.25]


def direct(model, images, upto, mean=MEAN, std=STD):
    """Run the net's modules by hand up to and including ``upto``: an independent reference."""
    from convdp.models import to_input

    x = to_input(images, mean, std)
    with torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            if name == upto:
                return x
    raise KeyError(upto)


def run(model, images, path, chunk_size=16, batch_size=8, **kw):
    return extract_activations(
        model, images, ["relu1", "relu3"], path, mean=MEAN, std=STD,
        fingerprint={"model": "m", "data": "d"}, batch_size=batch_size,
        chunk_size=chunk_size, progress=False, **kw,
    )


def test_zarr_equals_direct_forward(digitnet, tiny_images, tmp_path):
    info = run(digitnet, tiny_images, tmp_path / "a.zarr")
    group = open_activations(tmp_path / "a.zarr")
    assert info["layers"]["relu1"]["shape"] == [40, 16, 16, 16]
    assert info["layers"]["relu3"]["shape"] == [40, 4, 4, 64]
    assert group["relu1"].chunks[0] == 16
    for layer in ("relu1", "relu3"):
        ref = direct(digitnet, tiny_images, layer).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(group[layer][:], ref, rtol=1e-5, atol=1e-6)


def test_position_reshape_keeps_each_channel_vector(digitnet, tiny_images, tmp_path):
    run(digitnet, tiny_images, tmp_path / "a.zarr")
    stored = open_activations(tmp_path / "a.zarr")["relu3"][:]
    samples = to_samples(stored, "position")
    n, h, w, c = stored.shape
    assert samples.shape == (n * h * w, c)
    ref = direct(digitnet, tiny_images[7:8], "relu3")[0]  # (C, H, W) of image 7 alone
    for row, col in [(0, 0), (1, 3), (3, 2)]:
        i = 7 * h * w + row * w + col
        np.testing.assert_allclose(samples[i], ref[:, row, col].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_samples(stored, "image")[7], ref.mean(dim=(1, 2)).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_another_compression_extracts_anew(tmp_path):
    """``extract.compression`` changed: the store was kept, every chunk in the old codec."""
    from convdp.models import DigitNet

    torch.manual_seed(0)
    net = DigitNet(num_classes=5, in_channels=1).eval()
    images = np.random.default_rng(0).integers(0, 256, (20, 16, 16, 1), dtype=np.uint8)
    kw = dict(mean=[0.5], std=[0.25], fingerprint={"m": 1}, progress=False, batch_size=4,
              chunk_size=8)
    path = tmp_path / "a.zarr"
    first = extract_activations(net, images, ["relu1"], path, compression="none", **kw)
    again = extract_activations(net, images, ["relu1"], path, compression="none", **kw)
    assert again["chunks_resumed"] == first["n_chunks"]  # same settings: reused
    info = extract_activations(net, images, ["relu1"], path, compression="zstd", **kw)
    codecs = [type(c).__name__ for c in zarr.open_group(path)["relu1"].metadata.codecs]
    assert info["chunks_resumed"] == 0 and "BloscCodec" in codecs, codecs


def test_resume_keeps_complete_chunks_and_is_bit_identical(digitnet, tiny_images, tmp_path):
    run(digitnet, tiny_images, tmp_path / "clean.zarr")
    full = tmp_path / "resumed.zarr"
    run(digitnet, tiny_images, full)
    # The state a run killed during chunk 2 (of 0-2) leaves: chunk 2 not marked, its data lost.
    g = zarr.open_group(full, mode="a")
    assert g.attrs["complete_chunks"] == [0, 1, 2]
    g.attrs["complete_chunks"] = [0, 1]
    g.attrs["complete"] = False
    g["relu1"][32:] = 0
    with pytest.raises(ValueError, match="incomplete"):
        open_activations(full)
    info = run(digitnet, tiny_images, full)
    assert info["chunks_resumed"] == 2
    clean = open_activations(tmp_path / "clean.zarr")
    resumed = open_activations(full)
    for layer in ("relu1", "relu3"):
        assert np.array_equal(clean[layer][:], resumed[layer][:])
    # another batch size would compute other last bits: the store is made anew, and the
    # manifest's batch size (which the sample store's labelling pass reruns) is the chunks'
    g.attrs["complete_chunks"], g.attrs["complete"] = [0, 1], False
    info = run(digitnet, tiny_images, full, batch_size=4)
    assert info["chunks_resumed"] == 0 and info["batch_size"] == 4


def test_resume_removes_a_killed_writers_temporary_files(digitnet, tiny_images, tmp_path):
    run(digitnet, tiny_images, tmp_path / "a.zarr")
    before = open_activations(tmp_path / "a.zarr")["relu1"][:]
    partial = tmp_path / "a.zarr/relu1/c/1/0.0123abcd.partial"  # as Zarr names them
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"")
    run(digitnet, tiny_images, tmp_path / "a.zarr")
    assert not partial.exists()
    assert np.array_equal(open_activations(tmp_path / "a.zarr")["relu1"][:], before)


def test_store_from_other_model_is_not_reused(digitnet, tiny_images, tmp_path):
    run(digitnet, tiny_images, tmp_path / "a.zarr")
    with pytest.raises(ValueError, match="another model"):
        open_activations(tmp_path / "a.zarr", {"model": "other"})
    torch.manual_seed(1)
    other = type(digitnet)(num_classes=5, in_channels=1).eval()
    extract_activations(other, tiny_images, ["relu1", "relu3"], tmp_path / "a.zarr",
                        mean=MEAN, std=STD, fingerprint={"model": "other", "data": "d"},
                        batch_size=8, chunk_size=16, progress=False)
    ref = direct(other, tiny_images, "relu1").permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(open_activations(tmp_path / "a.zarr")["relu1"][:], ref, rtol=1e-5, atol=1e-6)


def test_another_normalisation_extracts_anew(digitnet, tiny_images, tmp_path):
    """The same weights and images with another input normalisation (a random-weights
    control once its source images or ``normalize`` changed) are extracted anew, not resumed
    from the store made with the old one."""
    run(digitnet, tiny_images, tmp_path / "a.zarr")
    mean, std = [0.0], [1.0]
    extract_activations(digitnet, tiny_images, ["relu1", "relu3"], tmp_path / "a.zarr",
                        mean=mean, std=std, fingerprint={"model": "m", "data": "d"},
                        batch_size=8, chunk_size=16, progress=False)
    group = open_activations(tmp_path / "a.zarr")
    assert group.attrs["fingerprint"]["mean"] == mean
    ref = direct(digitnet, tiny_images, "relu1", mean, std).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(group["relu1"][:], ref, rtol=1e-5, atol=1e-6)


def test_one_forward_pass_per_batch_and_a_failing_net_leaves_the_store(digitnet, tiny_images,
                                                                       tmp_path):
    batches = []
    hook = digitnet.conv1.register_forward_hook(lambda m, i, o: batches.append(len(i[0])))
    try:
        run(digitnet, tiny_images, tmp_path / "a.zarr", chunk_size=16, batch_size=8)
    finally:
        hook.remove()
    # 40 images in chunks of 16 and batches of 8: the shapes come from the first batch
    assert batches == [8, 8, 8, 8, 8]
    before = open_activations(tmp_path / "a.zarr")["relu1"][:]

    def fail(module, inputs):
        raise RuntimeError("broken net")

    hook = digitnet.conv1.register_forward_pre_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="broken net"):
            extract_activations(digitnet, tiny_images, ["relu1", "relu3"], tmp_path / "a.zarr",
                                mean=MEAN, std=STD, fingerprint={"model": "new", "data": "d"},
                                progress=False)
    finally:
        hook.remove()
    assert np.array_equal(open_activations(tmp_path / "a.zarr")["relu1"][:], before)


def test_a_chunk_takes_its_buffers_once_its_first_batch_is_computed(digitnet, tiny_images,
                                                                    tmp_path, monkeypatch):
    """When the writes keep up with the net (here: a net slowed to 0.1 s a batch against
    writes of a few KB), each chunk is given the buffers of the chunk before it, written by
    then: one set of buffers in all (ResNet-18 at 16 images a chunk: 75 MB less, and one
    first touch fewer), not one filling and one writing."""
    import time

    from convdp import rawchunks

    allocated = []
    real = rawchunks.aligned_empty
    monkeypatch.setattr(rawchunks, "aligned_empty",
                        lambda shape, dtype: allocated.append(shape) or real(shape, dtype))
    hook = digitnet.conv1.register_forward_hook(lambda *args: time.sleep(0.1))
    try:
        run(digitnet, tiny_images, tmp_path / "a.zarr", chunk_size=8, batch_size=8)
    finally:
        hook.remove()
    # 40 images, 5 chunks, two layers: one buffer per layer
    assert sorted(allocated) == [(8, 4, 4, 64), (8, 16, 16, 16)], allocated
    direct_ref = direct(digitnet, tiny_images, "relu3").permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(open_activations(tmp_path / "a.zarr")["relu3"][:], direct_ref,
                               rtol=1e-5, atol=1e-6)


def test_inplace_relu_does_not_corrupt_captured_conv_output(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3))
    images = np.random.default_rng(0).integers(0, 255, (6, 8, 8, 1), dtype=np.uint8)
    extract_activations(net, images, ["0"], tmp_path / "s.zarr", mean=MEAN, std=STD,
                        fingerprint={}, batch_size=4, chunk_size=4, progress=False)
    from convdp.models import to_input

    with torch.no_grad():
        conv = net[0](to_input(images, MEAN, STD)).permute(0, 2, 3, 1).numpy()
    stored = open_activations(tmp_path / "s.zarr")["0"][:]
    assert (stored < 0).any(), "negative conv outputs must survive (no in-place ReLU)"
    np.testing.assert_allclose(stored, conv, rtol=1e-5, atol=1e-6)


def test_nan_activations_name_the_layer(digitnet, tiny_images, tmp_path):
    with torch.no_grad():
        digitnet.conv3.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="layer 'relu3' produced NaN"):
        run(digitnet, tiny_images, tmp_path / "n.zarr")


def test_channel_mismatch_is_named(digitnet, tmp_path):
    rgb = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="3 channel"):
        run(digitnet, rgb, tmp_path / "c.zarr")


class _Block(nn.Module):
    """Captured outputs modified in place three ways: ``+=``, a ``*_`` method, F.relu(inplace)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        a = self.conv(x)
        b = self.bn(a)
        b += a
        c = b.mul(2.0)
        c.clamp_(min=0.0)
        d = self.act(c)
        return nn.functional.relu(d - 1.0, inplace=True)


def test_in_place_ops_after_captured_nodes_run_out_of_place_and_others_stay(tmp_path):
    torch.manual_seed(0)
    net = _Block().eval()
    from convdp.extract import feature_extractor
    from convdp.models import to_input

    images = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 1), dtype=np.uint8)
    x = to_input(images, MEAN, STD)
    with torch.no_grad():
        a = net.conv(x)
        b = net.bn(a)
        c = (b + a).mul(2.0)
        want = {"bn": b, "mul": c}
        out = feature_extractor(net, ["bn", "mul"])(x)
    for name, ref in want.items():
        assert (out[name] < 0).any(), f"{name}: negative values must survive"
        torch.testing.assert_close(out[name], ref)
    # only the modules of the extractor change, and only those after a captured node
    assert net.act.inplace is True
    with torch.no_grad():
        out = feature_extractor(net, ["mul", "relu"])(x)
    assert (out["mul"] < 0).any()
    torch.testing.assert_close(out["relu"], torch.relu(torch.relu(c) - 1.0))
    bare = {"channels_first": False}  # the graph module itself
    assert feature_extractor(net, ["mul", "relu"], **bare).act_out_of_place.inplace is False
    assert feature_extractor(net, ["conv", "relu"], **bare).act.inplace is True
    assert net.act.inplace is True


class _Aliasing(nn.Module):
    """In-place ReLUs that reach a captured node through an ``nn.Identity`` (the usual "no
    norm" placeholder), an eval-mode dropout, a view, or (``type_as``) a method that
    returns its tensor itself and that convdp does not know to."""

    def __init__(self, type_as: bool = False):
        super().__init__()
        self.type_as = type_as
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.norm1 = nn.Identity()
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.drop = nn.Dropout2d(0.5)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.norm1(self.conv1(x))
        x = self.act1(x.type_as(x) if self.type_as else x)
        x = self.act2(self.drop(self.conv2(x)))
        y = self.conv3(x)
        y.view(-1).relu_()
        return y


def test_in_place_ops_through_views_and_pass_through_modules_run_out_of_place():
    """Asked for together, conv1 came out rectified: the ReLU after its ``nn.Identity``
    overwrote it (asked for alone, the ReLU was not in the graph)."""
    from convdp.extract import feature_extractor

    torch.manual_seed(0)
    net = _Aliasing().eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        want = {"conv1": net.conv1(x)}
        want["conv2"] = net.conv2(torch.relu(want["conv1"]))
        want["conv3"] = net.conv3(torch.relu(want["conv2"]))
        out = feature_extractor(net, ["conv1", "conv2", "conv3", "relu_"])(x)
    for name, ref in want.items():
        assert (out[name] < 0).any(), f"{name}: negative values must survive"
        torch.testing.assert_close(out[name], ref)
    torch.testing.assert_close(out["relu_"], torch.relu(want["conv3"]).view(-1))
    assert net.act1.inplace and net.act2.inplace  # the user's net is left as it was


def test_an_in_place_op_convdp_does_not_foresee_is_an_error_not_a_wrong_layer():
    from convdp.extract import feature_extractor

    net = _Aliasing(type_as=True).eval()
    with torch.no_grad(), pytest.raises(RuntimeError, match="layer 'conv1': an in-place"):
        feature_extractor(net, ["conv1", "conv2"])(torch.randn(2, 1, 8, 8))


class _SkipOfRectified(nn.Module):
    """An in-place ReLU on a map the net also keeps for a skip connection: the sum adds the
    rectified map (the skip shares the ReLU's memory)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.conv1(x)
        skip = x
        x = self.act(x)
        return self.conv2(x) + skip


def test_a_layer_read_again_after_an_in_place_op_leaves_the_later_layers_the_nets():
    """Asked for with conv1, ``add`` was conv2(relu(conv1)) + conv1 (the ReLU made out of
    place, the skip unrectified), 1.49 away from the net's own output; asked for alone, the
    net's. conv1 is now returned as computed and the net runs as it is."""
    from convdp.extract import feature_extractor

    torch.manual_seed(0)
    net = _SkipOfRectified().eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        conv1 = net.conv1(x)
        want = net(x)
        out = feature_extractor(net, ["conv1", "add"])(x)
    torch.testing.assert_close(out["add"], want)
    assert (out["conv1"] < 0).any(), "conv1: negative values must survive"
    torch.testing.assert_close(out["conv1"], conv1)
    assert net.act.inplace is True


class _Windows(nn.Module):
    """A conv, then its map channels-last cut into 2 x 2 windows and put back (a Swin's window
    partition written out in views and permutes, which the layout tracing does not follow)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.mix = nn.Linear(3, 3)

    def forward(self, x):
        x = self.conv(x).permute(0, 2, 3, 1)
        n, h, w, c = x.shape
        win = x.view(n, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, 4, c)
        win = self.mix(win)
        return win.view(n, h // 2, w // 2, 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(n, h, w, c)


def test_a_map_whose_layout_is_not_traced_is_named_in_a_warning(caplog):
    """The windows' (N, H, W, C) = (2, 8, 6, 3) map was read as (N, C, H, W) without a word:
    stored as 2 images of 6 x 3 positions of 8 channels (the rows). A Swin's relative position
    bias (no map of the image) is no such layer."""
    import torchvision

    from convdp.extract import feature_extractor

    torch.manual_seed(0)
    with caplog.at_level("WARNING", logger="convdp.extract"), torch.no_grad():
        out = feature_extractor(_Windows().eval(), ["conv", "reshape_1"])(torch.randn(2, 1, 8, 6))
    assert tuple(out["reshape_1"].shape) == (2, 8, 6, 3)
    assert "['reshape_1']: where the rows and columns" in caplog.text
    assert "'conv'" not in caplog.text
    caplog.clear()
    net = torchvision.models.swin_t().eval()
    layers = ["features.1.0.attn._get_relative_position_bias", "features.1"]
    with caplog.at_level("WARNING", logger="convdp.extract"), torch.no_grad():
        feature_extractor(net, layers)(torch.randn(1, 3, 56, 56))
    assert "could not be traced" not in caplog.text


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_stores_hold_the_same_values(digitnet, tiny_images, tmp_path, compression):
    run(digitnet, tiny_images, tmp_path / "plain.zarr")
    run(digitnet, tiny_images, tmp_path / "packed.zarr", compression=compression)
    plain, packed = open_activations(tmp_path / "plain.zarr"), open_activations(tmp_path / "packed.zarr")
    for layer in ("relu1", "relu3"):
        np.testing.assert_array_equal(packed[layer][:], plain[layer][:])
        assert packed[layer].compressors and not plain[layer].compressors


def test_unknown_compression_is_named(digitnet, tiny_images, tmp_path):
    with pytest.raises(ValueError, match="unknown compression 'gzip'; choose one of none, lz4, zstd"):
        run(digitnet, tiny_images, tmp_path / "g.zarr", compression="gzip")
    assert not (tmp_path / "g.zarr").exists()


def test_an_integer_dtype_is_refused_not_truncated(digitnet, tiny_images, tmp_path):
    """dtype int16 stored relu1's activations cut to whole numbers: 2.718 as 2, and 82 % of
    the positive ones as 0."""
    with pytest.raises(ValueError, match="unknown activation dtype 'int16'; choose one of "
                                         "float32, float16"):
        run(digitnet, tiny_images, tmp_path / "i.zarr", dtype="int16")
    assert not (tmp_path / "i.zarr").exists()


def test_a_sample_store_of_an_older_selection_is_extracted_anew(digitnet, tiny_images, tmp_path):
    """A sample store made before its kept positions were chosen as now (its fingerprint
    without this version's ``selection``) is not resumed: it may lack positions read now."""
    import zarr

    plan = {"modes": ["position"], "max_samples": 50, "seed": 0,
            "transfer": {"mode": "position", "role": "target", "max_samples": 60,
                         "n_examples": 2}}
    labels = np.arange(40) % 4
    run(digitnet, tiny_images, tmp_path / "a.zarr", sample=plan, labels=labels)
    group = zarr.open_group(tmp_path / "a.zarr", mode="r+")
    old = dict(group.attrs["fingerprint"])
    assert old.pop("selection") == 2
    group.attrs["fingerprint"] = old  # as written before the selection was versioned
    info = run(digitnet, tiny_images, tmp_path / "a.zarr", sample=plan, labels=labels)
    assert info["chunks_resumed"] == 0
    assert zarr.open_group(tmp_path / "a.zarr", mode="r").attrs["fingerprint"]["selection"] == 2
    # and one of this selection is resumed: every chunk complete, none redone
    assert run(digitnet, tiny_images, tmp_path / "a.zarr", sample=plan,
               labels=labels)["chunks_resumed"] == 3


class _ChannelsLastBlock(nn.Module):
    """A conv, then a ConvNeXt-style block computed channels-last (permute, layer norm,
    linear), then back."""

    def __init__(self):
        super().__init__()
        from torchvision.ops import Permute

        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.block = nn.Sequential(Permute([0, 2, 3, 1]), nn.LayerNorm(4), nn.Linear(4, 6),
                                   Permute([0, 3, 1, 2]))
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.block(self.conv(x)).mean((2, 3)))


def test_a_map_the_net_computes_channels_last_is_stored_as_it_is(tmp_path):
    """block.2's output is (N, H, W, C) already (a Swin or ConvNeXt block's layout): stored
    as those maps, not transposed as if it were (N, C, H, W); its receptive field traces."""
    from convdp.extract import feature_extractor
    from convdp.models import to_input
    from convdp.receptive import trace_fields

    torch.manual_seed(0)
    net = _ChannelsLastBlock().eval()
    images = np.random.default_rng(0).integers(0, 255, (3, 10, 12, 1), dtype=np.uint8)
    extract_activations(net, images, ["conv", "block.2"], tmp_path / "s.zarr", mean=[0.5],
                        std=[0.25], fingerprint={}, progress=False)
    stored = open_activations(tmp_path / "s.zarr")
    with torch.no_grad():
        x = to_input(images, [0.5], [0.25])
        conv = net.conv(x)
        truth = net.block[:3](conv).numpy()  # (N, H, W, C)
    assert stored["block.2"].shape == (3, 10, 12, 6)
    np.testing.assert_allclose(stored["block.2"][:], truth, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stored["conv"][:], conv.permute(0, 2, 3, 1).numpy(), rtol=1e-5,
                               atol=1e-6)
    out = feature_extractor(net, ["block.2"])(x)
    assert out["block.2"].shape == (3, 6, 10, 12)  # channels-first, as every map is read
    assert trace_fields(net, ["block.2"], (10, 12), 1)["block.2"].size == (3, 3)


def test_images_of_another_width_than_the_nets_input_size_are_refused(tmp_path):
    """A data set stored at one non-square size (``size: null``) whose height is the net's
    ``input_size`` passed a check of the height alone: 16×24 images were extracted for a net
    that expects 16×16."""
    from convdp.data import write_dataset
    from convdp.datasets.base import Dataset
    from convdp.pipeline import extract, prepare_model

    images = np.random.default_rng(0).integers(0, 255, (4, 16, 24, 1), dtype=np.uint8)
    write_dataset(tmp_path / "d.zarr", Dataset(images=images, labels=None, class_names=[],
                                               source="x"))
    prepare_model({"arch": "digitnet", "weights": "none", "input_size": 16, "layers": ["relu1"],
                   "analyse_on": ["d"]}, tmp_path / "m.pt", tmp_path / "m.json")
    with pytest.raises(ValueError, match=r"images are 16×24 but model 'model' expects 16×16"):
        extract(tmp_path / "m.pt", tmp_path / "m.json", tmp_path / "d.zarr", ["relu1"],
                tmp_path / "a.json", device="cpu", progress=False)
    assert not (tmp_path / "a.json").exists()
