"""keras_vit.analysis and `keras-vit explain` on the family's prefix tokens.

A distilled DeiT ([CLS], [DIST]), DINOv2 with registers ([CLS], 2 registers) and
DINOv3 ([CLS], 2 registers, RoPE, a non-square grid) are built in transformers,
saved and loaded. The oracle is transformers itself: its attentions
(`output_attentions=True`), its position-embedding table, and the number of
tokens before the patches that each of its families has.
"""

import numpy as np
import pytest
import torch
from PIL import Image

import keras_vit
from keras_vit import ViT
from keras_vit.cli import EXPLAIN_FILES, main
from tests.conversion.conftest import random_images
from tests.support.family_models import backbone_outputs, make_family_model, write_hub_repo

SMALL = dict(image_size=32, patch_size=8, num_register_tokens=2)
# name: (transformers class, config class, overrides, prefix tokens in transformers' order)
FAMILIES = {
    "deit_distilled": (
        "DeiTForImageClassificationWithTeacher",
        "DeiTConfig",
        dict(intermediate_size=64, image_size=32, patch_size=8, num_labels=3),
        2,
    ),
    "dinov2_registers": (
        "Dinov2WithRegistersModel",
        "Dinov2WithRegistersConfig",
        dict(SMALL, mlp_ratio=2, layerscale_value=0.5),
        3,
    ),
    "dinov3_rope": (
        "DINOv3ViTModel",
        "DINOv3ViTConfig",
        dict(SMALL, intermediate_size=64, image_size=(32, 48), layerscale_value=0.5),
        3,
    ),
}


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """name -> (checkpoint directory, keras_vit model, transformers model)."""
    made = {}
    for seed, (name, (class_name, config_name, overrides, _)) in enumerate(FAMILIES.items()):
        reference = make_family_model(class_name, config_name, seed, **overrides)
        with torch.no_grad():  # DeiT starts its position table at zeros
            for key, parameter in reference.named_parameters():
                if "position_embeddings" in key:
                    parameter.add_(torch.randn_like(parameter))
        directory = tmp_path_factory.mktemp(name)
        write_hub_repo(reference, directory)
        made[name] = (directory, ViT.from_pretrained(directory, verbose=False), reference)
    return made


def their_attentions(reference, images) -> list[np.ndarray]:
    outputs = backbone_outputs(reference, images, output_attentions=True)
    return [a.numpy().astype("float64") for a in outputs.attentions]


def rollout_oracle(attentions, prefix, grid):
    """Abnar & Zuidema's rollout, heads averaged, [CLS] row, written out plainly."""
    joint = np.eye(attentions[0].shape[-1])
    for attention in attentions:
        fused = attention.mean(axis=1) + np.eye(attention.shape[-1])
        joint = (fused / fused.sum(axis=-1, keepdims=True)) @ joint
    return joint[:, 0, prefix:].reshape(-1, *grid)


def distance_oracle(attentions, prefix, grid, patch):
    """Mean attention distance by looping over the patch pairs."""
    rows, cols = grid
    out = np.zeros((len(attentions), attentions[0].shape[1]))
    for layer, attention in enumerate(attentions):
        patches = attention[:, :, prefix:, prefix:]
        patches = patches / patches.sum(axis=-1, keepdims=True)
        for query in range(rows * cols):
            for key in range(rows * cols):
                dy = (query // cols - key // cols) * patch
                dx = (query % cols - key % cols) * patch
                out[layer] += patches[:, :, query, key].mean(axis=0) * np.hypot(dy, dx)
    return out / (rows * cols)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_maps_are_on_the_patch_grid_and_match_transformers_attentions(families, name):
    _, model, reference = families[name]
    prefix = FAMILIES[name][3]
    assert model.config.num_prefix_tokens == prefix
    grid = model.config.grid_size
    images = random_images(model)
    theirs = their_attentions(reference, images)

    rollout = keras_vit.attention_rollout(model, images)
    assert rollout.shape == (len(images), *grid)
    np.testing.assert_allclose(rollout, rollout_oracle(theirs, prefix, grid), atol=1e-5)

    cls = keras_vit.cls_attention(model, images, layer=0)
    heads = model.config.num_attention_heads
    assert cls.shape == (len(images), heads, *grid)
    expected = theirs[0][:, :, 0, prefix:].reshape(len(images), heads, *grid)
    np.testing.assert_allclose(cls, expected, atol=1e-5)
    # The prefix tokens take part of [CLS]'s attention, so the patches get less than 1.
    assert np.all(cls.sum(axis=(-2, -1)) < 1 - 1e-6)

    distance = keras_vit.mean_attention_distance(model, images)
    assert distance.shape == (model.config.num_hidden_layers, heads)
    oracle = distance_oracle(theirs, prefix, grid, model.config.patch_pair[0])
    np.testing.assert_allclose(distance, oracle, atol=1e-4)


@pytest.mark.parametrize("name", ["deit_distilled", "dinov2_registers"])
def test_position_similarity_covers_the_patches_only(families, name):
    _, model, reference = families[name]
    table = reference.base_model.embeddings.position_embeddings.detach().numpy()[0]
    grid = model.config.grid_size
    patches = table[-grid[0] * grid[1] :].astype("float64")
    assert len(table) - len(patches) == 1 + int(name == "deit_distilled")  # no register rows
    patches /= np.linalg.norm(patches, axis=-1, keepdims=True)
    similarity = keras_vit.position_embedding_similarity(model)
    assert similarity.shape == (*grid, *grid) and np.isfinite(similarity).all()
    np.testing.assert_allclose(similarity, (patches @ patches.T).reshape(*grid, *grid), atol=1e-5)


def test_position_similarity_of_a_rope_model_is_a_clear_error(families):
    _, model, _ = families["dinov3_rope"]
    with pytest.raises(ValueError, match="rotary position embedding.*attention_rollout"):
        keras_vit.position_embedding_similarity(model)


def test_attention_distance_checks_the_prefix_count(rng):
    attention = [np.full((1, 1, 7, 7), 1 / 7)]  # [CLS], 2 registers, a 2x2 grid
    assert keras_vit.attention_distance(attention, (2, 2), (8, 8), 3).shape == (1, 1)
    with pytest.raises(ValueError, match="7 tokens does not fit 1 prefix token.*num_prefix"):
        keras_vit.attention_distance(attention, (2, 2), (8, 8))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_explain_on_a_family_checkpoint(families, name, tmp_path, capsys):
    directory, model, _ = families[name]
    image = tmp_path / "image.png"
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    output = tmp_path / "out"
    assert main(["explain", str(image), "--model", str(directory), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    rope = model.config.position_embedding == "rope"
    expected = [f for f in EXPLAIN_FILES if not (rope and f == "position_similarity.png")]
    assert sorted(p.name for p in output.iterdir()) == sorted(expected)
    assert ("no position_similarity.png" in printed) == rope
    assert ("top-5 predictions:" in printed) == bool(model.config.classes)
