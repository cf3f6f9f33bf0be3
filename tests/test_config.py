"""A wrong config fails before any job runs, with a message naming the key."""

import copy
import re

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
        (lambda c: c["dpgmm"].update(kmeans_max_iter=0), r"dpgmm\.kmeans_max_iter: 0 is less than the minimum of 1"),
        (lambda c: c.update(modes=["pixel"]), r"modes\.0: 'pixel' is not one of"),
        (lambda c: c["models"]["digitnet"].update(train_on="nope"), r"models\.digitnet\.train_on: unknown data set 'nope'"),
        (lambda c: c["models"]["digitnet"].update(analyse_on=["x"]), r"models\.digitnet\.analyse_on: unknown data set 'x'"),
        # the source is the first analysed: the training data as a target would be scored
        (lambda c: c["models"]["digitnet"].update(analyse_on=["digits_target", "digits_source"]),
         r"models\.digitnet\.analyse_on: the data set the net is trained on \('digits_source'\) "
         r"must come first .*\['digits_source', 'digits_target'\]"),
        (lambda c: c["baseline"].update(k_min=9, k_max=3), r"baseline\.k_min \(9\) is larger"),
        (lambda c: c["baseline"].update(k_max=8, k_limit=5),
         r"baseline\.k_limit \(5\) is below baseline\.k_max \(8\)"),
        (lambda c: c["datasets"]["digits_source"].update(kind="torchvision"), r"datasets\.digits_source: kind 'torchvision' needs the key 'name'"),
        # the extraction refused the mismatch after the data set and the training
        (lambda c: c["models"]["digitnet"].update(input_size=16),
         r"models\.digitnet\.input_size is 16 but datasets\.digits_source has images of 32 px: "
         r"set datasets\.digits_source\.size: 16"),
        # ignored: the trained net has one output per class of its training data
        (lambda c: c["models"]["digitnet"].update(num_classes=3),
         r"models\.digitnet\.num_classes: a net trained here has one output per class"),
        (lambda c: c["models"]["digitnet"].update(weights="ResNet18_Weights.IMAGENET1K_V1",
                                                  arch="resnet18", num_classes=10),
         r"models\.digitnet\.num_classes: 'ResNet18_Weights\.IMAGENET1K_V1' have 1000 classes"),
        # keys another kind reads were ignored: split: test on digits gave the train images
        (lambda c: c["datasets"]["digits_source"].update(split="test"),
         r"datasets\.digits_source: kind 'digits' does not read \['split'\] \(they are for "
         r"kind split: torchvision\)"),
        (lambda c: c["datasets"]["digits_source"].update(heldout_fraction=0.9),
         r"datasets\.digits_source\.heldout_fraction: only part train or heldout"),
        # sklearn refused it in every fit job, naming no key
        (lambda c: c.update(seed=2**32), r"seed: 4294967296 is greater than the maximum"),
        # one image: the image-mode fit called its one vector "a dead layer"
        (lambda c: c["datasets"]["digits_target"].update(max_samples=1),
         r"modes: image mode clusters one vector per image and data set 'digits_target' "
         r"\(models\.digitnet\.analyse_on\) has 1"),
    ],
)
def test_bad_config_names_the_key(config, change, message):
    change(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_smoothing_a_layer_without_maps_is_refused_before_any_job(config):
    """``extract.smooth`` on a layer whose output is (N, C), or ``auto`` on maps too small to
    read a σ off: refused when the config is read, naming the layer, where the extraction (or
    the choice of an ``auto`` σ) refused it only after the data set was stored and the net
    trained."""
    config["models"]["digitnet"]["layers"] = ["relu1", "flatten"]
    config["extract"]["smooth"] = {"flatten": "auto"}
    with pytest.raises(ConfigError, match=r"extract.smooth: layer 'flatten' of model 'digitnet' "
                                          r"has no spatial maps \(its output is a tensor of shape "
                                          r"\(1, 64\)\)"):
        validate_config(config)
    config["extract"]["smooth"] = {"relu1": "auto", "flatten": 0}  # 0: not smoothed
    assert validate_config(config)["extract"]["smooth"] == {"relu1": "auto", "flatten": 0}
    # auto reads σ off maps of 16 positions a side or more: relu3's 8 x 8 (32 px digits) is
    # refused when the config is read, not after the training and the extraction
    config["models"]["digitnet"]["layers"] = ["relu1", "relu3"]
    config["extract"]["smooth"] = {"relu3": "auto"}
    with pytest.raises(ConfigError, match=r"layer 'relu3' of model 'digitnet' "
                                          r"has 8 x 8 positions: extract.smooth auto needs maps of 16"):
        validate_config(config)
    config["extract"]["smooth"] = {"relu3": 1.0}
    assert validate_config(config)["extract"]["smooth"] == {"relu3": 1.0}
    # σ is read off the source's maps alone: a target of smaller images is not refused
    config["models"]["digitnet"]["layers"] = ["relu1", "relu2"]
    config["extract"]["smooth"] = {"relu2": "auto"}
    config["datasets"]["digits_target"]["size"] = 16  # relu2: 8 x 8 there, 16 x 16 on the source
    assert validate_config(config)["extract"]["smooth"] == {"relu2": "auto"}


def test_config_files_refuse_a_repeated_key_and_a_top_level_that_is_no_mapping(tmp_path):
    """A key given twice in one mapping (at any depth) names the file and both lines; YAML's
    merge keys may still be overridden; a list or a scalar at the top level is refused."""
    from convdp.config import load_config, read_config_file

    nested = tmp_path / "nested.yaml"
    nested.write_text("models:\n  a:\n    arch: digitnet\n    layers: [relu1]\n"
                      "    arch: vgg11\n")
    with pytest.raises(ConfigError, match=r"nested.yaml: key 'arch' is given twice "
                                          r"\(lines 3 and 5\)"):
        load_config(nested)
    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &b {arch: digitnet, layers: [relu1]}\n"
                      "models:\n  a:\n    <<: *b\n    arch: vgg11\n")
    assert read_config_file(merged)["models"]["a"] == {"arch": "vgg11", "layers": ["relu1"]}
    for text, kind in (("- a\n- b\n", "list"), ("just words\n", "str")):
        bad = tmp_path / f"{kind}.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=f"{kind}.yaml: a config is a mapping of keys .* "
                                              f"not a {kind}"):
            load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_config_file(empty) == {}
    # JSON, as Snakemake reads it first: tab-indented (no YAML), and a key twice in an object
    import json

    tabs = tmp_path / "tabs.json"
    tabs.write_text(json.dumps({"seed": 3, "modes": ["position"]}, indent="\t"))
    assert read_config_file(tabs) == {"seed": 3, "modes": ["position"]}
    twice = tmp_path / "twice.json"
    twice.write_text('{"dpgmm": {"restarts": 4}, "dpgmm": {"n_components": 5}}')
    with pytest.raises(ConfigError, match=r"twice.json: key 'dpgmm' is given twice in one "
                                          r"object"):
        read_config_file(twice)


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
    lists: inserting a layer into the list moves no other layer's index, so no other
    layer's fits rerun."""
    from convdp.config import layer_index
    from convdp.layers import layer_names
    from convdp.models import DigitNet

    nodes = layer_names(DigitNet())
    indices = {}
    for layers in (["relu1", "relu3"], ["relu1", "relu2", "relu3"]):
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


