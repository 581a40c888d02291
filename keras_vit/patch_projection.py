"""The patch embedding's convolution, run as one matrix product on PyTorch."""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.linear import fuses_bias_on_torch, matmul_plus_bias


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchProjection(keras.layers.Conv2D):
    """A channels-last `Conv2D` whose kernel size equals its stride, for patches.

    Such a convolution is a matrix product of the flattened patches with the
    kernel. On torch it is computed that way: one reshape of the images and one
    `torch.addmm`, instead of oneDNN's convolution on a channels-last input with
    an (H, W, in, out) kernel re-laid out on every call: 1.9 ms against 4.9 ms
    for one 224x224 image at ViT-B width (`benchmarks/NOTES.md`). JAX and TensorFlow, where
    XLA lays out the convolution itself, and quantized layers take `Conv2D`'s own
    path. Weights and their names are `Conv2D`'s.

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
        if not fuses_bias_on_torch(self):
            return super().call(inputs)
        (patch_height, patch_width), channels = self.kernel_size, inputs.shape[-1]
        rows, columns = inputs.shape[1] // patch_height, inputs.shape[2] // patch_width
        patches = inputs[:, : rows * patch_height, : columns * patch_width]
        patches = patches.reshape(-1, rows, patch_height, columns, patch_width, channels)
        patches = patches.permute(0, 1, 3, 2, 4, 5).reshape(
            -1, patch_height * patch_width * channels
        )
        kernel = ops.reshape(self.kernel, (-1, self.filters))
        outputs = matmul_plus_bias(patches, kernel, self.bias)
        return self.activation(outputs.view(-1, rows, columns, self.filters))
