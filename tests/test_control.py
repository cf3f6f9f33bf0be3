"""The random-weights control (``control: random``): the config expansion, its seeded
weights, no training, and a two-model run end to end (summary, fit paths, comparison
figure, transfer table)."""

from __future__ import annotations

import copy
import logging
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from convdp import pipeline
from convdp.config import ConfigError, validate_config
from convdp.control import control_name, controls
from convdp.data import read_dataset
from tests.conftest import ROOT

TINY = ROOT / "tests/config/tiny.yaml"


@pytest.fixture
def tiny():
    return yaml.safe_load(TINY.read_text())


def with_control(config):
    config["models"]["digitnet"]["control"] = "random"
    return config


def test_control_is_a_model_of_its_own(tiny):
    config = validate_config(with_control(tiny))
    assert list(config["models"]) == ["digitnet", "digitnet_random"]
    assert control_name("digitnet") == "digitnet_random"
    assert controls(config["models"]) == {"digitnet_random": "digitnet"}
    model, control = config["models"]["digitnet"], config["models"]["digitnet_random"]
    assert control["control_of"] == "digitnet" and "control" not in control
    for key in ("arch", "train_on", "analyse_on", "layers", "normalize", "input_size"):
        assert control[key] == model[key], key
    # validating the expanded config again changes nothing
    assert validate_config(copy.deepcopy(config)) == config


def test_no_control_without_the_key_or_of_a_random_model(tiny, caplog):
    assert list(validate_config(copy.deepcopy(tiny))["models"]) == ["digitnet"]
    offline = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    offline["models"]["vgg16"] |= {"weights": "none", "control": "random"}
    with caplog.at_level(logging.WARNING):
        out = validate_config(offline, check_layers=False)
    assert list(out["models"]) == ["vgg16"]
    assert "random already (weights: none); no control added" in caplog.text


def test_control_name_taken_or_set_by_hand_is_refused(tiny):
    clash = with_control(copy.deepcopy(tiny))
    clash["models"]["digitnet_random"] = copy.deepcopy(clash["models"]["digitnet"]) | {
        "control": None}
    with pytest.raises(ConfigError, match="models.digitnet.control: its control is named "
                                          "'digitnet_random'"):
        validate_config(clash)
    by_hand = copy.deepcopy(tiny)
    by_hand["models"]["other"] = copy.deepcopy(by_hand["models"]["digitnet"]) | {
        "control_of": "digitnet"}
    with pytest.raises(ConfigError, match="models.other.control_of: set by `control: random`"):
        validate_config(by_hand)


def test_control_weights_are_the_seeded_init_and_nothing_is_trained(tiny, tmp_path,
                                                                     monkeypatch):
    config = validate_config(with_control(tiny))
    spec = config["models"]["digitnet_random"]
    data = tmp_path / "source.zarr"
    pipeline.prepare_dataset(config["datasets"]["digits_source"], data)

    from convdp import models

    def no_training(*args, **kwargs):
        raise AssertionError("the control must not be trained")

    monkeypatch.setattr(models, "train_classifier", no_training)
    metas, states = [], []
    for i, seed in enumerate((3, 3, 4)):
        metas.append(pipeline.prepare_model(spec, tmp_path / f"c{i}.pt", tmp_path / f"c{i}.json",
                                            train_data=data, seed=seed))
        states.append(models.load_state_dict(tmp_path / f"c{i}.pt"))
    meta = metas[0]
    assert meta["control_of"] == "digitnet" and meta["weights"] == "random"
    assert meta["val_accuracy"] is None and "training" not in meta and "trained_on" not in meta
    assert meta["num_classes"] == 5 and meta["in_channels"] == 1  # as the trained net's
    # seeded: the same seed gives the same weights, another seed others
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not torch.equal(states[0]["conv1.weight"], states[2]["conv1.weight"])
    # exactly the weights the trained model's training starts from
    torch.manual_seed(3)
    init = models.build_model("digitnet", 5, 1).state_dict()
    assert all(torch.equal(init[k], states[0][k]) for k in init)
    # the same input normalisation as the trained net (statistics of its training data)
    ds = read_dataset(data)
    assert meta["mean"] == pytest.approx(models.channel_stats(ds.images)[0])


def test_weights_none_are_drawn_from_the_configs_seed(tmp_path):
    """`weights: none` took seed 0's weights whatever `seed` said, while its JSON said the
    seed: seeds 1 and 2 give other nets, each its seed's draw."""
    from convdp import models

    spec = {"arch": "digitnet", "weights": "none", "num_classes": 3}
    states = []
    for seed in (1, 2):
        meta = pipeline.prepare_model(spec, tmp_path / f"n{seed}.pt", tmp_path / f"n{seed}.json",
                                      seed=seed)
        assert meta["seed"] == seed
        states.append(models.load_state_dict(tmp_path / f"n{seed}.pt"))
        torch.manual_seed(seed)
        drawn = models.build_model("digitnet", 3, 1).state_dict()
        assert all(torch.equal(drawn[k], states[-1][k]) for k in drawn)
    assert not torch.equal(states[0]["conv1.weight"], states[1]["conv1.weight"])


