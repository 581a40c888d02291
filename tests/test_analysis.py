"""keras_vit.analysis: rollout, [CLS] attention, position similarity, attention distance.

Attention patterns are forced two ways: as arrays for the numpy cores, and
through constructed weights in real models (zero queries give uniform
attention; queries equal to keys, scaled up, give attention on the token
itself, or on its exact copy).
"""

import itertools
import math

import numpy as np
import pytest

import keras_vit
from keras_vit import ViT, sincos_position_embeddings
from tests.conftest import tiny_config, to_numpy


def softmax_attentions(rng, layers=3, batch=2, heads=2, tokens=7):
    logits = rng.standard_normal((layers, batch, heads, tokens, tokens))
    probs = np.exp(logits)
    return list(probs / probs.sum(axis=-1, keepdims=True))


def assign(model, suffix, make):
    """Sets every weight whose path ends with `suffix` to `make(shape)`."""
    variables = [v for v in model.weights if v.path.endswith(suffix)]
    assert variables, suffix
    for variable in variables:
        variable.assign(make(tuple(variable.shape)))


def uniform_attention_model(**overrides):
    """Zero queries: every logit is 0, so every token attends uniformly to all."""
    model = ViT(tiny_config(**overrides))
    assign(model, "attention/query/kernel", np.zeros)
    assign(model, "attention/query/bias", np.zeros)
    return model


def self_attention_model(**overrides):
    """One head, query = key = 10 x identity, no biases: after LayerNorm every token
    has the same norm, so q.k is largest (by far) for the token itself or an exact copy."""
    model = ViT(tiny_config(num_attention_heads=1, **overrides))
    for name in ("query", "key"):
        assign(model, f"attention/{name}/kernel", lambda shape: 10.0 * np.eye(shape[0]))
        assign(model, f"attention/{name}/bias", np.zeros)
    return model


def images_for(model, rng, batch=2):
    height, width = model.config.image_pair
    return rng.standard_normal((batch, height, width, 3)).astype("float32")


# --- rollout, numpy core ---


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5, 0.9])
def test_joint_matrices_are_row_stochastic(rng, head_fusion, discard_ratio):
    joint = keras_vit.rollout_matrices(softmax_attentions(rng), head_fusion, discard_ratio)
    assert joint.shape == (3, 2, 7, 7)
    np.testing.assert_allclose(joint.sum(axis=-1), 1.0, atol=1e-12)
    assert joint.min() >= 0.0


def test_joint_matrices_follow_the_rollout_recursion(rng):
    attentions = softmax_attentions(rng)
    identity = np.eye(7)
    # Mean-fused rows sum to 1, so "add identity, renormalise" is 0.5 A + 0.5 I.
    residual = [0.5 * a.mean(axis=1) + 0.5 * identity for a in attentions]
    joint = keras_vit.rollout_matrices(attentions)
    np.testing.assert_allclose(joint[0], residual[0], atol=1e-12)
    np.testing.assert_allclose(joint[2], residual[2] @ residual[1] @ residual[0], atol=1e-12)
    later = keras_vit.rollout_matrices(attentions, start_layer=1)
    assert later.shape == (2, 2, 7, 7)
    np.testing.assert_allclose(later[-1], residual[2] @ residual[1], atol=1e-12)


def test_identity_attention_rolls_out_to_the_identity():
    attentions = [np.broadcast_to(np.eye(5), (2, 3, 5, 5))] * 4
    for head_fusion in ("mean", "max", "min"):
        joint = keras_vit.rollout_matrices(attentions, head_fusion, discard_ratio=0.5)
        np.testing.assert_allclose(joint, np.broadcast_to(np.eye(5), joint.shape), atol=1e-12)


def test_head_fusion():
    attention = np.array([[[[0.2, 0.8], [0.6, 0.4]], [[0.4, 0.6], [0.0, 1.0]]]])
    np.testing.assert_allclose(keras_vit.fuse_heads(attention, "mean")[0], [[0.3, 0.7], [0.3, 0.7]])
    np.testing.assert_allclose(keras_vit.fuse_heads(attention, "max")[0], [[0.4, 0.8], [0.6, 1.0]])
    np.testing.assert_allclose(keras_vit.fuse_heads(attention, "min")[0], [[0.2, 0.6], [0.0, 0.4]])


