import keras
import numpy as np
import pytest

from keras_vit import ViT, resample_position_embeddings
from tests.conftest import randomize_head, tiny_config, to_numpy


def images(rng, height=32, width=32, batch=2, channels=3):
    return rng.standard_normal((batch, height, width, channels)).astype("float32")


@pytest.mark.parametrize("size", [32, (48, 32), (16, 40)])
def test_output_shapes(rng, size):
    config = tiny_config(image_size=size)
    rows, cols = config.grid_size
    height, width = config.grid_size[0] * 8, config.grid_size[1] * 8
    x = images(rng, height, width)
    assert to_numpy(ViT(tiny_config(image_size=size, classes=5))(x)).shape == (2, 5)
    assert to_numpy(ViT(tiny_config(image_size=size))(x)).shape == (2, 32)
    assert to_numpy(ViT(tiny_config(image_size=size, pooling=None))(x)).shape == (
        2,
        1 + rows * cols,
        32,
    )
    pre_logits = ViT(tiny_config(image_size=size, pre_logits=True, pooler_output_size=24))
    assert to_numpy(pre_logits(x)).shape == (2, 24)


def test_patch_size_pair_and_extra_channels(rng):
    model = ViT(tiny_config(image_size=(32, 48), patch_size=(8, 16), num_channels=5, classes=2))
    assert model.embeddings.grid_size == (4, 3)
    assert to_numpy(model(images(rng, 32, 48, channels=5))).shape == (2, 2)


def test_weight_names_are_stable():
    paths = {weight.path for weight in ViT(tiny_config(classes=3, pre_logits=True)).weights}
    for path in [
        "embeddings/cls_token",
        "embeddings/position_embedding",
        "embeddings/patch_projection/kernel",
        "encoder/layer_1/layernorm_before/gamma",
        "encoder/layer_1/attention/query/kernel",
        "encoder/layer_1/attention/key/bias",
        "encoder/layer_1/attention/value/kernel",
        "encoder/layer_1/attention/output/kernel",
        "encoder/layer_1/layernorm_after/beta",
        "encoder/layer_1/mlp_fc1/kernel",
        "encoder/layer_1/mlp_fc2/bias",
        "layernorm/gamma",
        "pre_logits/kernel",
        "head/kernel",
    ]:
        assert path in paths


def test_head_is_zero_initialised(rng):
    model = ViT(tiny_config(classes=4))
    np.testing.assert_array_equal(to_numpy(model(images(rng))), 0.0)


def test_encode_contents(rng):
    model = ViT(tiny_config(image_size=(48, 32), classes=3, pre_logits=True))
    x = images(rng, 48, 32)
    out = model.encode(x, output_hidden_states=True, output_attentions=True)
    assert set(out) == {"last_hidden_state", "pooler_output", "hidden_states", "attentions"}
    assert to_numpy(out["last_hidden_state"]).shape == (2, 25, 32)
    hidden = [to_numpy(h) for h in out["hidden_states"]]
    assert len(hidden) == 3 and all(h.shape == (2, 25, 32) for h in hidden)
    np.testing.assert_allclose(hidden[0], to_numpy(model.embeddings(x)), atol=1e-6)
    # The last hidden state is taken before the final LayerNorm, as in transformers.
    np.testing.assert_allclose(
        to_numpy(model.layernorm(out["hidden_states"][-1])),
        to_numpy(out["last_hidden_state"]),
        atol=1e-5,
    )
    attentions = [to_numpy(a) for a in out["attentions"]]
    assert len(attentions) == 2 and attentions[0].shape == (2, 2, 25, 25)
    np.testing.assert_allclose(attentions[1].sum(-1), 1.0, atol=1e-5)
    pooled = to_numpy(model.pre_logits(out["last_hidden_state"][:, 0]))
    np.testing.assert_allclose(to_numpy(out["pooler_output"]), pooled, atol=1e-6)
    # The plain encode agrees with the explicit-attention one.
    np.testing.assert_allclose(
        to_numpy(model.encode(x)["last_hidden_state"]),
        to_numpy(out["last_hidden_state"]),
        atol=1e-5,
    )


def test_encode_without_pre_logits_has_no_pooler(rng):
    out = ViT(tiny_config()).encode(images(rng))
    assert set(out) == {"last_hidden_state"}


def test_gap_pooling_averages_patch_tokens(rng):
    model = ViT(tiny_config(pooling="gap"))
    x = images(rng)
    sequence = to_numpy(model.encode(x)["last_hidden_state"])
    np.testing.assert_allclose(to_numpy(model(x)), sequence[:, 1:].mean(1), atol=1e-5)


