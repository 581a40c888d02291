"""Looking inside a ViT: attention rollout, [CLS] attention, position-embedding
similarity and mean attention distance.

Everything runs the model once through `ViT.encode(..., output_attentions=True)`
on any backend and then works in numpy, so the results are numpy arrays. The
pure-numpy cores (`fuse_heads`, `rollout_matrices`, `attention_distance`) take
attention arrays directly, for attentions you already have.

Every family is covered: the prefix tokens ([CLS], DeiT's distillation token,
the registers of DINOv2 with registers and DINOv3; `config.num_prefix_tokens`
of them) come first and are not patches, so the maps keep only the tokens
after them; rollout and [CLS] attention read the [CLS] row.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

HEAD_FUSIONS = {"mean": np.mean, "max": np.max, "min": np.min}


def _attentions(model, images) -> list[np.ndarray]:
    """Every layer's attention probabilities `(B, heads, N, N)`, as float64 numpy."""
    attentions = model.encode(images, output_attentions=True)["attentions"]
    return [np.asarray(keras.ops.convert_to_numpy(a), dtype=np.float64) for a in attentions]


def fuse_heads(attention, head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
    """Fuses one layer's heads into one attention matrix, dropping its weakest weights.

    Args:
        attention: `(B, heads, N, N)` attention probabilities, [CLS] first.
        head_fusion: `"mean"`, `"max"` or `"min"` over the heads.
        discard_ratio: the fraction of each image's `N * N` fused weights,
            the lowest ones, set to zero. The [CLS] token's weight on itself
            (entry `[0, 0]`) is never discarded, so a discarded image keeps
            `floor(discard_ratio * N * N)` zeros at most.

    Returns:
        A float64 array `(B, N, N)`.

    Example:
        >>> fuse_heads(np.full((1, 2, 3, 3), 1 / 3), "max").shape
        (1, 3, 3)
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"Unknown head_fusion {head_fusion!r}. Use one of {list(HEAD_FUSIONS)}.")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}.")
    fused = HEAD_FUSIONS[head_fusion](np.asarray(attention, dtype=np.float64), axis=1)
    batch, tokens, _ = fused.shape
    flat = fused.reshape(batch, tokens * tokens)
    count = int(discard_ratio * tokens * tokens)
    if count:
        lowest = np.argsort(flat, axis=1, kind="stable")[:, :count]
        keep_cls = lowest != 0
        rows = np.broadcast_to(np.arange(batch)[:, None], lowest.shape)
        flat[rows[keep_cls], lowest[keep_cls]] = 0.0
    return flat.reshape(batch, tokens, tokens)


def rollout_matrices(
    attentions: Sequence,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    start_layer: int = 0,
) -> np.ndarray:
    """The joint attention of attention rollout (Abnar & Zuidema, 2020) after each layer.

    Each layer's heads are fused (`fuse_heads`), the identity is added for the
    residual connection and every row is renormalised to sum to 1; the joint
    attention after layer `l` is the product of these matrices from
    `start_layer` to `l`.

    Args:
        attentions: one `(B, heads, N, N)` array per layer, [CLS] first.
        head_fusion: `"mean"`, `"max"` or `"min"` over the heads.
        discard_ratio: the fraction of the lowest fused weights set to zero
            in each layer (see `fuse_heads`).
        start_layer: the first layer rolled out.

    Returns:
        A float64 array `(layers - start_layer, B, N, N)`: entry `l` is the
        joint attention through layers `start_layer .. start_layer + l`, and
        each of its rows sums to 1.

    Example:
        >>> uniform = [np.full((1, 1, 5, 5), 0.2)] * 2
        >>> rollout_matrices(uniform)[-1].sum(axis=-1)
        array([[1., 1., 1., 1., 1.]])
    """
    if not 0 <= start_layer < len(attentions):
        raise ValueError(
            f"start_layer must be in [0, {len(attentions)}) for {len(attentions)} layers, "
            f"got {start_layer!r}."
        )
    joint, matrices = None, []
    for attention in attentions[start_layer:]:
        fused = fuse_heads(attention, head_fusion, discard_ratio)
        fused = fused + np.eye(fused.shape[-1])
        fused /= fused.sum(axis=-1, keepdims=True)
        joint = fused if joint is None else fused @ joint
        matrices.append(joint)
    return np.stack(matrices)


def attention_rollout(
    model,
    images,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    start_layer: int = 0,
) -> np.ndarray:
    """How much the [CLS] token draws on each patch, through all layers (attention rollout).

    Args:
        model: a `keras_vit.ViT`.
        images: a batch the model takes, `(B, H, W, C)`.
        head_fusion: `"mean"`, `"max"` or `"min"` over the heads.
        discard_ratio: the fraction of the lowest fused weights set to zero
            in each layer; the [CLS] token's weight on itself is kept.
        start_layer: the first layer rolled out.

    Returns:
        A float64 array `(B, rows, cols)` on the patch grid: the [CLS] row of
        the last `rollout_matrices`, without its weights on the prefix tokens
        ([CLS] itself, a distillation token, registers). It is not rescaled;
        plots rescale it for display.

    Example:
        >>> attention_rollout(model, images, discard_ratio=0.9).shape  # 224 / 16
        (8, 14, 14)
    """
    joint = rollout_matrices(_attentions(model, images), head_fusion, discard_ratio, start_layer)
    return joint[-1][:, 0, model.config.num_prefix_tokens :].reshape(-1, *model.config.grid_size)


def cls_attention(model, images, layer: int = -1) -> np.ndarray:
    """The raw attention of the [CLS] token on the patches, per head, in one layer.

    Args:
        model: a `keras_vit.ViT`.
        images: a batch the model takes, `(B, H, W, C)`.
        layer: the layer's index; negative counts from the last.

    Returns:
        A float64 array `(B, heads, rows, cols)`. Each head's map sums to one
        minus that head's attention of [CLS] on the prefix tokens (itself, a
        distillation token, registers).

    Example:
        >>> cls_attention(model, images, layer=0).shape  # ViT-B/16 at 224
        (8, 12, 14, 14)
    """
    attention = _attentions(model, images)[layer]
    patches = attention[:, :, 0, model.config.num_prefix_tokens :]
    return patches.reshape(*attention.shape[:2], *model.config.grid_size)


def position_embedding_similarity(model) -> np.ndarray:
    """Cosine similarity between the position embeddings of every pair of patches.

    The positions of the prefix tokens ([CLS], a distillation token) are left
    out. Models with fixed sin-cos embeddings (`position_embedding="sincos"`)
    are handled too: their embeddings are compared the same way, showing the
    structure they were given rather than one that was learned. RoPE models
    (DINOv3) have no position table: they rotate queries and keys instead.

    Args:
        model: a `keras_vit.ViT`.

    Returns:
        A float64 array `(rows, cols, rows, cols)`: entry `[i, j, k, l]` is the
        similarity of patch `(i, j)` to patch `(k, l)`. It is symmetric and
        1 on the diagonal.

    Raises:
        ValueError: the model has no position-embedding table (RoPE).

    Example:
        >>> position_embedding_similarity(model)[3, 4].shape  # ViT-B/16 at 224
        (14, 14)
    """
    config = model.config
    if config.position_embedding == "rope":
        raise ValueError(
            f"position_embedding_similarity needs a position-embedding table, but this "
            f"{config.model_type} model uses rotary position embedding (position_embedding="
            "'rope'), which rotates queries and keys instead. Use attention_rollout, "
            "cls_attention or mean_attention_distance to look at it."
        )
    grid = config.grid_size
    embeddings = keras.ops.convert_to_numpy(model.embeddings.position_embedding)
    # The patches' positions come last, after those of [CLS] and a distillation token.
    patches = np.asarray(embeddings, dtype=np.float64)[0, -grid[0] * grid[1] :]
    patches = patches / np.linalg.norm(patches, axis=-1, keepdims=True)
    return (patches @ patches.T).reshape(*grid, *grid)


def attention_distance(
    attentions: Sequence,
    grid_size: tuple[int, int],
    patch_size: tuple[int, int],
    num_prefix_tokens: int = 1,
) -> np.ndarray:
    """Mean attention distance in pixels, per layer and head (the ViT paper's Figure 7).

    Only patch tokens count: the rows and columns of the prefix tokens
    ([CLS], a distillation token, registers) are dropped, and each
    query's weights on the patches are renormalised to sum to 1, so the
    result is the distance a patch looks across among patches, whatever it
    gives to the prefix tokens. For each query patch the distance is the attention-weighted
    sum of the Euclidean distances, in pixels, from its centre to every key
    patch's centre (a step of one patch is `patch_size` pixels, for each side
    on its own); it is then averaged over the queries and the images.

    Args:
        attentions: one `(B, heads, N, N)` array per layer, the prefix tokens
            first, then the patches.
        grid_size: the patch grid `(rows, cols)`.
        patch_size: the patch `(height, width)` in pixels.
        num_prefix_tokens: the tokens before the patches, with
            `num_prefix_tokens + rows * cols = N` (`config.num_prefix_tokens`).

    Returns:
        A float64 array `(layers, heads)`.

    Example:
        >>> uniform = [np.full((1, 1, 5, 5), 0.2)]
        >>> attention_distance(uniform, (2, 2), (16, 16)).round(2)
        array([[13.66]])
    """
    rows, cols = np.meshgrid(np.arange(grid_size[0]), np.arange(grid_size[1]), indexing="ij")
    centres = np.stack([rows.ravel() * patch_size[0], cols.ravel() * patch_size[1]], axis=-1)
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    means = []
    for attention in attentions:
        attention = np.asarray(attention, dtype=np.float64)
        if attention.shape[-1] != num_prefix_tokens + len(centres):
            raise ValueError(
                f"Attention over {attention.shape[-1]} tokens does not fit {num_prefix_tokens} "
                f"prefix token(s) and the {len(centres)} patches of a {tuple(grid_size)} grid; "
                "pass the model's config.grid_size and config.num_prefix_tokens."
            )
        patches = attention[:, :, num_prefix_tokens:, num_prefix_tokens:]
        patches = patches / patches.sum(axis=-1, keepdims=True)
        means.append((patches * distances).sum(axis=-1).mean(axis=(0, 2)))
    return np.stack(means)


def mean_attention_distance(model, images) -> np.ndarray:
    """How far each head looks, in input pixels, averaged over patches and images.

    See `attention_distance` for the definition (patch tokens only,
    renormalised per query).

    Args:
        model: a `keras_vit.ViT`.
        images: a batch the model takes, `(B, H, W, C)`.

    Returns:
        A float64 array `(layers, heads)` of distances in pixels of the model's
        input size.

    Example:
        >>> mean_attention_distance(model, images).shape  # ViT-B/16
        (12, 12)
    """
    config = model.config
    return attention_distance(
        _attentions(model, images), config.grid_size, config.patch_pair, config.num_prefix_tokens
    )