def test_control_of_pretrained_weights_is_seeded_random(tmp_path):
    from convdp import models

    spec = {"arch": "digitnet", "weights": str(tmp_path / "w.pt"), "num_classes": 3,
            "control_of": "mine"}
    torch.manual_seed(11)
    trained = models.build_model("digitnet", 3, 1)
    models.save_state_dict(trained, spec["weights"])
    meta = pipeline.prepare_model(spec, tmp_path / "c.pt", tmp_path / "c.json", seed=5)
    state = models.load_state_dict(tmp_path / "c.pt")
    torch.manual_seed(5)
    init = models.build_model("digitnet", 3, 1).state_dict()
    assert all(torch.equal(init[k], state[k]) for k in init)
    assert not torch.equal(state["conv1.weight"], trained.state_dict()["conv1.weight"])
    assert meta["control_of"] == "mine" and meta["num_classes"] == 3


@pytest.mark.parametrize("normalize, mean, std", [
    ("auto", [0.5], [0.5]),  # a state_dict carries no normalisation: the default for 1 channel
    (None, [0.0], [1.0]),
])
def test_a_net_not_trained_here_takes_the_configured_normalisation(tmp_path, normalize, mean, std):
    """``normalize`` of a net loaded from a file (and of its control) is the one the model
    JSON records and the extraction uses; it was ignored for such nets (the default used)."""
    from convdp import models

    path = tmp_path / "w.pt"
    models.save_state_dict(models.build_model("digitnet", 3, 1), path)
    spec = {"arch": "digitnet", "weights": str(path), "num_classes": 3, "normalize": normalize}
    for extra in ({}, {"control_of": "mine"}):
        meta = pipeline.prepare_model(spec | extra, tmp_path / "m.pt", tmp_path / "m.json")
        assert (meta["mean"], meta["std"]) == (mean, std)


def test_dry_run_plans_the_control_beside_the_model(tmp_path, tiny):
    from tests.test_workflow import job_counts, snakemake

    cfg = tmp_path / "two.yaml"
    cfg.write_text(yaml.safe_dump(with_control(tiny)))
    out = snakemake(ROOT, tmp_path, "-n", "--configfile", str(cfg))
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout)
    assert counts["train_model"] == 2 and counts["extract_activations"] == 4
    assert counts["fit_dpgmm"] == counts["fit_baseline"] == 2 * 2 * 4 * 2
    # the control's transfer scores feed its model's verdict; it has no verdict of its own
    assert counts["transfer_scores"] == counts["transfer_retrain"] == 2
    assert counts["transfer_verdict"] == 1
    assert "results/transfer/digitnet_random/digits_target/scores.json" in out.stdout
    # baseline.controls: false (the default run's): the control gets DPGMM fits only
    out = snakemake(ROOT, tmp_path, "-n", "--configfile", str(cfg),
                    "--config", "baseline={controls: false}")
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout)
    assert counts["fit_dpgmm"] == 2 * counts["fit_baseline"] == 2 * 2 * 4 * 2
    planned = re.findall(r"^rule (fit_\w+):\n(?:    .*\n)*?    wildcards: (model=\w+)",
                         out.stdout, re.M)
    assert ("fit_dpgmm", "model=digitnet_random") in planned
    assert ("fit_baseline", "model=digitnet_random") not in planned


LAYERS = ["relu2", "relu4"]


