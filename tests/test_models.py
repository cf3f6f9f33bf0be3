"""Nets, layer names, checkpoints."""


import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from convdp.cli import main as cli_main
from convdp.models import (
    DigitNet,
    block_layers,
    check_layers,
    load_pretrained,
    load_state_dict,
    save_state_dict,
)


def test_paper_layer_is_vgg16_block4_conv3_after_relu(repo_root):
    import yaml

    cfg = yaml.safe_load((repo_root / "config/paper.yaml").read_text())
    spec = cfg["models"]["vgg16"]
    assert "features.22" in spec["layers"]
    vgg = torchvision.models.vgg16()
    convs = [i for i, m in enumerate(vgg.features) if isinstance(m, torch.nn.Conv2d)]
    # Keras blocks have 2, 2, 3, 3, 3 convs: block4_conv3 is the 10th conv.
    assert convs[9] == 21
    assert isinstance(vgg.features[22], torch.nn.ReLU)
    assert isinstance(vgg.features[23], torch.nn.MaxPool2d)  # end of block 4
    assert spec["layers"] == block_layers(vgg)[:4]  # blocks 1-4, the paper's layer the deepest
    assert cfg["dpgmm"] == {**cfg["dpgmm"], "n_components": 50, "concentration": 1.0,
                            "covariance_type": "diag"}
    assert cfg["preprocess"]["scale_max"] == 10 and cfg["modes"] == ["position"]


def test_block_layers_digitnet_and_resnet():
    assert block_layers(DigitNet()) == ["relu1", "relu2", "relu3", "relu4"]
    assert block_layers(torchvision.models.resnet18()) == ["relu", "layer1", "layer2", "layer3", "layer4"]


