"""`MaskedAutoencoder` on its own: masking, the loss, fit, bad input (current backend)."""

import dataclasses

import keras
import numpy as np
import pytest

from keras_vit import MAEConfig, MaskedAutoencoder, ViT, ViTConfig
from keras_vit.model.masking import (
    denormalize_patches,
    masked_patch_loss,
    normalize_patches,
    patchify,
    random_masking,
    unpatchify,
)
from tests.conftest import TINY, to_numpy

MAE_ENCODER = dict(TINY, model_type="vit_mae", position_embedding="sincos")
DECODER = dict(
    decoder_hidden_size=16,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=32,
)
NUM_PATCHES = 16  # 32x32 images, 8x8 patches


def tiny_mae(seed=0, **mae_overrides):
    return MaskedAutoencoder(
        ViTConfig(**MAE_ENCODER), MAEConfig(**{**DECODER, **mae_overrides}), seed=seed
    )


def images(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 32, 32, 3)).astype("float32")


@pytest.mark.parametrize("mask_ratio, kept", [(0.75, 4), (0.5, 8), (0.3, 11)])
def test_the_encoder_sees_the_kept_patches_plus_cls(mask_ratio, kept):
    noise = np.random.default_rng(1).random((3, NUM_PATCHES)).astype("float32")
    ids_keep, mask, ids_restore = random_masking(keras.ops.convert_to_tensor(noise), mask_ratio)
    ids_keep, mask, ids_restore = to_numpy(ids_keep), to_numpy(mask), to_numpy(ids_restore)
    assert ids_keep.shape == (3, kept)
    assert (mask.sum(axis=1) == NUM_PATCHES - kept).all()
    # The kept patches are those with the smallest noise, and the mask is 0 exactly there.
    np.testing.assert_array_equal(ids_keep, np.argsort(noise, axis=1)[:, :kept])
    for row in range(3):
        assert set(np.flatnonzero(mask[row] == 0)) == set(ids_keep[row])
    # ids_restore inverts the shuffle.
    shuffle = np.argsort(noise, axis=1)
    np.testing.assert_array_equal(
        np.take_along_axis(shuffle, ids_restore, axis=1), np.tile(np.arange(NUM_PATCHES), (3, 1))
    )

    mae = tiny_mae(mask_ratio=mask_ratio)
    latent = mae.vit.embeddings.embed_kept_patches(images(3), ids_keep)
    assert tuple(latent.shape) == (3, 1 + kept, 32)


def test_kept_tokens_are_the_full_sequence_tokens_they_came_from():
    mae = tiny_mae()
    x = images()
    ids_keep = np.array([[5, 0, 9, 2], [15, 14, 1, 7]])
    kept = to_numpy(mae.vit.embeddings.embed_kept_patches(x, ids_keep))
    full = to_numpy(mae.vit.embeddings(x))
    np.testing.assert_allclose(kept[:, 0], full[:, 0], atol=1e-6)
    np.testing.assert_allclose(
        kept[:, 1:], np.take_along_axis(full[:, 1:], ids_keep[..., None], axis=1), atol=1e-6
    )


def test_reconstruct_has_transformers_keys_and_shapes():
    out = tiny_mae().reconstruct(images(3))
    assert list(out) == ["loss", "logits", "mask", "ids_restore"]
    assert tuple(out["loss"].shape) == ()
    assert tuple(out["logits"].shape) == (3, NUM_PATCHES, 8 * 8 * 3)
    assert tuple(out["mask"].shape) == tuple(out["ids_restore"].shape) == (3, NUM_PATCHES)
    assert (to_numpy(out["mask"]).sum(axis=1) == 12).all()