def test_a_module_and_its_last_node_listed_together_are_named_as_one_map():
    """ResNet's layer1 stands for its last node layer1.1.relu_1: the two were refused as out
    of the net's order, the "order to use" shown the same as the list given."""
    import torchvision

    from convdp.layers import check_layers

    net = torchvision.models.resnet18()
    for layers in (["layer1", "layer1.1.relu_1"], ["relu", "layer1.1.relu_1", "layer1"]):
        with pytest.raises(ValueError, match=r"layers 'layer1(\.1\.relu_1)?' and 'layer1(\.1\."
                                             r"relu_1)?' of r are the same graph node"):
            check_layers(net, layers, "r")
    assert check_layers(net, ["layer1.0", "layer1"], "r") == ["layer1.0", "layer1"]


@pytest.fixture
def rgb_folder_config(config, tmp_path):
    """The default config with one net not trained here (digitnet, random weights) on a folder
    of RGB images."""
    from PIL import Image

    folder = tmp_path / "rgb"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(folder / f"{i}.png")
    config["datasets"] = {"rgb": {"kind": "folder", "path": str(folder)}}
    config["models"] = {"net": {"arch": "digitnet", "weights": "none", "layers": ["relu1"],
                                "analyse_on": ["rgb"]}}
    return config


def test_a_net_not_trained_here_takes_the_channels_the_config_gives(rgb_folder_config):
    with pytest.raises(ConfigError, match=r"models\.net\.analyse_on: data set 'rgb' has 3-channel "
                       r"images but the net takes 1-channel images \(set models\.net\.in_channels"):
        validate_config(copy.deepcopy(rgb_folder_config))
    rgb_folder_config["models"]["net"]["in_channels"] = 3
    assert validate_config(rgb_folder_config)["models"]["net"]["in_channels"] == 3


