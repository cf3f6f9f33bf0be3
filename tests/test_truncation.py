"""On real activations (a DigitNet layer), the count does not follow the truncation level."""


import pytest
import torch

from convdp.truncation import FIXED_TRUNCATION, invariance, truncation_sweep

DPGMM = dict(backend="torch", n_components=40, concentration=1.0, covariance_type="full",
             max_iter=200, tol=1e-3, weight_threshold=0.01, delete_below=0.01, merge=True,
             max_components=320, grow_at=0.6, restarts=1)
PREPROCESS = {"max_samples": 3000, "pca": 8}


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    """relu1 and relu2 of a seeded DigitNet on 300 digits (16 x 16)."""
    import zarr

    from convdp.data import load_digits_split
    from convdp.extract import extract_activations
    from convdp.models import DigitNet

    torch.manual_seed(0)
    net = DigitNet(num_classes=5, in_channels=1).eval()
    digits = load_digits_split([0, 1, 2, 3, 4], size=16, max_samples=300)
    root = tmp_path_factory.mktemp("trunc") / "a.zarr"
    extract_activations(net, digits.images, ["relu1", "relu2"], root, mean=[0.3], std=[0.33],
                        fingerprint={"n": "a"}, batch_size=100, chunk_size=100, progress=False)
    return zarr.open_group(root, mode="r")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize(("layer", "mode"), [("relu1", "position"), ("relu1", "image"),
                                             ("relu2", "position")])
def test_count_and_bound_hold_from_40_to_80_components(layers, layer, mode):
    params = {"preprocess": PREPROCESS, "dpgmm": DPGMM}
    low, high = truncation_sweep(layers[layer], layer=layer, mode=mode, params=params,
                                 truncations=[40, 80])
    check = invariance(low, high)
    assert not check["saturated"]
    assert check["kept_change"] <= 0.10, (low, high)
    assert check["bound_change"] <= 0.01, (low, high)


def test_without_the_moves_the_count_follows_the_truncation(layers):
    """The problem the moves solve: with a fixed truncation and no merges, 10 components give
    10 clusters (saturated) and 80 give many more than the moves find at any truncation."""
    fixed = {"preprocess": PREPROCESS, "dpgmm": DPGMM | FIXED_TRUNCATION}
    rows = truncation_sweep(layers["relu1"], layer="relu1", mode="image", params=fixed,
                            truncations=[10, 80])
    moved = truncation_sweep(layers["relu1"], layer="relu1", mode="image",
                             params={"preprocess": PREPROCESS, "dpgmm": DPGMM}, truncations=[80])
    assert rows[0]["clusters_kept"] == 10 and rows[0]["saturated"]
    assert rows[1]["clusters_kept"] >= 2 * moved[0]["clusters_kept"], (rows, moved)
    assert moved[0]["elbo_per_sample"] > rows[1]["elbo_per_sample"]
