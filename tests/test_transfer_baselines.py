"""The transfer benchmark's pieces: the price of each cut, the baseline scores, the digits
transforms and the benchmark's statistics, each on tiny data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from convdp.transfer import baselines as B
from convdp.transfer.cost import cut_costs, price

LAYERS = ["relu1", "relu2", "relu3", "relu4"]


def test_a_linear_layer_at_every_position_costs_per_position():
    """ConvNeXt and Swin apply nn.Linear to every (h, w) of an (N, H, W, C) map: it costs
    in × out per position (it was counted once per image: ConvNeXt-T at 0.64 GFLOPs, not
    8.9), as a classifier's Linear costs in × out once."""
    import torch
    from torch import nn

    from convdp.transfer.cost import layer_flops

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.mlp = nn.Linear(4, 8)  # per position, channels last
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = self.mlp(self.conv(x).permute(0, 2, 3, 1))
            return self.fc(x.mean((1, 2)))

    flops = {r["module"]: r["flops"] for r in layer_flops(Net(), (3, 6, 7))}
    assert flops == {"conv": 2 * 3 * 4 * 42, "mlp": 2 * 4 * 8 * 42, "fc": 2 * 8 * 5}
    assert torch.is_grad_enabled()


def test_digitnet_costs_match_a_count_by_hand():
    from convdp.models import DigitNet

    net = DigitNet(num_classes=5, in_channels=1)
    # By hand: conv k×k×C_in×C_out + C_out biases; FLOPs = 2 × C_in × 9 × C_out × H × W.
    params = {"conv1": 1 * 16 * 9 + 16, "conv2": 16 * 32 * 9 + 32, "conv3": 32 * 64 * 9 + 64,
              "conv4": 64 * 64 * 9 + 64, "fc": 64 * 5 + 5}
    fwd = {"conv1": 2 * 1 * 9 * 16 * 32 * 32, "conv2": 2 * 16 * 9 * 32 * 16 * 16,
           "conv3": 2 * 32 * 9 * 64 * 8 * 8, "conv4": 2 * 64 * 9 * 64 * 4 * 4, "fc": 2 * 64 * 5}
    order = ["conv1", "conv2", "conv3", "conv4", "fc"]
    total = sum(params.values())
    assert total == 60549
    costs = cut_costs(net, LAYERS, (1, 32, 32))
    assert [c["cut"] for c in costs] == [0, 1, 2, 3, 4]
    for n, c in enumerate(costs):
        frozen, trained = order[:n], order[n:]
        assert c["params_total"] == total
        assert c["params_frozen"] == sum(params[m] for m in frozen)
        assert c["params_retrained"] == sum(params[m] for m in trained)
        assert c["forward_flops"] == sum(fwd.values())
        assert c["frozen_forward_flops"] == sum(fwd[m] for m in frozen)
        # Trained layers: forward + weight gradient; every trained layer but the first trained
        # one also passes the gradient to its input. The frozen prefix is cached.
        by_hand = sum(2 * fwd[m] for m in trained) + sum(fwd[m] for m in trained[1:])
        assert c["train_flops"] == by_hand, n
        assert c["flops_saved"] == costs[0]["train_flops"] - by_hand
        assert c["train_flops_share"] == pytest.approx(by_hand / costs[0]["train_flops"])
    assert costs[0]["params_retrained_share"] == 1.0 and costs[0]["flops_saved"] == 0
    assert price(costs[3]) == "retrain 61.5% of the parameters, 12.9% of the training compute"
    # Another input size scales the conv FLOPs, not the parameters.
    big = cut_costs(net, LAYERS, (1, 64, 64))
    assert big[2]["frozen_forward_flops"] == 4 * costs[2]["frozen_forward_flops"]
    assert big[2]["params_frozen"] == costs[2]["params_frozen"]


