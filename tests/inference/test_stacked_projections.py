"""q, k and v as one matmul (`StackedProjections`): the same numbers, kept in step, copy only."""

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import ViT, compile_for_inference
from keras_vit.model.attention import MultiHeadSelfAttention
from tests.conftest import gradients, tiny_config, to_numpy

ON_TORCH = keras.backend.backend() == "torch"
torch_only = pytest.mark.skipif(not ON_TORCH, reason="stacked q/k/v is the torch copy's path")


def attention_layer(rng, dtype="float32", **kwargs):
    layer = keras_vit.MultiHeadSelfAttention(24, 3, dtype=dtype, **kwargs)
    layer.build((None, 7, 24))
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") for w in layer.weights])
    return layer


def stacked(layer):
    from keras_vit.inference.stacked_projections import StackedProjections

    return StackedProjections(layer)


def test_only_the_torch_copy_stacks_and_the_model_never_does():
    model = ViT(tiny_config())
    fast = compile_for_inference(model)
    for block in model.encoder.blocks:
        assert "project_qkv" not in vars(block.attention)
    for block in fast.encoder.blocks:
        assert ("project_qkv" in vars(block.attention)) == ON_TORCH


@torch_only
@pytest.mark.parametrize(
    "biases", [{}, {"key_bias": False}, {"qkv_bias": False}], ids=["qkv", "no_key", "none"]
)
def test_stacked_projections_give_the_same_numbers_and_follow_weight_changes(rng, biases):
    """With every bias, without the key's (DINOv3), and without any: missing biases are zeros."""
    import torch

    layer = attention_layer(rng, **biases)
    x = keras.ops.convert_to_tensor(rng.standard_normal((2, 7, 24)).astype("float32"))
    projections = stacked(layer)
    assert projections.applies()

    def compare():
        with torch.no_grad():
            got = projections(x)
        expected = MultiHeadSelfAttention.project_qkv(layer, x)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-5)

    compare()
    layer.key.kernel.assign(rng.standard_normal((24, 24)).astype("float32"))
    if layer.value.bias is not None:
        layer.value.bias.assign(np.ones(24, "float32"))
    compare()


@torch_only
def test_stacking_applies_only_where_it_gives_the_same_numbers(rng):
    layer = attention_layer(rng)
    assert stacked(layer).applies()
    layer.key.enable_lora(2)
    assert not stacked(layer).applies()
    assert not stacked(attention_layer(rng, "mixed_bfloat16")).applies()
    assert stacked(attention_layer(rng, key_bias=False)).applies()


def test_a_compiled_copy_still_gives_input_gradients_after_predict(rng):
    """A stacked copy built inside predict's inference mode must serve a gradient call."""
    model = compile_for_inference(ViT(tiny_config()))  # pooled features: no zero head
    images = rng.standard_normal((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict_on_batch(images), to_numpy(model(images)), atol=1e-5)
    pixels = keras.Variable(images)
    (grad,) = gradients(lambda: keras.ops.sum(model(pixels, training=False) ** 2), [pixels])
    assert np.abs(grad).max() > 0
