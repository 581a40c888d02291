"""Pictures of what `keras_vit.analysis` measures, drawn with matplotlib.

matplotlib is imported inside the functions, so `import keras_vit` does not
need it. Figures are built without pyplot, on a non-interactive Agg canvas:
nothing changes matplotlib's global backend or keeps figures alive, and the
functions work the same on a headless machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DPI = 100


def _figure(width: float, height: float):
    """A new matplotlib Figure of `width` x `height` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _finish(figure, path: str | os.PathLike | None):
    """Saves `figure` as a PNG at `path` (if given), atomically, and returns it."""
    if path is not None:
        from keras_vit.atomic_files import atomic_path

        if Path(path).is_dir():
            raise IsADirectoryError(f"{path} is a directory; give a .png file name.")
        with atomic_path(path, overwrite=True) as temporary:
            figure.savefig(temporary, format="png", dpi=DPI)
    return figure


def plot_attention_overlay(image, mask, path: str | os.PathLike | None = None):
    """Shows an image beside the same image under a heat map of `mask`.

    Args:
        image: `(H, W)` or `(H, W, C)`, 0..255 integers or floats in [0, 1].
        mask: a patch-grid map `(rows, cols)`, e.g. one image's
            `attention_rollout`; it is stretched over the image and scaled to
            its own maximum for display.
        path: where to save a PNG (600x300 pixels); nothing is saved if `None`.

    Returns:
        The matplotlib `Figure`.

    Example:
        >>> mask = keras_vit.attention_rollout(model, batch)[0]
        >>> plot_attention_overlay(raw_image, mask, "rollout.png")
    """
    image, mask = np.asarray(image), np.asarray(mask, dtype=np.float64)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"mask must be a (rows, cols) map, got shape {mask.shape}.")
    height, width = image.shape[:2]
    figure = _figure(6, 3)
    left, right = figure.subplots(1, 2)
    for axis, title in ((left, "input"), (right, "attention")):
        axis.imshow(image, cmap="gray", interpolation="nearest")
        axis.set_title(title)
        axis.set_axis_off()
    peak = mask.max()
    right.imshow(
        mask / peak if peak > 0 else mask,
        cmap="jet",
        alpha=0.5,
        vmin=0.0,
        vmax=1.0,
        extent=(-0.5, width - 0.5, height - 0.5, -0.5),
        interpolation="bilinear",
    )
    return _finish(figure, path)


