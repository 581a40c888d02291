"""Patch embedding, the [CLS] token and position embeddings."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_vit.model.initializers import truncated_normal
from keras_vit.model.layers import PatchProjection
from keras_vit.model.resample import resample_position_embeddings


def sincos_position_embeddings(grid_size: tuple[int, int], hidden_size: int) -> np.ndarray:
    """Fixed 2-D sine-cosine position embeddings (the MAE / DiT variant).

    The first half of the channels encodes the column, the second half the row;
    each half is `[sin(p * w_k), cos(p * w_k)]` with `w_k = 10000 ** (-k / (D / 4))`.

    Args:
        grid_size: the patch grid `(rows, cols)`.
        hidden_size: the embedding width D, a multiple of 4.

    Returns:
        A float32 array of shape `(rows * cols, hidden_size)`, rows in row-major order.

    Example:
        >>> sincos_position_embeddings((2, 3), 8).shape
        (6, 8)
    """
    rows, cols = grid_size
    quarter = hidden_size // 4
    frequencies = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    row_index, col_index = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")

    def encode(positions):
        angles = positions.reshape(-1, 1) * frequencies
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([encode(col_index), encode(row_index)], axis=1).astype("float32")


def fit_position_embedding(
    stored: np.ndarray,
    stored_grid: tuple[int, int] | None,
    grid: tuple[int, int],
    shape: tuple,
    antialias: bool = False,
) -> np.ndarray:
    """Stored learned position embeddings, resampled when they cover another grid than `grid`.

    This is the one place where position embeddings change grid: loading
    `.weights.h5` files and converting checkpoints both come here.

    Args:
        stored: `(1, tokens, D)` embeddings as saved.
        stored_grid: the patch grid they were learned for, or `None` if unknown.
        grid: the model's patch grid.
        shape: the model's position-embedding shape.
        antialias: resample with PyTorch's antialiased bicubic kernel (see
            `resample_position_embeddings`).

    Returns:
        Embeddings of `shape`.

    Raises:
        ValueError: the stored embeddings do not fit `shape` even after resampling.

    Example:
        >>> fit_position_embedding(np.zeros((1, 5, 8)), (2, 2), (3, 3), (1, 10, 8)).shape
        (1, 10, 8)
    """
    if stored_grid is not None and tuple(stored_grid) != tuple(grid):
        return resample_position_embeddings(stored, stored_grid, grid, antialias)
    if stored.shape != tuple(shape):
        grid_note = f"for a {stored_grid} grid" if stored_grid else "and no stored grid size"
        raise ValueError(
            f"Stored position embeddings have shape {stored.shape} {grid_note}; "
            f"this layer needs {tuple(shape)}."
        )
    return stored


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTEmbeddings(keras.layers.Layer):
    """Turns images into the token sequence `[CLS] + patches`, plus positions.

    A Conv2D with kernel = stride = patch size cuts and projects the patches; a
    learnable [CLS] token (and DeiT's distillation token) is prepended and
    position embeddings are added. Register tokens, which carry no position,
    then go between [CLS] and the patches: the sequence is
    `[CLS], [DIST], registers..., patches...`.

    Learned position embeddings adapt to a new image size on load: weights saved
    for one patch grid and loaded (`model.load_weights`) into a layer with
    another grid are resampled with `resample_position_embeddings`.

    Args:
        hidden_size: token width D.
        patch_size: `(height, width)` of a patch, or one int for square patches.
        grid_size: the patch grid `(rows, cols)` the position embeddings cover.
        position_embedding: `"learned"`, `"sincos"` (fixed, zero for [CLS]) or
            `"rope"` (none here: attention rotates queries and keys).
        dropout_rate: dropout applied to the embedded sequence.
        initializer_range: std of the truncated-normal initializers.
        use_mask_token: add a learned `mask_token` that `call(...,
            bool_masked_pos=...)` puts in place of masked patches.
        distillation_token: add DeiT's learned distillation token after [CLS].
        num_register_tokens: learned register tokens after the other prefix tokens.
        resample_antialias: resample learned position embeddings for another
            grid with the antialiased bicubic kernel (DINOv2 with registers).
        **kwargs: standard Keras layer arguments (`name`, `dtype`, ...).

    Example:
        >>> layer = ViTEmbeddings(32, (8, 8), (4, 4))
        >>> layer(np.zeros((2, 32, 32, 3), "float32")).shape
        (2, 17, 32)
    """

    def __init__(
        self,
        hidden_size: int,
        patch_size: int | tuple[int, int],
        grid_size: tuple[int, int],
        position_embedding: str = "learned",
        dropout_rate: float = 0.0,
        initializer_range: float = 0.02,
        use_mask_token: bool = False,
        distillation_token: bool = False,
        num_register_tokens: int = 0,
        resample_antialias: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.resample_antialias = resample_antialias
        self.use_mask_token = use_mask_token
        self.distillation_token = distillation_token
        self.num_register_tokens = num_register_tokens
        self.hidden_size = hidden_size
        self.patch_size = patch_size
        self.grid_size = tuple(grid_size)
        self.position_embedding_type = position_embedding
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range
        initializer = truncated_normal(initializer_range)
        self.patch_projection = PatchProjection(
            hidden_size,
            self.patch_size,
            kernel_initializer=initializer,
            dtype=self.dtype_policy,
            name="patch_projection",
        )
        self.dropout = keras.layers.Dropout(dropout_rate, dtype=self.dtype_policy)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        # Tokens that have a position: [CLS], the distillation token, the patches.
        self.num_positioned = 1 + int(distillation_token) + self.num_patches
        self.num_tokens = self.num_positioned + num_register_tokens

    def build(self, input_shape):
        self.patch_projection.build(input_shape)
        initializer = truncated_normal(self.initializer_range)

        def table(name, rows, table_initializer=initializer):
            return self.add_weight(
                shape=(1, rows, self.hidden_size), initializer=table_initializer, name=name
            )

        # Creation order is the saved order (`own_weights`): new tables go last.
        self.cls_token = table("cls_token", 1)
        self.mask_token = table("mask_token", 1, "zeros") if self.use_mask_token else None
        self.position_embedding = None
        if self.position_embedding_type == "learned":
            self.position_embedding = table("position_embedding", self.num_positioned)
        elif self.position_embedding_type == "sincos":
            patches = sincos_position_embeddings(self.grid_size, self.hidden_size)
            self.position_embedding = np.concatenate([np.zeros((1, self.hidden_size)), patches])[
                None
            ].astype("float32")
        self.distillation = table("distillation_token", 1) if self.distillation_token else None
        self.registers = (
            table("register_tokens", self.num_register_tokens) if self.num_register_tokens else None
        )

    def call(self, images, bool_masked_pos=None, training=None):
        patches = self.project_patches(images)
        if bool_masked_pos is not None:
            if not self.use_mask_token:
                raise ValueError(
                    "bool_masked_pos needs a mask token: build the model with use_mask_token=True."
                )
            mask = ops.cast(ops.expand_dims(bool_masked_pos, -1), patches.dtype)
            patches = patches * (1 - mask) + ops.cast(self.mask_token, patches.dtype) * mask

        def prefix(token):
            return ops.broadcast_to(
                ops.cast(token, patches.dtype),
                (ops.shape(patches)[0], token.shape[1], self.hidden_size),
            )

        tokens = [prefix(self.cls_token)]
        if self.distillation is not None:
            tokens.append(prefix(self.distillation))
        tokens = ops.concatenate([*tokens, patches], axis=1)
        if self.position_embedding is not None:
            tokens = tokens + ops.cast(self.position_embedding, tokens.dtype)
        if self.registers is not None:
            split = 1 + int(self.distillation_token)
            tokens = ops.concatenate(
                [tokens[:, :split], prefix(self.registers), tokens[:, split:]], axis=1
            )
        return self.dropout(tokens, training=training)

    def project_patches(self, images):
        """The patch tokens `(B, num_patches, D)` in row-major order, without positions."""
        patches = self.patch_projection(images)
        return ops.reshape(patches, (-1, self.num_patches, self.hidden_size))

    def embed_kept_patches(self, images, ids_keep, training=None):
        """[CLS] and a subset of the patches, each with its position: MAE's encoder input.

        Positions are added before the patches are picked, so each kept patch
        keeps the position of its place in the grid.

        Args:
            images: `(B, H, W, C)` images.
            ids_keep: `(B, K)` int indices of the patches to keep, into the
                row-major patch grid, in the order they are to appear.
            training: run dropout.

        Returns:
            `(B, 1 + K, D)` tokens: [CLS], then the kept patches.

        Raises:
            ValueError: the layer has prefix tokens other than [CLS], or RoPE.

        Example:
            >>> layer = ViTEmbeddings(32, (8, 8), (4, 4), position_embedding="sincos")
            >>> images = np.zeros((1, 32, 32, 3), "float32")
            >>> layer(images).shape  # builds the layer: [CLS] + 16 patches
            (1, 17, 32)
            >>> layer.embed_kept_patches(images, np.array([[5, 0, 9, 2]])).shape
            (1, 5, 32)
        """
        if self.distillation is not None or self.registers is not None:
            raise ValueError(
                "embed_kept_patches supports [CLS] as the only prefix token; build the "
                "embeddings without distillation_token and register tokens."
            )
        if self.position_embedding is None:
            raise ValueError(
                "embed_kept_patches needs position embeddings added to the tokens (learned or "
                "sincos); with RoPE, positions live in attention, which sees only the kept ones."
            )
        patches = self.project_patches(images)
        positions = ops.cast(self.position_embedding, patches.dtype)
        patches = patches + positions[:, 1:]
        kept = ops.take_along_axis(patches, ops.expand_dims(ids_keep, -1), axis=1)
        cls = ops.broadcast_to(
            ops.cast(self.cls_token, patches.dtype) + positions[:, :1],
            (ops.shape(patches)[0], 1, self.hidden_size),
        )
        return self.dropout(ops.concatenate([cls, kept], axis=1), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tokens, self.hidden_size)

    def own_weights(self) -> list:
        """This layer's own weights (not its patch projection's), in the order Keras saves them."""
        learned = self.position_embedding if self.position_embedding_type == "learned" else None
        tables = (self.cls_token, self.mask_token, learned, self.distillation, self.registers)
        return [table for table in tables if table is not None]

    def save_own_variables(self, store):
        super().save_own_variables(store)
        store["grid_size"] = np.array(self.grid_size)

    def load_own_variables(self, store):
        source_grid = tuple(int(v) for v in store["grid_size"]) if "grid_size" in store else None
        for index, variable in enumerate(self.own_weights()):
            value = np.asarray(store[str(index)])
            if variable is self.position_embedding:
                value = fit_position_embedding(
                    value, source_grid, self.grid_size, variable.shape, self.resample_antialias
                )
            variable.assign(value)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            patch_size=self.patch_size,
            grid_size=self.grid_size,
            position_embedding=self.position_embedding_type,
            dropout_rate=self.dropout_rate,
            initializer_range=self.initializer_range,
            use_mask_token=self.use_mask_token,
            distillation_token=self.distillation_token,
            num_register_tokens=self.num_register_tokens,
            resample_antialias=self.resample_antialias,
        )
        return config
