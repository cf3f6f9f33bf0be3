"""Config errors that used to surface at job time are found at validation, naming the key."""

from __future__ import annotations

import copy
import logging

import pytest
import yaml

from convdp.config import ConfigError, validate_config

from .helpers import ROOT, make_model

TINY = yaml.safe_load((ROOT / "tests/config/tiny.yaml").read_text())


def histology(config, size=64):
    config["datasets"]["tissue"] = {"kind": "histology", "size": size}
    config["modes"] = ["position"]  # one image: no image mode (refused, as its fit would be)


def vgg(config, layers, analyse_on=("tissue",)):
    config["models"]["vgg"] = {"arch": "vgg16", "weights": "none",
                               "analyse_on": list(analyse_on), "layers": layers}


def fails(mutate, culprit):
    config = copy.deepcopy(TINY)
    mutate(config)
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert culprit in str(err.value), str(err.value)
    return str(err.value)


def test_unknown_classes_of_digits():
    msg = fails(lambda c: c["datasets"]["digits_target"].update(classes=[5, 12]),
                "datasets.digits_target.classes: unknown class(es) [12]")
    assert "0-9" in msg


def test_classes_by_folder_name(tmp_path):
    """An image folder's classes may be named by their folders (indices change meaning when a
    class folder is added); a name that is no folder, or a name for another kind, is refused."""
    for name in ("0_right", "1_down", "2_left"):
        (tmp_path / name).mkdir()

    def with_classes(classes):
        def mutate(c):
            c["datasets"]["mine"] = {"kind": "folder", "path": str(tmp_path), "classes": classes}
        return mutate

    config = copy.deepcopy(TINY)
    with_classes(["2_left", "0_right"])(config)
    assert validate_config(config)["datasets"]["mine"]["classes"] == ["2_left", "0_right"]
    fails(with_classes(["1_down", "3_up"]),
          "datasets.mine.classes: no class folder '3_up' in ")
    numbered = tmp_path / "numbered"
    for name in ("0", "1", "10", "2"):
        (numbered / name).mkdir(parents=True)
    fails(lambda c: c["datasets"].update(n={"kind": "folder", "path": str(numbered),
                                            "classes": [0, 2]}),
          "datasets.n.classes: 2 is the index of class folder '10', not of the folder named "
          "'2'; write '2' (quoted)")
    # zero-padded numbers: YAML reads an unquoted 01 as 1, the index of folder '02'
    padded = tmp_path / "padded"
    for name in ("01", "02", "03", "04"):
        (padded / name).mkdir(parents=True)
    fails(lambda c: c["datasets"].update(n={"kind": "folder", "path": str(padded),
                                            "classes": yaml.safe_load("[01, 03]")}),
          "datasets.n.classes: 1 is the index of class folder '02', not of the folder named "
          "'01'; write '01' (quoted)")
    from_zero = tmp_path / "from_zero"
    for name in ("00", "01", "02"):
        (from_zero / name).mkdir(parents=True)
    config = copy.deepcopy(TINY)
    config["datasets"]["z"] = {"kind": "folder", "path": str(from_zero), "classes": [0, 2]}
    assert validate_config(config)["datasets"]["z"]["classes"] == [0, 2]  # index = number
    fails(lambda c: c["datasets"]["digits_target"].update(classes=["5"]),
          "datasets.digits_target.classes: class names ('5') are for image folders; digits has "
          "classes 0-9")


def test_bit_depth_is_for_image_files(tmp_path):
    fails(lambda c: c["datasets"]["digits_target"].update(bit_depth=12),
          "datasets.digits_target.bit_depth: only image files (kinds folder and images) have a "
          "depth to set")
    fails(lambda c: c["datasets"]["digits_target"].update(bit_depth=8), "bit_depth")
    config = copy.deepcopy(TINY)
    config["datasets"]["shots"] = {"kind": "folder", "path": str(tmp_path), "bit_depth": 12}
    assert validate_config(config)["datasets"]["shots"]["bit_depth"] == 12
    assert validate_config(copy.deepcopy(TINY))["datasets"]["digits_target"]["bit_depth"] == "auto"


def test_classes_of_unlabelled_images():
    def mutate(c):
        histology(c)
        c["datasets"]["tissue"]["classes"] = [0]
    fails(mutate, "datasets.tissue.classes: kind 'histology' has no labels")


