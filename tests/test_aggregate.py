"""Aggregation across models: the summary keyed by model, per-model label maps with colours
by cluster weight, and the model comparison figure."""

import json

import numpy as np
import pytest
from PIL import Image

from convdp.aggregate import aggregate, summary_table
from convdp.data import load_digits_split, write_dataset
from convdp.io import write_json, write_npz
from convdp.plotting import NEUTRAL, PALETTE, cluster_colours, grey_clusters

LAYERS = {"small": ["conv1", "conv2"], "control": ["conv1", "conv2", "conv3"]}


def test_colours_follow_weight_and_grey_the_rest():
    weights = np.r_[np.linspace(0.01, 0.05, 25), 0.0][::-1]  # 26 clusters, one empty
    colours = cluster_colours(weights)
    order = np.argsort(-weights, kind="stable")
    n = len(PALETTE)
    assert np.allclose(colours[order[0]], PALETTE[0]) and np.allclose(colours[order[n - 1]], PALETTE[-1])
    assert np.allclose(colours[order[n:]], NEUTRAL)
    assert grey_clusters(weights, order[: n + 4]) == 4  # n + 4 clusters drawn, n coloured
    assert grey_clusters(weights, order[:10]) == 0
    assert len({tuple(c) for c in colours[order[:n]]} | {NEUTRAL}) == n + 1  # distinct


@pytest.fixture
def two_models(tmp_path):
    """Fit records of two models (2 and 3 layers) on one data set, position and image mode."""
    ds = load_digits_split([0, 1, 2], size=8, max_samples=12)
    store = tmp_path / "data.zarr"
    write_dataset(store, ds)
    rng = np.random.default_rng(0)
    jsons = []
    for model, layers in LAYERS.items():
        for i, layer in enumerate(layers):
            for mode in ("position", "image"):
                k = 3 + i + (model == "control")
                stem = tmp_path / "fits" / model / layer / mode
                stem.parent.mkdir(parents=True, exist_ok=True)
                labels = rng.integers(0, k, (12, 4, 4) if mode == "position" else 12)
                write_npz(stem.with_suffix(".npz"), labels=labels,
                          weights=np.full(k, 1.0 / k))
                write_json(stem.with_suffix(".json"), {
                    "model": model, "dataset": "digits", "role": "source", "layer": layer,
                    "layer_index": i, "mode": mode, "method": "dpgmm", "clusters_kept": k,
                    "clusters_effective": k - 0.5, "saturated": False, "truncation": 40,
                    "nmi": 0.1 * i if mode == "image" else None,
                    "too_few_samples": model == "control" and i == 2,
                })
                jsons.append(stem.with_suffix(".json"))
    return jsons, {"digits": store}, tmp_path


def test_two_models_on_one_data_set_keep_their_own_rows_and_figures(two_models):
    jsons, datasets, root = two_models
    figures = {k: root / f"{k}.png" for k in ("clusters", "nmi", "label_maps", "heatmap",
                                              "comparison")}
    df = aggregate(jsons, datasets, root / "summary.csv", figures, n_examples=2)
    assert len(df) == 10  # (2 + 3 layers) x 2 modes, one row each
    assert not df.duplicated(["model", "dataset", "layer", "mode", "method"]).any()
    assert set(df["model"]) == set(LAYERS)
    for path in figures.values():
        assert path.stat().st_size > 5000
    # The label-map figure has a block per model: the control's third layer is drawn
    # although the other model has no such layer (no empty column, no layer dropped).
    maps = np.asarray(Image.open(figures["label_maps"]).convert("RGB"))
    assert maps.shape[0] > maps.shape[1] * 0.6
    assert len(np.unique(maps.reshape(-1, 3), axis=0)) > 20
    # the control's conv3 is flagged too_few_samples: its title is drawn in dark red, which
    # the same figure without the flag does not have
    def firebrick(png):
        rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
        return int((np.abs(rgb - [178, 34, 34]).max(axis=2) < 30).sum())

    for path in jsons:
        record = json.loads(path.read_text())
        path.write_text(json.dumps(record | {"too_few_samples": False}))
    aggregate(jsons, datasets, root / "summary.csv", figures | {"label_maps": root / "plain.png"},
              n_examples=2)
    assert firebrick(figures["label_maps"]) > firebrick(root / "plain.png") + 20


def test_summary_numbers_each_models_layers_in_the_nets_order(tmp_path):
    """The fit records carry each layer's position in the net's graph (gaps, any order); the
    summary numbers a model's layers 0, 1, ... in that order."""
    jsons = []
    for model, positions in {"a": {"relu3": 7, "relu1": 1, "relu2": 4}, "b": {"x": 30, "y": 2}}.items():
        for layer, position in positions.items():
            path = tmp_path / f"{model}_{layer}.json"
            write_json(path, {"model": model, "dataset": "d", "role": "source", "layer": layer,
                              "layer_index": position, "mode": "image", "method": "dpgmm"})
            jsons.append(path)
    df = summary_table(jsons)
    assert df[["model", "layer", "layer_index"]].values.tolist() == [
        ["a", "relu1", 0], ["a", "relu2", 1], ["a", "relu3", 2], ["b", "y", 0], ["b", "x", 1]]