def plot_position_similarity(similarity, path: str | os.PathLike | None = None):
    """The ViT paper's grid of grids: each patch's position-embedding similarity to all.

    Panel `(i, j)` sits at row `i`, column `j` and shows the cosine similarity of
    patch `(i, j)`'s position embedding to every patch's, from -1 to 1.

    Args:
        similarity: `(rows, cols, rows, cols)`, from `position_embedding_similarity`.
        path: where to save a PNG; nothing is saved if `None`. The grid spans
            about 6 inches (600 pixels) along its longer side.

    Returns:
        The matplotlib `Figure`.

    Example:
        >>> plot_position_similarity(keras_vit.position_embedding_similarity(model), "sim.png")
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 4 or similarity.shape[:2] != similarity.shape[2:]:
        raise ValueError(
            f"similarity must have shape (rows, cols, rows, cols), got {similarity.shape}."
        )
    rows, cols = similarity.shape[:2]
    panel = 6.0 / max(rows, cols)
    figure = _figure(cols * panel + 1.5, rows * panel + 1.0)
    axes = figure.subplots(rows, cols, squeeze=False)
    figure.subplots_adjust(left=0.75 / figure.get_figwidth(), bottom=0.6 / figure.get_figheight())
    for (row, col), axis in np.ndenumerate(axes):
        picture = axis.imshow(similarity[row, col], cmap="viridis", vmin=-1.0, vmax=1.0)
        axis.set_xticks([])
        axis.set_yticks([])
    for row in range(rows):
        axes[row, 0].set_ylabel(str(row + 1), rotation=0, ha="right", va="center")
    for col in range(cols):
        axes[-1, col].set_xlabel(str(col + 1))
    figure.supxlabel("input patch column")
    figure.supylabel("input patch row")
    figure.colorbar(picture, ax=axes.ravel().tolist(), label="cosine similarity")
    return _finish(figure, path)


def plot_attention_distance(distance, path: str | os.PathLike | None = None):
    """The ViT paper's Figure 7: mean attention distance of every head against depth.

    Args:
        distance: `(layers, heads)` pixel distances, from `mean_attention_distance`.
        path: where to save a PNG (500x400 pixels); nothing is saved if `None`.

    Returns:
        The matplotlib `Figure`.

    Example:
        >>> plot_attention_distance(keras_vit.mean_attention_distance(model, batch), "d.png")
    """
    distance = np.asarray(distance, dtype=np.float64)
    if distance.ndim != 2:
        raise ValueError(f"distance must have shape (layers, heads), got {distance.shape}.")
    layers, heads = distance.shape
    figure = _figure(5, 4)
    axis = figure.subplots()
    for head in range(heads):
        axis.scatter(np.arange(layers), distance[:, head], s=20, label=f"head {head}")
    axis.set_xticks(np.arange(layers))
    axis.set_xlabel("network depth (layer)")
    axis.set_ylabel("mean attention distance (pixels)")
    axis.set_ylim(bottom=0)
    if heads <= 16:
        axis.legend(fontsize="small", ncols=2)
    figure.tight_layout()
    return _finish(figure, path)


def plot_reconstructions(
    images, masks, reconstructions, path: str | os.PathLike | None = None, title: str = ""
):
    """A masked autoencoder's work, one image per column: the original, what the encoder
    saw (masked patches grey) and the reconstruction.

    Args:
        images: `(B, H, W, C)` originals, floats in [0, 1] (values outside are clipped).
        masks: `(B, H, W)`, 1 (or True) on the pixels of masked patches.
        reconstructions: `(B, H, W, C)` in [0, 1], e.g. from
            `MaskedAutoencoder.reconstructed_images`, brought back to display units.
        path: where to save a PNG (about 100 x 110 pixels per image); nothing
            is saved if `None`.
        title: a line above the grid, e.g. the epoch.

    Returns:
        The matplotlib `Figure`.

    Example:
        >>> out = mae.reconstructed_images(batch, noise=noise)
        >>> show = lambda x: np.asarray(x) * 0.5 + 0.5  # ImageProcessor's mean and std
        >>> plot_reconstructions(show(batch), out["mask"], show(out["reconstruction"]), "r.png")
    """
    images = np.clip(np.asarray(images, dtype=np.float64), 0.0, 1.0)
    reconstructions = np.clip(np.asarray(reconstructions, dtype=np.float64), 0.0, 1.0)
    masks = np.asarray(masks, dtype=bool)
    if images.ndim != 4 or reconstructions.shape != images.shape or masks.shape != images.shape[:3]:
        raise ValueError(
            f"images and reconstructions must be (B, H, W, C) and masks (B, H, W) of the same "
            f"B, H, W; got {images.shape}, {reconstructions.shape} and {masks.shape}."
        )
    masked = np.where(masks[..., None], 0.5, images)
    rows = (("original", images), ("masked", masked), ("reconstruction", reconstructions))
    count = len(images)
    figure = _figure(count + 1.2, 3.3)
    axes = figure.subplots(3, count, squeeze=False)
    for row, (label, pictures) in enumerate(rows):
        for column, picture in enumerate(pictures):
            axis = axes[row, column]
            axis.imshow(
                picture.squeeze(-1) if picture.shape[-1] == 1 else picture,
                cmap="gray",
                vmin=0.0,
                vmax=1.0,
                interpolation="nearest",
            )
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center")
    if title:
        figure.suptitle(title)
    figure.subplots_adjust(left=1.1 / figure.get_figwidth(), right=0.98, wspace=0.05, hspace=0.05)
    return _finish(figure, path)
