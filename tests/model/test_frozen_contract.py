"""Files saved before the redesign still load, and give the outputs they gave then.

The fixtures in `frozen/` were written by `frozen/make_frozen.py` from commit
5d0ef9a, the last one before the model was restructured: a `.keras` file, a
`.weights.h5` file, and that code's outputs on each backend.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

import keras_vit
from tests.conftest import to_numpy

FROZEN = Path(__file__).parent / "frozen"


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(FROZEN / f"outputs_{keras.backend.backend()}.npz"))


@pytest.fixture(scope="module")
def images():
    return np.load(FROZEN / "images.npy")


# JAX's XLA compiles float32 reductions for the CPU's vector width, so its outputs move
# with the instruction set: on an AVX2-only Zen 3, commit d36243d (which held 1e-6 where
# the fixtures were written) moves by up to 6.7e-6 (values up to about 6). TensorFlow's
# and torch's outputs hold 1e-6 everywhere measured.
TOLERANCE = 1e-5 if keras.backend.backend() == "jax" else 1e-6


def check_outputs(model, images, expected):
    np.testing.assert_allclose(to_numpy(model(images)), expected["scores"], rtol=0, atol=TOLERANCE)
    encoded = model.encode(images, output_hidden_states=True)
    for key in ("last_hidden_state", "pooler_output"):
        np.testing.assert_allclose(to_numpy(encoded[key]), expected[key], rtol=0, atol=TOLERANCE)
    assert len(encoded["hidden_states"]) == 3
    for index, hidden in enumerate(encoded["hidden_states"]):
        np.testing.assert_allclose(
            to_numpy(hidden), expected[f"hidden_state_{index}"], rtol=0, atol=TOLERANCE
        )


def test_keras_file_loads_with_the_same_class_config_and_outputs(images, expected):
    model = keras.saving.load_model(FROZEN / "vit_frozen.keras")
    assert type(model) is keras_vit.ViT
    assert model.name == "frozen_vit"
    assert model.config.layer_norm_eps == 1e-12 and model.config.classes == 5
    assert model.config.id2label[4] == "class_4"
    assert np.abs(expected["scores"]).max() > 0.1  # the head is random, not zeros
    check_outputs(model, images, expected)


def test_weights_file_loads_into_a_model_built_from_the_config(images, expected):
    saved = keras.saving.load_model(FROZEN / "vit_frozen.keras")
    model = keras_vit.ViT(saved.config)
    model.load_weights(FROZEN / "vit_frozen.weights.h5")
    check_outputs(model, images, expected)
    assert [v.path for v in model.weights] == [v.path for v in saved.weights]


def test_weight_paths_and_config_keys_are_unchanged():
    model = keras.saving.load_model(FROZEN / "vit_frozen.keras")
    paths = {v.path for v in model.weights}
    for path in (
        "embeddings/patch_projection/kernel",
        "embeddings/cls_token",
        "embeddings/position_embedding",
        "encoder/layer_1/attention/query/kernel",
        "encoder/layer_1/attention/key/bias",
        "encoder/layer_1/attention/value/kernel",
        "encoder/layer_1/attention/output/kernel",
        "encoder/layer_1/layernorm_before/gamma",
        "encoder/layer_1/layernorm_after/beta",
        "encoder/layer_1/mlp_fc1/kernel",
        "encoder/layer_1/mlp_fc2/bias",
        "layernorm/gamma",
        "pre_logits/kernel",
        "head/kernel",
    ):
        assert path in paths
    kernel = {v.path: v for v in model.weights}["embeddings/patch_projection/kernel"]
    assert tuple(kernel.shape) == (8, 8, 3, 32)  # (ph, pw, C, D)
    assert set(model.get_config()) == {
        "name",
        "trainable",
        "dtype",
        "config",
        "include_preprocessing",
    }
