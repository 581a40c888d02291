import numpy as np
import pytest

from keras_vit import resample_position_embeddings
from keras_vit.model.resample import bicubic_matrix


def test_identity_when_sizes_match(rng):
    embeddings = rng.standard_normal((1, 1 + 6 * 4, 8)).astype("float32")
    np.testing.assert_array_equal(
        resample_position_embeddings(embeddings, (6, 4), (6, 4)), embeddings
    )


def test_cls_slot_and_rank_are_kept(rng):
    embeddings = rng.standard_normal((1 + 16, 8)).astype("float32")
    out = resample_position_embeddings(embeddings, 4, (6, 3))
    assert out.shape == (1 + 18, 8) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], embeddings[0])


def test_smooth_grid_is_resampled_smoothly():
    """A smooth function sampled on a 7x7 grid, resampled to 12x9, matches the
    function sampled on the finer grid (positions are pixel centres). Cubic
    convolution with a = -0.75 is second-order accurate, hence the tolerance;
    a transposed or shifted grid would be off by far more."""

    def sample(rows, cols):
        y = (np.arange(rows) + 0.5) / rows
        x = (np.arange(cols) + 0.5) / cols
        yy, xx = np.meshgrid(y, x, indexing="ij")
        return np.stack([np.sin(2 * yy) + xx, np.cos(3 * xx) * yy], -1).reshape(-1, 2)

    out = resample_position_embeddings(sample(7, 7), (7, 7), (12, 9))
    interior = out.reshape(12, 9, 2)[2:-2, 2:-2]
    np.testing.assert_allclose(interior, sample(12, 9).reshape(12, 9, 2)[2:-2, 2:-2], atol=2e-2)


@pytest.mark.parametrize("old, new", [((4, 4), (6, 6)), ((14, 14), (7, 7)), ((3, 5), (7, 2))])
def test_matches_torch_bicubic(rng, old, new):
    """The oracle is PyTorch's bicubic interpolate, which transformers uses."""
    import torch

    embeddings = rng.standard_normal((1, 1 + old[0] * old[1], 8)).astype("float32")
    grid = torch.from_numpy(embeddings[:, 1:]).reshape(1, *old, 8).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=new, mode="bicubic", align_corners=False)
    expected = expected.permute(0, 2, 3, 1).reshape(1, -1, 8).numpy()
    out = resample_position_embeddings(embeddings, old, new)
    np.testing.assert_allclose(out[:, 1:], expected, atol=1e-5)


def test_matrix_rows_sum_to_one():
    np.testing.assert_allclose(bicubic_matrix(7, 12).sum(axis=1), 1.0, atol=1e-12)


def test_bad_shapes():
    with pytest.raises(ValueError, match="fewer than the 4x4 grid"):
        resample_position_embeddings(np.zeros((10, 8)), (4, 4), (2, 2))
    with pytest.raises(ValueError, match=r"must have shape \(tokens, D\)"):
        resample_position_embeddings(np.zeros((2, 17, 8)), (4, 4), (2, 2))