def test_the_loss_counts_the_masked_patches_only():
    mae = tiny_mae(norm_pix_loss=False)
    x = images()
    noise = np.random.default_rng(2).random((2, NUM_PATCHES)).astype("float32")
    out = mae.reconstruct(x, noise=noise)
    logits, mask = to_numpy(out["logits"]), to_numpy(out["mask"])
    targets = to_numpy(patchify(x, (8, 8)))
    per_patch = ((logits - targets) ** 2).mean(-1)
    np.testing.assert_allclose(to_numpy(out["loss"]), per_patch[mask == 1].mean(), rtol=1e-5)
    # Changing the pixels of kept patches only does not change the loss.
    kept_pixels = np.where(mask[..., None] == 0, 100.0, 0.0)
    changed = targets + kept_pixels
    np.testing.assert_allclose(
        to_numpy(masked_patch_loss(logits, changed, mask)), to_numpy(out["loss"]), rtol=1e-6
    )


def test_norm_pix_loss_targets_are_standardised_per_patch():
    mae = tiny_mae(norm_pix_loss=True)
    x = images()
    targets = to_numpy(mae.pixel_targets(x))
    raw = to_numpy(patchify(x, (8, 8)))
    expected = (raw - raw.mean(-1, keepdims=True)) / np.sqrt(
        raw.var(-1, ddof=1, keepdims=True) + 1e-6
    )
    np.testing.assert_allclose(targets, expected, atol=1e-5)


def test_patchify_matches_mae_layout():
    x = images(1)
    patches = to_numpy(patchify(x, (8, 8)))
    # Patch (row 1, col 2) is grid index 1 * 4 + 2; its pixels row by row, channels last.
    np.testing.assert_array_equal(patches[0, 6], x[0, 8:16, 16:24].reshape(-1))


