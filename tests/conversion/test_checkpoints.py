"""Every checkpoint layout transformers writes for ViT, and the errors for bad ones."""

import json
import logging
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from keras_vit import ViT
from keras_vit.conversion import CheckpointMismatchError, read_checkpoint
from tests.conftest import to_numpy
from tests.conversion.conftest import make_hf_model, nchw, random_images

TOLERANCE = 1e-4
TINY_IMAGE = dict(image_size=32, patch_size=8)


def assert_matches_reference(model, reference):
    images = random_images(model)
    with torch.no_grad():
        expected = reference(nchw(images)).logits.numpy()
    np.testing.assert_allclose(to_numpy(model(images)), expected, atol=TOLERANCE)


def test_sharded_safetensors(tmp_path):
    reference = make_hf_model("ViTForImageClassification", **TINY_IMAGE)
    reference.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    assert not (tmp_path / "model.safetensors").exists()
    assert_matches_reference(ViT.from_pretrained(tmp_path, verbose=False), reference)


def write_bin(directory):
    """Replaces a saved model.safetensors by a legacy pytorch_model.bin."""
    tensors = load_file(directory / "model.safetensors")
    tensors = {name: torch.from_numpy(value) for name, value in tensors.items()}
    torch.save(tensors, directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()


def test_legacy_pytorch_bin(tmp_path):
    reference = make_hf_model("ViTForImageClassification", **TINY_IMAGE)
    reference.save_pretrained(tmp_path)
    write_bin(tmp_path)
    assert_matches_reference(ViT.from_pretrained(tmp_path, verbose=False), reference)


def test_pytorch_bin_without_torch_names_the_fix(tmp_path, monkeypatch):
    make_hf_model("ViTModel", **TINY_IMAGE).save_pretrained(tmp_path)
    write_bin(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match="needs torch.*pip install torch.*safetensors"):
        read_checkpoint(tmp_path)


def test_transformers_v5_in_memory_names(tmp_path):
    reference = make_hf_model("ViTForImageClassification", **TINY_IMAGE)
    reference.save_pretrained(tmp_path)
    state = {name: tensor.numpy() for name, tensor in reference.state_dict().items()}
    assert "vit.layers.0.attention.q_proj.weight" in state  # the naming under test
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    assert_matches_reference(ViT.from_pretrained(tmp_path, verbose=False), reference)


def test_masked_image_modeling_loads_encoder_and_mask_token(tmp_path, caplog):
    reference = make_hf_model("ViTForMaskedImageModeling", **TINY_IMAGE, encoder_stride=8)
    reference.save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="keras_vit"):
        model = ViT.from_pretrained(tmp_path, verbose=True)
    unused = [r.getMessage() for r in caplog.records if "Not loaded" in r.getMessage()]
    assert len(unused) == 1 and "decoder.0.weight" in unused[0] and "decoder.0.bias" in unused[0]
    assert model.config.use_mask_token and not model.config.classes
    np.testing.assert_array_equal(
        to_numpy(model.embeddings.mask_token),
        reference.vit.embeddings.mask_token.detach().numpy(),
    )
    images = random_images(model)
    masked = np.random.default_rng(1).random((2, 16)) < 0.5
    with torch.no_grad():
        expected = reference.vit(nchw(images), bool_masked_pos=torch.from_numpy(masked))
    ours = model.encode(images, bool_masked_pos=masked)
    np.testing.assert_allclose(
        to_numpy(ours["last_hidden_state"]),
        expected.last_hidden_state.numpy(),
        atol=TOLERANCE,
    )


def test_unsupported_model_type_is_named(tmp_path):
    make_hf_model("ViTModel", **TINY_IMAGE).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "swin"}))
    with pytest.raises(ValueError, match=r"model_type 'swin' is not supported.*'vit', 'deit'"):
        ViT.from_pretrained(tmp_path)


def test_all_mismatches_are_reported_together(tmp_path):
    make_hf_model("ViTModel", **TINY_IMAGE).save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["layernorm.bias"]
    tensors["extra.weight"] = np.zeros(3, "float32")
    tensors["embeddings.cls_token"] = np.zeros((1, 1, 16), "float32")
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError) as error:
        ViT.from_pretrained(tmp_path, verbose=False)
    message = str(error.value)
    assert "missing (1): layernorm.bias (for layernorm/beta, shape (32,))" in message
    assert "unexpected (1): extra.weight" in message
    assert "wrong shape (1): embeddings.cls_token: expected (1, 1, 32), found (1, 1, 16)" in message


def test_truncated_safetensors_names_the_file(tmp_path):
    make_hf_model("ViTModel", **TINY_IMAGE).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{weights}.*truncated or corrupt"):
        ViT.from_pretrained(tmp_path, verbose=False)


def test_missing_files_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        ViT.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="No ViT weights"):
        read_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        ViT.from_pretrained(tmp_path / "absent")


def test_checkpoint_reads_shapes_from_headers_and_tensors_lazily(tmp_path):
    make_hf_model("ViTModel", **TINY_IMAGE).save_pretrained(tmp_path)
    checkpoint = read_checkpoint(tmp_path / "model.safetensors")
    assert checkpoint.shapes["embeddings.position_embeddings"] == (1, 17, 32)
    assert len(checkpoint) == len(load_file(tmp_path / "model.safetensors"))
    assert checkpoint["embeddings.cls_token"].shape == (1, 1, 32)
