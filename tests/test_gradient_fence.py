"""`fence_gradient`: the identity in value and gradient, on every backend and inside a ViT."""

import keras
import numpy as np

import keras_vit.encoder
from keras_vit import ViT
from keras_vit.gradient_fence import fence_gradient
from tests.conftest import gradients, tiny_config, to_numpy


def test_fence_is_the_identity_in_value_and_gradient(rng):
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    upstream = rng.normal(size=(2, 5, 8)).astype("float32")
    weight = keras.Variable(x)
    np.testing.assert_array_equal(to_numpy(fence_gradient(keras.ops.convert_to_tensor(x))), x)
    (grad,) = gradients(lambda: keras.ops.sum(fence_gradient(weight) * upstream), [weight])
    np.testing.assert_array_equal(grad, upstream)


def test_vit_gradients_are_unchanged_by_the_fences(rng, monkeypatch):
    model = ViT(tiny_config(classes=3, classifier_activation=None))
    head = model.get_layer("head").kernel  # zero-initialised: it would stop every gradient
    head.assign(rng.normal(size=head.shape).astype("float32"))
    images = rng.uniform(size=(2, *model.input_shape[1:])).astype("float32")
    targets = keras.ops.convert_to_tensor(rng.normal(size=(2, 3)).astype("float32"))
    weights = model.trainable_variables

    def loss():
        return keras.ops.sum((model(images, training=True) - targets) ** 2)

    fenced = gradients(loss, weights)
    monkeypatch.setattr(keras_vit.encoder, "fence_gradient", lambda x: x)
    plain = gradients(loss, weights)
    assert len(fenced) == len(weights) and all(np.abs(g).max() > 0 for g in fenced)
    for got, expected in zip(fenced, plain, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
