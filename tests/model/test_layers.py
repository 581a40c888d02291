import keras
import numpy as np
import pytest

from keras_vit import (
    Encoder,
    EncoderBlock,
    MultiHeadSelfAttention,
    TokenPooling,
    ViTEmbeddings,
    get_activation,
    sincos_position_embeddings,
)
from keras_vit.model.layers import LayerNorm, Linear, PatchProjection
from tests.conftest import to_numpy

BF16_TOLERANCE = 2e-2


def test_embeddings_shape_and_cls_first(rng):
    layer = ViTEmbeddings(16, 8, (6, 4))
    images = rng.random((2, 48, 32, 3)).astype("float32")
    tokens = to_numpy(layer(images))
    assert tokens.shape == (2, 25, 16)
    expected_cls = to_numpy(layer.cls_token[0, 0] + layer.position_embedding[0, 0])
    np.testing.assert_allclose(tokens[:, 0], np.broadcast_to(expected_cls, (2, 16)), atol=1e-6)


def test_patches_are_row_major(rng):
    """Token 1 + r * cols + c must come from the patch at grid row r, column c."""
    layer = ViTEmbeddings(4, 8, (2, 3), position_embedding="sincos")
    images = np.zeros((1, 16, 24, 3), "float32")
    images[0, 8:16, 8:16] = 1.0  # row 1, column 1 -> token 1 + 1 * 3 + 1 = 5
    tokens = to_numpy(layer(images)) - to_numpy(layer(np.zeros_like(images)))
    assert np.abs(tokens).sum(axis=-1).nonzero()[1].tolist() == [5]


def test_sincos_embeddings():
    table = sincos_position_embeddings((3, 5), 8)
    assert table.shape == (15, 8)
    # Column encoding first: for token (row 0, col 2) the first quarter is sin(2 * w).
    frequencies = 1.0 / 10000 ** (np.arange(2) / 2)
    np.testing.assert_allclose(table[2, :2], np.sin(2 * frequencies), atol=1e-6)
    np.testing.assert_allclose(table[5, 4:6], np.sin(1 * frequencies), atol=1e-6)  # row 1, col 0
    layer = ViTEmbeddings(8, 8, (3, 5), position_embedding="sincos")
    layer.build((None, 24, 40, 3))
    assert len(layer.weights) == 3  # cls token, conv kernel and bias: positions are fixed
    np.testing.assert_array_equal(layer.position_embedding[0, 0], 0.0)


def test_attention_fused_and_explicit_paths_agree(rng):
    layer = MultiHeadSelfAttention(32, 4)
    x = rng.standard_normal((2, 17, 32)).astype("float32")
    fused = to_numpy(layer(x))
    explicit, probs = layer(x, return_attention_scores=True)
    np.testing.assert_allclose(fused, to_numpy(explicit), atol=1e-5)
    probs = to_numpy(probs)
    assert probs.shape == (2, 4, 17, 17)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_attention_probabilities_are_the_softmax(rng):
    layer = MultiHeadSelfAttention(8, 2, qkv_bias=False)
    x = rng.standard_normal((1, 5, 8)).astype("float32")
    _, probs = layer(x, return_attention_scores=True)
    q = (x @ to_numpy(layer.query.kernel)).reshape(5, 2, 4).transpose(1, 0, 2)
    k = (x @ to_numpy(layer.key.kernel)).reshape(5, 2, 4).transpose(1, 0, 2)
    logits = q @ k.transpose(0, 2, 1) / 2.0
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(to_numpy(probs)[0], expected, atol=1e-5)


def test_attention_dropout_only_in_training(rng):
    layer = MultiHeadSelfAttention(32, 2, dropout_rate=0.5)
    x = rng.standard_normal((2, 9, 32)).astype("float32")
    inference = to_numpy(layer(x, training=False))
    np.testing.assert_allclose(inference, to_numpy(layer(x)), atol=1e-6)
    assert not np.allclose(to_numpy(layer(x, training=True)), inference, atol=1e-4)


