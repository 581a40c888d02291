import re

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import VARIANTS, build_variant, variant_config

# Published parameter counts at 224x224 with a 1000-class head (keras.applications
# and timm report the same figures); ViT-B/16's is given in the project's issue.
PUBLISHED_COUNTS = {
    "ViTTi16": 5_717_416,
    "ViTS16": 22_050_664,
    "ViTB16": 86_567_656,
    "ViTB32": 88_224_232,
    "ViTL16": 304_326_632,
    "ViTL32": 306_535_400,
    "ViTH14": 632_045_800,
}


@pytest.mark.parametrize("variant", list(PUBLISHED_COUNTS))
def test_closed_form_count_matches_published(variant):
    assert variant_config(variant, classes=1000).count_params() == PUBLISHED_COUNTS[variant]


@pytest.mark.parametrize("variant", ["ViTTi16", "ViTS16", "ViTB16", "ViTB32"])
def test_built_model_count_matches_published(variant):
    model = getattr(keras_vit, variant)()
    assert model.count_params() == PUBLISHED_COUNTS[variant]


def test_table_sizes():
    sizes = {name: (row.layers, row.hidden, row.heads, row.mlp) for name, row in VARIANTS.items()}
    assert sizes["ViTTi16"] == (12, 192, 3, 768)
    assert sizes["ViTS16"] == (12, 384, 6, 1536)
    assert sizes["ViTB16"] == sizes["ViTB32"] == (12, 768, 12, 3072)
    assert sizes["ViTL16"] == sizes["ViTL32"] == (24, 1024, 16, 4096)
    assert sizes["ViTH14"] == (32, 1280, 16, 5120)


def small(**kwargs):
    """ViT-Ti/16 cut to one layer, on 32x32 images unless told otherwise, for speed."""
    return keras_vit.ViTTi16(**{"image_size": 32, "num_hidden_layers": 1, **kwargs})


def test_builder_arguments():
    model = small(classes=5, classifier_activation=None, pre_logits=True)
    assert model.name == "vit_ti16"
    assert model.output.shape == (None, 5)
    assert model.config.pre_logits and model.config.classifier_activation is None
    features = small(include_top=False, pooling="gap")
    assert features.output.shape == (None, 192)
    tokens = small(include_top=False, pooling=None, image_size=(48, 32))
    assert tokens.output.shape == (None, 1 + 3 * 2, 192)


def test_softmax_head_by_default():
    probs = keras.ops.convert_to_numpy(small(classes=4)(np.random.rand(2, 32, 32, 3)))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-6)


def test_weights_from_a_file_resample_to_a_new_size(tmp_path):
    source = small(include_top=False)
    path = str(tmp_path / "ti.weights.h5")
    source.save_weights(path)
    target = small(include_top=False, image_size=64, weights=path)
    expected = keras_vit.resample_position_embeddings(
        keras.ops.convert_to_numpy(source.embeddings.position_embedding), (2, 2), (4, 4)
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(target.embeddings.position_embedding), expected, atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pooling=None), "include_top=True needs a pooled vector"),
        (dict(classes=0), "include_top=True needs the number of classes"),
        (dict(pooling="max"), "Unknown pooling 'max'"),
        (dict(hidden_dim=64), r"Unknown argument\(s\) \['hidden_dim'\] for ViTTi16"),
        (dict(weights="imagenet21k"), r"Unknown weights 'imagenet21k' for ViTTi16.*\['imagenet'\]"),
        (dict(image_size=33), "not divisible by patch_size"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small(**kwargs)


def test_missing_weights_file():
    with pytest.raises(FileNotFoundError, match="absent.weights.h5.*no such file"):
        small(weights="absent.weights.h5")


def test_defaults_without_weights():
    config = keras_vit.ViTTi16(num_hidden_layers=1).config
    assert (config.classes, config.image_size, config.pre_logits) == (1000, 224, False)


def test_unknown_variant():
    with pytest.raises(ValueError, match="Unknown variant 'ViTX16'"):
        build_variant("ViTX16")


# The official checkpoints' config.json facts, by the parts of a variant's name:
# size letter -> (hidden_size, num_hidden_layers, num_attention_heads) ...
SIZES = {
    "Ti": (192, 12, 3),
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
    "H": (1280, 32, 16),
    "G": (1536, 40, 24),
    "HPlus": (1280, 32, 20),
}
# ... and (family, suffix) -> (transformers config class, model class, other fields).
FAMILY_FACTS = {
    ("ViT", ""): ("ViTConfig", "ViTForImageClassification", {}),
    ("DeiT", ""): ("ViTConfig", "ViTForImageClassification", {}),  # model_type "vit" repos
    ("DeiT", "Distilled"): ("DeiTConfig", "DeiTForImageClassificationWithTeacher", {}),
    ("DINOv2", ""): (
        "Dinov2Config",
        "Dinov2Model",
        dict(image_size=518, mlp_ratio=4, layerscale_value=1.0),
    ),
    ("DINOv2", "Registers"): (
        "Dinov2WithRegistersConfig",
        "Dinov2WithRegistersModel",
        dict(image_size=518, mlp_ratio=4, layerscale_value=1.0, num_register_tokens=4),
    ),
    ("DINOv3", ""): (
        "DINOv3ViTConfig",
        "DINOv3ViTModel",
        dict(num_register_tokens=4, key_bias=False, layerscale_value=1.0),
    ),
    ("MAE", ""): ("ViTMAEConfig", "ViTMAEModel", {}),
    ("MSN", ""): ("ViTMSNConfig", "ViTMSNModel", {}),
}
NAME = re.compile(r"(ViT|DeiT|DINOv2|DINOv3|MAE|MSN)(Ti|S|B|L|HPlus|H|G)(\d+)(\w*)")


def official_reference(variant):
    """transformers' model of the official checkpoint `variant` stands for, on the meta
    device (nothing allocated), built from the facts above, not from keras_vit's table."""
    import torch
    import transformers

    family, size, patch, suffix = NAME.fullmatch(variant).groups()
    hidden, layers, heads = SIZES[size]
    config_class, model_class, facts = FAMILY_FACTS[(family, suffix)]
    values = dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        patch_size=int(patch),
        **facts,
    )
    if variant.startswith("DINOv2G"):
        values["use_swiglu_ffn"] = True
    if variant == "DINOv3HPlus16":
        values.update(use_gated_mlp=True, hidden_act="silu")
    if "Classification" in model_class:
        values["num_labels"] = 1000
    config = getattr(transformers, config_class)(**values)
    with torch.device("meta"):
        return getattr(transformers, model_class)(config)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_closed_form_count_matches_the_official_checkpoints_model(variant):
    reference = official_reference(variant)
    head = "Classification" in type(reference).__name__
    config = variant_config(variant, classes=1000 if head else None)
    assert config.model_type == reference.config.model_type
    assert config.hidden_act == reference.config.hidden_act
    assert config.image_pair == (reference.config.image_size,) * 2
    # MAE's sin-cos table is a frozen parameter in transformers and no weight here.
    trainable = sum(p.numel() for p in reference.parameters() if p.requires_grad)
    assert config.count_params() == trainable


