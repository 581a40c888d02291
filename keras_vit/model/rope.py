"""2-D rotary position embedding (RoPE) of the patch tokens, as DINOv3 uses it."""

from __future__ import annotations

import numpy as np
from keras import ops


def rope_tables(
    grid_size: tuple[int, int], head_size: int, theta: float
) -> tuple[np.ndarray, np.ndarray]:
    """The cosines and sines that rotate each patch's queries and keys.

    A patch's centre is placed on `[-1, 1] x [-1, 1]` (row, column). The first
    quarter of a head's channels turns with the row at the frequencies
    `theta ** (-4k / head_size)`, the second quarter with the column, and the
    second half of the channels repeats the first.

    Args:
        grid_size: the patch grid `(rows, cols)`.
        head_size: channels per attention head, a multiple of 4.
        theta: the base period.

    Returns:
        `(cos, sin)`, float32 arrays of shape `(rows * cols, head_size)`, rows
        in row-major order.

    Example:
        >>> cos, sin = rope_tables((2, 3), 8, 100.0)
        >>> cos.shape
        (6, 8)
    """
    rows, cols = grid_size
    centre_rows = 2 * (np.arange(rows) + 0.5) / rows - 1
    centre_cols = 2 * (np.arange(cols) + 0.5) / cols - 1
    row, col = (
        axis.reshape(-1, 1) for axis in np.meshgrid(centre_rows, centre_cols, indexing="ij")
    )
    frequencies = theta ** -(np.arange(head_size // 4) * 4 / head_size)
    angles = 2 * np.pi * np.concatenate([row * frequencies, col * frequencies], axis=1)
    angles = np.concatenate([angles, angles], axis=1)
    return np.cos(angles).astype("float32"), np.sin(angles).astype("float32")


def rotate_patches(x, cos, sin):
    """Rotates the patch tokens of queries or keys; the prefix tokens stay as they are.

    Args:
        x: `(B, N, heads, d)`, the prefix tokens first, then the patches.
        cos: `(patches, d)` from `rope_tables`.
        sin: `(patches, d)` from `rope_tables`.

    Returns:
        `x` with each patch's channels rotated: `x * cos + rotate_half(x) * sin`,
        where `rotate_half([a, b]) = [-b, a]`.

    Example:
        >>> cos, sin = rope_tables((2, 2), 8, 100.0)
        >>> rotate_patches(np.ones((1, 5, 2, 8), "float32"), cos, sin).shape
        (1, 5, 2, 8)
    """
    num_prefix = x.shape[1] - cos.shape[0]
    prefix, patches = x[:, :num_prefix], x[:, num_prefix:]
    cos = ops.cast(cos[:, None, :], x.dtype)
    sin = ops.cast(sin[:, None, :], x.dtype)
    first, second = ops.split(patches, 2, axis=-1)
    rotated = patches * cos + ops.concatenate([-second, first], axis=-1) * sin
    return ops.concatenate([prefix, rotated], axis=1)
