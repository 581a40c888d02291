"""Checks of the images a `ViT` is given, with errors that say how to fix them."""

from __future__ import annotations

import numpy as np


class InputChecks:
    """`ViT`'s input checks: on every call, and before Keras' `fit`, `evaluate` and `predict`.

    Array inputs are checked before Keras' loops start: an error raised inside a
    JAX `predict` / `fit` step would leave the model's variables released. An
    empty array is one such error (Keras' loops find no batch), so `fit` and
    `evaluate` refuse it and `predict` answers it without entering the loop.
    The class expects `config` and `include_preprocessing` attributes.
    """

    def check_images(self, shape: tuple) -> None:
        """Raises a ValueError that names the fix if images of `shape` do not fit.

        Args:
            shape: the shape of an image batch, `(B, H, W, C)`.
        """
        shape = tuple(shape)
        if len(shape) != 4:
            raise ValueError(
                f"ViT takes a batch of channels-last images (B, H, W, C), got shape {shape}. "
                "Add a batch axis, or move channels last (e.g. transpose NCHW with (0, 2, 3, 1))."
            )
        channels = shape[-1]
        if channels is not None and channels != self.config.num_channels:
            raise ValueError(
                f"Images have {channels} channels but this ViT expects "
                f"num_channels={self.config.num_channels}. Convert the images "
                f"(e.g. grayscale to RGB), or build the model with num_channels={channels}."
            )
        if self.include_preprocessing:
            return
        expected = self.config.image_pair
        patch = self.config.patch_pair
        for side, size, step in zip(("height", "width"), shape[1:3], patch, strict=True):
            if size is not None and size % step:
                raise ValueError(
                    f"Image {side} {size} is not divisible by the patch size {step}. Resize or "
                    f"crop to a multiple of {step}, or build with include_preprocessing=True."
                )
        if None not in shape[1:3] and tuple(shape[1:3]) != expected:
            raise ValueError(
                f"Images are {shape[1]}x{shape[2]} but this model was built for "
                f"{expected[0]}x{expected[1]}. Resize them (keras_vit.ImageProcessor), or build "
                f"the model with image_size={tuple(shape[1:3])}: learned position embeddings "
                "are resampled when its weights are loaded with load_weights()."
            )

    def __call__(self, inputs, *args, **kwargs):
        # Before Keras' generic shape check: a message that says how to fix the images.
        if hasattr(inputs, "shape"):
            self.check_images(inputs.shape)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        # fit / predict on JAX reach `call` without `__call__`: check here too.
        self.check_images(inputs.shape)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def check_array_input(self, x, method: str) -> bool:
        """Checks an array given to `fit` / `evaluate` / `predict` before Keras' loop runs.

        Args:
            x: the input; anything without a `shape` (a data set, a generator) passes.
            method: the calling method's name, for the error message.

        Returns:
            Whether `x` is an array of zero images (allowed for `predict` only).

        Example:
            >>> model.check_array_input(np.zeros((0, 224, 224, 3)), "predict")
            True
        """
        if not hasattr(x, "shape"):
            return False
        self.check_images(x.shape)
        if x.shape[0] == 0 and method != "predict":
            raise ValueError(f"{method}() got 0 images; give it at least one.")
        return x.shape[0] == 0

    def fit(self, x=None, *args, **kwargs):
        self.check_array_input(x, "fit")
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self.check_array_input(x, "evaluate")
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        if self.check_array_input(x, "predict"):
            return np.zeros((0, *self.output.shape[1:]), self.output.dtype)
        return super().predict(x, *args, **kwargs)
