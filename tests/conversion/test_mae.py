"""`MaskedAutoencoder` against transformers' `ViTMAEForPreTraining`, both ways (current backend)."""

import json
import re

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from keras_vit import MaskedAutoencoder
from keras_vit.conversion import CheckpointMismatchError
from tests.conftest import to_numpy
from tests.conversion.conftest import nchw, random_images
from tests.support.family_models import make_family_model, write_hub_repo

TOLERANCE = 1e-4
MAE = dict(
    intermediate_size=64,
    image_size=32,
    patch_size=8,
    mask_ratio=0.75,
    decoder_hidden_size=16,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=32,
)
# transformers 5 saves decoder block N as `decoder.decoder_encoder.layer.N.`; the Hub's MAE
# checkpoints (and keras_vit's exports) name it `decoder.decoder_layers.N.`.
TRANSFORMERS_5_BLOCK = re.compile(r"^decoder\.decoder_encoder\.layer\.(\d+)\.")


def hub_naming(name: str) -> str:
    return TRANSFORMERS_5_BLOCK.sub(r"decoder.decoder_layers.\1.", name)


@pytest.fixture(scope="module", params=[False, True], ids=["pixels", "norm_pix_loss"])
def mae_checkpoint(request, tmp_path_factory):
    """(directory, transformers ViTMAEForPreTraining) with random, perturbed weights."""
    norm_pix_loss = request.param
    reference = make_family_model(
        "ViTMAEForPreTraining",
        "ViTMAEConfig",
        10 + norm_pix_loss,
        **MAE,
        norm_pix_loss=norm_pix_loss,
    )
    directory = tmp_path_factory.mktemp("mae")
    write_hub_repo(reference, directory)
    return directory, reference


def reference_outputs(reference, images, noise):
    with torch.no_grad():
        return reference(nchw(images), noise=torch.from_numpy(noise))


def max_differences(ours, theirs) -> dict[str, float]:
    return {
        key: float(
            np.abs(to_numpy(ours[key]).astype("float64") - getattr(theirs, key).numpy()).max()
        )
        for key in ("loss", "logits", "mask", "ids_restore")
    }


def test_outputs_match_transformers_given_the_same_noise(mae_checkpoint):
    directory, reference = mae_checkpoint
    mae = MaskedAutoencoder.from_pretrained(directory, verbose=False)
    assert mae.mae_config.norm_pix_loss == reference.config.norm_pix_loss
    assert mae.mae_config.mask_ratio == 0.75
    images = random_images(mae)
    noise = np.random.default_rng(4).random((2, 16)).astype("float32")
    ours = mae.reconstruct(images, noise=noise)
    theirs = reference_outputs(reference, images, noise)
    differences = max_differences(ours, theirs)
    assert differences["mask"] == differences["ids_restore"] == 0, differences
    assert differences["logits"] < TOLERANCE and differences["loss"] < TOLERANCE, differences
    assert tuple(ours["logits"].shape) == tuple(theirs.logits.shape) == (2, 16, 192)


def test_hf_to_keras_to_hf_is_bit_for_bit(mae_checkpoint, tmp_path):
    directory, reference = mae_checkpoint
    mae = MaskedAutoencoder.from_pretrained(directory, verbose=False)
    mae.save_pretrained(tmp_path / "export")
    original = {hub_naming(k): v for k, v in load_file(directory / "model.safetensors").items()}
    exported = load_file(tmp_path / "export" / "model.safetensors")
    assert sorted(exported) == sorted(original)
    assert any(name.startswith("decoder.decoder_layers.1.") for name in exported)
    for name, value in original.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["architectures"] == ["ViTMAEForPreTraining"]
    assert config["model_type"] == "vit_mae"
    for key in ("mask_ratio", "norm_pix_loss", "decoder_hidden_size", "decoder_num_hidden_layers"):
        assert config[key] == getattr(reference.config, key), key


