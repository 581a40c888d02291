"""The fast paths give the plain path's numbers: 1e-5 in float32, 2e-2 in bfloat16."""

import warnings

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import ViT, compile_for_inference, native_bfloat16
from keras_vit import attention as attention_module
from keras_vit.activations import get_activation
from keras_vit.inference_graph import InferenceGraph
from keras_vit.layer_norm import LayerNorm
from keras_vit.linear import Linear, backend_value
from keras_vit.patch_projection import PatchProjection
from tests.conftest import gradients, randomize_head, tiny_config, to_numpy

BF16_TOLERANCE = 2e-2


def attend(layer, x, fused: bool, monkeypatch):
    """The layer's inference output with the fused op (`fused`) or the matmul path."""
    monkeypatch.setattr(attention_module, "fused_attention_is_faster", lambda: fused)
    return to_numpy(keras.ops.cast(layer(x), "float32"))


def test_matmul_attention_for_compiler_turns_the_fused_path_off():
    fused_here = keras.backend.backend() == "torch"
    assert attention_module.fused_attention_is_faster() == fused_here
    with attention_module.matmul_attention_for_compiler():
        assert not attention_module.fused_attention_is_faster()
    assert attention_module.fused_attention_is_faster() == fused_here


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


def test_matmul_attention_gradients_equal_the_explicit_softmax(rng):
    """The matmul path stops the gradient at its max shift; the gradients must not change."""
    layer = keras_vit.MultiHeadSelfAttention(24, 3)
    # (B, N, heads, d), scaled so that the max shift is far from zero
    query, key, value = (
        keras.Variable(2 * rng.standard_normal((2, 9, 3, 8)).astype("float32")) for _ in range(3)
    )
    upstream = keras.ops.convert_to_tensor(rng.standard_normal((2, 9, 3, 8)).astype("float32"))

    def loss(path):
        return lambda: keras.ops.sum(path(query, key, value) * upstream)

    explicit = gradients(
        loss(lambda *qkv: layer._explicit_attention(*qkv, training=False)[0]), [query, key, value]
    )
    matmul = gradients(loss(layer._matmul_attention), [query, key, value])
    for got, expected in zip(matmul, explicit, strict=True):
        assert np.abs(expected).max() > 0.1
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_exact_gelu_equals_transformers_in_value_and_gradient():
    """The erf form of GELU: transformers' values, and Keras' own exact GELU's gradient."""
    import torch
    from transformers.activations import ACT2FN

    x = np.linspace(-12, 12, 481).astype("float32")
    expected = ACT2FN["gelu"](torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(to_numpy(get_activation("gelu")(x)), expected, atol=1e-6)
    bf16 = keras.ops.cast(get_activation("gelu")(keras.ops.cast(x, "bfloat16")), "float32")
    np.testing.assert_allclose(to_numpy(bf16), expected, atol=BF16_TOLERANCE, rtol=BF16_TOLERANCE)
    inputs = keras.Variable(x)

    def loss(gelu):
        return lambda: keras.ops.sum(gelu(inputs))

    (got,) = gradients(loss(get_activation("gelu")), [inputs])
    (plain,) = gradients(loss(lambda t: keras.activations.gelu(t, approximate=False)), [inputs])
    np.testing.assert_allclose(got, plain, atol=1e-6)


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
    "layer_norm": (
        lambda policy: LayerNorm(epsilon=1e-3, dtype=policy),
        lambda policy: keras.layers.LayerNormalization(epsilon=1e-3, dtype=policy),
        (2, 5, 6),
    ),
}


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "bfloat16"])
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


def test_layer_norm_takes_the_last_axis_only():
    with pytest.raises(ValueError, match="last axis only"):
        LayerNorm(axis=1)


def test_backend_value_and_reshape_match_keras_ops(rng):
    variable = keras.Variable(rng.standard_normal((3, 4)).astype("float32"))
    tensor = backend_value(variable)
    assert keras.ops.is_tensor(tensor) and not isinstance(tensor, keras.Variable)
    np.testing.assert_array_equal(to_numpy(tensor), to_numpy(variable))
    assert backend_value(tensor) is tensor
    reshaped = attention_module.reshape(tensor, (2, -1, 3))
    np.testing.assert_array_equal(to_numpy(reshaped), to_numpy(variable).reshape(2, 2, 3))


def test_linear_keeps_lora(rng):
    x = rng.standard_normal((2, 6)).astype("float32")
    layer = Linear(4)
    layer.build(x.shape)
    layer.enable_lora(2, b_initializer="ones")
    kernel = to_numpy(layer.kernel)  # the kernel plus the low-rank update
    assert not np.allclose(kernel, to_numpy(layer._kernel))
    np.testing.assert_allclose(to_numpy(layer(x)), x @ kernel + to_numpy(layer.bias), atol=1e-5)