def test_the_clusters_figure_keeps_its_legend_below_the_panels(two_models, monkeypatch):
    """Inside the first panel the legend hid that panel's lines: it is the figure's, below."""
    from convdp import aggregate

    jsons, _, _ = two_models
    df = summary_table(jsons)
    figures = []
    monkeypatch.setattr(aggregate, "save_figure", lambda fig, dest: figures.append(fig))
    aggregate.plot_clusters_per_layer(df, "unused.png")
    fig = figures[0]
    assert [ax.get_legend() for ax in fig.axes] == [None] * len(fig.axes)
    (legend,) = fig.legends
    assert {"digits", "dpgmm"} <= {t.get_text() for t in legend.get_texts()}
    fig.canvas.draw()  # below every panel
    top = legend.get_window_extent().y1
    assert all(top <= ax.get_window_extent().y0 for ax in fig.axes)
    aggregate.plt.close(fig)


def _records(tmp_path, rows):
    jsons = []
    for i, row in enumerate(rows):
        path = tmp_path / f"{i:03d}.json"
        write_json(path, {"role": "source", "method": "dpgmm", "clusters_effective": 2.5,
                          "saturated": False, "truncation": 40, "too_few_samples": False} | row)
        jsons.append(path)
    return summary_table(jsons)


def _legend_colours(fig, levels):
    """{level: colour} of the figure legend's entries for ``levels`` (hue levels)."""
    from matplotlib.colors import to_hex

    (legend,) = fig.legends
    return {t.get_text(): to_hex(h.get_color()) for t, h in
            zip(legend.get_texts(), legend.legend_handles, strict=True) if t.get_text() in levels}


def test_a_lines_colour_is_the_one_the_legend_gives_it_in_every_panel(tmp_path, monkeypatch):
    """Two models, each on a labelled source and an unlabelled target: the NMI panel draws
    the sources only, in their colours (its own colour order gave alexnet's target's colour
    to vgg's source); and data sets only a later model analyses are in the legend."""
    from matplotlib.colors import to_hex

    from convdp import aggregate

    rows = []
    for model, sets in (("alexnet", ("cifar", "photos")), ("vgg", ("cifar", "photos")),
                        ("digitnet", ("mnist", "fashion"))):
        for ds in sets:
            for i, layer in enumerate(("l1", "l2", "l3")):
                for mode in ("position", "image"):
                    nmi = None if ds in ("photos", "fashion") or mode == "position" else (
                        0.2 + 0.3 * i if model == "alexnet" else 0.9 - 0.3 * i)
                    rows.append({"model": model, "dataset": ds, "layer": layer,
                                 "layer_index": i, "mode": mode, "clusters_kept": 3 + i,
                                 "nmi": nmi, "role": "source" if ds in ("cifar", "mnist")
                                 else "target"})
    df = _records(tmp_path, rows)
    figures = []
    monkeypatch.setattr(aggregate, "save_figure", lambda fig, dest: figures.append(fig))
    aggregate.plot_model_comparison(df, "unused.png")
    fig = figures.pop()
    colours = _legend_colours(fig, set(df["model"] + " · " + df["dataset"] + " (" + df["role"]
                                       + ")"))
    assert len(set(colours.values())) == len(colours) == 6, colours
    nmi = next(ax for ax in fig.axes if ax.get_title().startswith("nmi"))
    drawn = {to_hex(line.get_color()): list(line.get_ydata()) for line in nmi.get_lines()
             if len(line.get_ydata()) > 1}
    assert drawn[colours["alexnet · cifar (source)"]] == pytest.approx([0.2, 0.5, 0.8])
    assert drawn[colours["vgg · cifar (source)"]] == pytest.approx([0.9, 0.6, 0.3])
    assert colours["alexnet · photos (target)"] not in drawn
    aggregate.plt.close(fig)
    aggregate.plot_clusters_per_layer(df, "unused.png")
    fig = figures.pop()
    colours = _legend_colours(fig, set(df["dataset"]))
    assert colours.keys() == {"cifar", "photos", "mnist", "fashion"}
    for ax in fig.axes:
        for line in ax.get_lines():
            if len(line.get_ydata()) > 1 and line.get_linestyle() != "None":
                assert to_hex(line.get_color()) in colours.values()
    aggregate.plt.close(fig)


