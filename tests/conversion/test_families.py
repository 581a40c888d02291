"""The ViT family (DeiT, DINOv2, DINOv2 with registers, DINOv3, MAE, MSN) against
transformers, both ways, on the current Keras backend."""

import json

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from keras_vit import ViT
from tests.conftest import to_numpy
from tests.conversion.conftest import nchw, random_images

TOLERANCE = 1e-4
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, attn_implementation="eager")
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


def make_family_model(class_name: str, config_name: str, seed: int, **overrides):
    """A random transformers model whose every tensor matters: LayerNorms,
    biases, layer scales and tokens are perturbed (MAE's fixed sin-cos table
    stays as transformers computes it)."""
    torch.manual_seed(seed)
    config = getattr(transformers, config_name)(**{**TINY, **overrides})
    model = getattr(transformers, class_name)(config).eval()
    for module in model.modules():
        if isinstance(module, transformers.models.vit_mae.modeling_vit_mae.ViTMAEEmbeddings):
            # Built from a config, the table is left at zeros (its init is skipped);
            # a real MAE checkpoint holds the sin-cos table, so let transformers write it.
            module.patch_embeddings.projection._is_hf_initialized = False
            module.initialize_weights()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and (parameter.ndim <= 1 or "token" in name):
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def write_hub_repo(model, directory) -> None:
    """`save_pretrained`, plus the files a real Hub repo holds beside it."""
    model.save_pretrained(directory)
    (directory / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A test model\n")
    (directory / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")


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


def run_reference(reference, images, **kwargs):
    """transformers' outputs; MAE gets sorted noise, so that no patch is shuffled."""
    pixels = nchw(images)
    if isinstance(reference, transformers.ViTMAEForPreTraining):
        reference = reference.vit
    if isinstance(reference, transformers.ViTMAEModel):
        patch_height, patch_width = reference.embeddings.patch_embeddings.patch_size
        patches = (pixels.shape[2] // patch_height) * (pixels.shape[3] // patch_width)
        kwargs["noise"] = torch.arange(patches, dtype=torch.float32).expand(len(images), -1)
    with torch.no_grad():
        return reference(pixels, **kwargs)


def backbone_outputs(reference, images, **kwargs):
    """The backbone's outputs of a base model or a classifier."""
    for attribute in ("deit", "dinov2", "dinov2_with_registers", "vit"):
        if hasattr(reference, attribute) and not isinstance(reference, transformers.ViTMAEModel):
            return run_reference(getattr(reference, attribute), images, **kwargs)
    return run_reference(reference, images, **kwargs)


def assert_close(ours, theirs):
    np.testing.assert_allclose(to_numpy(ours), theirs.numpy(), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", list(FAMILY_CHECKPOINTS))
def test_every_output_matches_transformers(family_checkpoints, name):
    directory, reference = family_checkpoints[name]
    model = ViT.from_pretrained(directory, verbose=False)
    assert model.config.model_type == reference.config.model_type
    images = random_images(model)
    expected = backbone_outputs(reference, images, output_hidden_states=True, output_attentions=True)
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
    """transformers' MAE built for `size`, with `reference`'s weights and the sin-cos
    table transformers computes for that grid. (`ViTMAEEmbeddings.initialize_weights`
    assumes a square grid, so the table comes from the function it calls, with the
    same swap of halves.)"""
    config = type(reference.config)(**{**reference.config.to_dict(), "image_size": list(size)})
    rebuilt = type(reference)(config).eval()
    state = {
        key: value
        for key, value in reference.state_dict().items()
        if "position_embeddings" not in key and "decoder_pos_embed" not in key
    }
    rebuilt.load_state_dict(state, strict=False)
    patch = config.patch_size
    table = transformers.models.vit_mae.modeling_vit_mae.build_2d_sinusoidal_position_embedding(
        height=size[0] // patch, width=size[1] // patch, embed_dim=config.hidden_size, cls_token=True
    )
    half = config.hidden_size // 2
    table = torch.cat([table[:, half:], table[:, :half]], dim=1)
    backbone = rebuilt.vit if hasattr(rebuilt, "vit") else rebuilt
    with torch.no_grad():
        backbone.embeddings.position_embeddings.copy_(table[None])
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
