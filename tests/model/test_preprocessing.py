import keras
import numpy as np
import pytest

from keras_vit import ImageProcessor
from keras_vit.model.preprocessing import linear_resize_matrix
from tests.conftest import to_numpy


def images_uint8(rng, *shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("size", [(40, 56), (32, 32), (13, 20)])
def test_numpy_path_matches_transformers(rng, size):
    """The oracle is transformers' PIL ViT image processor (resize, rescale, normalise)."""
    from transformers import ViTImageProcessorPil

    reference = ViTImageProcessorPil(size={"height": 32, "width": 32})
    images = [images_uint8(rng, *size, 3) for _ in range(2)]
    expected = reference(images, return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)
    ours = ImageProcessor(32).preprocess(images)
    assert ours.shape == (2, 32, 32, 3) and ours.dtype == np.float32
    # PIL rounds the intermediate of its two resize passes to uint8: allow ~1 level.
    np.testing.assert_allclose(ours, expected, atol=1.5 / 255 / 0.5)
    assert np.abs(ours - expected).mean() < 0.5 / 255 / 0.5


def test_keras_layer_matches_numpy_path(rng):
    processor = ImageProcessor((24, 16))
    batch = images_uint8(rng, 2, 40, 56, 3)
    np.testing.assert_allclose(
        to_numpy(processor(batch.astype("float32"))), processor.preprocess(batch), atol=1e-4
    )


def test_upsampling_layer_matches_numpy_path(rng):
    processor = ImageProcessor(32)
    batch = images_uint8(rng, 2, 8, 8, 3)
    np.testing.assert_allclose(
        to_numpy(processor(batch.astype("float32"))), processor.preprocess(batch), atol=1e-4
    )


def test_rescale_and_normalise_without_resize():
    processor = ImageProcessor(None, image_mean=(0.1, 0.2, 0.3), image_std=(0.5, 0.25, 1.0))
    image = np.full((2, 3, 3), 255, np.uint8)
    expected = (1.0 - np.array([0.1, 0.2, 0.3])) / np.array([0.5, 0.25, 1.0])
    np.testing.assert_allclose(processor.preprocess(image)[0, 0, 0], expected, atol=1e-6)


def test_grayscale_and_mixed_sizes(rng):
    processor = ImageProcessor(16)
    batch = processor.preprocess([images_uint8(rng, 8, 8), images_uint8(rng, 20, 10, 1)])
    assert batch.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(batch[..., 0], batch[..., 2])


def test_resize_matrix_is_antialiased():
    matrix = linear_resize_matrix(8, 2)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert (matrix > 0).sum(axis=1).tolist() == [6, 6]  # a widened triangle, not 2 taps


def test_channel_mismatch(rng):
    processor = ImageProcessor(8)
    with pytest.raises(ValueError, match="Images have 4 channels but this processor normalises 3"):
        processor.preprocess(images_uint8(rng, 8, 8, 4))
    with pytest.raises(ValueError, match="Images have 2 channels"):
        processor(np.zeros((1, 8, 8, 2), "float32"))


def test_config_round_trip():
    processor = ImageProcessor((24, 16), image_mean=(0.4,), image_std=(0.2,), rescale_factor=0.5)
    clone = ImageProcessor.from_config(processor.get_config())
    assert clone.get_config() == processor.get_config()
    assert clone.compute_dtype == "float32"


def test_layer_computes_in_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    out = ImageProcessor(8)(np.full((1, 8, 8, 3), 3, "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(out), 3 / 255 / 0.5 - 1, atol=1e-6)