class _PreActResNet(nn.Module):
    """Stages layer1..layer3, then a final BN + ReLU before the (functional) average pool:
    the pre-activation ResNet's head (He et al. 2016; robustbench's PreActResNet)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.layer3 = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = nn.functional.avg_pool2d(nn.functional.relu(self.bn(out)), 8)
        return self.fc(out.flatten(1))


def test_blocks_after_the_stages_come_after_them():
    """A map pooled after the stages (a pre-activation ResNet's final BN + ReLU) was listed
    before them: ``layers: blocks`` in the net's order, as a list given by name must be."""
    from convdp.layers import check_layers, layer_names, node_positions

    net = _PreActResNet().eval()
    blocks = block_layers(net)
    assert set(blocks) == {"layer1", "layer2", "layer3", "relu"}
    positions = node_positions(layer_names(net), blocks)
    assert positions == sorted(positions), blocks  # was ['relu', 'layer1', 'layer2', 'layer3']
    assert check_layers(net, "blocks") == check_layers(net, blocks)


def test_block_layers_of_nets_that_shrink_by_strided_convolutions():
    """No pooling between MobileNet's blocks (one layer was found); GoogLeNet's stride-1 pool
    inside a branch is no step (branch nodes were found); fewer than two is an error."""
    with torch.device("meta"):
        mobile = torchvision.models.mobilenet_v2()
        google = torchvision.models.googlenet(aux_logits=False, init_weights=False)
        shuffle = torchvision.models.shufflenet_v2_x0_5()
    regnet = torchvision.models.regnet_x_400mf()  # its init copies: not on the meta device
    flat = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
    assert block_layers(mobile) == ["features.1", "features.3", "features.6", "features.13",
                                    "features.18"]
    assert block_layers(google) == ["conv1.relu", "conv3.relu", "inception3b.cat",
                                    "inception4e.cat", "inception5b.cat"]
    # stages that are not in a 'features' sequence: the last part at each map size
    assert block_layers(regnet) == [f"trunk_output.block{i}" for i in range(1, 5)]
    assert block_layers(shuffle) == ["conv1", "stage2", "stage3", "conv5"]
    with pytest.raises(ValueError, match=r"'blocks' .* found \['1'\] in this one; list its"):
        block_layers(flat)


def test_block_layers_at_functional_pooling():
    """DenseNet's last block is pooled by the forward's ``F.adaptive_avg_pool2d`` and
    Inception v3's reduction blocks by ``F.max_pool2d`` in a branch: the maps they shrink
    are blocks (the node before a branch's pool is inside another branch)."""
    with torch.device("meta"):
        dense = torchvision.models.densenet121()
        inception = torchvision.models.inception_v3(aux_logits=False, init_weights=False)
    assert block_layers(dense) == ["features.relu0", "features.transition1.conv",
                                   "features.transition2.conv", "features.transition3.conv",
                                   "relu"]
    assert block_layers(inception) == ["Conv2d_2b_3x3.relu", "Conv2d_4a_3x3.relu",
                                       "Mixed_5d.cat", "Mixed_6e.cat", "Mixed_7c.cat_2"]


def test_check_layers_accepts_nodes_modules_and_blocks():
    net = torchvision.models.resnet18()
    assert check_layers(net, ["layer1.0.relu_1", "layer2"]) == ["layer1.0.relu_1", "layer2"]
    assert check_layers(net, "blocks")[-1] == "layer4"
    with pytest.raises(ValueError, match=r"\['layer9'\] not found in resnet; its layers are: conv1, bn1"):
        check_layers(net, ["layer9"], "resnet")


class _BareInPlace(nn.Module):
    """``y.relu_()`` as a statement: torch.fx drops it (nothing uses its result), so the
    extracted ``fc`` would be computed from the unrectified ``y``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x)
        y.relu_()
        return self.fc(y.mean((2, 3)))


def test_a_dropped_in_place_call_is_refused_with_the_node_named():
    net = _BareInPlace()
    from torchvision.models.feature_extraction import create_feature_extractor

    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():  # what it would have been: not the net's output
        assert not torch.allclose(create_feature_extractor(net, ["fc"])(x)["fc"], net(x))
    with pytest.raises(ValueError, match=r"graph node\(s\) relu_, .*assign the result"):
        check_layers(net, ["fc"], "mine")
    assert check_layers(torchvision.models.resnet18(), ["layer1"]) == ["layer1"]
    assert net.training  # its mode is left as it was


def test_structure_digest_sees_what_the_weights_do_not():
    """ReLU → Tanh leaves the state_dict as it was; the extraction's fingerprint must differ."""
    from convdp.models import structure_digest

    net = DigitNet(num_classes=3)
    other = DigitNet(num_classes=3)
    other.load_state_dict(net.state_dict())
    assert structure_digest(net) == structure_digest(other)
    other.relu1 = nn.Tanh()
    assert structure_digest(net) != structure_digest(other)
    assert structure_digest(net) != structure_digest(DigitNet(num_classes=4))


@pytest.mark.parametrize("a, b", [
    (nn.AvgPool2d(3, 2, padding=1), nn.AvgPool2d(3, 2, padding=1, count_include_pad=False)),
    (nn.AvgPool2d(2), nn.AvgPool2d(2, divisor_override=1)),
    (nn.Upsample(scale_factor=2, mode="bilinear"),
     nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)),
])
def test_structure_digest_sees_settings_the_printout_leaves_out(a, b):
    """Settings a module's printout omits changed the output, not the digest: an activation
    store of the old net was resumed for the new one."""
    from convdp.models import structure_digest

    x = torch.rand(1, 1, 8, 8)
    nets = [nn.Sequential(nn.Conv2d(1, 2, 3), m).eval() for m in (a, b)]
    nets[1].load_state_dict(nets[0].state_dict())
    with torch.no_grad():
        assert not torch.allclose(nets[0](x), nets[1](x))  # the case arises
    assert structure_digest(nets[0]) != structure_digest(nets[1])


def test_a_rebuilt_net_that_computes_otherwise_is_refused(tmp_path):
    """The model JSON records what the net computes; load_model refuses a rebuild that
    differs (Inception v3 with a weights name has transform_input on; rebuilt from its name,
    off, with every key and shape the same)."""
    from convdp import models

    net = models.build_model("digitnet", 3, 1).eval()
    models.save_state_dict(net, tmp_path / "w.pt")
    meta = {"arch": "digitnet", "num_classes": 3, "in_channels": 1,
            "structure": models.structure_digest(net)}
    assert models.load_model(meta, tmp_path / "w.pt") is not None
    with pytest.raises(ValueError, match="the net rebuilt from its name computes otherwise"):
        models.load_model(meta | {"structure": "0" * 64}, tmp_path / "w.pt")


