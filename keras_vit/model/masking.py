"""Masked image modelling's pieces: random masking, patches as pixels, the loss.

The masked autoencoder (He et al., 2021) hides a random subset of each
image's patches from the encoder and learns to predict their pixels. These
functions are the parts of that recipe that hold no weights, in `keras.ops`.
"""

from __future__ import annotations

from keras import ops


def kept_patches(num_patches: int, mask_ratio: float) -> int:
    """How many patches of each image the encoder sees.

    Args:
        num_patches: patches per image.
        mask_ratio: the fraction to hide.

    Returns:
        `int(num_patches * (1 - mask_ratio))`, rounded down as MAE does.

    Example:
        >>> kept_patches(196, 0.75)
        49
    """
    return int(num_patches * (1 - mask_ratio))


def random_masking(noise, mask_ratio: float) -> tuple:
    """Which patches each image keeps, from one noise value per patch.

    Each image's patches are shuffled by sorting its noise: those with the
    smallest noise are kept, in that order, and the rest are masked.

    Args:
        noise: `(B, num_patches)` floats, e.g. uniform in [0, 1).
        mask_ratio: the fraction of patches to mask, in (0, 1).

    Returns:
        `(ids_keep, mask, ids_restore)`: `ids_keep` `(B, K)`, the kept
        patches' indices in the grid, in shuffled order; `mask` `(B,
        num_patches)` float32, 1 where a patch is masked, 0 where it is kept;
        `ids_restore` `(B, num_patches)`, the inverse permutation, which puts
        the shuffled sequence (kept patches, then masked ones) back in grid
        order.

    Example:
        >>> ids_keep, mask, ids_restore = random_masking(np.array([[0.3, 0.1, 0.9, 0.5]]), 0.5)
        >>> ops.convert_to_numpy(ids_keep), ops.convert_to_numpy(mask)
        (array([[1, 0]]), array([[0., 0., 1., 1.]], dtype=float32))
    """
    keep = kept_patches(noise.shape[1], mask_ratio)
    ids_shuffle = ops.argsort(noise, axis=1)
    ids_restore = ops.argsort(ids_shuffle, axis=1)
    # A patch is masked when it lands after the kept ones in the shuffled order.
    mask = ops.cast(ids_restore >= keep, "float32")
    return ids_shuffle[:, :keep], mask, ids_restore


def patchify(images, patch_size: tuple[int, int]):
    """Cuts channels-last images into flattened patches, in row-major grid order.

    Args:
        images: `(B, H, W, C)`, each side a multiple of the patch's.
        patch_size: `(height, width)` of a patch.

    Returns:
        `(B, rows * cols, ph * pw * C)`; each patch's pixels row by row, each
        pixel's channels last: the layout of MAE's (and transformers')
        `patchify`, so that predictions compare directly.

    Example:
        >>> patchify(np.zeros((2, 32, 32, 3)), (8, 8)).shape
        (2, 16, 192)
    """
    _, height, width, channels = images.shape
    ph, pw = patch_size
    rows, cols = height // ph, width // pw
    patches = ops.reshape(images, (-1, rows, ph, cols, pw, channels))
    patches = ops.transpose(patches, (0, 1, 3, 2, 4, 5))
    return ops.reshape(patches, (-1, rows * cols, ph * pw * channels))


