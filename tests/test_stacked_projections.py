"""q, k and v as one matmul (`StackedProjections`): the same numbers, kept in step."""

import keras
import numpy as np

import keras_vit
from keras_vit.stacked_projections import StackedProjections
from tests.conftest import to_numpy

ON_TORCH = keras.backend.backend() == "torch"


def attention_layer(rng, dtype="float32"):
    layer = keras_vit.MultiHeadSelfAttention(24, 3, dtype=dtype)
    layer.build((None, 7, 24))
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") for w in layer.weights])
    return layer


def test_stacked_attention_gives_the_same_numbers(rng):
    layer = attention_layer(rng)
    x = rng.standard_normal((2, 7, 24)).astype("float32")
    expected = to_numpy(layer(x))
    layer.stack_projections()
    assert layer.stacked_projections.applies() == ON_TORCH  # XLA backends keep three
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=1e-5)
    _, probs = layer(x, return_attention_scores=True)
    assert tuple(probs.shape) == (2, 3, 7, 7)


def test_stacked_product_follows_weight_changes(rng):
    layer = attention_layer(rng)
    stacked = StackedProjections([layer.query, layer.key, layer.value])
    x = rng.standard_normal((5, 24)).astype("float32")

    def expected():
        return np.concatenate([to_numpy(p(x)) for p in (layer.query, layer.key, layer.value)], 1)

    if not ON_TORCH:
        assert not stacked.applies()
        return
    rows = keras.ops.convert_to_tensor(x)
    np.testing.assert_allclose(to_numpy(stacked(rows)), expected(), atol=1e-5)
    layer.key.kernel.assign(rng.standard_normal((24, 24)).astype("float32"))
    layer.value.bias.assign(np.ones(24, "float32"))
    np.testing.assert_allclose(to_numpy(stacked(rows)), expected(), atol=1e-5)


def test_stacking_applies_only_where_it_gives_the_same_numbers(rng):
    layer = attention_layer(rng)
    stacked = StackedProjections([layer.query, layer.key, layer.value])
    assert stacked.applies() == ON_TORCH
    layer.key.enable_lora(2)
    assert not stacked.applies()
    mixed = attention_layer(rng, "mixed_bfloat16")
    assert not StackedProjections([mixed.query, mixed.key, mixed.value]).applies()
    no_bias = keras_vit.MultiHeadSelfAttention(24, 3, qkv_bias=False)
    no_bias.build((None, 7, 24))
    assert not StackedProjections([no_bias.query, no_bias.key, no_bias.value]).applies()


def test_a_stacked_model_still_gives_input_gradients_after_predict(rng):
    """The stacked copy built inside predict's inference mode must serve a gradient call."""
    from keras_vit import ViT, compile_for_inference
    from tests.conftest import gradients, tiny_config

    model = compile_for_inference(ViT(tiny_config()))  # pooled features: no zero head
    images = rng.standard_normal((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict_on_batch(images), to_numpy(model(images)), atol=1e-5)
    pixels = keras.Variable(images)
    (grad,) = gradients(lambda: keras.ops.sum(model(pixels, training=False) ** 2), [pixels])
    assert np.abs(grad).max() > 0
