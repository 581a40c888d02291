"""The fast paths give the plain path's numbers: 1e-5 in float32, 2e-2 in bfloat16."""

import warnings

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import ViT, compile_for_inference, native_bfloat16
from keras_vit import attention as attention_module
from keras_vit.linear import Linear
from keras_vit.patch_projection import PatchProjection
from tests.conftest import tiny_config, to_numpy

BF16_TOLERANCE = 2e-2


def attend(layer, x, fused: bool, monkeypatch):
    """The layer's inference output with the fused op (`fused`) or the matmul path."""
    monkeypatch.setattr(attention_module, "fused_attention_is_faster", lambda: fused)
    return to_numpy(keras.ops.cast(layer(x), "float32"))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_every_attention_path_agrees(rng, monkeypatch, dtype):
    layer = keras_vit.MultiHeadSelfAttention(48, 4)
    x = rng.standard_normal((3, 17, 48)).astype("float32")
    reference = attend(layer, x, fused=False, monkeypatch=monkeypatch)
    explicit, _ = layer(x, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(explicit), reference, atol=1e-5)
    np.testing.assert_allclose(attend(layer, x, True, monkeypatch), reference, atol=1e-5)
    if dtype == "bfloat16":
        fast = keras_vit.MultiHeadSelfAttention(48, 4, dtype="bfloat16")
        fast.build(x.shape)
        for target, source in zip(fast.weights, layer.weights, strict=True):
            target.assign(keras.ops.cast(source, "bfloat16"))
        for fused in (False, True):
            result = attend(fast, x.astype("float32"), fused, monkeypatch)
            np.testing.assert_allclose(result, reference, atol=BF16_TOLERANCE, rtol=BF16_TOLERANCE)


# Each fast layer, the Keras layer it must equal, and an input shape. The patch input
# (10 x 9) does not divide into (4, 2) patches: the remainder is dropped, as by Conv2D.
FAST_LAYERS = {
    "linear": (
        lambda policy: Linear(4, dtype=policy),
        lambda policy: keras.layers.Dense(4, dtype=policy),
        (2, 5, 6),
    ),
    "patch_projection": (
        lambda policy: PatchProjection(4, (4, 2), dtype=policy),
        lambda policy: keras.layers.Conv2D(4, (4, 2), strides=(4, 2), dtype=policy),
        (2, 10, 9, 3),
    ),
}


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("layers", FAST_LAYERS.values(), ids=FAST_LAYERS)
def test_fast_layer_equals_its_keras_layer(rng, policy, layers):
    make_fast, make_keras, shape = layers
    x = rng.standard_normal(shape).astype("float32")
    fast, reference = make_fast(policy), make_keras(policy)
    fast.build(x.shape)
    reference.build(x.shape)
    reference.set_weights(
        [rng.standard_normal(w.shape).astype("float32") for w in reference.weights]
    )
    fast.set_weights(reference.get_weights())
    tolerance = 1e-5 if policy == "float32" else BF16_TOLERANCE
    expected = to_numpy(keras.ops.cast(reference(x), "float32"))
    np.testing.assert_allclose(
        to_numpy(keras.ops.cast(fast(x), "float32")), expected, atol=tolerance, rtol=tolerance
    )
    assert [w.path for w in fast.weights] == [
        w.path.replace(reference.name, fast.name) for w in reference.weights
    ]
    assert type(fast).from_config(fast.get_config()).get_config() == fast.get_config()


def test_linear_keeps_lora(rng):
    x = rng.standard_normal((2, 6)).astype("float32")
    layer = Linear(4)
    layer.build(x.shape)
    layer.enable_lora(2, b_initializer="ones")
    kernel = to_numpy(layer.kernel)  # the kernel plus the low-rank update
    assert not np.allclose(kernel, to_numpy(layer._kernel))
    np.testing.assert_allclose(to_numpy(layer(x)), x @ kernel + to_numpy(layer.bias), atol=1e-5)


def quiet_copy(model: ViT, precision: str) -> ViT:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compile_for_inference(model, precision)


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "mixed_bfloat16"])
def test_compile_for_inference_matches_the_model(rng, precision):
    model = ViT(tiny_config(classes=5, classifier_activation=None))
    images = rng.standard_normal((4, 32, 32, 3)).astype("float32")
    expected = to_numpy(model(images))
    fast = quiet_copy(model, precision)
    assert fast is not model and fast.compiled
    assert fast.jit_compile == (keras.backend.backend() != "torch")
    weight_dtype = "bfloat16" if precision == "bfloat16" else "float32"
    assert {w.dtype for w in fast.weights} == {weight_dtype}
    result = fast.predict_on_batch(images)
    assert result.dtype == np.float32
    tolerance = 1e-5 if precision == "float32" else BF16_TOLERANCE
    np.testing.assert_allclose(result, expected, atol=tolerance, rtol=tolerance)
    assert {w.dtype for w in model.weights} == {"float32"}  # the original is untouched


def test_compile_for_inference_warns_where_bfloat16_is_emulated():
    model = ViT(tiny_config())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_for_inference(model, "bfloat16")
        compile_for_inference(model, "float32")
    emulated = [w for w in caught if "emulates bfloat16" in str(w.message)]
    assert len(emulated) == (0 if native_bfloat16() else 1)
    if keras.backend.backend() != "torch":
        assert native_bfloat16()


def test_compile_for_inference_rejects_bad_input():
    with pytest.raises(ValueError, match="precision='float16' is not supported"):
        compile_for_inference(ViT(tiny_config()), "float16")
    with pytest.raises(TypeError, match="takes a keras_vit.ViT"):
        compile_for_inference(keras.Sequential([keras.layers.Dense(2)]), "float32")
