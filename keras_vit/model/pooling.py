"""Pooling a token sequence into one feature vector."""

from __future__ import annotations

import keras
from keras import ops

MODES = ("token", "gap", "token_and_gap")


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenPooling(keras.layers.Layer):
    """Pools `(B, N, D)` tokens to `(B, D)` (`(B, 2D)` for `"token_and_gap"`).

    Args:
        mode: `"token"` takes the [CLS] token (index 0); `"gap"` averages the
            patch tokens (those after the prefix tokens); `"token_and_gap"`
            concatenates the two, as DINOv2's classifier does.
        num_prefix_tokens: tokens before the patches ([CLS], distillation,
            registers).
        **kwargs: standard Keras layer arguments.

    Example:
        >>> TokenPooling("gap")(np.ones((2, 5, 8), "float32")).shape
        (2, 8)
    """

    def __init__(self, mode: str = "token", num_prefix_tokens: int = 1, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Unknown pooling mode {mode!r}; use one of {MODES}.")
        self.mode = mode
        self.num_prefix_tokens = num_prefix_tokens

    def call(self, tokens):
        if self.mode == "token":
            return tokens[:, 0]
        mean = ops.mean(tokens[:, self.num_prefix_tokens :], axis=1)
        if self.mode == "gap":
            return mean
        return ops.concatenate([tokens[:, 0], mean], axis=-1)

    def compute_output_shape(self, input_shape):
        width = input_shape[-1] * (2 if self.mode == "token_and_gap" else 1)
        return (input_shape[0], width)

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "num_prefix_tokens": self.num_prefix_tokens,
        }