def quiet_copy(model: ViT, precision: str, **kwargs) -> ViT:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compile_for_inference(model, precision, **kwargs)


def scoring_model() -> ViT:
    return randomize_head(ViT(tiny_config(classes=5, classifier_activation=None)))


def tolerance_of(precision: str) -> float:
    return 1e-5 if precision == "float32" else BF16_TOLERANCE


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "mixed_bfloat16"])
def test_compile_for_inference_matches_the_model(rng, precision):
    model = scoring_model()
    images = rng.standard_normal((4, 32, 32, 3)).astype("float32")
    expected = to_numpy(model(images))
    fast = quiet_copy(model, precision)
    assert fast is not model and fast.compiled
    torch = keras.backend.backend() == "torch"
    assert fast.jit_compile == (not torch)
    assert (fast.inference_graph is not None) == torch
    weight_dtype = "bfloat16" if precision == "bfloat16" else "float32"
    assert {w.dtype for w in fast.weights} == {weight_dtype}
    result = fast.predict_on_batch(images)
    assert result.dtype == np.float32
    tolerance = tolerance_of(precision)
    np.testing.assert_allclose(result, expected, atol=tolerance, rtol=tolerance)
    assert {w.dtype for w in model.weights} == {"float32"}  # the original is untouched


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_compiled_copy_equals_the_eager_copy_on_every_batch(rng, precision):
    """XLA on JAX and TensorFlow, the Inductor `InferenceGraph` on torch; short batches padded."""
    model = scoring_model()
    images = rng.standard_normal((5, 32, 32, 3)).astype("float32")
    eager = quiet_copy(model, precision, jit_compile=False)
    fast = quiet_copy(model, precision, jit_compile=True)
    expected = eager.predict_on_batch(images)
    tolerance = tolerance_of(precision)
    np.testing.assert_allclose(
        fast.predict_on_batch(images[:3]), expected[:3], atol=tolerance, rtol=tolerance
    )
    np.testing.assert_allclose(
        fast.predict(images, batch_size=3, verbose=0), expected, atol=tolerance, rtol=tolerance
    )
    if keras.backend.backend() == "torch":
        assert eager.inference_graph is None
        (compiled,) = fast.inference_graph._graphs.values()
        ops_recorded = {str(node.target) for node in compiled._orig_mod.graph.nodes}
        assert not any("scaled_dot_product" in op for op in ops_recorded)  # two matmuls


def test_compiled_copy_follows_new_weights(rng):
    """Loading weights into a compiled copy drops its graphs (torch) or is read by XLA."""
    images = rng.standard_normal((2, 32, 32, 3)).astype("float32")
    fast = quiet_copy(scoring_model(), "bfloat16", jit_compile=True)
    before = fast.predict_on_batch(images)
    other = scoring_model()  # another random encoder
    fast.set_weights(other.get_weights())
    expected = to_numpy(other(images))
    assert np.abs(before - expected).max() > 0.1
    np.testing.assert_allclose(
        fast.predict_on_batch(images), expected, atol=BF16_TOLERANCE, rtol=BF16_TOLERANCE
    )


def test_predict_takes_any_float_batch_as_the_model_does(rng):
    """On torch, predict shares numpy memory and runs under inference_mode: same numbers."""
    model = scoring_model()
    images = rng.standard_normal((3, 32, 32, 3))
    expected = to_numpy(model(images.astype("float32")))
    read_only = images.astype("float32")
    read_only.flags.writeable = False
    for batch in (images.astype("float32"), images, read_only, images[:, ::-1][:, ::-1]):
        np.testing.assert_allclose(model.predict_on_batch(batch), expected, atol=1e-5)
    np.testing.assert_allclose(model.predict(images, batch_size=2, verbose=0), expected, atol=1e-5)
    assert np.isfinite(to_numpy(images)).all()  # the caller's array is untouched


def test_predict_under_jit_compile_matches_the_model(rng):
    """`jit_compile=True` is `torch.compile` on torch, which traces `predict_step`."""
    model = scoring_model()
    images = rng.standard_normal((2, 32, 32, 3)).astype("float32")
    expected = to_numpy(model(images))
    model.compile(jit_compile=True)
    np.testing.assert_allclose(model.predict_on_batch(images), expected, atol=1e-5)


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


def test_inference_graph_needs_a_cpp_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler")
    torch = keras.backend.backend() == "torch"
    if not torch:
        with pytest.raises(ValueError, match="compiles torch graphs.*jit_compile=True"):
            InferenceGraph(ViT(tiny_config()))
        return
    assert quiet_copy(ViT(tiny_config()), "bfloat16").inference_graph is None
    with pytest.raises(RuntimeError, match=r"needs a C\+\+ compiler.*jit_compile=False"):
        InferenceGraph(ViT(tiny_config()))
