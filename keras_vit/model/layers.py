"""Stock Keras layers whose arithmetic comes from the kernel seam.

`Linear`, `LayerNorm` and `PatchProjection` keep the weights, names,
serialization, LoRA and quantization of `Dense`, `LayerNormalization` and
`Conv2D`; only their `call` goes through `keras_vit.kernels`.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
from keras import ops

from keras_vit.kernels import KERNELS


def constructor_config(layer: keras.layers.Layer) -> dict[str, Any]:
    """A layer's constructor arguments, read back from its attributes of the same names.

    Args:
        layer: a layer that keeps each constructor argument as an attribute of
            the argument's name.

    Returns:
        Argument name -> value, for `get_config`.

    Example:
        >>> constructor_config(MultiHeadSelfAttention(32, 2))["num_heads"]
        2
    """
    parameters = inspect.signature(type(layer).__init__).parameters
    return {name: getattr(layer, name) for name in parameters if name not in ("self", "kwargs")}


@keras.saving.register_keras_serializable(package="keras_vit")
class Linear(keras.layers.Dense):
    """`keras.layers.Dense` computed by the backend's dense kernel.

    Args:
        units: output width.
        **kwargs: `keras.layers.Dense` arguments.

    Example:
        >>> layer = Linear(4)
        >>> layer(np.ones((2, 3), "float32")).shape
        (2, 4)
    """

    def call(self, inputs, training=None):
        return self.activation(KERNELS.dense(inputs, self.kernel, self.bias))


@keras.saving.register_keras_serializable(package="keras_vit")
class LayerNorm(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` over the last axis, by the backend's kernel.

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
        outputs = KERNELS.layer_norm(inputs, self.gamma, self.beta, self.epsilon)
        return ops.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchProjection(keras.layers.Conv2D):
    """A channels-last `Conv2D` whose kernel size equals its stride: it embeds patches.

    Args:
        filters: output width (the hidden size).
        patch_size: `(height, width)` of a patch: the kernel size and the stride.
        **kwargs: other `keras.layers.Conv2D` arguments.

    Example:
        >>> layer = PatchProjection(8, (4, 4))
        >>> layer(np.ones((2, 8, 12, 3), "float32")).shape
        (2, 2, 3, 8)
    """

    def __init__(self, filters: int, patch_size: tuple[int, int], **kwargs):
        kwargs.update(kernel_size=patch_size, strides=patch_size)
        super().__init__(filters, padding="valid", data_format="channels_last", **kwargs)

    def get_config(self):
        config = super().get_config()
        config["patch_size"] = config.pop("kernel_size")
        for argument in ("strides", "padding", "data_format"):
            config.pop(argument)
        return config

    def call(self, inputs):
        return self.activation(KERNELS.patch_projection(inputs, self.kernel, self.bias))


@keras.saving.register_keras_serializable(package="keras_vit")
class LayerScale(keras.layers.Layer):
    """Multiplies each channel by a learned scale (CaiT's layer scale, used by DINOv2 and v3).

    Args:
        initial_value: the value every channel's scale starts at.
        **kwargs: standard Keras layer arguments.

    Example:
        >>> layer = LayerScale(0.5)
        >>> layer(np.ones((2, 5, 8), "float32"))[0, 0, 0]
        0.5
    """

    def __init__(self, initial_value: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_value = initial_value

    def build(self, input_shape):
        self.scale = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.initial_value),
            name="scale",
        )

    def call(self, inputs):
        return inputs * ops.cast(self.scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "initial_value": self.initial_value}
