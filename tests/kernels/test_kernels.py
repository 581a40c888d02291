"""Every kernel variant gives the reference's numbers: 1e-5 in float32, 2e-2 in bfloat16.

The XLA variants are plain `keras.ops` and run on every backend; the eager
torch variants run under the torch backend.
"""

import dataclasses

import keras
import numpy as np
import pytest

import keras_vit.model.encoder
from keras_vit import ViT, kernels
from keras_vit.kernels import reference, xla
from keras_vit.model.activations import get_activation
from tests.conftest import gradients, tiny_config, to_numpy

TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2}
BACKEND = keras.backend.backend()


def variant_modules():
    modules = {"xla": xla}
    if BACKEND == "torch":
        from keras_vit.kernels import torch_eager

        modules["torch_eager"] = torch_eager
    return modules


def primitive_inputs(rng, name):
    """Arguments of one primitive, as float32 numpy arrays (and plain numbers)."""
    normal = rng.standard_normal
    if name == "attention":
        return [normal((2, 7, 3, 8)) for _ in range(3)]
    if name == "dense":
        return [normal((2, 5, 16)), normal((16, 12)) / 4, normal(12)]
    if name == "layer_norm":
        return [2 * normal((2, 5, 16)) + 1, normal(16), normal(16), 1e-6]
    if name == "patch_projection":
        return [normal((2, 8, 12, 3)), normal((4, 4, 3, 6)) / 4, normal(6)]
    return [3 * normal((4, 50))]  # gelu, fence_gradient


# Every variant of every backend that can run here (torch's only under torch).
CASES = sorted(
    {
        (module, name)
        for module, names in kernels.VARIANTS.values()
        if module in variant_modules()
        for name in names
    }
)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("module_name, name", CASES, ids=[f"{m}.{n}" for m, n in CASES])
def test_variant_equals_the_reference(rng, module_name, name, dtype):
    modules = variant_modules()
    arguments = [
        keras.ops.cast(value.astype("float32"), dtype) if isinstance(value, np.ndarray) else value
        for value in primitive_inputs(rng, name)
    ]
    got = getattr(modules[module_name], name)(*arguments)
    expected = getattr(reference, name)(*arguments)
    got, expected = (to_numpy(keras.ops.cast(x, "float32")) for x in (got, expected))
    assert got.shape == expected.shape and np.abs(expected).max() > 0.1
    tolerance = TOLERANCE[dtype]
    np.testing.assert_allclose(got, expected, atol=tolerance, rtol=tolerance)


def test_each_backend_gets_its_variants_and_the_reference_for_the_rest():
    for backend, (module_name, chosen) in kernels.VARIANTS.items():
        if module_name == "torch_eager" and BACKEND != "torch":
            continue  # importing it needs torch tensors to mean something
        choice = kernels.kernels_for(backend)
        for name in kernels.PRIMITIVES:
            source = getattr(choice, name).__module__.rsplit(".", 1)[-1]
            assert source == (module_name if name in chosen else "reference"), (backend, name)
    assert kernels.kernels_for("numpy") == kernels.kernels_for("no-such-backend")
    assert kernels.kernels_for("numpy").attention is reference.attention
    assert kernels.KERNELS == kernels.kernels_for(BACKEND)


def test_reference_attention_is_the_softmax_and_returns_probabilities(rng):
    query, key, value = (rng.standard_normal((1, 5, 2, 4)).astype("float32") for _ in range(3))
    context, probs = reference.attention_with_probabilities(query, key, value)
    q, k, v = (x[0].transpose(1, 0, 2) for x in (query, key, value))
    logits = q @ k.transpose(0, 2, 1) / 2.0
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(to_numpy(probs)[0], expected, atol=1e-6)
    np.testing.assert_allclose(to_numpy(context)[0], (expected @ v).transpose(1, 0, 2), atol=1e-6)
    dropped, _ = reference.attention_with_probabilities(query, key, value, dropout=lambda p: 0 * p)
    np.testing.assert_array_equal(to_numpy(dropped), 0.0)


