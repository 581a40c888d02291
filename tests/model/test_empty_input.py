"""Zero images: predict answers without entering Keras' loop, fit and evaluate refuse,
and the model stays usable afterwards on every backend."""

import numpy as np
import pytest

from keras_vit import ViT
from tests.conftest import randomize_head, tiny_config, to_numpy


def images(count: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((count, 32, 32, 3)).astype("float32")


@pytest.mark.parametrize("pooling", ["token", None])
def test_predict_on_no_images_returns_an_empty_batch(pooling, tmp_path):
    classes = 3 if pooling else None
    model = ViT(tiny_config(classes=classes, pooling=pooling))
    if classes:
        randomize_head(model)
    expected = to_numpy(model(images(2)))
    empty = model.predict(images(0), verbose=0)
    assert isinstance(empty, np.ndarray)
    assert empty.shape == (0, *expected.shape[1:]) and empty.dtype == expected.dtype
    np.testing.assert_allclose(model.predict(images(2), verbose=0), expected, atol=1e-5)
    model.save_weights(str(tmp_path / "still.weights.h5"))


@pytest.mark.parametrize("method", ["fit", "evaluate"])
def test_fit_and_evaluate_refuse_no_images(method, tmp_path):
    model = randomize_head(ViT(tiny_config(classes=3)))
    model.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=rf"{method}\(\) got 0 images"):
        getattr(model, method)(images(0), np.zeros((0,), "int32"), verbose=0)
    model.fit(images(2), np.array([0, 1]), epochs=1, verbose=0)
    model.save_weights(str(tmp_path / "still.weights.h5"))