def test_a_random_weights_control_takes_its_models_channels():
    from convdp.control import control_spec

    spec = {"arch": "digitnet", "weights": "net.pt", "in_channels": 3, "layers": ["relu1"],
            "analyse_on": ["rgb"], "control": "random"}
    assert control_spec("net", spec)["in_channels"] == 3


@pytest.mark.parametrize("spec, message", [
    ({"weights": "train", "train_on": "rgb", "in_channels": 1},
     r"models\.net\.in_channels: a net trained in the pipeline takes its training images' "
     r"channels \('rgb': 3\)"),
    ({"arch": "vgg11", "weights": "VGG11_Weights.IMAGENET1K_V1", "in_channels": 1},
     r"models\.net\.in_channels: the weights 'VGG11_Weights.IMAGENET1K_V1' are for 3-channel"),
    ({"arch": "resnet18", "in_channels": 1}, r"models\.net\.in_channels: resnet18 takes 3-channel"),
])
def test_in_channels_that_cannot_hold_are_refused(rgb_folder_config, spec, message):
    rgb_folder_config["models"]["net"] |= spec
    with pytest.raises(ConfigError, match=message):
        validate_config(rgb_folder_config)


def test_the_net_is_built_with_the_configs_channels():
    """As train_model gets the spec from its rule (convdp.provenance.model_params)."""
    from convdp.models import input_channels, load_pretrained
    from convdp.provenance import model_params

    spec = {"arch": "digitnet", "weights": "none", "in_channels": 3, "layers": ["relu1"],
            "analyse_on": ["rgb"]}
    net, extra = load_pretrained(model_params(spec))
    assert input_channels(net) == 3 and extra["in_channels"] == 3


def test_digit_parts_that_would_share_images_are_refused(config, repo_root):
    """A train part and a heldout part of overlapping digits share no image only when they
    split the same classes at the same fraction: other pairs do share images (shown on the
    loader itself) and are refused, naming both data sets; the transfer benchmark's pairs
    pass."""
    from convdp.datasets.digits import load_digits_split

    def images(classes, part, fraction=0.5):
        d = load_digits_split(classes, size=8, part=part, heldout_fraction=fraction)
        return {im.tobytes() for im in d.images}

    source = images([0, 1, 2, 3, 4], "train")
    assert not source & images([0, 1, 2, 3, 4], "heldout")
    assert source & images(list(range(6)), "heldout")
    assert source & images([0, 1, 2, 3, 4], "heldout", 0.7)
    base = {"kind": "digits", "classes": [0, 1, 2, 3, 4], "size": 16}
    for target in ({"classes": list(range(6))}, {"heldout_fraction": 0.7}):
        c = copy.deepcopy(config)
        c["datasets"] = {"src": base | {"part": "train"}, "tgt": base | {"part": "heldout"} | target}
        c["models"]["digitnet"] |= {"train_on": "src", "analyse_on": ["src", "tgt"]}
        with pytest.raises(ConfigError, match=r"datasets\.src \(part: train\) and datasets\.tgt "
                                              r"\(part: heldout\) share digits \[0, 1, 2, 3, 4\]"):
            validate_config(c)
    bench = yaml.safe_load((repo_root / "config" / "transfer_bench.yaml").read_text())
    validate_config(bench, check_layers=False)


