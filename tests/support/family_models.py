"""Tiny random transformers models of every ViT family, and Hub-like repos of them."""

import torch
import transformers

from tests.conversion.conftest import nchw

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, attn_implementation="eager")


def make_family_model(class_name: str, config_name: str, seed: int, **overrides):
    """A random transformers model whose every tensor matters: LayerNorms,
    biases, layer scales and tokens are perturbed (MAE's fixed sin-cos tables
    stay as transformers computes them)."""
    torch.manual_seed(seed)
    config = getattr(transformers, config_name)(**{**TINY, **overrides})
    model = getattr(transformers, class_name)(config).eval()
    mae = transformers.models.vit_mae.modeling_vit_mae
    for module in model.modules():
        # Built from a config, the sin-cos tables are left at zeros (their init is
        # skipped); a real MAE checkpoint holds them, so let transformers write them.
        if isinstance(module, mae.ViTMAEEmbeddings):
            module.patch_embeddings.projection._is_hf_initialized = False
            module.initialize_weights()
        if isinstance(module, mae.ViTMAEDecoder):
            module.initialize_weights(module.decoder_pos_embed.shape[1] - 1)
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
    height, width = _pair(model.config.image_size)
    processor = transformers.ViTImageProcessor(size={"height": height, "width": width})
    processor.save_pretrained(directory)


def _pair(size):
    return tuple(size) if isinstance(size, (list, tuple)) else (size, size)


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
