"""Every family's named weights, resolved from the loopback Hub under the official repo ids.

Each repo is a tiny random transformers model of the family, saved with the files a real
repo holds. The builder's row is cut to the tiny size for the test (`VARIANTS` is read at
call time), so the builder's own family config and the named-weights table are what is
tested; the full sizes are checked against transformers in tests/test_variants.py.
"""

import logging

import huggingface_hub
import numpy as np
import pytest
import torch

import keras_vit
from keras_vit import VARIANTS
from keras_vit.conversion.pretrained import hf_backbone_config
from keras_vit.hf_integration.named_weights import GATED_REPOS, NAMED_WEIGHTS
from tests.conftest import to_numpy
from tests.conversion.conftest import nchw, random_images
from tests.support.family_models import backbone_outputs, make_family_model, write_hub_repo

TOLERANCE = 1e-4
VIT_LIKE = dict(intermediate_size=64, image_size=32, patch_size=8)
DINOV2 = dict(mlp_ratio=2, image_size=28, patch_size=14, layerscale_value=0.5)
DINOV3 = dict(
    intermediate_size=64, image_size=32, patch_size=16, num_register_tokens=4, key_bias=False
)

# (variant, weight name): (transformers class, its config class, config overrides)
FAMILY_REPOS = {
    ("DeiTS16", "imagenet"): (
        "ViTForImageClassification",
        "ViTConfig",
        dict(VIT_LIKE, num_labels=3),
    ),
    ("DeiTB16Distilled", "imagenet-384"): (
        "DeiTForImageClassificationWithTeacher",
        "DeiTConfig",
        dict(VIT_LIKE, num_labels=3),
    ),
    ("ViTS8", "dino"): ("ViTModel", "ViTConfig", VIT_LIKE),
    ("DINOv2S14", "lvd142m"): ("Dinov2Model", "Dinov2Config", DINOV2),
    ("DINOv2G14", "lvd142m"): ("Dinov2Model", "Dinov2Config", dict(DINOV2, use_swiglu_ffn=True)),
    ("DINOv2B14Registers", "lvd142m"): (
        "Dinov2WithRegistersModel",
        "Dinov2WithRegistersConfig",
        dict(DINOV2, num_register_tokens=4),
    ),
    ("DINOv3HPlus16", "lvd1689m"): (
        "DINOv3ViTModel",
        "DINOv3ViTConfig",
        dict(DINOV3, use_gated_mlp=True, hidden_act="silu", layerscale_value=0.5),
    ),
    ("MAEB16", "imagenet"): (
        "ViTMAEForPreTraining",
        "ViTMAEConfig",
        dict(
            VIT_LIKE,
            mask_ratio=0.0,  # no patch is dropped, so outputs compare
            decoder_hidden_size=16,
            decoder_num_hidden_layers=1,
            decoder_num_attention_heads=2,
            decoder_intermediate_size=32,
        ),
    ),
    ("MSNL16", "imagenet"): ("ViTMSNModel", "ViTMSNConfig", VIT_LIKE),
}


def plant_family_repo(hub, monkeypatch, tmp_path, variant, weights, seed=0):
    """Plants a tiny model of `variant`'s family under the official repo of its weights,
    and cuts the builder's row to that size. Returns (repo id, transformers model)."""
    repo = NAMED_WEIGHTS[(variant, weights)]
    reference, tiny = plant_repo(hub, tmp_path, repo, *FAMILY_REPOS[(variant, weights)], seed)
    cut_row_to(monkeypatch, variant, tiny)
    return repo, reference


def plant_repo(hub, tmp_path, repo, class_name, config_name, overrides, seed=0):
    """Plants a tiny random transformers model under `repo`.
    Returns the model and the keras_vit config read from its repo."""
    reference = make_family_model(class_name, config_name, seed, **overrides)
    if class_name == "ViTModel":
        reference.pooler = None  # DINO's ViTModel checkpoints have no pooler
    directory = tmp_path / repo.replace("/", "--")
    write_hub_repo(reference, directory)
    hub.plant(repo, directory)
    return reference, hf_backbone_config(directory)


def cut_row_to(monkeypatch, variant, tiny):
    """Cuts the builder's `VARIANTS` row to the size of a tiny `ViTConfig`."""
    row = VARIANTS[variant]._replace(
        layers=tiny.num_hidden_layers,
        hidden=tiny.hidden_size,
        heads=tiny.num_attention_heads,
        mlp=tiny.intermediate_size,
        patch=tiny.patch_size,
    )
    monkeypatch.setitem(VARIANTS, variant, row)


def assert_matches_transformers(model, reference):
    """The backbone's outputs, and the class scores where there is a head."""
    assert model.config.model_type == reference.config.model_type
    images = random_images(model)
    expected = backbone_outputs(reference, images)
    ours = model.encode(images)
    np.testing.assert_allclose(
        to_numpy(ours["last_hidden_state"]), expected.last_hidden_state.numpy(), atol=TOLERANCE
    )
    if getattr(expected, "pooler_output", None) is not None:
        np.testing.assert_allclose(
            to_numpy(ours["pooler_output"]), expected.pooler_output.numpy(), atol=TOLERANCE
        )
    if model.config.classes:
        with torch.no_grad():
            logits = reference(nchw(images)).logits.numpy()
        np.testing.assert_allclose(to_numpy(model(images)), logits, atol=TOLERANCE)