def test_keras_file_round_trip(rng, tmp_path):
    model = ViT(tiny_config(image_size=(48, 32), classes=3, pre_logits=True, drop_path_rate=0.1))
    model.head.kernel.assign(rng.standard_normal(model.head.kernel.shape))
    x = images(rng, 48, 32)
    path = str(tmp_path / "vit.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, ViT) and restored.config == model.config
    np.testing.assert_array_equal(to_numpy(restored(x)), to_numpy(model(x)))


def test_get_config_from_config(rng):
    model = randomize_head(ViT(tiny_config(position_embedding="sincos", classes=2), name="my_vit"))
    clone = ViT.from_config(model.get_config())
    assert clone.name == "my_vit" and clone.config == model.config
    clone.set_weights(model.get_weights())
    x = images(rng)
    np.testing.assert_allclose(to_numpy(clone(x)), to_numpy(model(x)), atol=1e-6)


def test_load_weights_resamples_position_embeddings(rng, tmp_path):
    small = ViT(tiny_config())
    path = str(tmp_path / "small.weights.h5")
    small.save_weights(path)
    large = ViT(tiny_config(image_size=(48, 64)))
    large.load_weights(path)
    expected = resample_position_embeddings(
        to_numpy(small.embeddings.position_embedding), (4, 4), (6, 8)
    )
    np.testing.assert_allclose(to_numpy(large.embeddings.position_embedding), expected, atol=1e-6)
    np.testing.assert_array_equal(
        to_numpy(large.encoder.blocks[0].attention.query.kernel),
        to_numpy(small.encoder.blocks[0].attention.query.kernel),
    )


def test_include_preprocessing_takes_raw_images_of_any_size(rng):
    model = ViT(tiny_config(classes=3), include_preprocessing=True)
    model.head.kernel.assign(rng.standard_normal(model.head.kernel.shape))
    raw = rng.integers(0, 256, (2, 50, 70, 3)).astype("float32")
    plain = ViT(tiny_config(classes=3))
    plain.set_weights(model.get_weights())
    expected = to_numpy(plain(model.preprocessor.preprocess(raw.astype(np.uint8))))
    np.testing.assert_allclose(to_numpy(model(raw)), expected, atol=1e-4)


def test_fit_and_predict(rng):
    model = ViT(tiny_config(classes=3, hidden_dropout_prob=0.1, drop_path_rate=0.1))
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = images(rng, batch=8), rng.integers(0, 3, 8)
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.predict(x, verbose=0).shape == (8, 3)


def test_training_with_dropout_is_stochastic(rng):
    model = ViT(tiny_config(attention_probs_dropout_prob=0.2, hidden_dropout_prob=0.2))
    x = images(rng)
    inference = to_numpy(model(x, training=False))
    np.testing.assert_allclose(to_numpy(model(x)), inference, atol=1e-6)
    assert not np.allclose(to_numpy(model(x, training=True)), inference, atol=1e-4)


def test_mixed_precision(rng):
    x = images(rng)
    reference = ViT(tiny_config(classes=3))
    reference.head.kernel.assign(rng.standard_normal(reference.head.kernel.shape) * 0.1)
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = ViT(tiny_config(classes=3))
    model.set_weights(reference.get_weights())
    assert model.encoder.blocks[0].attention.query.compute_dtype == "bfloat16"
    assert model.layernorm.variable_dtype == "float32"
    out = model(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(out), to_numpy(reference(x)), atol=5e-2)
    attentions = model.encode(x, output_attentions=True)["attentions"]
    np.testing.assert_allclose(
        to_numpy(keras.ops.cast(attentions[0], "float32")).sum(-1), 1.0, atol=2e-2
    )
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    loss = model.train_on_batch(x, np.array([0, 1]))
    assert np.isfinite(loss)


def test_dtype_argument(rng):
    model = ViT(tiny_config(), dtype="bfloat16")
    assert model.encoder.blocks[0].mlp_fc1.kernel.dtype == "bfloat16"
    assert to_numpy(keras.ops.cast(model(images(rng)), "float32")).shape == (2, 32)


@pytest.mark.parametrize("call", ["__call__", "predict", "encode"])
@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 32, 32, 4), "Images have 4 channels but this ViT expects num_channels=3"),
        ((1, 36, 32, 3), "Image height 36 is not divisible by the patch size 8"),
        ((1, 40, 32, 3), "Images are 40x32 but this model was built for 32x32"),
        ((32, 32, 3), r"batch of channels-last images \(B, H, W, C\)"),
    ],
)
def test_bad_images_get_a_clear_error(rng, call, shape, message):
    model = ViT(tiny_config(classes=2))
    with pytest.raises(ValueError, match=message):
        getattr(model, call)(np.zeros(shape, "float32"))
    # The model still works afterwards (no variables left half-released).
    assert model.predict(images(rng), verbose=0).shape == (2, 2)
