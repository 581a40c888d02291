"""Tensor names, layouts and config.json mapping, without running a model."""

import numpy as np
import pytest
import transformers

from keras_vit import ViT, ViTConfig
from keras_vit.conversion import canonical_hf_name, config_from_hf, config_to_hf, hf_name_for
from keras_vit.conversion.names import hf_file_name, keras_shape, to_hf_layout, to_keras_layout
from keras_vit.conversion.pretrained import reshapes_checkpoint, split_model_arguments
from tests.conftest import TINY


@pytest.mark.parametrize(
    "name, canonical",
    [
        (
            "vit.layers.3.attention.q_proj.weight",
            "encoder.layer.3.attention.attention.query.weight",
        ),
        ("layers.0.attention.o_proj.bias", "encoder.layer.0.attention.output.dense.bias"),
        ("vit.layers.1.mlp.fc1.bias", "encoder.layer.1.intermediate.dense.bias"),
        ("layers.1.mlp.fc2.weight", "encoder.layer.1.output.dense.weight"),
        ("vit.layers.2.layernorm_after.weight", "encoder.layer.2.layernorm_after.weight"),
        ("vit.encoder.layer.0.output.dense.bias", "encoder.layer.0.output.dense.bias"),
        ("vit.embeddings.cls_token", "embeddings.cls_token"),
        ("classifier.weight", "classifier.weight"),
        ("pooler.dense.bias", "pooler.dense.bias"),
        ("decoder.0.weight", "decoder.0.weight"),
    ],
)
def test_canonical_hf_name(name, canonical):
    assert canonical_hf_name(name) == canonical


def test_every_keras_weight_names_a_transformers_tensor():
    model = ViT(ViTConfig(**TINY, classes=3, use_mask_token=True))
    headless = transformers.ViTModel(transformers.ViTConfig(**TINY))
    expected = set(headless.state_dict()) | {"classifier.weight", "classifier.bias"}
    expected = {canonical_hf_name(name) for name in expected} - {"pooler.dense.weight"}
    expected -= {"pooler.dense.bias"}
    assert {hf_name_for(v.path) for v in model.weights} == expected | {"embeddings.mask_token"}
    with pytest.raises(KeyError, match="has no counterpart in transformers' 'vit' models"):
        hf_name_for("encoder/layer_0/unknown/kernel")


@pytest.mark.parametrize(
    "path, hf_shape, keras",
    [
        ("embeddings/patch_projection/kernel", (32, 3, 8, 4), (8, 4, 3, 32)),
        ("encoder/layer_0/mlp_fc1/kernel", (64, 32), (32, 64)),
        ("encoder/layer_0/mlp_fc1/bias", (64,), (64,)),
        ("embeddings/position_embedding", (1, 17, 32), (1, 17, 32)),
    ],
)
def test_layouts_round_trip(path, hf_shape, keras):
    assert keras_shape(path, hf_shape) == keras
    tensor = np.random.default_rng(0).standard_normal(hf_shape)
    converted = to_keras_layout(path, tensor)
    assert converted.shape == keras
    np.testing.assert_array_equal(to_hf_layout(path, converted), tensor)


def test_hf_file_name():
    assert hf_file_name("layernorm.weight", with_head=True) == "vit.layernorm.weight"
    assert hf_file_name("classifier.bias", with_head=True) == "classifier.bias"
    assert hf_file_name("layernorm.weight", with_head=False) == "layernorm.weight"


def test_config_from_hf_reads_every_field():
    hf = transformers.ViTConfig(
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        hidden_act="gelu_new",
        layer_norm_eps=1e-5,
        image_size=[48, 32],
        patch_size=[8, 4],
        num_channels=1,
        qkv_bias=False,
        pooler_output_size=24,
        pooler_act="relu",
        id2label={0: "a", 1: "b"},
    ).to_dict()
    config = config_from_hf(hf)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (48, 3, 4)
    assert (config.intermediate_size, config.hidden_act, config.layer_norm_eps) == (
        96,
        "gelu_new",
        1e-5,
    )
    assert (config.image_size, config.patch_size, config.num_channels) == ((48, 32), (8, 4), 1)
    assert (config.qkv_bias, config.pooler_output_size, config.pooler_act) == (False, 24, "relu")
    assert config.id2label == {0: "a", 1: "b"}
    assert config.classes is None and not config.pre_logits


def test_config_from_hf_uses_transformers_defaults():
    config = config_from_hf({"model_type": "vit"})
    reference = transformers.ViTConfig()
    assert config.layer_norm_eps == reference.layer_norm_eps == 1e-12
    assert (config.hidden_size, config.image_size) == (reference.hidden_size, reference.image_size)
    with pytest.raises(ValueError, match=r"model_type 'swin' is not supported.*'vit', 'deit'"):
        config_from_hf({"model_type": "swin"})


def test_config_to_hf_round_trips_through_transformers():
    config = ViTConfig(**{**TINY, "image_size": (48, 32)}, classes=2, id2label={0: "cat", 1: "dog"})
    hf = config_to_hf(config)
    assert hf["model_type"] == "vit" and hf["architectures"] == ["ViTForImageClassification"]
    assert hf["label2id"] == {"cat": 0, "dog": 1}
    reference = transformers.ViTConfig(**hf)
    assert reference.image_size == [48, 32] and reference.layer_norm_eps == config.layer_norm_eps
    back = config_from_hf(reference.to_dict())
    assert back.image_size == (48, 32) and back.id2label == config.id2label
    headless = config_to_hf(ViTConfig(**TINY))
    assert headless["architectures"] == ["ViTModel"] and "id2label" not in headless


def test_reshapes_checkpoint():
    assert not reshapes_checkpoint()
    assert not reshapes_checkpoint(verbose=False, include_preprocessing=True, dtype="float32")
    assert reshapes_checkpoint(classes=3) and reshapes_checkpoint(image_size=64)
    assert reshapes_checkpoint(include_top=False) and reshapes_checkpoint(pooling=None)


def test_split_model_arguments():
    arguments = {"dtype": "bfloat16", "name": None, "drop_path_rate": 0.1, "pooling": None}
    model_arguments, overrides = split_model_arguments(arguments)
    assert model_arguments == {"dtype": "bfloat16"}
    assert overrides == {"drop_path_rate": 0.1, "pooling": None}