def test_unknown_torchvision_data_set_and_split():
    fails(lambda c: c["datasets"].update(x={"kind": "torchvision", "name": "MNISTT"}),
          "datasets.x.name: unknown torchvision data set 'MNISTT'")
    fails(lambda c: c["datasets"].update(x={"kind": "torchvision", "name": "mnist",
                                            "split": "extra"}),
          "datasets.x.split: MNIST has splits train, test")


def test_missing_image_files_and_folders(tmp_path):
    fails(lambda c: c["datasets"].update(x={"kind": "images", "paths": [str(tmp_path / "a.png")]}),
          "datasets.x.paths: image")
    fails(lambda c: c["datasets"].update(x={"kind": "folder", "path": str(tmp_path / "none")}),
          "datasets.x.path: image folder")


def test_size_too_small_for_the_layers():
    def mutate(c):
        histology(c, size=8)
        vgg(c, ["features.3", "features.29"])
    fails(mutate, "datasets.tissue.size: 8×8 images are too small for model 'vgg'")


def test_size_enough_for_early_layers_only():
    config = copy.deepcopy(TINY)
    histology(config, size=8)
    vgg(config, ["features.3", "features.15"])  # 2×2 at features.15; the head is never run
    validate_config(config)


def test_size_too_small_for_the_whole_net_when_trained():
    def mutate(c):
        histology(c, size=16)
        c["datasets"]["tissue2"] = {"kind": "histology", "size": 64}
        vgg(c, ["features.3"], analyse_on=("tissue2",))
        c["models"]["vgg"] |= {"weights": "train", "train_on": "tissue"}
    fails(mutate, "datasets.tissue.size: 16×16 images are too small for model 'vgg' (vgg16): "
                  "the forward pass fails")


def test_imagenet_normalisation_on_a_one_channel_net():
    fails(lambda c: c["models"]["digitnet"].update(normalize="imagenet"),
          "models.digitnet.normalize: 'imagenet' normalisation is for 3-channel images, but "
          "'digits_source' has 1-channel images")


def test_data_normalisation_of_a_net_not_trained_here():
    fails(lambda c: c["models"]["digitnet"].update(weights="none", normalize="data"),
          "models.digitnet.normalize: 'data' is the statistics of the images a net is trained "
          "on, and this one is not trained here (weights 'none')")
    fails(lambda c: c["models"]["digitnet"].update(weights="none", normalize="imagenet"),
          "models.digitnet.normalize: 'imagenet' normalisation is for 3-channel images, but "
          "the net takes 1")


def test_data_set_with_other_channels_than_the_net():
    def mutate(c):
        histology(c)
        c["models"]["digitnet"]["analyse_on"].append("tissue")
    fails(mutate, "models.digitnet.analyse_on: data set 'tissue' has 3-channel images but the "
                  "net takes 1-channel images")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CUDA", "meta"])
def test_invalid_device(device):
    fails(lambda c: c["extract"].update(device=device), f"extract.device: {device!r} is not a device")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_valid_devices(device):
    config = copy.deepcopy(TINY)
    config["extract"]["device"] = device
    validate_config(config)


def test_missing_weights_file_and_unknown_weights_name(tmp_path):
    fails(lambda c: c["models"]["digitnet"].update(weights=str(tmp_path / "net.pt")),
          "models.digitnet.weights: weights file")
    fails(lambda c: c["models"]["digitnet"].update(weights="VGG16_Weights.NOPE"),
          "models.digitnet.weights: 'VGG16_Weights.NOPE' is neither")


def test_weights_of_another_architecture_are_refused_by_name():
    from convdp.config import _check_weights_name

    with pytest.raises(ConfigError, match="models.m.weights: 'VGG16_Weights.IMAGENET1K_V1' are "
                                          "weights of another architecture than 'resnet18'; its "
                                          "own are ResNet18_Weights.IMAGENET1K_V1"):
        _check_weights_name("models.m", "VGG16_Weights.IMAGENET1K_V1", "resnet18")
    _check_weights_name("models.m", "ResNet18_Weights.IMAGENET1K_V1", "resnet18")
    _check_weights_name("models.m", "ResNet18_Weights.IMAGENET1K_V1", "mypkg.nets:small")