def unpatchify(patches, patch_size: tuple[int, int], grid_size: tuple[int, int]):
    """Puts flattened patches back together into channels-last images: `patchify`'s inverse.

    Args:
        patches: `(B, rows * cols, ph * pw * C)`, in `patchify`'s layout.
        patch_size: `(height, width)` of a patch.
        grid_size: `(rows, cols)` of the patch grid.

    Returns:
        `(B, rows * ph, cols * pw, C)` images.

    Example:
        >>> unpatchify(np.zeros((2, 16, 192)), (8, 8), (4, 4)).shape
        (2, 32, 32, 3)
    """
    ph, pw = patch_size
    rows, cols = grid_size
    channels = patches.shape[-1] // (ph * pw)
    if patches.shape[1] != rows * cols or channels * ph * pw != patches.shape[-1]:
        raise ValueError(
            f"patches of shape {tuple(patches.shape)} are not a {rows}x{cols} grid of "
            f"{ph}x{pw} patches (expected (batch, {rows * cols}, {ph}*{pw}*channels)); give "
            "the patch and grid sizes they were cut with."
        )
    images = ops.reshape(patches, (-1, rows, cols, ph, pw, channels))
    images = ops.transpose(images, (0, 1, 3, 2, 4, 5))
    return ops.reshape(images, (-1, rows * ph, cols * pw, channels))


def _patch_statistics(patches, epsilon: float):
    """Each patch's mean and `sqrt(unbiased variance + epsilon)`, keeping the last axis."""
    patches = ops.convert_to_tensor(patches)
    size = patches.shape[-1]
    mean = ops.mean(patches, axis=-1, keepdims=True)
    variance = ops.sum(ops.square(patches - mean), axis=-1, keepdims=True) / (size - 1)
    return mean, ops.sqrt(variance + epsilon)


def normalize_patches(patches, epsilon: float = 1e-6):
    """Each patch's pixels standardised by their own mean and variance (MAE's
    `norm_pix_loss` targets).

    The variance is the unbiased one, `sum((x - mean)^2) / (n - 1)`, as MAE's
    PyTorch code computes it (`Tensor.var`).

    Args:
        patches: `(B, N, P)` pixels per patch.
        epsilon: added to the variance.

    Returns:
        `(patches - mean) / sqrt(var + epsilon)`, per patch.

    Example:
        >>> ops.convert_to_numpy(normalize_patches(np.array([[[0.0, 2.0]]], "float32")))
        array([[[-0.7071066,  0.7071066]]], dtype=float32)
    """
    mean, scale = _patch_statistics(patches, epsilon)
    return (ops.convert_to_tensor(patches) - mean) / scale


def denormalize_patches(normalized, patches, epsilon: float = 1e-6):
    """Standardised patch pixels (`norm_pix_loss` predictions) back in pixel units, each
    with the mean and variance of the matching patch of `patches`, as MAE's
    visualisation does.

    Args:
        normalized: `(B, N, P)` standardised pixels, e.g. a model's predictions.
        patches: `(B, N, P)` the original pixels whose statistics to restore.
        epsilon: added to the variance, as in `normalize_patches`.

    Returns:
        `normalized * sqrt(var + epsilon) + mean`, per patch: the inverse of
        `normalize_patches(patches)`.

    Example:
        >>> patches = np.array([[[0.0, 2.0]]], "float32")
        >>> ops.convert_to_numpy(denormalize_patches(normalize_patches(patches), patches))
        array([[[0., 2.]]], dtype=float32)
    """
    mean, scale = _patch_statistics(patches, epsilon)
    return ops.convert_to_tensor(normalized) * scale + mean


def masked_patch_loss(predictions, targets, mask):
    """The mean squared error over the masked patches only.

    Args:
        predictions: `(B, N, P)` predicted pixels per patch.
        targets: `(B, N, P)` target pixels per patch.
        mask: `(B, N)`, 1 for the patches that count, 0 for the others.

    Returns:
        A scalar: each patch's mean squared error, averaged over the masked
        patches of the whole batch.

    Example:
        >>> mask = np.array([[1.0, 0.0]])  # only the first patch counts
        >>> float(masked_patch_loss(np.ones((1, 2, 3)), np.zeros((1, 2, 3)), mask))
        1.0
    """
    mask = ops.cast(mask, "float32")
    per_patch = ops.mean(ops.square(ops.cast(predictions, "float32") - targets), axis=-1)
    return ops.sum(per_patch * mask) / ops.sum(mask)
