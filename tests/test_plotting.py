"""Figure helpers: the input column of the label-map rows shows the image's own values."""

import numpy as np
import pytest

from convdp.plotting import label_map_rows, pyplot


def _centre_pixel(img: np.ndarray) -> list[int]:
    """The RGB value drawn at the centre of the input cell of a one-row label-map figure."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, squeeze=False, figsize=(2, 1), dpi=50)
    label_map_rows(axes, [(img, "x", [np.zeros((2, 2, 3))])])
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    box = axes[0, 0].get_window_extent()
    y, x = int(buf.shape[0] - (box.y0 + box.y1) / 2), int((box.x0 + box.x1) / 2)
    plt.close(fig)
    return buf[y, x].tolist()


@pytest.mark.parametrize("value, dark_corner", [(200, False), (40, True)])
def test_a_grey_input_is_drawn_at_its_values_as_an_rgb_one_is(value, dark_corner):
    """A one-channel input was stretched to its own range: a uniform light grey image was
    drawn black, a dark one (0 to 40) with white strokes."""
    grey = np.full((8, 8, 1), value, np.uint8)
    if dark_corner:
        grey[0, 0] = 0
    drawn = _centre_pixel(grey)
    assert drawn == _centre_pixel(np.repeat(grey, 3, -1))
    assert all(abs(c - value) <= 1 for c in drawn), drawn
