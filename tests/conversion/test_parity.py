"""Numerical parity with transformers, on the current Keras backend."""

import numpy as np
import pytest
import torch

from keras_vit import ViT
from tests.conftest import to_numpy
from tests.conversion.conftest import CHECKPOINTS, nchw, random_images

TOLERANCE = 1e-4


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_every_output_matches_transformers(hf_checkpoints, name):
    directory, reference = hf_checkpoints[name]
    model = ViT.from_pretrained(directory, verbose=False)
    images = random_images(model)
    with torch.no_grad():
        expected = reference(nchw(images), output_hidden_states=True, output_attentions=True)
    ours = model.encode(images, output_hidden_states=True, output_attentions=True)
    backbone = expected if hasattr(expected, "last_hidden_state") else None
    if backbone is not None:
        np.testing.assert_allclose(
            to_numpy(ours["last_hidden_state"]), backbone.last_hidden_state.numpy(), atol=TOLERANCE
        )
    if getattr(expected, "pooler_output", None) is not None:
        np.testing.assert_allclose(
            to_numpy(ours["pooler_output"]), expected.pooler_output.numpy(), atol=TOLERANCE
        )
    if hasattr(expected, "logits"):
        np.testing.assert_allclose(to_numpy(model(images)), expected.logits.numpy(), atol=TOLERANCE)
    assert len(ours["hidden_states"]) == len(expected.hidden_states) == 3
    for ours_state, theirs in zip(ours["hidden_states"], expected.hidden_states, strict=True):
        np.testing.assert_allclose(to_numpy(ours_state), theirs.numpy(), atol=TOLERANCE)
    assert len(ours["attentions"]) == len(expected.attentions) == 2
    for ours_map, theirs in zip(ours["attentions"], expected.attentions, strict=True):
        np.testing.assert_allclose(to_numpy(ours_map), theirs.numpy(), atol=TOLERANCE)


def test_classifier_last_hidden_state_matches(hf_checkpoints):
    directory, reference = hf_checkpoints["labels"]
    model = ViT.from_pretrained(directory, verbose=False)
    images = random_images(model)
    with torch.no_grad():
        expected = reference.vit(nchw(images)).last_hidden_state.numpy()
    np.testing.assert_allclose(
        to_numpy(model.encode(images)["last_hidden_state"]), expected, atol=TOLERANCE
    )
    assert model.config.id2label == {0: "cat", 1: "dog", 2: "fox"}
    assert model.config.layer_norm_eps == 1e-12


@pytest.mark.parametrize("name, size", [("square_pooler", (48, 48)), ("labels", (40, 56))])
def test_new_resolution_matches_interpolate_pos_encoding(hf_checkpoints, name, size):
    directory, reference = hf_checkpoints[name]
    model = ViT.from_pretrained(directory, image_size=size, verbose=False)
    assert model.config.image_size == size
    images = random_images(model)
    with torch.no_grad():
        expected = reference(nchw(images), interpolate_pos_encoding=True)
    got = to_numpy(model(images))
    want = expected.logits if hasattr(expected, "logits") else expected.pooler_output
    np.testing.assert_allclose(got, want.numpy(), atol=TOLERANCE)
