"""Your own model: ``arch: "module:factory"`` on PYTHONPATH with a state_dict, timm names,
``convdp layers`` for them, and errors naming what could not be imported or which keys of a
state_dict do not fit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch
import yaml

from convdp.cli import main as cli_main
from convdp.config import ConfigError, validate_config
from convdp.models import build_model, load_model, load_pretrained
from tests.conftest import ROOT

# A user's convnet, in a file outside the project: ``build`` takes num_classes (so the
# config's num_classes reaches it), ``plain`` takes nothing, ``gray`` reads 1-channel images.
MODULE = textwrap.dedent('''
    import torch
    from torch import nn


    class Small(nn.Module):
        def __init__(self, num_classes=4, in_channels=3):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            )
            self.head = nn.Linear(16, num_classes)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))


    def build(num_classes=4):
        return Small(num_classes)


    def plain():
        return Small(3)


    def gray():
        return Small(2, in_channels=1)


    def not_a_net():
        return "resnet"


    class Sideways(Small):
        """Small, its last map turned (N, H, C, W) before the head."""

        def forward(self, x):
            y = self.features(x).permute(0, 2, 1, 3)
            return self.head(y.mean((1, 3)))


    def sideways(num_classes=4):
        return Sideways(num_classes)
''')


@pytest.fixture
def mymodule(tmp_path, monkeypatch):
    """``mymodule.py`` in its own folder, on PYTHONPATH (this process and its children)."""
    folder = tmp_path / "userpkg"
    folder.mkdir()
    (folder / "mymodule.py").write_text(MODULE)
    (folder / "brokenmod.py").write_text("import not_installed_pkg_xyz\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]))
    for name in ("mymodule", "brokenmod"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield folder
    for name in ("mymodule", "brokenmod"):
        sys.modules.pop(name, None)


@pytest.fixture
def trained(mymodule, tmp_path):
    """A net "trained elsewhere": built by the user's factory, saved as a state_dict."""
    import mymodule as user

    torch.manual_seed(3)
    net = user.build()
    path = tmp_path / "mynet.pt"
    torch.save(net.state_dict(), path)
    return net, path


def test_factory_builds_and_loads_its_state_dict(trained):
    net, path = trained
    loaded, extra = load_pretrained({"arch": "mymodule:build", "weights": str(path)})
    assert type(loaded).__name__ == "Small" and not loaded.training
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert extra["in_channels"] == 3 and extra["num_classes"] is None
    # the model JSON rebuilds it (extraction)
    again = load_model({"arch": "mymodule:build", **extra}, path)
    assert torch.equal(again.head.weight, net.head.weight)
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(loaded(x), net.eval()(x))


def test_factory_gets_num_classes_only_when_it_takes_it(mymodule):
    assert build_model("mymodule:build", None).head.out_features == 4  # its default
    assert build_model("mymodule:build", 7).head.out_features == 7
    assert build_model("mymodule:plain", 7).head.out_features == 3  # takes no argument
    assert build_model("mymodule:gray", None, None).features[0].in_channels == 1
    with pytest.raises(ValueError, match=r"'mymodule:gray' takes 1-channel images, got in_channels=3"):
        build_model("mymodule:gray", None, 3)


def test_keys_that_do_not_fit_are_named(trained, tmp_path):
    net, _ = trained
    state = net.state_dict()
    state["head.weight"] = torch.zeros(5, 16)  # a 5-class head
    state["extra.bias"] = torch.zeros(3)
    del state["features.0.bias"]
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(ValueError) as err:
        load_pretrained({"arch": "mymodule:build", "weights": str(bad)})
    msg = str(err.value)
    assert f"{bad} does not fit architecture 'mymodule:build'" in msg
    assert "missing keys (in the net, not in the file): features.0.bias" in msg
    assert "unexpected keys (in the file, not in the net): extra.bias" in msg
    assert "shape mismatch: head.weight (file (5, 16), net (4, 16))" in msg
    # with num_classes: 5 in the config, the same head fits
    del state["extra.bias"]
    state["features.0.bias"] = net.state_dict()["features.0.bias"]
    state["head.bias"] = torch.zeros(5)
    torch.save(state, bad)
    loaded, _ = load_pretrained({"arch": "mymodule:build", "weights": str(bad), "num_classes": 5})
    assert loaded.head.out_features == 5