def test_layers_out_of_the_nets_order_are_refused(config):
    """The transfer verdict's cuts and the figures follow the list: a list out of the net's
    order is refused, the order to use named."""
    config["models"]["digitnet"]["layers"] = ["relu4", "relu1", "relu2", "relu3"]
    with pytest.raises(ConfigError, match=r"layers of digitnet must be listed from the input "
                                          r"towards the output.*\['relu1', 'relu2', 'relu3', "
                                          r"'relu4'\]"):
        validate_config(config)


def test_two_names_of_one_graph_node_are_named_as_such():
    """A stage and its last node (or a name twice) are one node: the message was to list them
    "from the input towards the output" in the order they were listed in."""
    import torchvision

    from convdp.layers import check_layers

    net = torchvision.models.resnet18()
    with pytest.raises(ValueError, match=r"layers 'layer1' and 'layer1.1.relu_1' of r18 are the "
                                         r"same graph node \('layer1.1.relu_1'"):
        check_layers(net, ["layer1", "layer1.1.relu_1"], "r18")
    with pytest.raises(ValueError, match=r"layers 'relu' and 'relu' of r18 are the same"):
        check_layers(net, ["relu", "layer1", "relu"], "r18")


def test_models_and_data_sets_whose_figure_names_collide_are_refused(config):
    """``net`` on ``x_t`` and ``net_x`` on ``t`` both name transfer_net_x_t.png."""
    c = copy.deepcopy(config)
    src = c["datasets"]["digits_source"]
    c["datasets"] = {"src": src, "x_t": src | {"classes": [5, 6]}, "t": src | {"classes": [7]}}
    net = c["models"]["digitnet"] | {"train_on": "src"}
    c["models"] = {"net": net | {"analyse_on": ["src", "x_t"]},
                   "net_x": net | {"analyse_on": ["src", "t"]}}
    with pytest.raises(ConfigError, match=r"models\.net_x on 't' and models\.net on 'x_t' would "
                                          r"write the same figures \(transfer_net_x_t\.png\)"):
        validate_config(c)


@pytest.mark.parametrize("where", ["extract.smooth", "label_jobs"])
def test_a_model_layer_key_read_by_two_models_is_refused(config, where):
    """``net.v1.relu1`` is model net's layer v1.relu1 (a wrapped net's) and model net.v1's
    relu1: extract.smooth {net.v1.relu1: 2} smoothed both, one of them unasked."""
    from convdp.config import smoothing

    net = {"arch": "digitnet", "weights": "none", "analyse_on": ["digits_source"]}
    config["models"] = {"net": net | {"layers": ["v1.relu1"]},
                        "net.v1": net | {"layers": ["relu1"]}}
    if where == "label_jobs":
        config["label_jobs"] = {"net.v1.relu1": 2}
    else:
        config["extract"]["smooth"] = {"net.v1.relu1": 2}
    with pytest.raises(ConfigError, match=rf"{re.escape(where)}\.net\.v1\.relu1: 'net\.v1\."
                                          r"relu1' reads as layer 'v1\.relu1' of model 'net' and "
                                          r"layer 'relu1' of model 'net\.v1'.*rename a model"):
        validate_config(copy.deepcopy(config), check_layers=False)
    # one model of the two: the key is that model's layer alone
    del config["models"]["net"]
    validate_config(config, check_layers=False)
    assert smoothing(config, "net.v1") == ({"relu1": 2.0} if where != "label_jobs" else {})


def test_a_models_label_maps_figure_named_like_anothers_figure_is_refused(config):
    """Model ``label_maps_digitnet``'s figure on digits_target and digitnet's label maps there
    are both transfer_label_maps_digitnet_digits_target.png: Snakemake refused the run as two
    ambiguous transfer_verdict jobs, naming no key of the config."""
    c = copy.deepcopy(config)
    c["models"]["label_maps_digitnet"] = copy.deepcopy(c["models"]["digitnet"])
    with pytest.raises(ConfigError, match=r"models\.digitnet on 'digits_target' would write the "
                                          r"same figures \(transfer_label_maps_digitnet_"
                                          r"digits_target\.png\)"):
        validate_config(c, check_layers=False)


