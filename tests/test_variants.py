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


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_closed_form_count_matches_published(variant):
    assert variant_config(variant, classes=1000).count_params() == PUBLISHED_COUNTS[variant]


@pytest.mark.parametrize("variant", ["ViTTi16", "ViTS16", "ViTB16", "ViTB32"])
def test_built_model_count_matches_published(variant):
    model = getattr(keras_vit, variant)()
    assert model.count_params() == PUBLISHED_COUNTS[variant]


def test_table_sizes():
    sizes = {
        name: (layers, hidden, heads, mlp)
        for name, (layers, hidden, heads, mlp, _) in VARIANTS.items()
    }
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


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_closed_form_count_matches_transformers(variant):
    """transformers' own ViT, built on the meta device (nothing allocated), as the oracle."""
    import torch
    import transformers

    config = variant_config(variant, classes=1000)
    hf_config = transformers.ViTConfig(
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        patch_size=config.patch_size,
        image_size=224,
        num_labels=1000,
    )
    with torch.device("meta"):
        reference = transformers.ViTForImageClassification(hf_config)
    assert config.count_params() == sum(p.numel() for p in reference.parameters())


def test_builders_document_and_accept_positional_arguments():
    import inspect

    assert list(inspect.signature(keras_vit.ViTB16).parameters)[:2] == ["include_top", "weights"]
    assert "Args:" in keras_vit.ViTB16.__doc__ and "ViT-B/16" in keras_vit.ViTB16.__doc__
    model = keras_vit.ViTTi16(False, None, 32, num_hidden_layers=1)
    assert model.output.shape == (None, 192)