@pytest.mark.parametrize("discard_ratio", [0.25, 0.5, 0.8])
def test_discard_zeroes_the_lowest_fraction(rng, discard_ratio):
    values = rng.permutation(36).reshape(1, 1, 6, 6) + 1.0  # distinct, all positive
    values[0, 0, 0, 0] = 100.0  # [CLS] on itself: the largest
    fused = keras_vit.fuse_heads(values, discard_ratio=discard_ratio)[0]
    count = int(discard_ratio * 36)
    assert (fused == 0).sum() == count
    threshold = np.sort(values.ravel())[count]
    np.testing.assert_array_equal(fused, np.where(values[0, 0] < threshold, 0.0, values[0, 0]))


def test_discard_never_drops_the_cls_weight_on_itself(rng):
    values = rng.permutation(36).reshape(1, 1, 6, 6) + 1.0
    values[0, 0, 0, 0] = 0.5  # the smallest weight of all
    fused = keras_vit.fuse_heads(values, discard_ratio=0.5)[0]
    assert fused[0, 0] == 0.5
    assert (fused == 0).sum() == 17  # the 18 lowest, less [CLS]'s own


def test_rollout_arguments_are_checked(rng):
    attentions = softmax_attentions(rng)
    with pytest.raises(ValueError, match="head_fusion"):
        keras_vit.rollout_matrices(attentions, head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio"):
        keras_vit.rollout_matrices(attentions, discard_ratio=1.0)
    with pytest.raises(ValueError, match="start_layer"):
        keras_vit.rollout_matrices(attentions, start_layer=3)


# --- rollout and [CLS] attention on models ---


def test_shapes_on_a_non_square_grid(rng):
    model = ViT(tiny_config(image_size=(32, 48), num_hidden_layers=3))
    images = images_for(model, rng)
    rollout = keras_vit.attention_rollout(model, images, start_layer=1)
    assert rollout.shape == (2, 4, 6)
    attentions = [to_numpy(a) for a in model.encode(images, output_attentions=True)["attentions"]]
    residual = [0.5 * a.mean(axis=1) + 0.5 * np.eye(25) for a in attentions]
    cls_row = (residual[2] @ residual[1])[:, 0, 1:]  # what [CLS] draws from each patch
    np.testing.assert_allclose(rollout, cls_row.reshape(2, 4, 6), atol=1e-6)
    assert keras_vit.cls_attention(model, images).shape == (2, 2, 4, 6)
    assert keras_vit.cls_attention(model, images, layer=0).shape == (2, 2, 4, 6)


def test_uniform_attention_gives_a_uniform_map(rng):
    model = uniform_attention_model()
    images = images_for(model, rng)
    attention = to_numpy(model.encode(images, output_attentions=True)["attentions"][1])
    np.testing.assert_allclose(attention, 1 / 17, atol=1e-6)
    rollout = keras_vit.attention_rollout(model, images)
    assert rollout.shape == (2, 4, 4)
    np.testing.assert_allclose(rollout, rollout[0, 0, 0], rtol=1e-5)
    assert rollout[0, 0, 0] > 0.01
    np.testing.assert_allclose(keras_vit.cls_attention(model, images), 1 / 17, atol=1e-6)


def test_attention_on_the_token_itself_rolls_out_to_the_identity(rng):
    model = self_attention_model(image_size=(32, 48))
    images = images_for(model, rng)
    attentions = [to_numpy(a) for a in model.encode(images, output_attentions=True)["attentions"]]
    joint = keras_vit.rollout_matrices(attentions, head_fusion="min")
    np.testing.assert_allclose(joint, np.broadcast_to(np.eye(25), joint.shape), atol=1e-5)
    np.testing.assert_allclose(keras_vit.attention_rollout(model, images), 0.0, atol=1e-5)
    np.testing.assert_allclose(keras_vit.cls_attention(model, images), 0.0, atol=1e-5)
    np.testing.assert_allclose(keras_vit.mean_attention_distance(model, images), 0.0, atol=1e-3)


def test_cls_attention_lands_on_the_right_patch_of_a_non_square_grid(rng):
    """[CLS] is made an exact copy of patch (row 1, column 4), so it splits its attention
    between itself and that patch (to float32 rounding of logits in the hundreds)."""
    model = self_attention_model(image_size=(32, 48))
    assign(model, "embeddings/patch_projection/kernel", np.zeros)
    assign(model, "embeddings/patch_projection/bias", np.zeros)
    positions = to_numpy(model.embeddings.position_embedding)
    target = 1 + 1 * 6 + 4
    model.embeddings.cls_token.assign(positions[:, target : target + 1] - positions[:, :1])
    images = images_for(model, rng)
    expected = np.zeros((2, 4, 6))
    expected[:, 1, 4] = 0.5
    for layer in (0, 1):  # the copy stays a copy through every layer
        maps = keras_vit.cls_attention(model, images, layer=layer)
        np.testing.assert_allclose(maps[:, 0], expected, atol=1e-4)
    # Rollout: [CLS] and its copy mix as [[0.75, 0.25], [0.25, 0.75]] in each of 2 layers.
    mixing = np.linalg.matrix_power(np.array([[0.75, 0.25], [0.25, 0.75]]), 2)
    expected[:, 1, 4] = mixing[0, 1]
    np.testing.assert_allclose(keras_vit.attention_rollout(model, images), expected, atol=1e-4)


# --- position-embedding similarity ---


def test_similarity_is_a_symmetric_cosine_with_unit_diagonal():
    model = ViT(tiny_config(image_size=(32, 48)))
    similarity = keras_vit.position_embedding_similarity(model)
    assert similarity.shape == (4, 6, 4, 6)
    flat = similarity.reshape(24, 24)
    np.testing.assert_allclose(np.diag(flat), 1.0, atol=1e-6)
    np.testing.assert_allclose(flat, flat.T, atol=1e-12)
    positions = to_numpy(model.embeddings.position_embedding)[0]
    first, other = positions[1 + 0 * 6 + 2], positions[1 + 3 * 6 + 5]
    cosine = first @ other / (np.linalg.norm(first) * np.linalg.norm(other))
    assert similarity[0, 2, 3, 5] == pytest.approx(cosine, abs=1e-6)


def neighbours_beat_far_patches(similarity):
    rows, cols = similarity.shape[:2]
    for i, j in itertools.product(range(rows), range(cols)):
        near, far = [], []
        for k, m in itertools.product(range(rows), range(cols)):
            if abs(k - i) + abs(m - j) == 1:
                near.append(similarity[i, j, k, m])
            elif max(abs(k - i), abs(m - j)) >= 2:
                far.append(similarity[i, j, k, m])
        if min(near) <= max(far):
            return False
    return True


def test_sincos_positions_make_neighbours_more_similar_than_far_patches():
    learned = ViT(tiny_config(image_size=(32, 48)))
    assert not neighbours_beat_far_patches(keras_vit.position_embedding_similarity(learned))
    patches = sincos_position_embeddings((4, 6), 32)
    learned.embeddings.position_embedding.assign(np.concatenate([np.zeros((1, 32)), patches])[None])
    similarity = keras_vit.position_embedding_similarity(learned)
    assert neighbours_beat_far_patches(similarity)
    fixed = ViT(tiny_config(image_size=(32, 48), position_embedding="sincos"))
    np.testing.assert_allclose(
        keras_vit.position_embedding_similarity(fixed), similarity, atol=1e-6
    )


# --- mean attention distance ---


@pytest.mark.parametrize("offset", [(0, 1), (1, 0), (2, 3)])
def test_attention_on_one_key_at_an_offset_is_that_far(offset):
    rows, cols, patch = 4, 6, (6, 10)
    tokens = 1 + rows * cols
    attention = np.zeros((2, 3, tokens, tokens))
    attention[:, :, :, 0] = 0.5  # half on [CLS], which does not count
    for r, c in itertools.product(range(rows), range(cols)):
        kr = r + offset[0] if r + offset[0] < rows else r - offset[0]
        kc = c + offset[1] if c + offset[1] < cols else c - offset[1]
        attention[:, :, 1 + r * cols + c, 1 + kr * cols + kc] = 0.5
    distance = keras_vit.attention_distance([attention, attention], (rows, cols), patch)
    expected = math.hypot(offset[0] * patch[0], offset[1] * patch[1])
    np.testing.assert_allclose(distance, np.full((2, 3), expected), rtol=1e-12)


def test_uniform_attention_gives_the_grid_mean_distance(rng):
    model = uniform_attention_model(patch_size=(8, 4))  # a 4 x 8 grid of 8-high, 4-wide patches
    centres = [(8 * r, 4 * c) for r in range(4) for c in range(8)]
    expected = sum(math.dist(a, b) for a in centres for b in centres) / len(centres) ** 2
    distance = keras_vit.mean_attention_distance(model, images_for(model, rng))
    assert distance.shape == (2, 2)
    np.testing.assert_allclose(distance, expected, rtol=1e-5)
