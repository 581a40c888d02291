"""Tensor names and layouts: transformers' ViT family <-> keras_vit weight paths.

Every transformers naming is first brought to one canonical form: the family's
on-disk names of its base model (`encoder.layer.N.attention.attention.query.weight`
for ViT), without the backbone prefix a classifier adds (`vit.`, `deit.`, ...).
Canonical names then map one-to-one onto Keras weight paths
(`encoder/layer_N/attention/query/kernel`) with a layout change where needed:
Dense kernels are transposed, the patch-projection kernel goes from torch's
`(D, C, ph, pw)` to Keras' `(ph, pw, C, D)`, and tables a family stores flat
(DINOv2's mask token) gain their batch axis.
"""

from __future__ import annotations

import re

import numpy as np

from keras_vit.conversion.families import Family, family_of
from keras_vit.model import weight_paths as paths
from keras_vit.model.config import ViTConfig

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

_VARIABLES = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "scale": "lambda1",
}
_PLAIN_VIT = ViTConfig()


def canonical_hf_name(name: str, family: Family | None = None) -> str:
    """Brings any transformers tensor name of a family to its canonical form.

    Args:
        name: e.g. `vit.layers.0.attention.q_proj.weight` (ViT, v5 in memory),
            `vit.encoder.layer.0.attention.attention.query.weight` (on disk) or
            `dinov2.encoder.layer.0.norm1.weight`.
        family: the checkpoint's family; ViT by default.

    Returns:
        The name without the backbone prefix, in on-disk naming, e.g.
        `encoder.layer.0.attention.attention.query.weight`.

    Example:
        >>> canonical_hf_name("vit.layers.3.mlp.fc1.bias")
        'encoder.layer.3.intermediate.dense.bias'
    """
    family = family or family_of("vit")
    if family.prefix:
        name = name.removeprefix(family.prefix)
    if family.model_type == "vit":
        for pattern, replacement in _V5_NAMES:
            name, count = re.subn(pattern, replacement, name)
            if count:
                break
    if family.decoder:
        for alias in family.decoder.block_aliases:
            name = re.sub(alias, lambda match: family.decoder.block.format(match[1]), name)
    return name


def hf_name_for(keras_path: str, config: ViTConfig | None = None) -> str:
    """The canonical transformers tensor name of a keras_vit weight path.

    Args:
        keras_path: e.g. `encoder/layer_3/attention/query/kernel`.
        config: the model's config: its `model_type` picks the family, its
            `mlp_type` and `distillation_head` the MLP's and the heads' names.
            A plain ViT by default.

    Returns:
        e.g. `encoder.layer.3.attention.attention.query.weight`.

    Raises:
        KeyError: the family has no tensor for this weight.

    Example:
        >>> hf_name_for("head/kernel")
        'classifier.weight'
    """
    config = config or _PLAIN_VIT
    family = family_of(config.model_type)
    weight = paths.parse(keras_path)
    module = None
    if paths.is_decoder(keras_path):
        module = _decoder_module(keras_path, weight, family, config.mlp_type)
        if weight.variable is None and module is not None:
            return module
    elif weight.variable is None and keras_path in family.tables:
        return family.tables[keras_path]
    elif weight.block is not None:
        sublayer = family.block_module(weight.layer, config.mlp_type)
        module = sublayer and family.block.format(weight.block) + sublayer
    elif weight.layer in family.top_modules:
        module = family.top_modules[weight.layer]
    else:
        module = family.head_modules(config.distillation_head).get(weight.layer)
    if module is None or weight.variable not in _VARIABLES:
        raise KeyError(
            f"keras_vit weight {keras_path!r} has no counterpart in transformers' "
            f"{config.model_type!r} models."
        )
    return f"{module}.{_VARIABLES[weight.variable]}"


def _decoder_module(
    keras_path: str, weight: paths.WeightPath, family: Family, mlp_type: str
) -> str | None:
    """The module (or, for a table, the tensor) name of a weight of the MAE decoder."""
    decoder = family.decoder
    if decoder is None:
        return None
    if weight.variable is None:
        return decoder.tables.get(keras_path)
    if weight.block is not None:
        sublayer = family.block_module(weight.layer, mlp_type)
        return sublayer and decoder.block.format(weight.block) + sublayer
    return decoder.modules.get(weight.layer)


def _to_keras_axes(keras_path: str, ndim: int) -> tuple[int, ...]:
    """The axis permutation from transformers' layout to Keras' for one weight."""
    if keras_path == f"{paths.PATCH_PROJECTION}/kernel":
        return (2, 3, 1, 0)  # (D, C, ph, pw) -> (ph, pw, C, D)
    if keras_path.endswith("/kernel"):
        return (1, 0)  # Dense: (out, in) -> (in, out)
    return tuple(range(ndim))


def _is_flat(keras_path: str, family: Family | None) -> bool:
    return family is not None and keras_path in family.flat_tables


def keras_shape(keras_path: str, hf_shape: tuple, family: Family | None = None) -> tuple:
    """The shape a transformers tensor of `hf_shape` has in Keras' layout."""
    shape = tuple(hf_shape[axis] for axis in _to_keras_axes(keras_path, len(hf_shape)))
    return (1, *shape) if _is_flat(keras_path, family) else shape


def to_keras_layout(
    keras_path: str, tensor: np.ndarray, family: Family | None = None
) -> np.ndarray:
    """Converts a transformers tensor to the layout of the Keras weight at `keras_path`."""
    array = tensor.transpose(_to_keras_axes(keras_path, tensor.ndim))
    return array[None] if _is_flat(keras_path, family) else array


def to_hf_layout(keras_path: str, array: np.ndarray, family: Family | None = None) -> np.ndarray:
    """Converts a Keras weight to transformers' layout (the inverse of `to_keras_layout`)."""
    if _is_flat(keras_path, family):
        array = array[0]
    return array.transpose(np.argsort(_to_keras_axes(keras_path, array.ndim)))


def hf_file_name(canonical: str, with_head: bool, family: Family | None = None) -> str:
    """The name a canonical tensor has in a saved base model (`with_head=False`) or
    classifier or pretraining checkpoint (backbone under the family's prefix, heads
    and the decoder at the top)."""
    family = family or family_of("vit")
    # Heads, and a pretraining decoder, sit beside the backbone's prefix.
    top_level = {*family.heads.values(), *family.teacher_heads.values()}
    if family.decoder:
        top_level.add(paths.DECODER)
    if not with_head or canonical.split(".")[0] in top_level:
        return canonical
    return family.prefix + canonical
