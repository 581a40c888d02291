"""A LayerNormalization whose PyTorch path runs the fused kernel without casts."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_vit")
class LayerNorm(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` over the last axis, with no casts on torch.

    Keras computes a bfloat16 LayerNorm by casting the input, `gamma` and `beta`
    to float32, normalising, and casting the result back: four extra passes over
    memory per call. On torch this layer hands the bfloat16 tensors straight to
    `torch.nn.functional.layer_norm`, whose CPU kernel already accumulates the
    statistics in float32, as transformers' `nn.LayerNorm` does. Under
    `mixed_bfloat16` the float32 `gamma` and `beta` go in as they are. The
    result matches Keras' to bfloat16 rounding; in float32 the two are the same
    kernel. JAX and TensorFlow (where XLA fuses the casts), and inputs in
    another dtype than the layer computes in, take Keras' path.
    Weights and their names are `LayerNormalization`'s.

    Args:
        epsilon: added to the variance.
        **kwargs: other `keras.layers.LayerNormalization` arguments; `axis`
            must stay the last axis.

    Example:
        >>> layer = LayerNorm(epsilon=1e-6)
        >>> layer(np.ones((2, 5, 8), "float32")).shape
        (2, 5, 8)
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(epsilon=epsilon, **kwargs)
        if self.axis not in (-1, [-1]):
            raise ValueError(f"LayerNorm normalises the last axis only, got axis={self.axis}.")

    def call(self, inputs):
        fused = (
            keras.backend.backend() == "torch"
            and self.center
            and self.scale
            and keras.backend.standardize_dtype(inputs.dtype) == self.compute_dtype
        )
        if not fused:
            return super().call(inputs)
        from torch.nn.functional import layer_norm

        gamma, beta = self.gamma.value, self.beta.value
        return layer_norm(inputs, inputs.shape[-1:], gamma, beta, self.epsilon)
