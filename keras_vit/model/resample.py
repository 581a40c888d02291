"""Resampling learned position embeddings to a new patch grid.

The interpolation is bicubic with half-pixel centres (`align_corners=False`),
as transformers' `interpolate_pos_encoding` does it with PyTorch's
`interpolate(mode="bicubic")`: cubic coefficient a = -0.75 by default, or,
with `antialias=True` (DINOv2 with registers), PyTorch's antialiased kernel:
a = -0.5, widened by the scale when shrinking, and normalised. It runs once,
in numpy, so the result is identical on every backend.
"""

from __future__ import annotations

import functools

import numpy as np

_CUBIC_A = -0.75
_ANTIALIAS_CUBIC_A = -0.5


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with coefficient `a`, at distances `x`."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _antialiased_bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """PyTorch's `interpolate(mode="bicubic", antialias=True)` along one axis."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)  # the kernel widens only when shrinking
    matrix = np.zeros((out_size, in_size))
    for row in range(out_size):
        centre = scale * (row + 0.5)
        first = max(int(centre - 2 * stretch + 0.5), 0)
        last = min(int(centre + 2 * stretch + 0.5), in_size)
        taps = np.arange(first, last)
        weights = _cubic((taps - centre + 0.5) / stretch, _ANTIALIAS_CUBIC_A)
        matrix[row, first:last] = weights / weights.sum()
    return matrix


@functools.lru_cache(maxsize=64)
def bicubic_matrix(in_size: int, out_size: int, antialias: bool = False) -> np.ndarray:
    """The `(out_size, in_size)` matrix that resamples one axis bicubically.

    Args:
        in_size: length of the source axis.
        out_size: length of the resampled axis.
        antialias: use PyTorch's antialiased bicubic kernel instead of its plain one.

    Returns:
        A float64 matrix; `matrix @ signal` is the resampled signal. Taps that
        fall outside the source are clamped to its edge (plain kernel) or
        dropped with the weights renormalised (antialiased kernel), as
        PyTorch does.

    Example:
        >>> bicubic_matrix(4, 4).round(6).tolist() == np.eye(4).tolist()
        True
    """
    if antialias:
        return _antialiased_bicubic_matrix(in_size, out_size)
    source = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    base = np.floor(source)
    offsets = source - base
    weights = np.stack(
        [
            _cubic(offsets + 1, _CUBIC_A),
            _cubic(offsets, _CUBIC_A),
            _cubic(1 - offsets, _CUBIC_A),
            _cubic(2 - offsets, _CUBIC_A),
        ],
        axis=-1,
    )
    matrix = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    for tap, offset in enumerate((-1, 0, 1, 2)):
        columns = np.clip(base + offset, 0, in_size - 1).astype(int)
        np.add.at(matrix, (rows, columns), weights[:, tap])
    return matrix


def resample_position_embeddings(
    pos_emb: np.ndarray,
    old_grid: tuple[int, int] | int,
    new_grid: tuple[int, int] | int,
    antialias: bool = False,
) -> np.ndarray:
    """Resamples position embeddings from one patch grid to another.

    Leading prefix tokens (the [CLS] slot) are kept as they are; the patch part
    is reshaped to `old_grid`, resampled bicubically to `new_grid` and
    flattened again in row-major order.

    Args:
        pos_emb: `(tokens, D)` or `(1, tokens, D)` embeddings, where `tokens`
            is the number of prefix tokens plus `rows * cols` of `old_grid`.
        old_grid: the grid the embeddings were learned for, `(rows, cols)` or an int.
        new_grid: the target grid, `(rows, cols)` or an int.
        antialias: use PyTorch's antialiased bicubic kernel (`antialias=True`),
            as DINOv2 with registers does; the plain one otherwise.

    Returns:
        An array of the same rank and dtype with the patch part resampled.

    Example:
        >>> pe = np.random.rand(1, 1 + 14 * 14, 768).astype("float32")
        >>> resample_position_embeddings(pe, (14, 14), (24, 24)).shape
        (1, 577, 768)
    """
    old_rows, old_cols = (old_grid, old_grid) if isinstance(old_grid, int) else old_grid
    new_rows, new_cols = (new_grid, new_grid) if isinstance(new_grid, int) else new_grid
    pos_emb = np.asarray(pos_emb)
    if pos_emb.ndim not in (2, 3) or (pos_emb.ndim == 3 and pos_emb.shape[0] != 1):
        raise ValueError(
            f"pos_emb must have shape (tokens, D) or (1, tokens, D), got {pos_emb.shape}."
        )
    tokens = pos_emb.reshape(-1, pos_emb.shape[-1])
    num_prefix = tokens.shape[0] - old_rows * old_cols
    if num_prefix < 0:
        raise ValueError(
            f"pos_emb has {tokens.shape[0]} tokens, fewer than the {old_rows}x{old_cols} "
            f"grid it is said to hold; check old_grid."
        )
    grid = tokens[num_prefix:].reshape(old_rows, old_cols, -1).astype(np.float64)
    resampled = np.einsum(
        "Rr,rcd,Cc->RCd",
        bicubic_matrix(old_rows, new_rows, antialias),
        grid,
        bicubic_matrix(old_cols, new_cols, antialias),
    )
    out = np.concatenate([tokens[:num_prefix], resampled.reshape(new_rows * new_cols, -1)])
    return out.astype(pos_emb.dtype).reshape((1,) * (pos_emb.ndim - 2) + out.shape)