@pytest.mark.parametrize("patch, size", [((8, 8), (32, 32)), ((4, 8), (16, 24))])
def test_unpatchify_inverts_patchify(patch, size):
    x = np.random.default_rng(4).standard_normal((2, *size, 3)).astype("float32")
    grid = (size[0] // patch[0], size[1] // patch[1])
    patches = patchify(x, patch)
    np.testing.assert_array_equal(to_numpy(unpatchify(patches, patch, grid)), x)
    np.testing.assert_array_equal(
        to_numpy(patchify(unpatchify(patches, patch, grid), patch)), to_numpy(patches)
    )
    with pytest.raises(ValueError, match=r"not a 2x2 grid of 8x8 patches"):
        unpatchify(np.zeros((1, 16, 192), "float32"), (8, 8), (2, 2))


def test_denormalize_patches_inverts_normalize_patches():
    patches = to_numpy(patchify(images(), (8, 8)))
    restored = denormalize_patches(normalize_patches(patches), patches)
    np.testing.assert_allclose(to_numpy(restored), patches, atol=1e-5)


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_reconstructed_images_paste_the_predictions_into_the_visible_patches(norm_pix_loss):
    mae = tiny_mae(norm_pix_loss=norm_pix_loss)
    x = images()
    noise = np.random.default_rng(2).random((2, NUM_PATCHES)).astype("float32")
    out = mae.reconstructed_images(x, noise=noise)
    mask, reconstruction = to_numpy(out["mask"]), to_numpy(out["reconstruction"])
    assert mask.shape == (2, 32, 32) and reconstruction.shape == x.shape
    patch_mask = to_numpy(mae.reconstruct(x, noise=noise)["mask"])
    np.testing.assert_array_equal(mask, np.kron(patch_mask.reshape(2, 4, 4), np.ones((8, 8))))
    visible = mask[..., None] == 0
    np.testing.assert_array_equal(np.where(visible, reconstruction, 0), np.where(visible, x, 0))
    logits = to_numpy(mae.reconstruct(x, noise=noise)["logits"])
    patches = to_numpy(patchify(x, (8, 8)))
    if norm_pix_loss:  # each predicted patch in its original's units
        mean, std = patches.mean(-1, keepdims=True), patches.std(-1, ddof=1, keepdims=True)
        logits = logits * np.sqrt(std**2 + 1e-6) + mean
    predicted = to_numpy(unpatchify(logits, (8, 8), (4, 4)))
    np.testing.assert_allclose(
        np.where(visible, 0, reconstruction), np.where(visible, 0, predicted), atol=1e-5
    )


def test_the_same_seed_gives_the_same_mask_and_noise_reproduces_it():
    x = images()
    first, again, other = (tiny_mae(seed=s).reconstruct(x) for s in (7, 7, 8))
    np.testing.assert_array_equal(to_numpy(first["mask"]), to_numpy(again["mask"]))
    np.testing.assert_array_equal(to_numpy(first["ids_restore"]), to_numpy(again["ids_restore"]))
    assert not np.array_equal(to_numpy(first["ids_restore"]), to_numpy(other["ids_restore"]))
    # Consecutive draws of one model differ; the same noise gives the same outputs.
    mae = tiny_mae(seed=7)
    assert not np.array_equal(
        to_numpy(mae.reconstruct(x)["ids_restore"]), to_numpy(mae.reconstruct(x)["ids_restore"])
    )
    noise = np.random.default_rng(3).random((2, NUM_PATCHES)).astype("float32")
    a, b = mae.reconstruct(x, noise=noise), mae.reconstruct(x, noise=noise)
    for key in a:
        np.testing.assert_array_equal(to_numpy(a[key]), to_numpy(b[key]))


def test_fit_on_unlabelled_images_lowers_the_loss():
    mae = tiny_mae(seed=0, mask_ratio=0.5)
    keras.utils.set_random_seed(0)
    x = np.tile(images(4, seed=5), (4, 1, 1, 1))  # 16 images, 4 distinct
    mae.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = mae.fit(x, batch_size=8, epochs=6, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    assert history[-1] < history[0], history


def test_the_encoder_is_the_plain_vit_sharing_the_weights():
    mae = tiny_mae()
    vit = mae.encoder()
    assert isinstance(vit, ViT) and vit.config.model_type == "vit_mae"
    assert {w.path for w in vit.weights} <= {w.path for w in mae.weights}
    out = vit.encode(images())["last_hidden_state"]
    assert tuple(out.shape) == (2, 1 + NUM_PATCHES, 32)


def test_get_config_round_trip():
    mae = tiny_mae(seed=3, mask_ratio=0.6)
    again = MaskedAutoencoder.from_config(mae.get_config())
    assert again.config == mae.config and again.mae_config == mae.mae_config and again.seed == 3


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.5, 1.5, True, "0.75"])
def test_mask_ratio_outside_zero_one_is_refused(ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be a number strictly between 0 and 1"):
        MAEConfig(mask_ratio=ratio)


def test_image_size_not_divisible_by_the_patch_is_refused():
    with pytest.raises(ValueError, match=r"not divisible by patch_size 8.*multiple of 8"):
        MaskedAutoencoder(ViTConfig(**{**MAE_ENCODER, "image_size": 36}), MAEConfig(**DECODER))
    mae = tiny_mae()
    with pytest.raises(ValueError, match=r"height 36 is not divisible by the patch size 8"):
        mae.reconstruct(np.zeros((1, 36, 32, 3), "float32"))
    with pytest.raises(ValueError, match=r"built for 32x32"):
        mae.reconstruct(np.zeros((1, 40, 40, 3), "float32"))


def test_bad_noise_and_encoder_configs_are_refused():
    mae = tiny_mae()
    with pytest.raises(ValueError, match=r"noise must have shape \(batch, 16\)"):
        mae.reconstruct(images(), noise=np.zeros((2, 9), "float32"))
    plain = ViTConfig(**TINY)
    with pytest.raises(ValueError, match=r"model_type='vit'.*position_embedding='learned'"):
        MaskedAutoencoder(plain, MAEConfig(**DECODER))
    with pytest.raises(ValueError, match=r"classes=3 \(use None\)"):
        MaskedAutoencoder(dataclasses.replace(ViTConfig(**MAE_ENCODER), classes=3))
    with pytest.raises(ValueError, match=r"divisible by decoder_num_attention_heads=3"):
        MAEConfig(**{**DECODER, "decoder_num_attention_heads": 3})