def tiny_row(monkeypatch, variant, mlp=64):
    """Cuts `variant`'s row to 2 layers of width 32, keeping its family and options."""
    row = VARIANTS[variant]._replace(layers=2, hidden=32, heads=2, mlp=mlp)
    monkeypatch.setitem(VARIANTS, variant, row)


@pytest.mark.parametrize(
    "variant, mlp, include_top",
    [
        ("DeiTTi16Distilled", 64, True),
        ("DINOv2S14", 128, False),
        ("DINOv2G14", 88, False),  # SwiGLU: 2/3 of 4 x 32, rounded up to a multiple of 8
        ("DINOv2S14Registers", 128, False),
        ("DINOv3S16", 128, False),
        ("DINOv3HPlus16", 128, False),
        ("MAEB16", 128, False),
        ("MSNS16", 128, False),
    ],
)
def test_random_builders_are_their_familys_transformers_model(
    monkeypatch, tmp_path, variant, mlp, include_top
):
    """Built without weights, the model exports as its family's transformers class with
    no tensor missing or unexpected, and computes what transformers computes."""
    import torch
    import transformers

    from tests.conftest import to_numpy
    from tests.conversion.conftest import nchw, random_images

    tiny_row(monkeypatch, variant, mlp)
    patch = VARIANTS[variant].patch
    model = getattr(keras_vit, variant)(
        include_top=include_top, classes=3, classifier_activation=None, image_size=2 * patch
    )
    model.save_pretrained(tmp_path / "export")
    _, model_class, _ = FAMILY_FACTS[NAME.fullmatch(variant).group(1, 4)]
    if not include_top:
        model_class = model_class.replace("ForImageClassificationWithTeacher", "Model")
    theirs, info = getattr(transformers, model_class).from_pretrained(
        tmp_path / "export", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    images = random_images(model)
    if model_class == "ViTMAEModel":
        theirs.config.mask_ratio = 0.0
        kwargs = dict(noise=torch.arange(4, dtype=torch.float32).expand(2, -1))
    else:
        kwargs = {}
    with torch.no_grad():
        outputs = theirs.eval()(nchw(images), **kwargs)
    expected = outputs.logits if include_top else outputs.last_hidden_state
    ours = model(images) if include_top else model.encode(images)["last_hidden_state"]
    np.testing.assert_allclose(to_numpy(ours), expected.numpy(), atol=1e-4)


def test_family_builders_without_weights():
    dinov2 = variant_config("DINOv2S14")
    assert (dinov2.model_type, dinov2.layerscale_value, dinov2.image_size) == ("dinov2", 1.0, 518)
    dinov3 = variant_config("DINOv3S16")
    assert (dinov3.position_embedding, dinov3.num_register_tokens) == ("rope", 4)
    assert variant_config("DINOv3HPlus16").mlp_type == "gated"
    assert variant_config("DINOv2G14Registers").mlp_type == "swiglu"
    assert variant_config("DeiTB16Distilled", classes=10).distillation_head
    assert not variant_config("DeiTB16Distilled").distillation_head
    assert variant_config("DeiTB16").model_type == "vit"
    model = keras_vit.DINOv3S16(include_top=False, num_hidden_layers=1, image_size=32)
    assert model.name == "dinov3_s16" and model.output.shape == (None, 384)


def test_every_builder_is_exported_with_its_named_weights():
    from keras_vit.hf_integration.named_weights import weight_names

    for variant in VARIANTS:
        builder = getattr(keras_vit, variant)
        assert builder.__name__ == variant and variant in keras_vit.__all__
        assert weight_names(variant), f"{variant} has no named weights"
        for name in weight_names(variant):
            assert f"`{name!r}`" in builder.__doc__


def test_builders_document_and_accept_positional_arguments():
    import inspect

    assert list(inspect.signature(keras_vit.ViTB16).parameters)[:2] == ["include_top", "weights"]
    assert "Args:" in keras_vit.ViTB16.__doc__ and "ViT-B/16" in keras_vit.ViTB16.__doc__
    model = keras_vit.ViTTi16(False, None, 32, num_hidden_layers=1)
    assert model.output.shape == (None, 192)