@pytest.fixture(scope="module")
def two_model_run(tmp_path_factory):
    """tests/config/tiny.yaml with ``control: random``, two layers, one retraining seed, run
    end to end (twice the jobs of one model: a generous time limit for a shared machine)."""
    from tests.test_workflow import snakemake

    workdir = tmp_path_factory.mktemp("control_run")
    config = with_control(yaml.safe_load(TINY.read_text()))
    config["models"]["digitnet"]["layers"] = LAYERS
    config["transfer"] |= {"repeats": 1, "epochs": 2}
    cfg = workdir / "two.yaml"
    cfg.write_text(yaml.safe_dump(config))
    out = snakemake(ROOT, workdir, "--cores", "2", "--configfile", str(cfg), timeout=3000)
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_two_models_summary_paths_and_comparison(two_model_run, monkeypatch):
    res = two_model_run / "results"
    df = pd.read_csv(res / "summary.csv")
    key = ["model", "dataset", "layer", "mode", "method"]
    # model × data set × layer × mode × method
    assert len(df) == 2 * 2 * 2 * 2 * 2 and not df.duplicated(key).any()
    assert set(df["model"]) == {"digitnet", "digitnet_random"}
    assert (df.groupby("model").size() == 16).all()
    assert set(df.loc[df["model"] == "digitnet_random", "control_of"]) == {"digitnet"}
    assert df.loc[df["model"] == "digitnet", "control_of"].isna().all()
    # no fit path shared: each model's fits under its own folder
    for method in ("dpgmm", "baseline"):
        paths = {m: {p.relative_to(res / method / m) for p in (res / method / m).rglob("*.npz")}
                 for m in ("digitnet", "digitnet_random")}
        assert len(paths["digitnet"]) == len(paths["digitnet_random"]) == 8
        assert paths["digitnet"] == paths["digitnet_random"]  # the same fits, in two folders
    a, b = (np.load(res / f"dpgmm/{m}/digits_source/relu4/position.npz")["means"]
            for m in ("digitnet", "digitnet_random"))
    assert a.shape[1:] == b.shape[1:] and not (a.shape == b.shape and np.allclose(a, b))
    # the comparison figure: a line per model × data set, the control dashed in its model's colour
    from convdp import aggregate

    figures = []
    monkeypatch.setattr(aggregate, "save_figure", lambda fig, dest: figures.append(fig))
    aggregate.plot_model_comparison(df, "unused.png")
    ax = figures[0].axes[0]  # clusters kept, image mode
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == len(LAYERS)]
    assert len(lines) == 4  # 2 models × 2 data sets
    dashed = [ln for ln in lines if ln.get_linestyle() != "-"]
    solid = [ln for ln in lines if ln.get_linestyle() == "-"]
    assert len(dashed) == len(solid) == 2
    assert {ln.get_color() for ln in dashed} == {ln.get_color() for ln in solid}
    (fig_legend,) = figures[0].legends  # one legend below the panels
    legend = [t.get_text() for t in fig_legend.get_texts()]
    assert "random (control)" in legend and "digitnet · digits_target (target)" in legend
    assert (res / "figures/model_comparison.png").stat().st_size > 10000
    # the transfer table: the control's scores beside the model's
    table = pd.read_csv(res / "transfer/digitnet/digits_target.csv")
    assert set(table["control_model"]) == {"digitnet_random"}
    for col in ("control_shift_z", "control_probe_accuracy", "control_retrain_accuracy"):
        assert table[col].notna().all(), col
    assert not (res / "transfer/digitnet_random/digits_target.csv").exists()


def test_verdict_puts_the_controls_scores_beside_the_models(tmp_path):
    from convdp.io import write_json, write_npz
    from tests.test_transfer import LAYERS, _retrain, _scores

    scores, retrain = _scores([0.1, -0.4, -1.5, -3.0]), _retrain([0.90, 0.92, 0.91, 0.85, 0.60])
    control = _scores([-0.2, -2.0, -4.0, -6.0], probe=(0.4, 0.4, 0.3, 0.3)) | {"model": "m_random"}
    write_json(tmp_path / "scores.json", scores)
    write_json(tmp_path / "retrain.json", retrain)
    write_json(tmp_path / "c_scores.json", control)
    write_json(tmp_path / "c_retrain.json", _retrain([0.90, 0.80, 0.70, 0.50, 0.30]))
    rng = np.random.default_rng(0)
    write_npz(tmp_path / "maps.npz", images=rng.integers(0, 255, (2, 16, 16, 1), dtype=np.uint8),
              **{f"{side}_{layer}": rng.integers(0, 6, (2, 4, 4))
                 for side in ("source", "target") for layer in LAYERS})
    paths = [tmp_path / n for n in ("v.csv", "v.json", "v.png", "maps.png")]
    summary = pipeline.transfer_verdict(
        tmp_path / "scores.json", tmp_path / "retrain.json", tmp_path / "maps.npz", *paths,
        control_scores_json=tmp_path / "c_scores.json",
        control_retrain_json=tmp_path / "c_retrain.json")
    table = pd.read_csv(paths[0])
    assert list(table["control_model"]) == ["m_random"] * 4
    assert list(table["control_shift_z"]) == [-0.2, -2.0, -4.0, -6.0]
    assert list(table["control_probe_accuracy"]) == [0.4, 0.4, 0.3, 0.3]
    assert table["control_retrain_accuracy"].tolist() == pytest.approx([0.8, 0.7, 0.5, 0.3])
    assert list(table["shift_z"]) == [0.1, -0.4, -1.5, -3.0]  # the model's own, unchanged
    assert summary["recommended_cut"] == 2 and summary["control"]["model"] == "m_random"
    assert summary["control"]["recommended_cut"] == 1
    assert paths[2].stat().st_size > 10000


def test_baseline_fits_skip_controls_unless_asked(tiny):
    """The DPGMM fits every model; the BIC baseline a control only with baseline.controls."""
    from convdp.control import fitted_with

    config = validate_config(with_control(tiny), check_layers=False)
    cname = control_name("digitnet")
    for controls_too in (False, True):
        config["baseline"]["controls"] = controls_too
        assert fitted_with(config, "digitnet", "dpgmm") and fitted_with(config, cname, "dpgmm")
        assert fitted_with(config, "digitnet", "baseline")
        assert fitted_with(config, cname, "baseline") is controls_too