def test_checkpoints_without_batch_norm_counters_load():
    """PyTorch before 0.4.1 saved no ``num_batches_tracked``; torch loads such files."""
    from convdp.models import fit_state_dict

    net = torchvision.models.resnet18(num_classes=3)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    other = fit_state_dict(torchvision.models.resnet18(num_classes=3), state, "old.pt", "resnet18")
    assert torch.equal(other.fc.weight, net.fc.weight)
    with pytest.raises(ValueError, match=r"missing keys .*: fc.bias"):
        fit_state_dict(net, {k: v for k, v in state.items() if k != "fc.bias"}, "old.pt", "r")
    quantised = dict(state, **{"fc.weight": state["fc.weight"].mul(100).to(torch.int8)})
    with pytest.raises(ValueError, match=r"type mismatch: fc.weight \(file torch.int8, net "
                                         r"torch.float32\)"):
        fit_state_dict(net, quantised, "q.pt", "r")


class _BodyFirst(nn.Module):
    """Registers its body before its stem, and the stem's convolution is grouped."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(12, 8, 3)
        self.stem = nn.Conv2d(3, 12, 3, groups=3)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


def test_input_channels_are_the_first_convolution_the_forward_runs(tmp_path):
    from convdp.extract import extract_activations
    from convdp.models import input_channels

    net = _BodyFirst()
    assert input_channels(net) == 3  # not the body's 12, nor the grouped weight's 1
    images = np.zeros((4, 8, 8, 3), np.uint8)
    extract_activations(net, images, ["stem"], tmp_path / "s.zarr", mean=[0.5] * 3,
                        std=[0.25] * 3, fingerprint={}, progress=False)


def test_training_takes_googlenets_main_scores_and_refuses_its_aux_heads_as_layers():
    from convdp.training import train_classifier

    net = torchvision.models.googlenet(num_classes=2, aux_logits=True, init_weights=False)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    train_classifier(net, images, np.array([0, 1] * 4), mean=[0.5] * 3, std=[0.25] * 3,
                     epochs=1, batch_size=4, progress=False)
    with pytest.raises(ValueError, match=r"\['aux1'\] of g are modules its forward does not use"):
        check_layers(net, ["aux1"], "g")


class _Prefixed(nn.Module):
    """Two parameters whose names share a prefix: ``emb`` and ``emb_extra``."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Parameter(torch.zeros(3, 1, 1))
        self.emb_extra = nn.Parameter(torch.zeros(3, 1, 1))
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc((x + self.emb + self.emb_extra).mean((2, 3)))


def test_training_keeps_frozen_a_parameter_whose_name_starts_with_a_trainable_ones():
    """``trainable`` names parameters or module prefixes of them: a frozen ``emb_extra`` was
    trained because its name starts with the trainable ``emb``."""
    from convdp.training import train_classifier

    net = _Prefixed()
    images = np.random.default_rng(0).integers(0, 255, (8, 8, 8, 3), dtype=np.uint8)
    train_classifier(net, images, np.array([0, 1] * 4), mean=[0.5] * 3, std=[0.25] * 3,
                     epochs=2, batch_size=4, progress=False, trainable=["emb", "fc"])
    assert torch.count_nonzero(net.emb_extra) == 0
    assert torch.count_nonzero(net.emb) > 0


def test_state_dict_round_trip(tmp_path):
    net = DigitNet(num_classes=3)
    save_state_dict(net, tmp_path / "m.pt")
    state = load_state_dict(tmp_path / "m.pt")
    assert torch.equal(state["conv1.weight"], net.conv1.weight)


