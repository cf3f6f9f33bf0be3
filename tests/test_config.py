"""A wrong config fails before any job runs, with a message naming the key."""

import copy

import pytest
import yaml

from convdp.config import ConfigError, validate_config


@pytest.fixture
def config(repo_root):
    return yaml.safe_load((repo_root / "config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults(config):
    out = validate_config(copy.deepcopy(config))
    assert out["dpgmm"]["init"] == "kmeans"
    assert out["models"]["digitnet"]["train"]["val_fraction"] == 0.2


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(bogus=1), r"\(top level\).*'bogus' was unexpected"),
        (lambda c: c["dpgmm"].update(n_components="ten"), r"dpgmm\.n_components: 'ten' is not of type 'integer'"),
        (lambda c: c["dpgmm"].update(n_componets=3), r"dpgmm: .*'n_componets' was unexpected"),
        (lambda c: c["dpgmm"].update(concentration=-1), r"dpgmm\.concentration"),
        (lambda c: c["dpgmm"].update(early_moves=-1), r"dpgmm\.early_moves: -1 is less than the minimum of 0"),
        (lambda c: c.update(modes=["pixel"]), r"modes\.0: 'pixel' is not one of"),
        (lambda c: c["models"]["digitnet"].update(train_on="nope"), r"models\.digitnet\.train_on: unknown data set 'nope'"),
        (lambda c: c["models"]["digitnet"].update(analyse_on=["x"]), r"models\.digitnet\.analyse_on: unknown data set 'x'"),
        (lambda c: c["baseline"].update(k_min=9, k_max=3), r"baseline\.k_min \(9\) is larger"),
        (lambda c: c["datasets"]["digits_source"].update(kind="torchvision"), r"datasets\.digits_source: kind 'torchvision' needs the key 'name'"),
    ],
)
def test_bad_config_names_the_key(config, change, message):
    change(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_unknown_layer_lists_the_models_layers(config):
    config["models"]["digitnet"]["layers"] = ["relu1", "relu7"]
    with pytest.raises(ConfigError, match=r"\['relu7'\] not found in digitnet; its layers are: conv1, relu1, pool1"):
        validate_config(config)


def test_unknown_architecture_is_named(config):
    config["models"]["digitnet"]["arch"] = "notanet"
    with pytest.raises(ConfigError, match=r"models\.digitnet\.arch: unknown architecture 'notanet'"):
        validate_config(config)


def test_layer_index_is_the_nets_order_not_the_lists(config):
    """A fit's layer_index is the layer's place in the net (graph order), whatever the config
    lists: inserting a layer into the list (or listing them out of order) moves no other
    layer's index, so no other layer's fits rerun."""
    from convdp.config import layer_index
    from convdp.layers import layer_names
    from convdp.models import DigitNet

    nodes = layer_names(DigitNet())
    indices = {}
    for layers in (["relu1", "relu3"], ["relu1", "relu2", "relu3"], ["relu3", "relu1"]):
        c = copy.deepcopy(config)
        c["models"]["digitnet"]["layers"] = layers
        validate_config(c)
        indices[tuple(layers)] = {n: layer_index(c, "digitnet", n) for n in layers}
    assert {i["relu1"] for i in indices.values()} == {nodes.index("relu1")}
    assert {i["relu3"] for i in indices.values()} == {nodes.index("relu3")}
    assert indices[("relu1", "relu2", "relu3")]["relu2"] == nodes.index("relu2")
    assert nodes.index("relu1") < nodes.index("relu2") < nodes.index("relu3")


def test_a_module_layer_sits_at_its_last_node():
    """A module name that is not a graph node (a ResNet stage) is placed at its last node."""
    import torchvision

    from convdp.layers import layer_names, layer_positions

    net = torchvision.models.resnet18()
    nodes = layer_names(net)
    pos = layer_positions(net, ["layer2", "relu", "layer1"])
    assert pos["relu"] == nodes.index("relu")
    assert pos["layer1"] == max(i for i, n in enumerate(nodes) if n.startswith("layer1."))
    assert pos["relu"] < pos["layer1"] < pos["layer2"] < len(nodes)
    with pytest.raises(ValueError, match="layer9"):
        layer_positions(net, ["layer9"])
