"""Tensor names and layouts: transformers' ViT <-> keras_vit weight paths.

Every transformers naming is first brought to one canonical form: the legacy
on-disk names of a `ViTModel` (`encoder.layer.N.attention.attention.query.weight`,
no `vit.` prefix). Canonical names then map one-to-one onto Keras weight paths
(`encoder/layer_N/attention/query/kernel`) with a layout change where needed:
Dense kernels are transposed, the patch-projection kernel goes from torch's
`(D, C, ph, pw)` to Keras' `(ph, pw, C, D)`.
"""

from __future__ import annotations

import re

import numpy as np

# transformers v5's in-memory module names -> the legacy on-disk names.
_V5_NAMES = [
    (r"^layers\.(\d+)\.attention\.q_proj\.", r"encoder.layer.\1.attention.attention.query."),
    (r"^layers\.(\d+)\.attention\.k_proj\.", r"encoder.layer.\1.attention.attention.key."),
    (r"^layers\.(\d+)\.attention\.v_proj\.", r"encoder.layer.\1.attention.attention.value."),
    (r"^layers\.(\d+)\.attention\.o_proj\.", r"encoder.layer.\1.attention.output.dense."),
    (r"^layers\.(\d+)\.mlp\.fc1\.", r"encoder.layer.\1.intermediate.dense."),
    (r"^layers\.(\d+)\.mlp\.fc2\.", r"encoder.layer.\1.output.dense."),
    (r"^layers\.(\d+)\.", r"encoder.layer.\1."),
]

# Keras path (without the variable name) -> canonical HF module name.
_MODULES = [
    (r"^embeddings/patch_projection$", "embeddings.patch_embeddings.projection"),
    (
        r"^encoder/layer_(\d+)/attention/(query|key|value)$",
        r"encoder.layer.\1.attention.attention.\2",
    ),
    (r"^encoder/layer_(\d+)/attention/output$", r"encoder.layer.\1.attention.output.dense"),
    (r"^encoder/layer_(\d+)/mlp_fc1$", r"encoder.layer.\1.intermediate.dense"),
    (r"^encoder/layer_(\d+)/mlp_fc2$", r"encoder.layer.\1.output.dense"),
    (r"^encoder/layer_(\d+)/(layernorm_before|layernorm_after)$", r"encoder.layer.\1.\2"),
    (r"^layernorm$", "layernorm"),
    (r"^pre_logits$", "pooler.dense"),
    (r"^head$", "classifier"),
]
_EMBEDDINGS = {
    "embeddings/cls_token": "embeddings.cls_token",
    "embeddings/position_embedding": "embeddings.position_embeddings",
    "embeddings/mask_token": "embeddings.mask_token",
}
_VARIABLES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
HEAD_PREFIX = "classifier."
BACKBONE_PREFIX = "vit."


def canonical_hf_name(name: str) -> str:
    """Brings any transformers ViT tensor name to the legacy `ViTModel` form.

    Args:
        name: e.g. `vit.layers.0.attention.q_proj.weight` (v5 in memory) or
            `vit.encoder.layer.0.attention.attention.query.weight` (on disk).

    Returns:
        The name without `vit.` and in on-disk naming, e.g.
        `encoder.layer.0.attention.attention.query.weight`.

    Example:
        >>> canonical_hf_name("vit.layers.3.mlp.fc1.bias")
        'encoder.layer.3.intermediate.dense.bias'
    """
    name = name.removeprefix(BACKBONE_PREFIX)
    for pattern, replacement in _V5_NAMES:
        name, count = re.subn(pattern, replacement, name)
        if count:
            break
    return name


def hf_name_for(keras_path: str) -> str:
    """The canonical HF tensor name of a keras_vit weight path.

    Args:
        keras_path: e.g. `encoder/layer_3/attention/query/kernel`.

    Returns:
        e.g. `encoder.layer.3.attention.attention.query.weight`.

    Example:
        >>> hf_name_for("head/kernel")
        'classifier.weight'
    """
    if keras_path in _EMBEDDINGS:
        return _EMBEDDINGS[keras_path]
    module, _, variable = keras_path.rpartition("/")
    for pattern, replacement in _MODULES:
        if re.match(pattern, module):
            return re.sub(pattern, replacement, module) + "." + _VARIABLES[variable]
    raise KeyError(f"keras_vit weight {keras_path!r} has no transformers counterpart.")


def _to_keras_axes(keras_path: str, ndim: int) -> tuple[int, ...]:
    """The axis permutation from transformers' layout to Keras' for one weight."""
    if keras_path == "embeddings/patch_projection/kernel":
        return (2, 3, 1, 0)  # (D, C, ph, pw) -> (ph, pw, C, D)
    if keras_path.endswith("/kernel"):
        return (1, 0)  # Dense: (out, in) -> (in, out)
    return tuple(range(ndim))


def keras_shape(keras_path: str, hf_shape: tuple) -> tuple:
    """The shape a transformers tensor of `hf_shape` has in Keras' layout."""
    return tuple(hf_shape[axis] for axis in _to_keras_axes(keras_path, len(hf_shape)))


def to_keras_layout(keras_path: str, tensor: np.ndarray) -> np.ndarray:
    """Converts a transformers tensor to the layout of the Keras weight at `keras_path`."""
    return tensor.transpose(_to_keras_axes(keras_path, tensor.ndim))


def to_hf_layout(keras_path: str, array: np.ndarray) -> np.ndarray:
    """Converts a Keras weight to transformers' layout (the inverse of `to_keras_layout`)."""
    return array.transpose(np.argsort(_to_keras_axes(keras_path, array.ndim)))


def hf_file_name(canonical: str, with_head: bool) -> str:
    """The name a canonical tensor has in a saved `ViTModel` (`with_head=False`)
    or `ViTForImageClassification` checkpoint (backbone under `vit.`)."""
    if not with_head or canonical.startswith(HEAD_PREFIX):
        return canonical
    return BACKBONE_PREFIX + canonical
