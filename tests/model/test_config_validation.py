"""ViTConfig refuses values of the wrong kind, naming the field, the value and what it needs."""

import numpy as np
import pytest

from keras_vit import ViT, ViTConfig
from tests.conftest import tiny_config


@pytest.mark.parametrize(
    "field, value",
    [
        ("hidden_size", 0),
        ("hidden_size", "32"),
        ("hidden_size", 32.0),
        ("num_hidden_layers", -1),
        ("num_attention_heads", 0),
        ("intermediate_size", True),
        ("num_channels", 0),
        ("pooler_output_size", 0),
    ],
)
def test_sizes_must_be_positive_ints(field, value):
    with pytest.raises(ValueError, match=rf"{field} must be a positive int.*got {value!r}"):
        tiny_config(**{field: value})


@pytest.mark.parametrize("value", [0, -1e-6, "1e-6", True])
def test_layer_norm_eps_must_be_above_zero(value):
    with pytest.raises(ValueError, match=rf"layer_norm_eps must be a number above 0.*{value!r}"):
        tiny_config(layer_norm_eps=value)


@pytest.mark.parametrize("field", ["hidden_dropout_prob", "drop_path_rate"])
@pytest.mark.parametrize("value", ["0.1", None, True, 1.0])
def test_rates_are_numbers_in_zero_one(field, value):
    with pytest.raises(ValueError, match=rf"{field} must be in \[0, 1\), got {value!r}"):
        tiny_config(**{field: value})


@pytest.mark.parametrize("field", ["image_size", "patch_size"])
@pytest.mark.parametrize("value", [32.0, True, (32, 32.0), (32, False), "32", (32,)])
def test_image_and_patch_sizes_are_ints_or_pairs(field, value):
    with pytest.raises(ValueError, match=rf"{field} must be a positive int or a \(height, width\)"):
        tiny_config(**{field: value})


def test_id2label_keys_are_class_indices():
    assert tiny_config(classes=2, id2label={"0": "cat", "1": "dog"}).id2label == {
        0: "cat",
        1: "dog",
    }
    for keys in (["cat", "dog"], [0.0, 1.0], ["-1", "0"]):
        with pytest.raises(ValueError, match="id2label keys must be class indices"):
            tiny_config(classes=2, id2label=dict(zip(keys, "ab", strict=True)))
    with pytest.raises(ValueError, match="id2label must map class indices to names"):
        tiny_config(classes=2, id2label=["cat", "dog"])


def test_numpy_integers_become_python_ints():
    config = tiny_config(hidden_size=np.int64(32), classes=np.int32(3), image_size=np.int64(32))
    assert config == tiny_config(classes=3)
    assert all(type(value) is int for value in (config.hidden_size, config.classes))
    assert type(config.image_size) is int
    assert tiny_config(image_size=(np.int64(48), 32)).image_size == (48, 32)


def test_valid_values_still_pass():
    config = ViTConfig(image_size=[48, 32], patch_size=(8, 8), layer_norm_eps=1e-12, classes=3)
    assert (config.image_pair, config.layer_norm_eps, config.classes) == ((48, 32), 1e-12, 3)


def test_decode_predictions_refuses_another_width():
    model = ViT(tiny_config(classes=3))
    with pytest.raises(ValueError, match=r"shape \(batch, 3\).*got shape \(2, 5\)"):
        model.decode_predictions(np.zeros((2, 5), "float32"))
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        model.decode_predictions(np.zeros((3,), "float32"))
    assert len(model.decode_predictions(np.eye(3, dtype="float32"), top=2)) == 3