class _Payload:
    """Unpickling this would create a marker file: proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_pickled_object_is_refused_never_unpickled(tmp_path):
    marker = tmp_path / "UNPICKLED"
    with open(tmp_path / "evil.pt", "wb") as fh:
        torch.save({"conv1.weight": torch.zeros(1), "extra": _Payload(str(marker))}, fh)
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"evil\.pt is not a plain state_dict"):
        load_state_dict(tmp_path / "evil.pt")
    assert not marker.exists(), "the checkpoint was unpickled"


def test_whole_pickled_model_is_refused(tmp_path):
    torch.save(DigitNet(), tmp_path / "whole.pt")
    with pytest.raises(ValueError, match="not a plain state_dict"):
        load_state_dict(tmp_path / "whole.pt")


def test_truncated_checkpoint_is_named(tmp_path):
    save_state_dict(DigitNet(), tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"m\.pt"):
        load_state_dict(tmp_path / "m.pt")


def test_a_damaged_checkpoint_is_refused_not_loaded_with_a_wrong_weight(tmp_path):
    """torch.load does not check a zip checkpoint's CRC-32s: one flipped byte in a tensor's
    record loaded as a wrong weight of conv1 without a word."""
    net = DigitNet()
    save_state_dict(net, tmp_path / "m.pt")
    data = bytearray((tmp_path / "m.pt").read_bytes())
    data[data.find(b"data/0") + 200] ^= 0xFF  # inside conv1.weight's bytes
    (tmp_path / "m.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"m\.pt is damaged: its record \S+/data/0 does not"):
        load_state_dict(tmp_path / "m.pt")


def test_a_checkpoint_saved_without_checksums_loads(tmp_path):
    """torch can save without CRC-32s (stored as 0): such a file is no damaged one."""
    from torch.utils.serialization import config as serialization

    net = DigitNet()
    before = serialization.save.compute_crc32
    serialization.save.compute_crc32 = False
    try:
        torch.save(net.state_dict(), tmp_path / "m.pt")
    finally:
        serialization.save.compute_crc32 = before
    state = load_state_dict(tmp_path / "m.pt")
    assert torch.equal(state["conv1.weight"], net.conv1.weight)


def test_a_truncated_legacy_checkpoint_is_called_truncated(tmp_path):
    """A checkpoint in torch's old (non-zip) format cut short was refused as one that 'would
    need arbitrary unpickling'."""
    torch.save(DigitNet().state_dict(), tmp_path / "m.pt", _use_new_zipfile_serialization=False)
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"m\.pt is truncated \(unexpected EOF"):
        load_state_dict(tmp_path / "m.pt")


def test_text_and_git_lfs_pointers_are_named(tmp_path):
    (tmp_path / "notes.pt").write_text("hello world\n")  # pickle read it as a KeyError: 101
    with pytest.raises(ValueError, match=r"notes\.pt is not a file torch.save wrote"):
        load_state_dict(tmp_path / "notes.pt")
    (tmp_path / "lfs.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:"
                                     "4d7a\nsize 46830571\n")
    with pytest.raises(ValueError, match=r"lfs\.pt is a Git LFS pointer, not the weights"):
        load_state_dict(tmp_path / "lfs.pt")


def test_local_weights_file_loads(tmp_path):
    net = DigitNet(num_classes=10)
    save_state_dict(net, tmp_path / "w.pt")
    loaded, extra = load_pretrained({"arch": "digitnet", "weights": str(tmp_path / "w.pt")})
    assert torch.equal(loaded.fc.weight, net.fc.weight) and extra["in_channels"] == 1


def test_unknown_weights_name_is_explained():
    with pytest.raises(ValueError, match="torchvision weights name"):
        load_pretrained({"arch": "vgg16", "weights": "NOT_A_WEIGHTS_NAME"})


def test_cli_lists_layers(capsys):
    assert cli_main(["layers", "digitnet"]) == 0
    out = capsys.readouterr().out
    assert "relu3    * ReLU" in out and "(64, 8, 8)" in out
    assert cli_main(["layers", "nonet"]) == 2
    assert cli_main(["layers", "torch.nn:Identity"]) == 2  # no layers: was max() of nothing
    assert "torch.nn:Identity has no layers to list" in capsys.readouterr().err


