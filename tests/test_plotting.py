"""keras_vit.plotting: figures on an Agg canvas, PNGs of the stated size, written atomically."""

import os

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from keras_vit import plotting


def saved(figure, path):
    """The PNG at `path` as an RGB array, after checking it is the figure, pixel for pixel."""
    assert isinstance(figure, Figure)
    assert isinstance(figure.canvas, FigureCanvasAgg)
    assert path.stat().st_size > 0
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    with Image.open(path) as png:
        assert png.format == "PNG"
        width, height = figure.get_size_inches() * figure.dpi
        assert png.size == (round(width), round(height))
        return np.asarray(png.convert("RGB"))


def test_overlay_puts_the_heat_where_the_mask_is(tmp_path):
    mask = np.zeros((4, 4))
    mask[0, 0] = 3.0
    path = tmp_path / "rollout.png"
    backend = matplotlib.get_backend()
    figure = plotting.plot_attention_overlay(np.zeros((32, 32), "uint8"), mask, path)
    assert matplotlib.get_backend() == backend
    pixels = saved(figure, path)
    assert pixels.shape == (300, 600, 3)
    right = figure.axes[1].get_window_extent()  # in pixels, from the bottom left
    top_left = pixels[round(pixels.shape[0] - right.y1 + 10), round(right.x0 + 10)].astype(int)
    bottom_right = pixels[round(pixels.shape[0] - right.y0 - 10), round(right.x1 - 10)].astype(int)
    assert top_left[0] > top_left[2] + 40  # red: the mask's peak
    assert bottom_right[2] > bottom_right[0] + 40  # blue: zero


@pytest.mark.parametrize("shape", [(20, 24, 3), (20, 24, 1), (20, 24)])
def test_overlay_takes_colour_and_grey_images(tmp_path, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    figure = plotting.plot_attention_overlay(image, np.ones((2, 3)), tmp_path / "o.png")
    assert saved(figure, tmp_path / "o.png").shape == (300, 600, 3)


def test_overlay_without_a_path_saves_nothing(tmp_path):
    figure = plotting.plot_attention_overlay(np.zeros((8, 8, 3)), np.zeros((2, 2)))
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    assert not any(tmp_path.iterdir())


def test_position_similarity_is_a_grid_of_grids(tmp_path):
    rows, cols = 4, 6
    similarity = np.random.default_rng(0).uniform(-1, 1, (rows, cols, rows, cols))
    path = tmp_path / "sub" / "similarity.png"
    figure = plotting.plot_position_similarity(similarity, path)
    pixels = saved(figure, path)
    assert pixels.shape[1] > pixels.shape[0]  # wider than tall, like the grid
    assert len(figure.axes) == rows * cols + 1  # and the colour bar, last
    for axis, (row, col) in zip(figure.axes[:-1], np.ndindex(rows, cols), strict=True):
        np.testing.assert_array_equal(axis.images[0].get_array(), similarity[row, col])
    top_left, below, right = (figure.axes[index].get_position() for index in (0, cols, 1))
    assert below.y0 < top_left.y0 and right.x0 > top_left.x0


def test_attention_distance_has_a_dot_per_head_and_layer(tmp_path):
    distance = np.arange(12.0).reshape(4, 3)
    path = tmp_path / "distance.png"
    figure = plotting.plot_attention_distance(distance, path)
    assert saved(figure, path).shape == (400, 500, 3)
    (axis,) = figure.axes
    points = np.concatenate([c.get_offsets() for c in axis.collections])
    assert sorted(map(tuple, points)) == sorted(
        (layer, distance[layer, head]) for layer in range(4) for head in range(3)
    )


def test_saving_replaces_an_existing_file(tmp_path):
    path = tmp_path / "distance.png"
    path.write_bytes(b"old")
    plotting.plot_attention_distance(np.ones((2, 2)), path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_saved_png_has_ordinary_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = tmp_path / "distance.png"
    plotting.plot_attention_distance(np.ones((2, 2)), path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_directory_is_not_replaced(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(IsADirectoryError, match="directory"):
        plotting.plot_attention_distance(np.ones((2, 2)), tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="mask"):
        plotting.plot_attention_overlay(np.zeros((8, 8)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="rows, cols, rows, cols"):
        plotting.plot_position_similarity(np.zeros((2, 3, 3, 2)))
    with pytest.raises(ValueError, match="layers, heads"):
        plotting.plot_attention_distance(np.zeros(4))


def test_reconstructions_are_three_rows_of_images(tmp_path):
    images = np.zeros((3, 16, 16, 1))
    masks = np.zeros((3, 16, 16))
    masks[:, :8] = 1  # the top halves are masked
    reconstructions = np.ones((3, 16, 16, 1))
    path = tmp_path / "epoch_001.png"
    figure = plotting.plot_reconstructions(images, masks, reconstructions, path, title="epoch 1")
    pixels = saved(figure, path)
    assert pixels.shape == (330, 420, 3)
    axes = np.array(figure.axes).reshape(3, 3)

    def centre(axis, top):  # a pixel of the top or the bottom half of a panel
        box = axis.get_window_extent()
        y = box.y1 - box.height / 4 if top else box.y0 + box.height / 4
        return pixels[round(pixels.shape[0] - y), round((box.x0 + box.x1) / 2)].tolist()

    assert centre(axes[0, 0], top=True) == [0, 0, 0]  # the original: black
    assert centre(axes[1, 1], top=True) == [128, 128, 128]  # masked: grey
    assert centre(axes[1, 1], top=False) == [0, 0, 0]  # visible: as the original
    assert centre(axes[2, 2], top=False) == [255, 255, 255]  # the reconstruction
    with pytest.raises(ValueError, match=r"masks \(B, H, W\) of the same B, H, W"):
        plotting.plot_reconstructions(images, masks[:, :8], reconstructions)