def test_an_auxiliary_head_the_forward_never_runs_is_no_part_of_the_price():
    """GoogLeNet and Inception v3 built without a weights name keep auxiliary heads that
    run in training mode only and are never in the loss (the training reads ``.logits``):
    no cut freezes or trains them, so they are neither "retrained" nor in the total (a
    GoogLeNet frozen up to inception5b read "retrain 43.8% of the parameters", for its fc's
    0.2%)."""
    import torch
    from torch import nn

    from convdp.models import DigitNet

    class WithAux(DigitNet):
        def __init__(self):
            super().__init__(num_classes=5, in_channels=1)
            self.aux = nn.Linear(32 * 16 * 16, 1000)  # 8.2 M parameters, training only

        def forward(self, x):
            out = super().forward(x)
            if self.training:
                return out, self.aux(torch.flatten(self.pool1(self.relu1(self.conv1(x))), 1))
            return out

    plain = cut_costs(DigitNet(num_classes=5, in_channels=1), LAYERS, (1, 32, 32))
    aux = cut_costs(WithAux(), LAYERS, (1, 32, 32))
    for a, p in zip(aux, plain, strict=True):
        for key in ("params_total", "params_frozen", "params_retrained",
                    "params_retrained_share", "train_flops"):
            assert a[key] == p[key], (a["cut"], key)
    assert price(aux[3]) == "retrain 61.5% of the parameters, 12.9% of the training compute"


def test_a_trained_batchnorm_below_the_first_trained_conv_makes_it_pass_its_input_gradient():
    """A cut at a convolution leaves its BatchNorm trained: its weight gradient needs the
    gradient at its output, so the next convolution (trained) passes the gradient to its
    input, as the docstring's convention says ("the input gradient when any trained layer
    runs before it"). Only Conv2d / Linear were looked at, and the cut's training compute
    read 36,912 FLOPs for 55,344: the price a third too low."""
    import torch
    from torch import nn

    from convdp.transfer.cost import layer_flops

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(4)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
            self.relu2 = nn.ReLU()
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = self.relu2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
            return self.fc(torch.flatten(self.gap(x), 1))

    net = Net()
    fwd = {r["module"]: r["flops"] for r in layer_flops(net, (1, 8, 8))}
    assert set(fwd) == {"conv1", "conv2", "fc"}  # the FLOPs themselves: convolutions, linear
    costs = cut_costs(net, ["conv1", "bn1"], (1, 8, 8))
    # cut 1 (conv1 frozen, bn1 trained): conv2 and fc pay forward, weight and input gradients
    assert costs[1]["train_flops"] == 3 * fwd["conv2"] + 3 * fwd["fc"]
    assert costs[1]["frozen_forward_flops"] == fwd["conv1"]
    # cut 2 (bn1 frozen too): the first trained convolution passes no input gradient
    assert costs[2]["train_flops"] == 2 * fwd["conv2"] + 3 * fwd["fc"]
    assert costs[0]["train_flops"] == 2 * fwd["conv1"] + 3 * fwd["conv2"] + 3 * fwd["fc"]


def test_the_median_bandwidth_leaves_out_equal_non_zero_points():
    """A flat background after a convolution's bias and a ReLU is one vector, not 0: the
    expansion |a|² + |b|² - 2 a·b of two equal such vectors rounds to ~1e-13, which
    ``d > 0`` kept as a distinct pair; with 75 % background (no PCA: a layer of no more
    channels than ``preprocess.pca``, or ``pca: null``) the median was ~1e-7 and ``mmd2``
    saw no shift (about a third of random background vectors round so)."""
    rng = np.random.default_rng(0)
    background = np.full(16, 0.1)  # equal pairs of it: a squared distance of 5.6e-17

    def sample(shift):
        x = np.tile(background, (1500, 1))
        x[:375] = rng.normal(5 + shift, 2.0, (375, 16))  # 75 % background
        return x

    xs, same, shifted = sample(0.0), sample(0.0), sample(2.0)
    assert B.median_bandwidth(xs, shifted) > 5  # the foreground's spread
    assert abs(B.mmd2(xs, same)) < 0.001
    assert B.mmd2(xs, shifted) > 0.003
    assert B.median_bandwidth(np.tile(background, (10, 1)), np.tile(background, (10, 1))) == 1.0
    # copies of the background that differ at rounding level (as a product's rows may) are
    # equal points all the same: the bandwidth is the exact copies' (it fell from 23.6 to 18)
    exact = B.median_bandwidth(xs, shifted)
    noisy = [a + 1e-9 * rng.standard_normal(a.shape) * (a == background).all(1, keepdims=True)
             for a in (xs, shifted)]
    assert B.median_bandwidth(*noisy) == pytest.approx(exact, rel=1e-6)


