"""Reading image files for the model: `load_image`."""

from __future__ import annotations

import os

import numpy as np


def load_image(path: str | os.PathLike, max_side: int = 1024) -> np.ndarray:
    """Reads an image file as an RGB uint8 array no larger than `max_side` on either side.

    The image is reduced while it is decoded: JPEG decodes straight at a
    smaller scale; other formats (PNG) are decoded once in their own mode and
    shrunk before anything else sees them. A small file that declares huge pixel
    dimensions so never reaches preprocessing or plotting at its full size.
    Keeping 1024 pixels, over four times the usual 224 input, leaves the
    attention plots sharp while preprocessing resizes to the model's input anyway.
    Sizes PIL only warns about (1-2x `PIL.Image.MAX_IMAGE_PIXELS`) are read so.

    Args:
        path: a PNG, JPEG or any other file PIL reads.
        max_side: the largest height or width kept; the aspect ratio is kept.

    Returns:
        A `(height, width, 3)` uint8 array.

    Raises:
        ValueError: the file is not an image PIL can read, or declares more
            pixels than PIL's decompression-bomb limit.

    Example:
        >>> load_image("cat.png").shape
        (1024, 768, 3)
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft("RGB", (max_side, max_side))
            image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"{path} is refused as a possible decompression bomb ({error}). "
            "Downscale the image first, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it."
        ) from None
    except (UnidentifiedImageError, SyntaxError, OSError) as error:
        raise ValueError(
            f"{path} cannot be read as an image ({error}). Pass a PNG, JPEG or other "
            "file that PIL opens."
        ) from None