def test_xla_attention_gradients_equal_the_reference(rng):
    """The XLA kernel stops the gradient at its max shift; the gradients must not change."""
    # scaled so that the max shift is far from zero
    qkv = [keras.Variable(2 * rng.standard_normal((2, 9, 3, 8)).astype("float32")) for _ in "qkv"]
    upstream = keras.ops.convert_to_tensor(rng.standard_normal((2, 9, 3, 8)).astype("float32"))

    def loss(attention):
        return lambda: keras.ops.sum(attention(*qkv) * upstream)

    expected = gradients(loss(reference.attention), qkv)
    for got, want in zip(gradients(loss(xla.attention), qkv), expected, strict=True):
        assert np.abs(want).max() > 0.1
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("block", [2, 3, 4])
def test_xla_attention_in_query_blocks_equals_the_reference(rng, monkeypatch, block):
    """Past `QUERY_BLOCK` tokens the queries go in blocks: values and gradients stay the same."""
    monkeypatch.setattr(xla, "QUERY_BLOCK", block)
    qkv = [keras.Variable(2 * rng.standard_normal((2, 7, 3, 8)).astype("float32")) for _ in "qkv"]
    upstream = keras.ops.convert_to_tensor(rng.standard_normal((2, 7, 3, 8)).astype("float32"))
    got = to_numpy(xla.attention(*qkv))
    np.testing.assert_allclose(got, to_numpy(reference.attention(*qkv)), atol=1e-5)

    def loss(attention):
        return lambda: keras.ops.sum(attention(*qkv) * upstream)

    expected = gradients(loss(reference.attention), qkv)
    for got, want in zip(gradients(loss(xla.attention), qkv), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_exact_gelu_equals_transformers_in_value_and_gradient():
    import torch
    from transformers.activations import ACT2FN

    x = np.linspace(-12, 12, 481).astype("float32")
    expected = ACT2FN["gelu"](torch.from_numpy(x)).numpy()
    gelu = get_activation("gelu")
    assert gelu is kernels.KERNELS.gelu
    np.testing.assert_allclose(to_numpy(gelu(x)), expected, atol=1e-6)
    inputs = keras.Variable(x)
    (got,) = gradients(lambda: keras.ops.sum(gelu(inputs)), [inputs])
    (plain,) = gradients(lambda: keras.ops.sum(reference.gelu(inputs)), [inputs])
    np.testing.assert_allclose(got, plain, atol=1e-6)


def test_fence_is_the_identity_in_value_and_gradient(rng):
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    upstream = rng.normal(size=(2, 5, 8)).astype("float32")
    weight = keras.Variable(x)
    np.testing.assert_array_equal(to_numpy(xla.fence_gradient(keras.ops.convert_to_tensor(x))), x)
    (grad,) = gradients(lambda: keras.ops.sum(xla.fence_gradient(weight) * upstream), [weight])
    np.testing.assert_array_equal(grad, upstream)


def test_vit_gradients_are_those_of_the_reference_kernels(rng, monkeypatch):
    model = ViT(tiny_config(classes=3, classifier_activation=None))
    head = model.get_layer("head").kernel  # zero-initialised: it would stop every gradient
    head.assign(rng.normal(size=head.shape).astype("float32"))
    images = rng.uniform(size=(2, *model.input_shape[1:])).astype("float32")
    targets = keras.ops.convert_to_tensor(rng.normal(size=(2, 3)).astype("float32"))
    weights = model.trainable_variables

    def loss():
        return keras.ops.sum((model(images, training=True) - targets) ** 2)

    fast = gradients(loss, weights)
    plain_kernels = dataclasses.replace(kernels.KERNELS, fence_gradient=reference.fence_gradient)
    monkeypatch.setattr(keras_vit.model.encoder, "KERNELS", plain_kernels)
    plain = gradients(loss, weights)
    assert len(fast) == len(weights) and all(np.abs(g).max() > 0 for g in fast)
    for got, expected in zip(fast, plain, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