def test_mmd_of_identical_and_shifted_samples():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    assert B.mmd2(x, x) == pytest.approx(0.0, abs=0.01)  # unbiased: ≈ 0, may be < 0
    same = B.mmd2(x, rng.normal(size=(300, 4)))
    assert abs(same) < 0.01
    near, far = B.mmd2(x, rng.normal(0.5, 1, (300, 4))), B.mmd2(x, rng.normal(2, 1, (300, 4)))
    assert 0.01 < near < far
    assert B.median_bandwidth(np.zeros((5, 2)), np.zeros((5, 2))) == 1.0


def test_mmd_sees_a_shift_beside_a_background_shared_by_most_samples():
    """Positions of a flat background are one vector after a ReLU. Where they are more than
    about 71 % of the samples, more than half the pairs are at distance 0: the median
    heuristic must take the distinct points' distances (it took 0, then the fallback
    bandwidth 1, and the kernel saw no shift of the other samples: mmd2 -0.0003)."""
    rng = np.random.default_rng(0)

    def sample(shift):
        x = np.zeros((1500, 16))
        x[:375] = rng.normal(5 + shift, 2.0, (375, 16))  # 75 % background
        return x

    xs, same, shifted = sample(0.0), sample(0.0), sample(2.0)
    assert B.median_bandwidth(xs, shifted) > 5  # the foreground's spread, not 1
    assert abs(B.mmd2(xs, same)) < 0.001
    assert B.mmd2(xs, shifted) > 0.003
    assert B.median_bandwidth(np.zeros((10, 3)), np.zeros((10, 3))) == 1.0  # all one point


def test_linear_cka_known_values():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6))
    assert B.linear_cka(x, x) == pytest.approx(1.0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert B.linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0)  # rotation, scale, shift
    assert B.linear_cka(x, rng.normal(size=(200, 6))) < 0.15
    with pytest.raises(ValueError, match="paired"):
        B.linear_cka(x, x[:10])


def test_logme_evidence_is_the_marginal_likelihood_and_the_fixed_point_its_maximum():
    from scipy.optimize import minimize
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(2)
    f = rng.normal(size=(60, 5))
    y = (f[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(float)
    # The closed form is the log density of y ~ N(0, I/β + F F'/α), per sample.
    a, b = 0.7, 2.3
    direct = multivariate_normal(np.zeros(60), np.eye(60) / b + f @ f.T / a).logpdf(y) / 60
    assert B._evidence(y, f, a, b) == pytest.approx(direct, rel=1e-8)
    # LogME's fixed point maximises it over (α, β): a numerical maximisation agrees.
    labels = y.astype(int)
    best = -minimize(lambda t: -B._evidence(y, f, *np.exp(t)), [0.0, 0.0],
                     method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-12}).fun
    best0 = -minimize(lambda t: -B._evidence(1 - y, f, *np.exp(t)), [0.0, 0.0],
                      method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-12}).fun
    assert B.logme(f, labels) == pytest.approx((best + best0) / 2, abs=1e-5)
    # More dimensions than samples: the zero eigenvalues are accounted for.
    g = rng.normal(size=(20, 40))
    yg = (g[:, 0] > 0).astype(float)
    bestg = -minimize(lambda t: -B._evidence(yg, g, *np.exp(t)), [0.0, 0.0],
                      method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-12}).fun
    bestg0 = -minimize(lambda t: -B._evidence(1 - yg, g, *np.exp(t)), [0.0, 0.0],
                       method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-12}).fun
    assert B.logme(g, yg.astype(int)) == pytest.approx((bestg + bestg0) / 2, abs=1e-5)


