"""The weight-path contract: the model's weights are where `weight_paths` says they are."""

import re

import pytest

from keras_vit import ViT, distribution, training
from keras_vit.conversion import hf_name_for
from keras_vit.model import weight_paths as paths
from tests.conftest import tiny_config


def contract_paths(config, optional=()) -> set[str]:
    """Every weight path a ViT of `config` has, spelt from the contract's names;
    `optional` names the optional block sublayers it has."""
    variables = {"layernorm": ("gamma", "beta")}
    expected = {
        paths.CLS_TOKEN,
        paths.POSITION_EMBEDDING,
        *(f"{paths.PATCH_PROJECTION}/{v}" for v in ("kernel", "bias")),
    }
    for index in range(config.num_hidden_layers):
        for sublayer in paths.BLOCK_SUBLAYERS:
            if sublayer in paths.OPTIONAL_BLOCK_SUBLAYERS and sublayer not in optional:
                continue
            names = variables["layernorm"] if sublayer in paths.LAYERNORMS else ("kernel", "bias")
            names = ("scale",) if sublayer in paths.LAYER_SCALES else names
            expected |= {f"{paths.block_path(index, sublayer)}/{v}" for v in names}
    expected |= {f"{paths.FINAL_LAYERNORM}/{v}" for v in variables["layernorm"]}
    expected |= {f"{paths.PRE_LOGITS}/{v}" for v in ("kernel", "bias")}
    expected |= {f"{paths.HEAD}/{v}" for v in ("kernel", "bias")}
    return expected


def test_the_model_has_exactly_the_contract_paths():
    config = tiny_config(classes=3, pre_logits=True)
    assert {w.path for w in ViT(config).weights} == contract_paths(config)
    assert "embeddings/mask_token" in {
        w.path for w in ViT(tiny_config(use_mask_token=True)).weights
    }


def test_every_family_option_has_contract_paths():
    config = tiny_config(
        classes=3,
        pre_logits=True,
        distillation_token=True,
        distillation_head=True,
        num_register_tokens=2,
        layerscale_value=1.0,
        mlp_type="gated",
    )
    expected = contract_paths(config, paths.OPTIONAL_BLOCK_SUBLAYERS) | {
        paths.DISTILLATION_TOKEN,
        paths.REGISTER_TOKENS,
        f"{paths.DISTILLATION_HEAD}/kernel",
        f"{paths.DISTILLATION_HEAD}/bias",
    }
    assert {w.path for w in ViT(config).weights} == expected


@pytest.mark.parametrize(
    "path, block, layer, variable",
    [
        ("encoder/layer_11/attention/query/kernel", 11, "attention/query", "kernel"),
        ("encoder/layer_0/layernorm_before/gamma", 0, "layernorm_before", "gamma"),
        ("embeddings/patch_projection/bias", None, "embeddings/patch_projection", "bias"),
        ("embeddings/cls_token", None, "embeddings/cls_token", None),
        ("head/kernel", None, "head", "kernel"),
    ],
)
def test_parse(path, block, layer, variable):
    assert paths.parse(path) == paths.WeightPath(block, layer, variable)


def test_every_block_pattern_matches_every_block_and_nothing_else():
    pattern = paths.every_block_pattern(paths.MLP_FC1, "kernel")
    assert re.fullmatch(pattern, "encoder/layer_7/mlp_fc1/kernel")
    assert re.fullmatch(pattern, "encoder/layer_12/mlp_fc1/kernel")
    assert not re.fullmatch(pattern, "encoder/layer_7/mlp_fc1/bias")
    assert not re.fullmatch(pattern, "encoder/layer_7/mlp_fc2/kernel")


def test_the_derived_tables_cover_the_contract():
    """Conversion, the layout map and weight decay are written in the contract's names."""
    config = tiny_config(classes=3, pre_logits=True)
    model = ViT(config)
    names = {hf_name_for(w.path) for w in model.weights}
    assert len(names) == len(model.weights)  # one transformers tensor per weight
    split = [
        w.path
        for w in model.weights
        if any(re.fullmatch(p, w.path) for p in distribution.MEGATRON_LAYOUT)
    ]
    assert len(split) == config.num_hidden_layers * 10  # q, k, v, fc1 and their biases; out, fc2
    no_decay = {w.path for w in training.no_weight_decay(model)}
    assert no_decay == {w.path for w in model.trainable_variables if not w.path.endswith("/kernel")}