def test_data_parallel_prefix_is_taken_off(trained, tmp_path):
    net, _ = trained
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    loaded, _ = load_pretrained({"arch": "mymodule:build", "weights": str(path)})
    assert torch.equal(loaded.head.bias, net.head.bias)


@pytest.mark.parametrize("arch, message", [
    ("nosuchmodule_xyz:build", r"cannot import module 'nosuchmodule_xyz' \(no module of that name"
                               r" on the Python path\); put the folder that holds it on PYTHONPATH"),
    ("brokenmod:build", r"module 'brokenmod' imports 'not_installed_pkg_xyz', which is not installed"),
    ("mymodule:buld", r"module 'mymodule' \(.*mymodule.py\) has no 'buld'; its callables: .*build"),
    ("mymodule:not_a_net", r"the factory returned a str, not a torch nn.Module"),
    ("mymodule:", r"write your own model as 'module:factory'"),
])
def test_what_could_not_be_imported_is_named(mymodule, arch, message):
    with pytest.raises(ValueError, match=message):
        build_model(arch, None)


def test_convdp_layers_lists_the_factory_layers(mymodule, capsys):
    assert cli_main(["layers", "mymodule:build", "--size", "16"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "features.1" in lines and "*" in lines["features.1"]  # before the first pooling
    assert "(16, 4, 4)" in lines["features.5"] and "(4,)" in lines["head"]
    assert cli_main(["layers", "nosuchmodule_xyz:build"]) == 2
    assert "cannot import module 'nosuchmodule_xyz'" in capsys.readouterr().err


def test_convdp_layers_finds_a_module_in_the_working_directory(mymodule, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-m", "convdp.cli", "layers", "mymodule:gray"],
                         cwd=mymodule, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "features.4" in out.stdout and "(16, 112, 112)" in out.stdout


def own_config(path, layers=("features.1", "features.4")):
    return {
        "seed": 0,
        "datasets": {"tissue": {"kind": "histology", "size": 32}},
        "models": {"mine": {"arch": "mymodule:build", "weights": str(path),
                            "analyse_on": ["tissue"], "layers": list(layers)}},
        "modes": ["position"],
        "extract": {"device": "cpu"},
        "preprocess": {"max_samples": 1000, "pca": 4},
        "dpgmm": {"n_components": 6, "max_iter": 30},
        "baseline": {"k_min": 2, "k_max": 4, "max_iter": 30},
        "report": {"n_examples": 1},
    }


def test_config_checks_the_factory_and_its_layers(trained):
    _, path = trained
    cfg = validate_config(own_config(path))
    assert cfg["models"]["mine"]["layers"] == ["features.1", "features.4"]
    blocks = validate_config({**own_config(path), "models": {"mine": {
        **own_config(path)["models"]["mine"], "layers": "blocks"}}})
    assert blocks["models"]["mine"]["layers"] == ["features.1", "features.4"]
    with pytest.raises(ConfigError, match=r"models\.mine\.layers: layer\(s\) \['relu9'\] not found"):
        validate_config(own_config(path, layers=["relu9"]))
    bad = own_config(path)
    bad["models"]["mine"]["arch"] = "nosuchmodule_xyz:build"
    with pytest.raises(ConfigError, match=r"models\.mine\.arch: .*cannot import module 'nosuchmodule_xyz'"):
        validate_config(bad)
    gray = own_config(path)
    gray["models"]["mine"]["arch"] = "mymodule:gray"
    with pytest.raises(ConfigError, match=r"data set 'tissue' has 3-channel images but the net takes 1"):
        validate_config(gray)


def test_a_layer_whose_map_is_laid_out_otherwise_is_named_at_config_time(trained):
    """A map of axes (N, H, C, W) is refused by the extraction; the config check read its
    refusal as "images are too small for the model"."""
    _, path = trained
    config = own_config(path, layers=["permute"])
    config["models"]["mine"]["arch"] = "mymodule:sideways"
    with pytest.raises(ConfigError, match=r"models\.mine\.layers: layer 'permute': its map's "
                       r"rows and columns are axes \(1, 3\)"):
        validate_config(config)


def test_the_code_digest_follows_the_module_file(mymodule, tmp_path):
    from convdp.provenance import code_digest, model_params

    spec = {"arch": "mymodule:build", "weights": "none"}
    code_digest.cache_clear()
    before = model_params(spec)["code"]
    (mymodule / "mymodule.py").write_text(MODULE.replace("nn.ReLU()", "nn.Tanh()"))
    code_digest.cache_clear()
    assert model_params(spec)["code"] != before
    assert code_digest("resnet18") is None and code_digest("timm:resnet18") is None
    assert code_digest("no_such_module_xyz:build") is None


@pytest.mark.parametrize("on_path", [True, False], ids=["on-pythonpath", "beside-the-config"])
def test_the_code_digest_follows_a_namespace_package(tmp_path, monkeypatch, on_path):
    """A net in a folder without ``__init__.py`` (``arch: "nets.mine:build"``) imports as a
    namespace package; its code had no digest (no origin file), so an edit of the net's code
    retrained and re-extracted nothing: the results stayed those of the old code."""
    from convdp.provenance import code_digest, model_params

    root = tmp_path / "proj"
    (root / "nsnets_xyz").mkdir(parents=True)
    module = root / "nsnets_xyz" / "mine.py"
    module.write_text(MODULE)
    if on_path:
        monkeypatch.syspath_prepend(str(root))
    else:
        monkeypatch.chdir(root)
    spec = {"arch": "nsnets_xyz.mine:build", "weights": "train", "train": {"epochs": 1}}
    code_digest.cache_clear()
    try:
        assert build_model(spec["arch"], 4, None) is not None  # it imports and builds
        before = model_params(spec).get("code")
        assert before is not None
        module.write_text(MODULE.replace("nn.ReLU()", "nn.Tanh()"))
        code_digest.cache_clear()
        assert model_params(spec)["code"] != before
    finally:
        code_digest.cache_clear()
        for name in [n for n in sys.modules if n.split(".")[0] == "nsnets_xyz"]:
            del sys.modules[name]


def test_timm_architecture(tmp_path):
    pytest.importorskip("timm")
    net = build_model("timm:resnet18", 10)
    assert net.fc.out_features == 10
    assert cli_main(["layers", "timm:resnet18", "--size", "64"]) == 0
    with pytest.raises(ValueError, match="unknown timm architecture 'resnt18'; close names: resnet18"):
        build_model("timm:resnt18", 10)


def test_timm_missing_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    with pytest.raises(ValueError, match=r"'timm:resnet50' needs timm, which is not installed: "
                                         r"pip install 'convdp\[timm\]'"):
        build_model("timm:resnet50", 10)


@pytest.mark.slow
def test_own_model_runs_through_the_workflow(trained, tmp_path):
    """A user's module on PYTHONPATH, its state_dict, a tiny image: summary rows for it."""
    _, path = trained
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump(own_config(path)))
    work = tmp_path / "run"
    work.mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
         str(work), "--cores", "2", "--configfile", str(cfg)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    df = pd.read_csv(work / "results/summary.csv")
    assert set(df["model"]) == {"mine"}
    assert set(df["layer"]) == {"features.1", "features.4"}
    assert len(df) == 2 * 2  # layers × methods (position mode, one data set)
    figures = list((work / "results/figures").glob("*.png"))
    assert any(f.name == "model_comparison.png" for f in figures), figures
    meta = yaml.safe_load((work / "results/models/mine.json").read_text())
    assert meta["arch"] == "mymodule:build" and meta["in_channels"] == 3
    # an edit of the net's code (the same weights fit it) rebuilds the net and what follows
    module = trained[1].parent / "userpkg" / "mymodule.py"
    module.write_text(module.read_text().replace("nn.ReLU()", "nn.Tanh()"))
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
         str(work), "-n", "--configfile", str(cfg)], capture_output=True, text=True, timeout=600)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "rule train_model:" in dry.stdout and "rule extract_activations:" in dry.stdout