@pytest.mark.parametrize("arch, weights, builder, size", [
    ("googlenet", "GoogLeNet_Weights.IMAGENET1K_V1",
     {"aux_logits": False, "transform_input": True}, 112),
    ("inception_v3", "Inception_V3_Weights.IMAGENET1K_V1", {"transform_input": True}, 112),
])
def test_nets_from_a_weights_name_whose_builder_sets_more_are_rebuilt_as_loaded(
        tmp_path, monkeypatch, arch, weights, builder, size):
    """A weights name's builder can set what the architecture's name alone does not
    (GoogLeNet and Inception v3: ``transform_input`` on; GoogLeNet's auxiliary heads dropped
    after loading): the model JSON records those settings and load_model rebuilds the net
    with them, so extraction gets the net the name built (it refused it before: missing
    keys for GoogLeNet, "computes otherwise" for Inception v3). Only the download is
    replaced: the weights are a seeded net's of the builder's own construction. The settings
    are found without the download too (the net's random-weights control is built with
    them)."""
    import json

    import torchvision.models._api as api

    from convdp import models
    from convdp.control import build_control
    from convdp.pipeline import prepare_model

    def download(url, *args, **kwargs):
        assert arch.replace("_", "") in url.replace("_", "")
        torch.manual_seed(1)
        cls = torchvision.models.GoogLeNet if arch == "googlenet" else torchvision.models.Inception3
        return cls(aux_logits=True, transform_input=True, init_weights=False).state_dict()

    def no_download(url, *args, **kwargs):
        raise AssertionError(f"downloaded {url}")

    # the settings are known without the weights: the config's checks and the control use them
    monkeypatch.setattr(api, "load_state_dict_from_url", no_download)
    assert models.spec_builder({"arch": arch, "weights": weights}) == builder
    control, extra = build_control({"arch": arch, "weights": weights}, seed=0)
    assert extra["builder"] == builder and control.transform_input
    assert [getattr(control, k) for k in builder] == list(builder.values())
    monkeypatch.setattr(api, "load_state_dict_from_url", download)
    meta = prepare_model({"arch": arch, "weights": weights}, tmp_path / "w.pt", tmp_path / "m.json")
    assert meta["builder"] == builder and meta["num_classes"] == 1000
    net = models.load_model(json.loads((tmp_path / "m.json").read_text()), tmp_path / "w.pt")
    assert net.transform_input and not net.training
    named = torchvision.models.get_model(arch, weights=weights).eval()  # as the name builds it
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(net(x), named(x))


def test_the_configs_checks_build_a_weights_names_net_as_its_builder_does():
    """A SWAG ViT's weights name builds it for 384 px images (the name alone: 224); the
    config's size checks see the net the name builds, without downloading its weights."""
    from convdp.config import meta_net

    spec = {"arch": "vit_b_16", "weights": "ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1"}
    assert meta_net(spec).image_size == 384
    assert meta_net({"arch": "vit_b_16", "weights": "none"}).image_size == 224


def test_a_net_whose_builder_reads_tensor_values_is_checked_without_its_weights(monkeypatch):
    """RegNet's builder computes its block widths with tensors and reads their values, which
    the meta device has not: the config's checks failed with "Cannot copy out of meta tensor"
    on any RegNet, and then built it on the CPU at every config read (regnet_y_128gf: 2.6 GB,
    ~5 s). Now the builder runs on the CPU with each parameter and buffer moved to the meta
    device as it is made: the same layers and state shapes as a CPU build, no weights."""
    import torchvision.models._api as api

    from convdp.config import meta_net
    from convdp.models import build_on_meta, spec_builder

    spec = {"arch": "regnet_x_400mf", "weights": "RegNet_X_400MF_Weights.IMAGENET1K_V1"}
    net = meta_net(spec)
    assert type(net).__name__ == "RegNet" and spec_builder(spec) == {}
    tensors = [*net.parameters(), *net.buffers()]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    from convdp.layers import layer_names

    cpu = torchvision.models.regnet_y_400mf(num_classes=7).eval()
    meta = build_on_meta("regnet_y_400mf", 7, 3)
    assert layer_names(meta) == layer_names(cpu)
    assert ({k: v.shape for k, v in meta.state_dict().items()}
            == {k: v.shape for k, v in cpu.state_dict().items()})
    # the patch is undone: a module made afterwards has its weights in memory
    assert nn.Linear(2, 2).weight.device.type == "cpu"
    # and while it is in place, another thread's modules keep theirs
    import threading

    devices = set()
    done = threading.Event()

    def other():
        while not done.is_set():
            devices.add(nn.Linear(2, 2).weight.device.type)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        for _ in range(3):
            build_on_meta("regnet_y_400mf", 7, 3)
    finally:
        done.set()
        thread.join()
    assert devices == {"cpu"}
    monkeypatch.setattr(api, "load_state_dict_from_url",
                        lambda url, *a, **k: torchvision.models.regnet_x_400mf().state_dict())
    net, extra = load_pretrained(spec)
    assert type(net).__name__ == "RegNet" and "builder" not in extra