def test_layers_that_are_no_feature_maps_and_nets_that_assert_are_named():
    """A node that is not a tensor (ShuffleNet's ``x.size()``) and a net whose own assert
    fails on the images (ViT at 32 px) are refused naming the key, not with a traceback."""
    from convdp.config import _check_sizes
    from convdp.models import build_on_meta

    def config(arch, layers):
        return {"models": {"m": {"arch": arch, "weights": "none", "analyse_on": ["p"],
                                 "layers": layers}}, "transfer": {"retrain": False}}

    facts = {"p": {"size": 64, "images": 8}}
    with pytest.raises(ConfigError, match=r"models.m.layers: 'stage2.0.size' is not a feature "
                                          r"map \(its output is a Size\)"):
        _check_sizes(config("shufflenet_v2_x0_5", ["stage2.0.size"]), "m",
                     build_on_meta("shufflenet_v2_x0_5", 10, 3), 3, facts)
    facts["p"]["size"] = 32
    with pytest.raises(ConfigError, match="datasets.p.size: 32×32 images are too small for "
                                          "model 'm' .*fails: Wrong image height!"):
        _check_sizes(config("vit_b_16", ["encoder"]), "m", build_on_meta("vit_b_16", 10, 3), 3,
                     facts)
    # trained here: the training-mode graph (Inception's auxiliary head) must run too
    trained = config("inception_v3", ["Mixed_5b"])
    trained["models"]["m"].update(weights="train", train_on="p")
    facts["p"]["size"] = 96
    with pytest.raises(ConfigError, match="96×96 images are too small .*training fails: "):
        _check_sizes(trained, "m", build_on_meta("inception_v3", 10, 3), 3, facts)


def test_weights_file_that_exists_is_accepted(tmp_path):
    weights, _ = make_model(tmp_path)
    config = copy.deepcopy(TINY)
    config["models"]["digitnet"].update(weights=str(weights), num_classes=5)
    validate_config(config)


@pytest.mark.parametrize("key, mutate", [
    ("models.digitnet.layers", lambda c: c["models"]["digitnet"].update(layers=["relu1", "relu1"])),
    ("models.digitnet.analyse_on",
     lambda c: c["models"]["digitnet"]["analyse_on"].append("digits_target")),
    ("datasets.digits_source.classes", lambda c: c["datasets"]["digits_source"].update(classes=[1, 1])),
    ("modes", lambda c: c.update(modes=["image", "image"])),
])
def test_duplicate_entries(key, mutate):
    msg = fails(mutate, key)
    assert "more than once" in msg or "non-unique" in msg


def _three_images_for(tmp_path, size, arch, layer):
    """TINY with a data set ``few`` of three ``size``-px images analysed by a net ``net``
    (``arch``, random weights) at ``layer``."""
    from PIL import Image

    paths = []
    for i in range(3):
        Image.new("RGB", (size + 4, size + 4), (40 * i, 0, 0)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    config = copy.deepcopy(TINY)
    config["datasets"]["few"] = {"kind": "images", "paths": paths, "size": size}
    config["models"]["net"] = {"arch": arch, "weights": "none", "analyse_on": ["few"],
                               "layers": [layer]}
    return config


def _pca_warnings(config, caplog):
    """The validation's warnings about ``preprocess.pca``."""
    with caplog.at_level(logging.WARNING, logger="convdp.config"):
        validate_config(config)
    return [r.getMessage() for r in caplog.records if "preprocess.pca" in r.getMessage()]


def test_pca_above_the_samples_of_image_mode_is_named(tmp_path, caplog):
    """A few images give a layer a few samples in image mode: the validation warns, naming
    preprocess.pca (the fit keeps what it can; see the fit's record)."""
    config = _three_images_for(tmp_path, 16, "resnet18", "layer1")
    warned = _pca_warnings(config, caplog)
    assert len(warned) == 1, caplog.text
    assert "3 samples that data set 'few'" in warned[0] and "image mode" in warned[0]


def test_pca_check_reads_the_channels_of_a_map_the_net_computes_channels_last(tmp_path, caplog):
    """A Swin block's map is (N, H, W, C) in the net: the validation reads its channels and
    positions as the extraction stores them, so the PCA warning names the layer (it read
    the map's height, 8, as its channels, and no warning came)."""
    config = _three_images_for(tmp_path, 32, "swin_t", "features.1")
    config["preprocess"]["pca"] = 50  # above image mode's 3 samples, below the 96 channels
    warned = _pca_warnings(config, caplog)
    assert len(warned) == 1, caplog.text
    assert "3 samples that data set 'few'" in warned[0] and "features.1" in warned[0]
    assert "image mode" in warned[0]
