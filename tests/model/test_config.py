import pytest

from keras_vit import ViT, ViTConfig
from keras_vit.model.config import as_pair
from tests.conftest import tiny_config


def test_round_trip_through_dict():
    config = tiny_config(image_size=(48, 32), classes=7, pre_logits=True, drop_path_rate=0.1)
    restored = ViTConfig.from_dict(config.to_dict())
    assert restored == config
    assert config.to_dict()["image_size"] == [48, 32]


def test_lists_become_pairs():
    assert ViTConfig(image_size=[48, 32], patch_size=[8, 8]).image_size == (48, 32)


def test_grid_size_non_square():
    assert tiny_config(image_size=(48, 32)).grid_size == (6, 4)
    assert tiny_config(image_size=(48, 32)).image_pair == (48, 32)
    assert tiny_config(image_size=32).image_pair == (32, 32)


def test_defaults_follow_the_paper():
    config = ViTConfig()
    assert (config.hidden_act, config.layer_norm_eps, config.qkv_bias) == ("gelu", 1e-6, True)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(image_size=(48, 32)),
        dict(qkv_bias=False),
        dict(pre_logits=True, pooler_output_size=16, classes=3),
        dict(position_embedding="sincos", classes=4),
        dict(pooling="gap", classes=2),
        dict(num_channels=1),
        dict(distillation_token=True, distillation_head=True, classes=3),
        dict(num_register_tokens=4, layerscale_value=1.0, mlp_type="swiglu"),
        dict(pooling="token_and_gap", pre_logits=True, pooler_output_size=8, classes=3),
        dict(position_embedding="rope", key_bias=False, mlp_type="gated", mlp_bias=False),
        dict(proj_bias=False, use_mask_token=True, num_register_tokens=1),
    ],
)
def test_closed_form_count_matches_the_model(overrides):
    config = tiny_config(**overrides)
    assert ViT(config).count_params() == config.count_params()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(image_size=30), "not divisible by patch_size"),
        (dict(image_size=(32, 36)), "width 36 is not divisible"),
        (dict(num_attention_heads=3), "not divisible by num_attention_heads"),
        (dict(pooling="max"), "Unknown pooling 'max'"),
        (dict(pooling=None, classes=3), "pooling=None"),
        (dict(pooling=None, pre_logits=True), "pooling=None"),
        (dict(hidden_act="gelu_erf"), "Unknown hidden_act"),
        (dict(position_embedding="alibi"), "Unknown position_embedding"),
        (dict(position_embedding="rope", hidden_size=24, num_attention_heads=4), "head size"),
        (dict(mlp_type="geglu"), "Unknown mlp_type"),
        (dict(model_type="beit"), "Unknown model_type"),
        (dict(distillation_head=True, classes=3), "distillation_token=True"),
        (dict(num_register_tokens=-1), "num_register_tokens"),
        (dict(layerscale_value=0), "layerscale_value must be"),
        (dict(key_bias=1), "key_bias must be True or False"),
        (
            dict(position_embedding="sincos", hidden_size=30, num_attention_heads=2),
            "divisible by 4",
        ),
        (dict(drop_path_rate=1.0), "drop_path_rate must be in"),
        (dict(classes=0), "classes must be a positive int"),
        (dict(image_size=(32, 32, 3)), "image_size must be"),
    ],
)
def test_bad_values_name_the_problem(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"Unknown ViTConfig field\(s\) \['hidden_dim'\]"):
        ViTConfig.from_dict({"hidden_dim": 32})


def test_as_pair():
    assert as_pair(7, "x") == (7, 7)
    assert as_pair((3, 5), "x") == (3, 5)
    with pytest.raises(ValueError, match="positive int"):
        as_pair(0, "x")
