"""Pooling a token sequence into one feature vector."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenPooling(keras.layers.Layer):
    """Pools `(B, N, D)` tokens to `(B, D)`.

    Args:
        mode: `"token"` takes the [CLS] token (index 0); `"gap"` averages the
            patch tokens (indices 1 and up).
        **kwargs: standard Keras layer arguments.

    Example:
        >>> TokenPooling("gap")(np.ones((2, 5, 8), "float32")).shape
        (2, 8)
    """

    def __init__(self, mode: str = "token", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("token", "gap"):
            raise ValueError(f"Unknown pooling mode {mode!r}; use 'token' or 'gap'.")
        self.mode = mode

    def call(self, tokens):
        if self.mode == "token":
            return tokens[:, 0]
        return ops.mean(tokens[:, 1:], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