def test_hscore_of_one_feature_is_the_share_of_its_variance_between_classes():
    """A layer of one channel (a binary net's logit): np.cov gave a 0-d array and the
    transfer scores' job failed in pinv with numpy's words; the H-score of one feature is
    var(E[f | y]) / var(f)."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    f = rng.normal(size=(100, 1)) + 2.0 * y[:, None]
    g = np.where(y == 0, f[y == 0].mean(), f[y == 1].mean())
    assert B.hscore(f, y) == pytest.approx(np.var(g, ddof=1) / np.var(f[:, 0], ddof=1))
    assert 0.4 < B.hscore(f, y) < 0.6  # class means ±1 about the mean, unit noise: half


def test_logme_and_hscore_prefer_linearly_separable_labels():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 50)
    separable = rng.normal(size=(150, 8)) + 4.0 * np.eye(8)[labels]
    mixed = rng.normal(size=(150, 8))
    assert B.logme(separable, labels) > B.logme(mixed, labels)
    assert B.hscore(separable, labels) > 5 * B.hscore(mixed, labels)
    assert np.isnan(B.logme(separable, np.zeros(150)))
    assert np.isnan(B.hscore(separable, np.zeros(150)))  # was ~1e-62, read as "no spread"
    # LogME does not depend on the features' scale (alpha absorbs it): 1e6 times larger
    # features gave -0.911 for -0.861 when |m|^2 had an absolute floor
    for scale in (1e-3, 1e3, 1e6):
        assert B.logme(mixed * scale, labels) == pytest.approx(B.logme(mixed, labels), abs=1e-7)


# --------------------------------------------------------------------------------------
# The benchmark's targets: digits transforms and the held-out split


def test_digits_parts_share_no_image_and_transforms_are_seeded():
    from convdp.datasets.digits import load_digits_split
    from convdp.datasets.transforms import transform_images

    train = load_digits_split([0, 1, 2, 3, 4], size=16, part="train", heldout_fraction=0.3)
    held = load_digits_split([0, 1, 2, 3, 4], size=16, part="heldout", heldout_fraction=0.3)
    whole = load_digits_split([0, 1, 2, 3, 4], size=16)
    assert len(train.labels) + len(held.labels) == len(whole.labels)
    assert abs(len(held.labels) / len(whole.labels) - 0.3) < 0.01
    rows = {img.tobytes() for img in train.images}
    assert sum(img.tobytes() in rows for img in held.images) <= 2  # (a few digits repeat)
    assert set(np.unique(held.labels)) == {0, 1, 2, 3, 4}
    capped = load_digits_split([0, 1, 2, 3, 4], size=16, part="heldout", max_samples=50)
    assert len(capped.labels) == 50
    x = held.images[:20]
    assert np.array_equal(transform_images(x, "invert"), 255 - x)
    for name in ("rotate", "texture", "blur"):
        a, b = transform_images(x, name, seed=1), transform_images(x, name, seed=1)
        assert a.shape == x.shape and a.dtype == np.uint8 and np.array_equal(a, b), name
        assert not np.array_equal(a, x), name
    assert not np.array_equal(transform_images(x, "rotate", seed=1),
                              transform_images(x, "rotate", seed=2))
    blurred = transform_images(x, "blur", 2.0).astype(float)
    assert np.abs(np.diff(blurred, axis=2)).mean() < np.abs(np.diff(x.astype(float), axis=2)).mean()
    tex = transform_images(np.zeros((3, 16, 16, 1), np.uint8), "texture", 0.5)
    assert 0 < tex.max() <= 128  # the background alone, peak at half brightness
    with pytest.raises(ValueError, match="unknown transform"):
        transform_images(x, "sepia")
    from convdp.datasets.kinds import load_dataset

    spec = {"kind": "digits", "classes": [0, 1], "size": 16, "part": "heldout",
            "transform": {"name": "invert"}}
    assert load_dataset(spec).images.mean() > 128
    with pytest.raises(ValueError, match="kind digits"):
        load_dataset({"kind": "histology", "transform": {"name": "invert"}})


# --------------------------------------------------------------------------------------
# The benchmark's statistics on planted tables


def _planted_benchmark(noise=0.0):
    """Three targets × four cuts; accuracy falls with depth at a target-specific rate, a
    perfect score knows the rate, depth alone only the depth."""
    import pandas as pd

    rng = np.random.default_rng(0)
    tables, summaries = [], []
    for t, rate in enumerate((0.0, 0.05, 0.2)):
        means = [0.9] + [0.95 - rate * c for c in range(1, 5)]
        cuts = [{"cut": c, "layer": LAYERS[c - 1] if c else None,
                 "accuracies": list(m + noise * rng.normal(size=3)), "mean": m}
                for c, m in enumerate(means)]
        for c in cuts:
            c["mean"] = float(np.mean(c["accuracies"]))
        tables.append(pd.DataFrame({
            "dataset": f"t{t}", "layer": LAYERS, "cut": [1, 2, 3, 4], "depth": [1, 2, 3, 4],
            "shift_z": [-rate * c * 10 for c in range(1, 5)],
            "retrain_accuracy": [c["mean"] for c in cuts[1:]],
            "mmd2": rng.uniform(size=4), "probe_accuracy": 0.9, "logme": rng.normal(size=4)}))
        rec = 4 if rate == 0 else (2 if rate < 0.1 else 0)
        summaries.append({"model": "m", "dataset": f"t{t}", "source": "s", "retrain_cuts": cuts,
                          "recommended_cut": rec, "recommended_layer": "x",
                          "recommendation": "freeze", "retrain_seeds": [0, 1, 2],
                          "retrain_accuracy_scratch": cuts[0]["mean"]})
    return tables, summaries


def test_benchmark_correlations_and_recommendations(tmp_path):
    from convdp.transfer import benchmark as BM

    tables, summaries = _planted_benchmark()
    pairs = BM.pairs_table(tables, summaries)
    assert len(pairs) == 12 and pairs["seed_accuracies"].map(len).eq(3).all()
    corr = BM.correlations(pairs)
    assert corr[("shift_z", "cut 2")][0] == pytest.approx(1.0)
    assert np.isnan(corr[("depth", "cut 2")][0])  # depth is constant within a cut
    assert corr[("shift_z", "all pairs")][0] > corr[("depth", "all pairs")][0] > 0
    assert corr[("shift_z", "mean over cuts")][0] == pytest.approx(1.0)
    rec = BM.recommended_table(summaries, 0.02)
    assert rec["within_tolerance"].tolist() == [True, False, True]
    assert rec["best_cut"].tolist() == [1, 0, 0]
    # Noise-free seeds: every bootstrap resample is the point estimate.
    table = BM.correlation_table(pairs, n_boot=20)
    row = table[(table["score"] == "shift_z") & (table["scope"] == "all pairs")].iloc[0]
    assert row["kendall_tau_lo"] == pytest.approx(row["kendall_tau"])
    assert row["kendall_tau_hi"] == pytest.approx(row["kendall_tau"])
    noisy = BM.correlation_table(BM.pairs_table(*_planted_benchmark(0.05)), n_boot=50)
    row = noisy[(noisy["score"] == "shift_z") & (noisy["scope"] == "all pairs")].iloc[0]
    assert row["kendall_tau_lo"] <= row["kendall_tau"] <= row["kendall_tau_hi"]
    assert row["kendall_tau_lo"] < row["kendall_tau_hi"]
    # resampling the targets (each with all its cuts): their spread, whatever the seeds
    lo, hi = row["kendall_tau_targets_lo"], row["kendall_tau_targets_hi"]
    assert -1 <= lo < hi <= 1 and lo <= row["kendall_tau"]
    resampled = BM.resample_targets(pairs, np.random.default_rng(0))
    assert len(resampled) == len(pairs) and resampled.groupby("dataset").size().mod(4).eq(0).all()


def test_the_figure_draws_each_range_from_its_low_to_its_high_end(tmp_path, monkeypatch):
    """A range of resampled seeds lies below its point (fewer distinct seeds add noise):
    drawn as a symmetric error bar of absolute values, it straddled the point."""
    from matplotlib.collections import LineCollection

    from convdp.transfer import benchmark as BM

    tables, summaries = _planted_benchmark(0.01)
    pairs = BM.pairs_table(tables, summaries)
    corr = BM.correlation_table(pairs, n_boot=5)
    pick = (corr["score"] == "shift_z") & (corr["scope"] == "all pairs")
    corr.loc[pick, ["kendall_tau", "kendall_tau_lo", "kendall_tau_hi"]] = [0.783, 0.681, 0.776]
    corr.loc[pick, ["kendall_tau_targets_lo", "kendall_tau_targets_hi"]] = [0.2, 0.9]
    figures = []
    monkeypatch.setattr("convdp.plotting.save_figure", lambda fig, dest: figures.append(fig))
    BM.plot_benchmark(pairs, corr, BM.recommended_table(summaries), tmp_path / "b.png")
    spans = {tuple(np.round(np.asarray(seg)[:, 0], 3)) for c in figures[0].axes[0].collections
             if isinstance(c, LineCollection) for seg in c.get_segments() if len(seg)}
    assert (0.681, 0.776) in spans and (0.2, 0.9) in spans
    assert (0.681, 0.79) not in spans  # the old whisker: 0.783 + |0.776 - 0.783|


def test_benchmark_job_writes_tables_and_figure(tmp_path):
    from convdp.io import write_json
    from convdp.transfer import benchmark as BM

    tables, summaries = _planted_benchmark(0.01)
    paths = []
    for t, s in zip(tables, summaries, strict=True):
        t.to_csv(tmp_path / f"{s['dataset']}.csv", index=False)
        write_json(tmp_path / f"{s['dataset']}.json", s)
        paths.append((tmp_path / f"{s['dataset']}.csv", tmp_path / f"{s['dataset']}.json"))
    out = {k: tmp_path / f"out_{k}" for k in ("pairs.csv", "corr.csv", "rec.csv", "s.json",
                                               "fig.png")}
    summary = BM.benchmark_job([p for p, _ in paths], [j for _, j in paths], *out.values(),
                               bootstrap=10)
    assert summary["best_convdp_score"] == "shift_z"
    assert summary["recommended_within_tolerance"] == 2
    assert all(p.stat().st_size > 0 for p in out.values())


def test_verdict_rows_carry_the_price_of_each_cut():
    from convdp.models import DigitNet
    from convdp.transfer import verdict

    costs = cut_costs(DigitNet(num_classes=5), LAYERS, (1, 32, 32))
    rows = [{"layer": layer, "shift": -z, "shift_z": -z, "usage_js": 0.1 * z,
             "probe_accuracy": 0.9, "mmd2": 0.1 * z, "logme": 0.5, "hscore": 1.0}
            for layer, z in zip(LAYERS, [0.1, 0.5, 2.0, 5.0], strict=True)]
    scores = {"model": "digitnet", "dataset": "t", "source": "s", "mode": "position",
              "layers": rows}
    cuts = [{"cut": i, "layer": ([None] + LAYERS)[i], "accuracies": [m], "mean": m, "std": 0.0}
            for i, m in enumerate([0.9, 0.95, 0.95, 0.8, 0.6])]
    df, summary = verdict(scores, {"cuts": cuts, "runs": [], "epochs": 1, "seeds": [0],
                                   "costs": costs})
    assert df["depth"].tolist() == [1, 2, 3, 4]
    assert df["params_retrained"].tolist() == [c["params_retrained"] for c in costs[1:]]
    assert df["flops_saved"].tolist() == [c["flops_saved"] for c in costs[1:]]
    assert df["mmd2"].tolist() == pytest.approx([0.01, 0.05, 0.2, 0.5])
    rows[1]["shift_z"], rows[2]["shift_z"] = -3.0, -1.0  # a cut is as bad as its worst layer
    cut_df = verdict(scores, None)[0]
    assert cut_df["shift_z_cut"].tolist() == [-0.1, -3.0, -3.0, -5.0]
    assert cut_df["shift_cut"].tolist() == [-0.1, -0.5, -2.0, -5.0]  # the shift's own worst
    # the step rule's score: the first layer's shift_z, then the worst any next layer adds
    # (-2.9 at relu2; relu3 adds +2.0; relu4 -4.0)
    assert cut_df["step_cut"].tolist() == pytest.approx([-0.1, -2.9, -2.9, -4.0])
    assert cut_df["mmd2_cut"].tolist() == pytest.approx([0.01, 0.05, 0.2, 0.5])
    rows[1]["shift_z"], rows[2]["shift_z"] = -0.5, -2.0
    assert summary["decision"] == ("freeze up to layer relu2: retrain 92.1% of the parameters, "
                                   "45.2% of the training compute")
    # Without retraining (and without costs) the columns are there, empty.
    df, summary = verdict(scores, None)
    assert df["params_retrained"].isna().all() and "decision" not in summary


def test_benchmark_config_plans(tmp_path):
    """config/transfer_bench.yaml (not run in CI) plans: six targets, one benchmark job."""
    import re
    import subprocess
    import sys

    from tests.conftest import ROOT

    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(tmp_path), "-n", "--cores", "2", "--configfile",
           str(ROOT / "config/transfer_bench.yaml")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    counts = {r: int(n) for r, n in re.findall(r"^(\w+)\s+(\d+)$", text, re.M)}
    assert counts["transfer_retrain"] == 6 and counts["transfer_benchmark"] == 1, counts
    assert counts["prepare_dataset"] == 7 and counts["fit_dpgmm"] == 28, counts