def test_a_figure_named_like_a_transfer_benchmarks_is_refused(config):
    """Model ``benchmark`` on data set ``digitnet`` and digitnet's transfer benchmark both name
    transfer_benchmark_digitnet.png (with transfer.benchmark, which needs two targets)."""
    c = copy.deepcopy(config)
    c["datasets"]["digitnet"] = copy.deepcopy(c["datasets"]["digits_target"])
    c["models"]["digitnet"]["analyse_on"].append("digitnet")
    c["models"]["benchmark"] = copy.deepcopy(c["models"]["digitnet"]) | {
        "analyse_on": ["digits_source", "digitnet"]}
    validate_config(copy.deepcopy(c), check_layers=False)
    c["transfer"] = {"benchmark": True}
    with pytest.raises(ConfigError, match=r"models\.benchmark on 'digitnet' and models\.digitnet's "
                                          r"transfer benchmark would write the same figures "
                                          r"\(transfer_benchmark_digitnet\.png\)"):
        validate_config(c, check_layers=False)


def test_torch_only_keys_set_off_their_default_are_named_with_the_sklearn_backend(config, caplog):
    """With ``backend: sklearn`` the config check names, once, the torch-only keys set to
    other than the schema's default (``merge: false``, a ``kmeans_max_iter``), not those at it
    (config.yaml's merge, delete_below, max_components: the defaults are the torch fit's), nor
    ``grow_at``, which marks scikit-learn's fits saturated too; the same for a config
    validated twice (its defaults then set); with torch, nothing."""
    import logging

    def warned(cfg):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="convdp.config"):
            validate_config(cfg, check_layers=False)
        return [r.getMessage() for r in caplog.records if "torch backend only" in r.getMessage()]

    sk = copy.deepcopy(config)
    sk["dpgmm"] |= {"backend": "sklearn", "merge": False, "kmeans_max_iter": 3, "grow_at": 0.5}
    said = warned(sk)
    assert len(said) == 1 and said[0].startswith("dpgmm.merge, kmeans_max_iter: torch backend only")
    assert warned(sk) == said  # validated twice
    plain = copy.deepcopy(config)
    plain["dpgmm"]["backend"] = "sklearn"
    assert warned(plain) == []
    assert warned(copy.deepcopy(config) | {"dpgmm": {**config["dpgmm"], "kmeans_max_iter": 3}}) == []


def test_more_components_than_int16_labels_hold_are_refused():
    """Labels are stored as int16 (fits, label parts, the labelling pass): a config whose fits
    can hold more than 32767 components would wrap cluster ids to negative numbers."""
    def config(**sections):
        return {"datasets": {"d": {"kind": "digits", "classes": [0, 1, 2]}},
                "models": {"m": {"arch": "digitnet", "weights": "train", "train_on": "d",
                                 "analyse_on": ["d"], "layers": ["relu1"]}}, **sections}

    validate_config(config(dpgmm={"max_components": 32767}), check_layers=False)
    with pytest.raises(ConfigError, match="32767"):
        validate_config(config(dpgmm={"max_components": 40000}), check_layers=False)
    with pytest.raises(ConfigError, match="32767"):
        validate_config(config(baseline={"k_max": 10000}), check_layers=False)  # k_limit 40000


@pytest.mark.parametrize("section, key, value", [
    ("dpgmm", "weight_threshold", float("nan")),  # every fit kept 0 clusters
    ("dpgmm", "concentration", float("nan")),
    ("dpgmm", "tol", float("inf")),
    ("preprocess", "scale_max", float("inf")),
    ("transfer", "step_tolerance", float("nan")),
])
def test_numbers_that_are_not_finite_are_refused_naming_the_key(config, section, key, value):
    """YAML's ``.nan`` and ``.inf`` (JSON's ``NaN``) are floats, and NaN passes every
    ``minimum`` / ``maximum`` of the schema: ``dpgmm.weight_threshold: .nan`` was accepted and
    every fit then kept no cluster (``weights > nan`` is false), without a word. Refused,
    naming the key, as the same value from ``--config`` is."""
    loaded = yaml.safe_load(f"{key}: {'.nan' if value != value else '.inf'}\n")
    assert loaded[key] != loaded[key] or loaded[key] == value  # what YAML reads
    config[section][key] = loaded[key]
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: (nan|inf) is not a finite number"):
        validate_config(config, check_layers=False)


