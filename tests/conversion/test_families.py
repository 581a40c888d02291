"""The ViT family (DeiT, DINOv2, DINOv2 with registers, DINOv3, MAE, MSN) against
transformers, both ways, on the current Keras backend."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from keras_vit import ViT
from tests.conftest import to_numpy
from tests.conversion.conftest import random_images
from tests.support.family_models import (
    backbone_outputs,
    make_family_model,
    run_reference,
    write_hub_repo,
)

TOLERANCE = 1e-4
VIT_LIKE = dict(intermediate_size=64, image_size=32, patch_size=8)
DINOV2 = dict(mlp_ratio=2, image_size=32, patch_size=8, layerscale_value=0.5)

# name: (transformers class, its config class, config overrides, another input size)
FAMILY_CHECKPOINTS = {
    "deit_teacher": (
        "DeiTForImageClassificationWithTeacher",
        "DeiTConfig",
        dict(VIT_LIKE, num_labels=3),
        (48, 40),
    ),
    # transformers resamples from square grids only, so the sources are square here.
    "deit_classifier": (
        "DeiTForImageClassification",
        "DeiTConfig",
        dict(VIT_LIKE, num_labels=3),
        (48, 32),
    ),
    "deit_model": ("DeiTModel", "DeiTConfig", VIT_LIKE, (40, 40)),
    "dinov2_model": ("Dinov2Model", "Dinov2Config", DINOV2, (48, 32)),
    "dinov2_swiglu_classifier": (
        "Dinov2ForImageClassification",
        "Dinov2Config",
        dict(DINOV2, use_swiglu_ffn=True, num_labels=3),
        (40, 40),
    ),
    "dinov2_registers_classifier": (
        "Dinov2WithRegistersForImageClassification",
        "Dinov2WithRegistersConfig",
        dict(DINOV2, num_register_tokens=2, num_labels=3),
        (32, 48),
    ),
    "dinov3_gated": (
        "DINOv3ViTModel",
        "DINOv3ViTConfig",
        dict(
            intermediate_size=64,
            image_size=32,
            patch_size=8,
            num_register_tokens=2,
            use_gated_mlp=True,
            hidden_act="silu",
            layerscale_value=0.5,
        ),
        (48, 32),
    ),
    "dinov3_plain": (
        "DINOv3ViTModel",
        "DINOv3ViTConfig",
        dict(intermediate_size=64, image_size=(32, 48), patch_size=8, key_bias=True),
        (40, 40),
    ),
    "mae_pretraining": (
        "ViTMAEForPreTraining",
        "ViTMAEConfig",
        dict(
            VIT_LIKE,
            mask_ratio=0.0,
            decoder_hidden_size=16,
            decoder_num_hidden_layers=1,
            decoder_num_attention_heads=2,
            decoder_intermediate_size=32,
        ),
        (48, 32),
    ),
    "mae_model": ("ViTMAEModel", "ViTMAEConfig", dict(VIT_LIKE, mask_ratio=0.0), (40, 40)),
    "msn_classifier": (
        "ViTMSNForImageClassification",
        "ViTMSNConfig",
        dict(VIT_LIKE, num_labels=3),
        (48, 32),
    ),
    "msn_model": ("ViTMSNModel", "ViTMSNConfig", VIT_LIKE, (40, 40)),
}


@pytest.fixture(scope="module")
def family_checkpoints(tmp_path_factory):
    """name -> (directory, transformers model) for every FAMILY_CHECKPOINTS entry."""
    made = {}
    for seed, (name, (class_name, config_name, overrides, _)) in enumerate(
        FAMILY_CHECKPOINTS.items()
    ):
        model = make_family_model(class_name, config_name, seed, **overrides)
        directory = tmp_path_factory.mktemp(name)
        write_hub_repo(model, directory)
        made[name] = (directory, model)
    return made


def assert_close(ours, theirs):
    np.testing.assert_allclose(to_numpy(ours), theirs.numpy(), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", list(FAMILY_CHECKPOINTS))
def test_every_output_matches_transformers(family_checkpoints, name):
    directory, reference = family_checkpoints[name]
    model = ViT.from_pretrained(directory, verbose=False)
    assert model.config.model_type == reference.config.model_type
    images = random_images(model)
    expected = backbone_outputs(
        reference, images, output_hidden_states=True, output_attentions=True
    )
    ours = model.encode(images, output_hidden_states=True, output_attentions=True)
    assert_close(ours["last_hidden_state"], expected.last_hidden_state)
    if getattr(expected, "pooler_output", None) is not None:
        assert_close(ours["pooler_output"], expected.pooler_output)
    else:
        assert "pooler_output" not in ours
    assert len(ours["hidden_states"]) == len(expected.hidden_states) == 3
    for ours_state, theirs in zip(ours["hidden_states"], expected.hidden_states, strict=True):
        assert_close(ours_state, theirs)
    assert len(ours["attentions"]) == len(expected.attentions) == 2
    for ours_map, theirs in zip(ours["attentions"], expected.attentions, strict=True):
        assert_close(ours_map, theirs)
    if hasattr(reference, "classifier") or hasattr(reference, "cls_classifier"):
        assert_close(model(images), run_reference(reference, images).logits)


@pytest.mark.parametrize(
    "name", ["deit_teacher", "dinov2_swiglu_classifier", "dinov3_gated", "mae_pretraining"]
)
def test_hf_to_keras_to_hf_is_bit_for_bit(family_checkpoints, name, tmp_path):
    directory, reference = family_checkpoints[name]
    model = ViT.from_pretrained(directory, verbose=False)
    model.save_pretrained(tmp_path / "export")
    original = load_file(directory / "model.safetensors")
    exported = load_file(tmp_path / "export" / "model.safetensors")
    # A pretraining checkpoint's encoder is exported as the base model (`ViTMAEModel`),
    # so its tensors lose the `vit.` prefix and the decoder stays behind.
    pretraining = isinstance(reference, transformers.ViTMAEForPreTraining)
    kept = {
        key.removeprefix("vit.") if pretraining else key: value
        for key, value in original.items()
        if not key.startswith("decoder.")
    }
    assert sorted(exported) == sorted(kept)
    for key, value in kept.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["model_type"] == reference.config.model_type


@pytest.mark.parametrize("name", list(FAMILY_CHECKPOINTS))
def test_transformers_loads_the_export_with_the_matching_class(family_checkpoints, name, tmp_path):
    directory, reference = family_checkpoints[name]
    model = ViT.from_pretrained(directory, verbose=False)
    model.save_pretrained(tmp_path / "export")
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    expected_class = type(reference).__name__.replace("ForPreTraining", "Model")
    assert config["architectures"] == [expected_class]
    loaded, info = getattr(transformers, expected_class).from_pretrained(
        tmp_path / "export", output_loading_info=True, attn_implementation="eager"
    )
    if expected_class.startswith("ViTMAE"):
        loaded.config.mask_ratio = 0.0
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    images = random_images(model, seed=1)
    theirs = backbone_outputs(loaded.eval(), images)
    assert_close(model.encode(images)["last_hidden_state"], theirs.last_hidden_state)
    if hasattr(loaded, "classifier") or hasattr(loaded, "cls_classifier"):
        assert_close(model(images), run_reference(loaded, images).logits)


def mae_at_size(reference, size):
    """transformers' MAE encoder built for `size`, with `reference`'s weights and the
    sin-cos table transformers computes for that grid. (`ViTMAEEmbeddings.initialize_weights`
    and the pretraining decoder assume a square grid, so the encoder is rebuilt alone
    and its table comes from the function transformers calls, with the same swap of halves.)"""
    encoder = getattr(reference, "vit", reference)
    config = type(encoder.config)(**{**encoder.config.to_dict(), "image_size": list(size)})
    rebuilt = transformers.ViTMAEModel(config).eval()
    state = {
        key: value
        for key, value in encoder.state_dict().items()
        if "position_embeddings" not in key
    }
    rebuilt.load_state_dict(state, strict=False)
    patch = config.patch_size
    table = transformers.models.vit_mae.modeling_vit_mae.build_2d_sinusoidal_position_embedding(
        height=size[0] // patch,
        width=size[1] // patch,
        embed_dim=config.hidden_size,
        cls_token=True,
    )
    half = config.hidden_size // 2
    table = torch.cat([table[:, half:], table[:, :half]], dim=1)
    with torch.no_grad():
        rebuilt.embeddings.position_embeddings.copy_(table[None])
    return rebuilt


@pytest.mark.parametrize("name", list(FAMILY_CHECKPOINTS))
def test_another_input_size_matches_transformers_at_that_size(family_checkpoints, name):
    directory, reference = family_checkpoints[name]
    size = FAMILY_CHECKPOINTS[name][3]
    model = ViT.from_pretrained(directory, image_size=size, verbose=False)
    images = random_images(model, seed=2)
    if reference.config.model_type == "vit_mae":
        expected = backbone_outputs(mae_at_size(reference, size), images)
    elif reference.config.model_type.startswith(("dinov2", "dinov3")):
        expected = backbone_outputs(reference, images)  # they resize at every forward
    else:
        expected = backbone_outputs(reference, images, interpolate_pos_encoding=True)
    assert_close(model.encode(images)["last_hidden_state"], expected.last_hidden_state)


@pytest.mark.parametrize("name", list(FAMILY_CHECKPOINTS))
def test_convert_verify_compares_with_the_family_base_model(family_checkpoints, name, tmp_path):
    from keras_vit.cli import main

    directory, _ = family_checkpoints[name]
    # A square size other than the checkpoint's, except for MAE (see the next test).
    resized = [] if name.startswith("mae") else ["--image-size", "40"]
    destination = tmp_path / "model.weights.h5"
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        assert main(["convert", str(directory), str(destination), "--verify", *resized]) == 0
    difference = float(summary.getvalue().strip().rsplit(" ", 1)[-1])
    assert difference < TOLERANCE
    assert destination.is_file()


def test_convert_verify_refuses_mae_at_another_size_and_writes_nothing(
    family_checkpoints, tmp_path, capsys
):
    from keras_vit.cli import main

    directory, _ = family_checkpoints["mae_model"]
    destination = tmp_path / "mae.keras"
    arguments = ["convert", str(directory), str(destination), "--verify", "--image-size", "48"]
    assert main(arguments) == 1
    assert "recomputes it for the new grid" in capsys.readouterr().err
    assert not destination.exists()
