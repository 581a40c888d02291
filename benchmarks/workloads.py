"""What the speed benchmarks run: model shapes, inputs and peer models, built alike."""

from __future__ import annotations

# A ViT-B MLP matmul (8 images x 197 tokens by 768 -> 3072): the roofline's rate.
MATMUL = (1576, 768, 3072)
# `--smoke` runs: a 2-layer ViT-Ti/16 on 32x32 images, batch 2, and a tiny matmul.
SMOKE = dict(image_size=32, workloads="ViTTi16/2:2", matmul=(64, 64, 64))


def split_variant(variant: str) -> tuple[str, dict]:
    """`"ViTTi16/2"` -> `("ViTTi16", {"num_hidden_layers": 2})`: a named variant, optionally
    cut to fewer layers (the `--smoke` runs)."""
    name, _, layers = variant.partition("/")
    return name, ({"num_hidden_layers": int(layers)} if layers else {})


def variant_config(variant: str, image_size: int):
    """The `ViTConfig` of a `split_variant` name at `image_size`.

    Example:
        >>> variant_config("ViTB16", 224).hidden_size
        768
    """
    import keras_vit

    name, overrides = split_variant(variant)
    return keras_vit.variant_config(name, image_size=image_size, **overrides)


def keras_vit_model(variant: str, image_size: int, **kwargs):
    """`keras_vit.build_variant` of a `split_variant` name at `image_size`."""
    import keras_vit

    name, overrides = split_variant(variant)
    return keras_vit.build_variant(name, image_size=image_size, **overrides, **kwargs)


def vit_forward_gflops(variant: str, image_size: int) -> float:
    """GFLOP of one image's forward pass (a multiply-add counts 2).

    Counts the matrix products: patch embedding, Q/K/V/output projections, the
    two attention products and the MLP (three projections for SwiGLU and gated
    MLPs). Prefix tokens ([CLS], distillation, registers) count as tokens.
    Elementwise work is left out.

    Example:
        >>> round(vit_forward_gflops("ViTB16", 224), 1)
        35.1
    """
    config = variant_config(variant, image_size)
    hidden, (rows, cols) = config.hidden_size, config.grid_size
    patch_height, patch_width = config.patch_pair
    patches = rows * cols
    tokens = patches + config.num_prefix_tokens
    mlp_projections = 2 if config.mlp_type == "mlp" else 3
    embedding = patches * patch_height * patch_width * config.num_channels * hidden
    per_layer = (
        4 * tokens * hidden**2
        + 2 * tokens**2 * hidden
        + mlp_projections * tokens * hidden * config.intermediate_size
    )
    return 2 * (embedding + config.num_hidden_layers * per_layer) / 1e9


def matmul_gflops(shape: tuple[int, int, int]) -> float:
    """GFLOP of one matmul of `shape` (rows, inner, columns)."""
    rows, inner, columns = shape
    return 2 * rows * inner * columns / 1e9


def matmul_step(dtype: str, backend: str, shape: tuple[int, int, int]):
    """One `shape` matmul in `dtype` with the backend's own fastest call.

    JAX and TensorFlow run it compiled by XLA, as keras_vit's models run;
    torch runs it eagerly through oneDNN, as transformers does.
    """
    import numpy as np

    rows, inner, columns = shape
    left = np.random.default_rng(0).standard_normal((rows, inner), "float32")
    right = np.random.default_rng(1).standard_normal((inner, columns), "float32")
    if backend == "jax":
        import jax

        left, right = (jax.numpy.asarray(array, dtype) for array in (left, right))
        product = jax.jit(jax.numpy.matmul)
        return lambda: product(left, right).block_until_ready()
    if backend == "tensorflow":
        import tensorflow as tf

        left, right = (tf.cast(array, dtype) for array in (left, right))
        product = tf.function(tf.matmul, jit_compile=True)
        return lambda: product(left, right).numpy()
    import torch

    left, right = (torch.from_numpy(array).to(getattr(torch, dtype)) for array in (left, right))
    return lambda: torch.matmul(left, right)


def random_images(batch: int, image_size: int):
    """Channels-last float32 normal noise, the same in every worker."""
    import numpy as np

    shape = (batch, image_size, image_size, 3)
    return np.random.default_rng(0).standard_normal(shape).astype("float32")


def transformers_config(variant: str, image_size: int, attention: str = "sdpa", **kwargs):
    """transformers' config of the variant's family and shape (`ViTConfig`,
    `DeiTConfig`, `Dinov2Config`, ...), as keras_vit exports it.

    Args:
        variant: a `split_variant` name.
        image_size: the input side.
        attention: transformers' attention implementation.
        **kwargs: more transformers config fields, e.g. `num_labels`.
    """
    import transformers

    from keras_vit.conversion.hf_config import config_to_hf

    fields = config_to_hf(variant_config(variant, image_size))
    return transformers.AutoConfig.for_model(**fields, attn_implementation=attention, **kwargs)


def transformers_base_model(variant: str, image_size: int, attention: str = "sdpa"):
    """transformers' base model of the variant's family (`ViTModel`, `DeiTModel`,
    `Dinov2Model`, ...), without a pooler, randomly initialised."""
    import transformers

    config = transformers_config(variant, image_size, attention)
    pooler = {"add_pooling_layer": False} if config.model_type in ("vit", "deit") else {}
    return transformers.AutoModel.from_config(config, **pooler)


def keras_hub_backbone(variant: str, image_size: int, dtype: str):
    """keras-hub's `ViTBackbone` of the variant's shape."""
    import keras_hub

    config = variant_config(variant, image_size)
    return keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 3),
        patch_size=config.patch_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        hidden_dim=config.hidden_size,
        mlp_dim=config.intermediate_size,
        dtype=dtype,
    )