def test_block_residual_structure(rng):
    block = EncoderBlock(16, 2, 32)
    x = rng.standard_normal((1, 5, 16)).astype("float32")
    block.build(x.shape)
    for layer in (block.attention.output_dense, block.mlp_fc2):
        layer.kernel.assign(np.zeros(layer.kernel.shape))
        layer.bias.assign(np.zeros(layer.bias.shape))
    np.testing.assert_allclose(to_numpy(block(x)), x, atol=1e-6)  # both branches are zero


def test_drop_path_rates_grow_linearly():
    encoder = Encoder(5, {"hidden_size": 8, "num_heads": 2, "intermediate_size": 16}, 0.4)
    rates = [block.drop_path.rate for block in encoder.blocks]
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.2, 0.3, 0.4])


def test_drop_path_drops_whole_samples(rng):
    block = EncoderBlock(16, 2, 32, drop_path_rate=0.5)
    x = rng.standard_normal((64, 5, 16)).astype("float32")
    out = to_numpy(block.attention(block.layernorm_before(x)))
    branch = to_numpy(block.residual_branch(out, None, training=True))
    kept = np.abs(branch).reshape(64, -1).max(axis=1) > 0
    assert 0 < kept.sum() < 64
    np.testing.assert_allclose(branch[kept], out[kept] / 0.5, rtol=1e-5, atol=1e-6)


def test_encoder_outputs(rng):
    encoder = Encoder(3, {"hidden_size": 8, "num_heads": 2, "intermediate_size": 16})
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    plain = to_numpy(encoder(x))
    full = encoder(x, output_hidden_states=True, output_attentions=True)
    assert len(full["hidden_states"]) == 4 and len(full["attentions"]) == 3
    np.testing.assert_allclose(to_numpy(full["hidden_states"][0]), x)
    np.testing.assert_allclose(to_numpy(full["hidden_states"][-1]), plain, atol=1e-5)
    np.testing.assert_allclose(to_numpy(full["last_hidden_state"]), plain, atol=1e-5)


def test_token_pooling(rng):
    tokens = rng.standard_normal((2, 5, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(TokenPooling("token")(tokens)), tokens[:, 0])
    np.testing.assert_allclose(
        to_numpy(TokenPooling("gap")(tokens)), tokens[:, 1:].mean(1), atol=1e-6
    )
    with pytest.raises(ValueError, match="Unknown pooling mode 'max'"):
        TokenPooling("max")


def test_activations_by_transformers_name():
    x = np.array([-1.0, 0.5, 2.0], "float32")
    exact = 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))
    np.testing.assert_allclose(to_numpy(get_activation("gelu")(x)), exact, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(get_activation("quick_gelu")(x)), x / (1 + np.exp(-1.702 * x)), atol=1e-6
    )
    with pytest.raises(ValueError, match="Unknown activation 'gelu2'"):
        get_activation("gelu2")


@pytest.mark.parametrize(
    "layer",
    [
        ViTEmbeddings(16, (8, 4), (2, 3), position_embedding="sincos", dropout_rate=0.1),
        MultiHeadSelfAttention(16, 4, qkv_bias=False, dropout_rate=0.1),
        EncoderBlock(16, 2, 32, hidden_act="quick_gelu", drop_path_rate=0.2),
        Encoder(2, {"hidden_size": 16, "num_heads": 2, "intermediate_size": 32}, 0.1),
        TokenPooling("gap"),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)


# Each kernel-backed layer, the Keras layer it must equal, and an input shape. The patch input
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
def test_kernel_backed_layer_equals_its_keras_layer(rng, policy, layers):
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


def test_linear_keeps_lora(rng):
    x = rng.standard_normal((2, 6)).astype("float32")
    layer = Linear(4)
    layer.build(x.shape)
    layer.enable_lora(2, b_initializer="ones")
    kernel = to_numpy(layer.kernel)  # the kernel plus the low-rank update
    assert not np.allclose(kernel, to_numpy(layer._kernel))
    np.testing.assert_allclose(to_numpy(layer(x)), x @ kernel + to_numpy(layer.bias), atol=1e-5)
