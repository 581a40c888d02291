"""Random-weight transformers ViT checkpoints, built locally (no Hub)."""

import numpy as np
import pytest

# name: (transformers class, config overrides)
CHECKPOINTS = {
    "square_pooler": ("ViTModel", dict(image_size=32, patch_size=8)),
    "non_square": ("ViTForImageClassification", dict(image_size=(48, 32), patch_size=8)),
    "patch14": ("ViTModel", dict(image_size=28, patch_size=14, hidden_act="gelu_new")),
    "no_qkv_bias": ("ViTForImageClassification", dict(image_size=32, patch_size=8, qkv_bias=False)),
    "labels": (
        "ViTForImageClassification",
        dict(image_size=32, patch_size=8, id2label={0: "cat", 1: "dog", 2: "fox"}),
    ),
}


def make_hf_model(class_name: str, seed: int = 0, **overrides):
    """A random transformers ViT with a tiny config (eager attention, so
    attention probabilities can be returned)."""
    import torch
    import transformers

    values = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        layer_norm_eps=1e-12,
        attn_implementation="eager",
    )
    values.update(overrides)
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(transformers.ViTConfig(**values)).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so every tensor matters
        for name, parameter in model.named_parameters():
            if "layernorm" in name or name.endswith("bias") or "token" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    """name -> (directory, transformers model) for every entry of CHECKPOINTS."""
    made = {}
    for seed, (name, (class_name, overrides)) in enumerate(CHECKPOINTS.items()):
        model = make_hf_model(class_name, seed=seed, **overrides)
        directory = tmp_path_factory.mktemp(name)
        model.save_pretrained(directory)
        made[name] = (directory, model)
    return made


def nchw(images: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def random_images(model, seed: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
    """A float32 batch of two standard-normal images at the model's (or a given) size."""
    height, width = size or model.config.image_pair
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, height, width, model.config.num_channels)).astype("float32")
