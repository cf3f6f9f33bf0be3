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