def test_a_checkpoint_in_the_hubs_naming_comes_back_with_the_same_names(mae_checkpoint, tmp_path):
    directory, _ = mae_checkpoint
    hub_style = tmp_path / "hub_style"
    hub_style.mkdir()
    (hub_style / "config.json").write_text((directory / "config.json").read_text())
    tensors = {hub_naming(k): v for k, v in load_file(directory / "model.safetensors").items()}
    save_file(tensors, hub_style / "model.safetensors", metadata={"format": "pt"})
    MaskedAutoencoder.from_pretrained(hub_style, verbose=False).save_pretrained(tmp_path / "out")
    exported = load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(exported) == sorted(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)


def test_transformers_loads_the_export_with_no_missing_keys(mae_checkpoint, tmp_path):
    directory, reference = mae_checkpoint
    mae = MaskedAutoencoder.from_pretrained(directory, verbose=False)
    mae.save_pretrained(tmp_path / "export")
    loaded, info = transformers.ViTMAEForPreTraining.from_pretrained(
        tmp_path / "export", output_loading_info=True, attn_implementation="eager"
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    images = random_images(mae, seed=1)
    noise = np.random.default_rng(5).random((2, 16)).astype("float32")
    theirs, again = (reference_outputs(m.eval(), images, noise) for m in (loaded, reference))
    torch.testing.assert_close(theirs.logits, again.logits, rtol=0, atol=0)
    torch.testing.assert_close(theirs.loss, again.loss, rtol=0, atol=0)


def test_a_keras_mae_exports_to_transformers_and_matches(tmp_path):
    from keras_vit import MAEConfig, ViTConfig
    from tests.model.test_mae import DECODER, MAE_ENCODER

    mae = MaskedAutoencoder(ViTConfig(**MAE_ENCODER), MAEConfig(**DECODER), seed=0)
    mae.save_pretrained(tmp_path / "fresh")
    loaded = transformers.ViTMAEForPreTraining.from_pretrained(
        tmp_path / "fresh", attn_implementation="eager"
    ).eval()
    images = random_images(mae, seed=2)
    noise = np.random.default_rng(6).random((2, 16)).astype("float32")
    differences = max_differences(
        mae.reconstruct(images, noise=noise), reference_outputs(loaded, images, noise)
    )
    assert max(differences.values()) < TOLERANCE, differences


def test_missing_and_unexpected_decoder_tensors_are_reported_together(mae_checkpoint, tmp_path):
    directory, _ = mae_checkpoint
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((directory / "config.json").read_text())
    tensors = load_file(directory / "model.safetensors")
    del tensors["decoder.decoder_pred.weight"]
    tensors["decoder.extra.weight"] = np.zeros(3, "float32")
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatchError) as error:
        MaskedAutoencoder.from_pretrained(broken, verbose=False)
    assert "missing (1): decoder.decoder_pred.weight" in str(error.value)
    assert "unexpected (1): decoder.extra.weight" in str(error.value)


def test_other_families_and_zero_mask_ratios_are_refused_with_the_fix(tmp_path):
    reference = make_family_model(
        "ViTMAEForPreTraining", "ViTMAEConfig", 0, **{**MAE, "mask_ratio": 0.0}
    )
    reference.save_pretrained(tmp_path / "zero")
    with pytest.raises(ValueError, match=r"config.json.*mask_ratio must be a number strictly"):
        MaskedAutoencoder.from_pretrained(tmp_path / "zero", verbose=False)
    mae = MaskedAutoencoder.from_pretrained(tmp_path / "zero", mask_ratio=0.5, verbose=False)
    assert mae.mae_config.mask_ratio == 0.5
    vit = make_family_model(
        "ViTMSNModel", "ViTMSNConfig", 0, intermediate_size=64, image_size=32, patch_size=8
    )
    vit.save_pretrained(tmp_path / "msn")
    with pytest.raises(ValueError, match=r"'vit_msn' checkpoint.*ViT.from_pretrained"):
        MaskedAutoencoder.from_pretrained(tmp_path / "msn", verbose=False)