def test_the_heatmaps_titles_name_the_layer_and_do_not_overlap(monkeypatch):
    """Four panels of long model and data set names: each title says its layer, and no
    title runs into its neighbour's (they did, on one line each)."""
    from convdp import aggregate

    figures = []
    monkeypatch.setattr(aggregate, "save_figure", lambda fig, dest: figures.append(fig))
    table = (np.array([[3, 1], [0, 4]]), np.array([0, 1]), np.array([0, 1]))
    tables = {(model, ds, layer): table for model, layer in (("digitnet", "relu4"),
                                                               ("digitnet_random", "relu4"))
              for ds in ("digits_source", "digits_target")}
    aggregate.plot_cluster_class_heatmap(tables, "unused.png")
    fig = figures[0]
    fig.canvas.draw()
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert [t.get_text().splitlines()[0] for t in titles] == [
        "digitnet: digits_source", "digitnet: digits_target",
        "digitnet_random: digits_source", "digitnet_random: digits_target"]
    assert all("relu4" in t.get_text() for t in titles)
    boxes = [t.get_window_extent() for t in titles]
    assert all(a.x1 < b.x0 for a, b in zip(boxes[:-1], boxes[1:], strict=True))
    aggregate.plt.close(fig)


def test_the_label_maps_examples_are_of_different_classes():
    """The digits come class by class in turn: evenly spaced images were all 0s. Labelled,
    the examples are the first image of classes spread over the classes; unlabelled, evenly
    spaced; fewer classes than examples, the rest spread over the other images."""
    from convdp.sampled import example_images as example_picks

    cyclic = np.tile(np.arange(5), 181)[:901]
    assert set(cyclic[np.linspace(0, 900, 4).astype(int)]) == {0}  # what went wrong
    pick = example_picks(901, 4, cyclic)
    assert len(set(cyclic[pick])) == 4 and list(pick) == sorted(pick)
    assert list(example_picks(901, 4, None)) == [0, 300, 600, 900]
    blocks = np.repeat(np.arange(10), 10)
    assert list(blocks[example_picks(100, 4, blocks)]) == [0, 3, 6, 9]
    two = np.array([0] * 50 + [1] * 50)
    pick = example_picks(100, 4, two)
    assert len(set(pick)) == 4 and set(two[pick]) == {0, 1}
    assert list(example_picks(3, 4, np.array([0, 0, 1]))) == [0, 1, 2]


def test_counts_past_a_million_are_written_exactly(tmp_path):
    """A count that some rows lack (``effective_samples``: DPGMM rows only) makes its column
    float; the CSV still gives 1,234,567 samples exactly (it read 1.23457e+06, i.e.
    1,234,570: more effective samples than samples), and real numbers to 6 digits."""
    import pandas as pd

    from convdp.aggregate import write_csv

    common = {"model": "m", "dataset": "d", "role": "source", "layer": "l", "layer_index": 0,
              "mode": "position", "n_samples_fit": 1234567, "clusters_kept": 5}
    write_json(tmp_path / "a.json", common | {"method": "dpgmm", "effective_samples": 1234567,
                                               "lower_bound_per_sample": 12.3456789})
    write_json(tmp_path / "b.json", common | {"method": "kmeans-bic"})
    write_csv(summary_table([tmp_path / "a.json", tmp_path / "b.json"]), tmp_path / "s.csv")
    back = pd.read_csv(tmp_path / "s.csv")
    assert back["effective_samples"].tolist()[0] == 1234567 and back["effective_samples"].isna()[1]
    assert back["lower_bound_per_sample"].tolist()[0] == 12.3457


def test_a_point_sits_at_its_layers_tick_when_a_data_set_lacks_a_layer(tmp_path, monkeypatch):
    """The source has no fit of the first layer, the target has all three: seaborn placed the
    layer names in the order it met them (the source's l2, l3, then l1), so the source's l2
    was drawn above the tick "l1" and the target's l1 above "l3"."""
    from convdp import aggregate

    rows = []
    for ds, role, layers in (("src", "source", ("l2", "l3")), ("tgt", "target", ("l1", "l2", "l3"))):
        for layer in layers:
            i = int(layer[1])
            for mode in ("position", "image"):
                rows.append({"model": "m", "dataset": ds, "role": role, "layer": layer,
                             "layer_index": i, "mode": mode, "clusters_kept": 10 * i,
                             "nmi": 0.1 * i if mode == "image" else None})
    df = _records(tmp_path, rows)
    figures = []
    monkeypatch.setattr(aggregate, "save_figure", lambda fig, dest: figures.append(fig))
    aggregate.plot_nmi_per_layer(df, "unused.png")
    aggregate.plot_clusters_per_layer(df, "unused.png")
    for fig, ax, y in ((figures[0], figures[0].axes[0], 0.1),
                       (figures[1], figures[1].axes[0], 10)):
        bottom = fig.axes[-1] if fig is figures[1] else ax  # shared x: labels on the bottom row
        name_at = {round(t.get_position()[0]): t.get_text() for t in bottom.get_xticklabels()}
        assert sorted(name_at.values()) == ["l1", "l2", "l3"]
        points = [(round(px), py) for line in ax.get_lines() if len(line.get_xdata()) > 1
                  for px, py in zip(line.get_xdata(), line.get_ydata(), strict=True)]
        assert len(points) == 5
        for px, py in points:  # layer lk's value is k * y: drawn above the tick "lk"
            assert py == pytest.approx(y * int(name_at[px][1])), (name_at[px], py)
        aggregate.plt.close(fig)