@pytest.mark.parametrize("weights", ["none", "train"])
def test_train_on_must_come_first_whatever_the_weights(config, weights):
    """``train_on`` is the source (README: ``train_on`` (the source)), and the source is the
    first of ``analyse_on``: with ``weights: train`` a training set listed later was refused,
    with other weights it was silently ignored (the source then the other data set, the
    transfer scored the wrong way round), and even an unknown data set passed."""
    net = config["models"]["digitnet"]
    net |= {"weights": weights, "control": None, "train_on": "digits_target"}
    with pytest.raises(ConfigError, match=r"models\.digitnet\.analyse_on: the data set the net is "
                                          r"trained on \('digits_target'\) must come first"):
        validate_config(copy.deepcopy(config), check_layers=False)
    net["train_on"] = "nope"
    with pytest.raises(ConfigError, match=r"models\.digitnet\.train_on: unknown data set 'nope'"):
        validate_config(copy.deepcopy(config), check_layers=False)
    net["train_on"] = "digits_source"  # the source: passes
    validate_config(copy.deepcopy(config), check_layers=False)


def test_names_with_a_slash_are_refused(config):
    """Names are path components: model ``digitnet`` on data set ``x/digits_source`` and model
    ``digitnet/x`` on ``digits_source`` both wrote results/activations/digitnet/x/
    digits_source.json (and every fit below it), so one pair's results were the other's."""
    config["datasets"]["x/digits_source"] = copy.deepcopy(config["datasets"]["digits_source"])
    config["models"]["digitnet"]["analyse_on"].append("x/digits_source")
    config["models"]["digitnet/x"] = {"arch": "digitnet", "weights": "none",
                                      "analyse_on": ["digits_source"], "layers": ["relu1"]}
    pairs = [(m, d) for m, spec in config["models"].items() for d in spec["analyse_on"]]
    assert len({f"results/activations/{m}/{d}.json" for m, d in pairs}) < len(pairs)
    with pytest.raises(ConfigError, match=r"datasets\.x/digits_source: 'x/digits_source' is not "
                                          r"a valid name"):
        validate_config(copy.deepcopy(config), check_layers=False)
    del config["datasets"]["x/digits_source"]
    config["models"]["digitnet"]["analyse_on"].pop()
    with pytest.raises(ConfigError, match=r"models\.digitnet/x: 'digitnet/x' is not a valid name"):
        validate_config(config, check_layers=False)


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused(config, name):
    """Two models on a data set ``..`` wrote results/dpgmm/{model}/../relu1/position.npz, the
    one file results/dpgmm/relu1/position.npz: each model's fits over the other's."""
    import posixpath

    config["datasets"][name] = config["datasets"].pop("digits_target")
    config["models"]["digitnet"]["analyse_on"] = ["digits_source", name]
    config["models"]["other"] = copy.deepcopy(config["models"]["digitnet"])
    paths = {posixpath.normpath(f"results/dpgmm/{m}/{name}/relu1/position.npz")
             for m in ("digitnet", "other")}
    assert len(paths) == (1 if name == ".." else 2)
    with pytest.raises(ConfigError, match=rf"datasets\.{re.escape(name)}: '{re.escape(name)}' "
                                          r"is not a valid name.*other than '\.' and '\.\.'"):
        validate_config(config, check_layers=False)


def test_names_with_braces_are_refused(config):
    """Snakemake reads {1} in a target as a wildcard: a data set t{1} failed the DAG with
    "Wildcards in input files cannot be determined from output files: '1'", naming no key."""
    config["datasets"]["t{1}"] = config["datasets"].pop("digits_target")
    config["models"]["digitnet"]["analyse_on"] = ["digits_source", "t{1}"]
    with pytest.raises(ConfigError, match=r"datasets\.t\{1\}: 't\{1\}' is not a valid name: "
                                          r".*without '/', '\{' or '\}'"):
        validate_config(config, check_layers=False)
