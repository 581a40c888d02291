"""`ImageProcessor`: transformers' `ViTImageProcessor`, as a Keras layer and in numpy."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_vit.model.config import as_pair
from keras_vit.model.layers import constructor_config


@functools.lru_cache(maxsize=64)
def linear_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The `(out_size, in_size)` matrix of antialiased bilinear resampling on one axis.

    A triangle filter, widened by the scale factor when shrinking, with
    half-pixel centres and weights renormalised at the edges: the filter of
    PIL's `Image.resize(..., BILINEAR)` that `ViTImageProcessor` uses.

    Args:
        in_size: source length.
        out_size: target length.

    Returns:
        A float64 matrix whose rows sum to 1.

    Example:
        >>> linear_resize_matrix(4, 2).tolist()
        [[0.375, 0.375, 0.1875, 0.0625], [0.0625, 0.1875, 0.375, 0.375]]
    """
    scale = in_size / out_size
    support = max(scale, 1.0)
    centres = (np.arange(out_size) + 0.5) * scale
    distance = np.abs(np.arange(in_size) + 0.5 - centres[:, None]) / support
    weights = np.maximum(0.0, 1.0 - distance)
    return weights / weights.sum(axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package="keras_vit")
class ImageProcessor(keras.layers.Layer):
    """Resize, rescale and normalise images the way `ViTImageProcessor` does.

    Resizing is antialiased bilinear to `image_size`, then pixels are multiplied
    by `rescale_factor` (1/255) and normalised with `image_mean` / `image_std`
    (0.5 each, so values land in [-1, 1]). Images are channels-last.

    Use it as a Keras layer (`include_preprocessing=True` bakes it into a model
    that then takes raw 0..255 images of any size), or call `preprocess` for a
    numpy path in data loaders. Computation is always float32.

    Args:
        image_size: target `(height, width)` or int; `None` skips resizing.
        image_mean: per-channel mean subtracted after rescaling.
        image_std: per-channel standard deviation divided by after rescaling.
        rescale_factor: multiplier applied to raw pixel values.
        **kwargs: standard Keras layer arguments.

    Example:
        >>> processor = ImageProcessor(224)
        >>> batch = processor.preprocess([np.zeros((300, 400, 3), "uint8")])
        >>> batch.shape, float(batch.min())
        ((1, 224, 224, 3), -1.0)
    """

    def __init__(
        self,
        image_size: int | tuple[int, int] | None = 224,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        rescale_factor: float = 1 / 255,
        **kwargs,
    ):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.image_size = None if image_size is None else as_pair(image_size, "image_size")
        if len(image_mean) != len(image_std):
            raise ValueError(
                f"image_mean has {len(image_mean)} values but image_std has {len(image_std)}; "
                "give one of each per channel."
            )
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.rescale_factor = float(rescale_factor)
        self.num_channels = len(self.image_mean)

    def _channel_error(self, found: int) -> ValueError:
        return ValueError(
            f"Images have {found} channels but this processor normalises "
            f"{self.num_channels} (image_mean={self.image_mean}). Convert the images to "
            f"{self.num_channels} channels, or give image_mean / image_std with {found} values."
        )

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"ImageProcessor takes a batch of channels-last images (B, H, W, C), "
                f"got shape {tuple(input_shape)}."
            )
        if input_shape[-1] is not None and input_shape[-1] != self.num_channels:
            raise self._channel_error(input_shape[-1])

    def call(self, images):
        images = ops.cast(images, "float32")
        if self.image_size is not None and tuple(images.shape[1:3]) != self.image_size:
            images = ops.image.resize(
                images, self.image_size, interpolation="bilinear", antialias=True
            )
        mean = ops.convert_to_tensor(self.image_mean, "float32")
        std = ops.convert_to_tensor(self.image_std, "float32")
        return (images * self.rescale_factor - mean) / std

    def compute_output_shape(self, input_shape):
        height, width = self.image_size or input_shape[1:3]
        return (input_shape[0], height, width, input_shape[-1])

    def preprocess(self, images) -> np.ndarray:
        """The numpy path: returns a float32 batch `(B, height, width, C)`.

        The same as `normalize(resize(images))`; data loaders that augment whole
        batches (RandAugment, MixUp, ...) call the two steps apart.

        Args:
            images: one image `(H, W)` / `(H, W, C)`, a batch `(B, H, W, C)`, or a
                list of images of any sizes (numpy arrays or PIL images).
                Grayscale images are repeated to 3 channels when the processor
                expects 3.

        Returns:
            The resized, rescaled and normalised batch.
        """
        return self.normalize(self.resize(images))

    def resize(self, images) -> np.ndarray:
        """The numpy path's first step: a float32 batch of resized, unnormalised pixels.

        Args:
            images: as for `preprocess`.

        Returns:
            The batch `(B, height, width, C)`, in the images' own value range
            (0..255 for uint8 images).

        Example:
            >>> ImageProcessor(4).resize([np.full((8, 6), 255, "uint8")]).shape
            (1, 4, 4, 3)
        """
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        return np.stack([self._resize_one(np.asarray(image)) for image in images])

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """The numpy path's second step: rescales and normalises a batch from `resize`.

        Args:
            pixels: a `(B, height, width, C)` batch of raw pixel values.

        Returns:
            The float32 batch, `(pixels * rescale_factor - image_mean) / image_std`.

        Example:
            >>> float(ImageProcessor(4).normalize(np.full((1, 4, 4, 3), 255.0)).max())
            1.0
        """
        pixels = np.asarray(pixels, np.float64)
        return ((pixels * self.rescale_factor - self.image_mean) / self.image_std).astype(
            np.float32
        )

    def _resize_one(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise ValueError(f"Expected an (H, W) or (H, W, C) image, got shape {image.shape}.")
        if image.shape[-1] == 1 and self.num_channels == 3:
            image = np.repeat(image, 3, axis=-1)
        if image.shape[-1] != self.num_channels:
            raise self._channel_error(image.shape[-1])
        image = image.astype(np.float64)
        if self.image_size is not None and image.shape[:2] != self.image_size:
            rows = linear_resize_matrix(image.shape[0], self.image_size[0])
            cols = linear_resize_matrix(image.shape[1], self.image_size[1])
            image = np.einsum("Hh,hwc,Ww->HWc", rows, image, cols, optimize=True)
        return image.astype(np.float32)

    def get_config(self):
        return {**super().get_config(), **constructor_config(self)}
