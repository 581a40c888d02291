"""Resampling learned position embeddings to a new patch grid.

The interpolation is bicubic with the cubic coefficient a = -0.75 and
half-pixel centres (`align_corners=False`), the kernel of PyTorch's
`interpolate(mode="bicubic")` that transformers' `interpolate_pos_encoding`
uses. It runs once, in numpy, so the result is identical on every backend.
"""

from __future__ import annotations

import functools

import numpy as np

_CUBIC_A = -0.75


def _cubic_tap_weights(t: np.ndarray) -> np.ndarray:
    """Weights of the 4 taps at offsets -1, 0, 1, 2 for a fractional position t."""
    a = _CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


@functools.lru_cache(maxsize=64)
def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The `(out_size, in_size)` matrix that resamples one axis bicubically.

    Args:
        in_size: length of the source axis.
        out_size: length of the resampled axis.

    Returns:
        A float64 matrix; `matrix @ signal` is the resampled signal. Taps that
        fall outside the source are clamped to its edge, as PyTorch does.

    Example:
        >>> bicubic_matrix(4, 4).round(6).tolist() == np.eye(4).tolist()
        True
    """
    source = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    base = np.floor(source)
    weights = _cubic_tap_weights(source - base)
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
        bicubic_matrix(old_rows, new_rows),
        grid,
        bicubic_matrix(old_cols, new_cols),
    )
    out = np.concatenate([tokens[:num_prefix], resampled.reshape(new_rows * new_cols, -1)])
    return out.astype(pos_emb.dtype).reshape((1,) * (pos_emb.ndim - 2) + out.shape)
