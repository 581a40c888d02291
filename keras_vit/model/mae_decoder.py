"""The masked autoencoder's decoder: from the visible patches' features to every patch's pixels."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_vit.model.embeddings import sincos_position_embeddings
from keras_vit.model.encoder import Encoder
from keras_vit.model.initializers import truncated_normal
from keras_vit.model.layers import LayerNorm, Linear, constructor_config


@keras.saving.register_keras_serializable(package="keras_vit")
class MAEDecoder(keras.layers.Layer):
    """MAE's lightweight decoder.

    The encoder's tokens ([CLS], then the kept patches in shuffled order) are
    projected to the decoder's width; a learned mask token stands in for every
    masked patch; the sequence is put back in grid order with `ids_restore`,
    [CLS] first; fixed 2-D sin-cos position embeddings are added; encoder
    blocks, a LayerNorm and a linear layer then predict each patch's pixels.

    Args:
        hidden_size: the decoder's token width.
        num_layers: decoder blocks.
        grid_size: the patch grid `(rows, cols)`.
        patch_pixels: values predicted per patch, `ph * pw * C`.
        block_config: keyword arguments of every `EncoderBlock` (as for
            `Encoder`), with the decoder's width, heads and MLP size.
        layer_norm_eps: the final LayerNorm's epsilon.
        initializer_range: std of the truncated-normal initializers.
        **kwargs: standard Keras layer arguments.

    Example:
        >>> decoder = MAEDecoder(16, 1, (4, 4), 192, {"hidden_size": 16, "num_heads": 2,
        ...                                          "intermediate_size": 32})
        >>> latent = np.zeros((2, 5, 32), "float32")  # [CLS] + 4 kept patches
        >>> ids_restore = np.tile(np.arange(16), (2, 1))
        >>> decoder(latent, ids_restore).shape
        (2, 16, 192)
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int,
        grid_size: tuple[int, int],
        patch_pixels: int,
        block_config: dict,
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.grid_size = tuple(grid_size)
        self.patch_pixels = patch_pixels
        self.block_config = dict(block_config)
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        policy = self.dtype_policy
        initializer = truncated_normal(initializer_range)
        self.decoder_embed = Linear(
            hidden_size, kernel_initializer=initializer, dtype=policy, name="decoder_embed"
        )
        self.decoder_layers = Encoder(
            num_layers, self.block_config, dtype=policy, name="decoder_layers"
        )
        self.decoder_norm = LayerNorm(epsilon=layer_norm_eps, dtype=policy, name="decoder_norm")
        self.decoder_pred = Linear(
            patch_pixels, kernel_initializer=initializer, dtype=policy, name="decoder_pred"
        )
        # Fixed, as in MAE: zeros for [CLS], then the patches' sin-cos rows.
        table = sincos_position_embeddings(self.grid_size, hidden_size)
        self.position_embedding = np.concatenate([np.zeros((1, hidden_size)), table])[None].astype(
            "float32"
        )

    def build(self, input_shape):
        self.decoder_embed.build(input_shape)
        tokens = (*input_shape[:-1], self.hidden_size)
        self.mask_token = self.add_weight(
            shape=(1, 1, self.hidden_size),
            initializer=truncated_normal(self.initializer_range),
            name="mask_token",
        )
        self.decoder_layers.build(tokens)
        self.decoder_norm.build(tokens)
        self.decoder_pred.build(tokens)

    def call(self, latent, ids_restore, training=None):
        """Predicts every patch's pixels.

        Args:
            latent: `(B, 1 + K, D_encoder)`, the encoder's normalised tokens:
                [CLS], then the K kept patches in shuffled order.
            ids_restore: `(B, num_patches)` from `random_masking`.
            training: run dropout.

        Returns:
            `(B, num_patches, patch_pixels)` predictions, in grid order.
        """
        x = self.decoder_embed(latent)
        num_masked = self.num_patches - (x.shape[1] - 1)
        mask_tokens = ops.broadcast_to(
            ops.cast(self.mask_token, x.dtype), (ops.shape(x)[0], num_masked, self.hidden_size)
        )
        shuffled = ops.concatenate([x[:, 1:], mask_tokens], axis=1)
        patches = ops.take_along_axis(shuffled, ops.expand_dims(ids_restore, -1), axis=1)
        x = ops.concatenate([x[:, :1], patches], axis=1)
        x = x + ops.cast(self.position_embedding, x.dtype)
        x = self.decoder_norm(self.decoder_layers(x, training=training))
        return self.decoder_pred(x)[:, 1:]

    def compute_output_shape(self, latent_shape, ids_restore_shape):
        return (latent_shape[0], self.num_patches, self.patch_pixels)

    def get_config(self):
        return {**super().get_config(), **constructor_config(self)}