@pytest.mark.parametrize("variant, weights", list(FAMILY_REPOS))
def test_named_weights_of_every_family_match_transformers(
    hub, monkeypatch, tmp_path, token, variant, weights
):
    repo, reference = plant_family_repo(hub, monkeypatch, tmp_path, variant, weights)
    if repo in GATED_REPOS:
        hub.gate(repo, granted=(token,))
        monkeypatch.setenv("HF_TOKEN", token)
    model = getattr(keras_vit, variant)(weights=weights, classifier_activation=None)
    assert model.config.base_model == repo
    assert sorted(hub.downloads(repo)) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    assert bool(model.config.classes) == ("Classification" in type(reference).__name__)
    assert model.config.distillation_head == variant.endswith("Distilled")
    assert_matches_transformers(model, reference)


def test_mae_decoder_is_reported_unused(hub, monkeypatch, tmp_path, caplog):
    plant_family_repo(hub, monkeypatch, tmp_path, "MAEB16", "imagenet")
    with caplog.at_level(logging.INFO, logger="keras_vit"):
        model = keras_vit.MAEB16(weights="imagenet")
    assert model.config.position_embedding == "sincos"
    assert "Not loaded from" in caplog.text and "decoder." in caplog.text


@pytest.mark.parametrize(
    "token_kind, message",
    [
        (None, r"gated repo and you are not logged in \(HTTP 401\)"),
        ("not granted", r"gated repo and your account has not been granted access.*\(HTTP 403\)"),
    ],
)
def test_gated_repo_says_to_accept_the_licence_and_log_in(
    hub, monkeypatch, tmp_path, token_kind, message
):
    repo, _ = plant_family_repo(hub, monkeypatch, tmp_path, "DINOv3HPlus16", "lvd1689m")
    hub.gate(repo, granted=("hf_token_of_someone_who_accepted",))
    if token_kind:
        monkeypatch.setenv("HF_TOKEN", "hf_token_of_someone_else")
    with pytest.raises(PermissionError, match=message) as raised:
        keras_vit.DINOv3HPlus16(weights="lvd1689m")
    text = str(raised.value)
    assert f"{huggingface_hub.constants.ENDPOINT}/{repo}" in text
    assert "Accept its licence" in text and "hf auth login" in text
    assert "huggingface-cli login" in text and "HF_TOKEN" in text


@pytest.mark.parametrize(
    "variant, weights, tag, transformers_class",
    [
        ("DINOv2S14", "lvd142m", "dinov2", "Dinov2Model"),
        ("DeiTB16Distilled", "imagenet-384", "deit", "DeiTForImageClassificationWithTeacher"),
    ],
)
def test_pushed_family_model_card_names_the_base_model_and_family(
    hub, monkeypatch, tmp_path, token, variant, weights, tag, transformers_class
):
    repo, _ = plant_family_repo(hub, monkeypatch, tmp_path, variant, weights)
    model = getattr(keras_vit, variant)(weights=weights, drop_path_rate=0.1)
    model.push_to_hub("me/tuned", token=token)
    card = huggingface_hub.ModelCard.load("me/tuned")
    assert card.data.base_model == repo
    assert card.data.tags[-1] == tag
    assert f'{transformers_class}.from_pretrained("me/tuned")' in card.text


def test_a_checkpoint_of_another_family_is_refused_and_the_fitting_builder_named(
    hub, monkeypatch, tmp_path
):
    repo, _ = plant_family_repo(hub, monkeypatch, tmp_path, "DINOv2B14Registers", "lvd142m")
    cut_row_to(monkeypatch, "DINOv2S14", hf_backbone_config(tmp_path / repo.replace("/", "--")))
    with pytest.raises(ValueError) as raised:
        keras_vit.DINOv2S14(weights=repo)
    message = str(raised.value)
    assert "model_type 'dinov2_with_registers' (expected 'dinov2')" in message
    assert "hidden_size" not in message  # the same size: only the family differs
    assert "Use keras_vit.DINOv2B14Registers" in message


def test_a_dinov2_classifier_keeps_its_token_and_gap_pooling_through_a_builder(
    hub, monkeypatch, tmp_path
):
    overrides = dict(DINOV2, num_labels=3)
    arguments = ("Dinov2ForImageClassification", "Dinov2Config", overrides)
    reference, tiny = plant_repo(hub, tmp_path, "org/dinov2-tuned", *arguments)
    cut_row_to(monkeypatch, "DINOv2S14", tiny)
    model = keras_vit.DINOv2S14(weights="org/dinov2-tuned", classifier_activation=None)
    assert model.config.pooling == "token_and_gap"
    assert_matches_transformers(model, reference)
    # Random weights: a head reads [CLS] and the mean patch token, as transformers' does;
    # without a head, [CLS] alone.
    assert keras_vit.DINOv2S14(classes=3).config.pooling == "token_and_gap"
    assert keras_vit.DINOv2S14(include_top=False).config.pooling == "token"
    assert keras_vit.DeiTS16(classes=3).config.pooling == "token"
