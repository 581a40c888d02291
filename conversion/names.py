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

from keras_vit.model import weight_paths as paths

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

# keras_vit's layers (`keras_vit.model.weight_paths`) -> canonical HF module names.
_BLOCK_MODULES = {
    paths.QUERY: "attention.attention.query",
    paths.KEY: "attention.attention.key",
    paths.VALUE: "attention.attention.value",
    paths.ATTENTION_OUTPUT: "attention.output.dense",
    paths.MLP_FC1: "intermediate.dense",
    paths.MLP_FC2: "output.dense",
    paths.LAYERNORM_BEFORE: "layernorm_before",
    paths.LAYERNORM_AFTER: "layernorm_after",
}
_TOP_MODULES = {
    paths.PATCH_PROJECTION: "embeddings.patch_embeddings.projection",
    paths.FINAL_LAYERNORM: "layernorm",
    paths.PRE_LOGITS: "pooler.dense",
    paths.HEAD: "classifier",
}
_TABLES = {
    paths.CLS_TOKEN: "embeddings.cls_token",
    paths.POSITION_EMBEDDING: "embeddings.position_embeddings",
    paths.MASK_TOKEN: "embeddings.mask_token",
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
    weight = paths.parse(keras_path)
    if weight.variable is None and keras_path in _TABLES:
        return _TABLES[keras_path]
    if weight.block is not None and weight.layer in _BLOCK_MODULES:
        module = f"encoder.layer.{weight.block}.{_BLOCK_MODULES[weight.layer]}"
    elif weight.block is None and weight.layer in _TOP_MODULES:
        module = _TOP_MODULES[weight.layer]
    else:
        module = None
    if module is None or weight.variable not in _VARIABLES:
        raise KeyError(f"keras_vit weight {keras_path!r} has no transformers counterpart.")
    return f"{module}.{_VARIABLES[weight.variable]}"


def _to_keras_axes(keras_path: str, ndim: int) -> tuple[int, ...]:
    """The axis permutation from transformers' layout to Keras' for one weight."""
    if keras_path == f"{paths.PATCH_PROJECTION}/kernel":
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
