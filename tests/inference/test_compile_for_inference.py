"""The fast paths give the plain path's numbers: 1e-5 in float32, 2e-2 in bfloat16."""

import warnings

import keras
import numpy as np
import pytest

from keras_vit import ViT, compile_for_inference, native_bfloat16
from keras_vit.inference.torch_graph import InferenceGraph
from tests.conftest import randomize_head, tiny_config, to_numpy

BF16_TOLERANCE = 2e-2


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
    assert (fast.graph is not None) == torch
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
        assert eager.graph is None
        (compiled,) = fast.graph._graphs.values()
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
    assert quiet_copy(ViT(tiny_config()), "bfloat16").graph is None
    with pytest.raises(RuntimeError, match=r"needs a C\+\+ compiler.*jit_compile=False"):
        InferenceGraph(ViT(tiny_config()))


# Every family option: the compiled copy (XLA, or on torch stacked q/k/v and the
# Inductor graph) gives the model's numbers.
FAMILY_OPTIONS = {
    "dinov3_rope_gated_no_key_bias": dict(
        position_embedding="rope",
        num_register_tokens=2,
        key_bias=False,
        layerscale_value=0.5,
        mlp_type="gated",
        hidden_act="silu",
        image_size=(32, 48),
    ),
    "dinov2_swiglu_registers": dict(
        mlp_type="swiglu", layerscale_value=0.5, num_register_tokens=2, pooling="token_and_gap"
    ),
    "deit_distilled": dict(distillation_token=True, distillation_head=True),
    "mae_sincos_gap": dict(position_embedding="sincos", pooling="gap"),
    "no_biases": dict(qkv_bias=False, proj_bias=False, mlp_bias=False),
}


@pytest.mark.parametrize("name", list(FAMILY_OPTIONS))
def test_compiled_copy_matches_the_model_for_every_family_option(rng, name):
    model = ViT(tiny_config(classes=5, classifier_activation=None, **FAMILY_OPTIONS[name]))
    # Every weight random: zero heads, unit layer scales and zero biases would hide mistakes.
    model.set_weights(
        [w + rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()]
    )
    images = rng.standard_normal((3, *model.config.image_pair, 3)).astype("float32")
    expected = to_numpy(model(images))
    assert np.abs(expected).max() > 0.1
    fast = quiet_copy(model, "float32")
    np.testing.assert_allclose(fast.predict_on_batch(images), expected, atol=1e-5, rtol=1e-5)
    if keras.backend.backend() == "torch":  # q, k and v as one product, missing biases as zeros
        assert all(block.attention.project_qkv.applies() for block in fast.encoder.blocks)
