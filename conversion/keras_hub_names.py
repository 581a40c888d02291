"""Where each keras_vit weight lives in a keras-hub preset's weight files.

Keras saves one HDF5 dataset per variable, at `layers/<layer>/.../vars/<index>`,
where `<layer>` is the snake-cased class name of each layer (with `_1`, `_2`,
... for repeats) and `<index>` counts the layer's variables in creation order.
One name table per backbone class maps keras_vit's weight paths onto those
datasets, with the layout each is stored in.
"""

from __future__ import annotations

import dataclasses

from keras_vit.conversion.keras_hub_config import TASK_PREFIX, PresetLayout
from keras_vit.model import weight_paths as paths
from keras_vit.model.config import ViTConfig


def _numbered(name: str, index: int) -> str:
    """Keras' name for the `index`-th layer of one class in a list: `name`, `name_1`, ..."""
    return name if index == 0 else f"{name}_{index}"


# Block sublayer -> its layer under one block, per backbone class; and where the blocks are.
_VIT_BLOCK = {
    paths.QUERY: "mha/query_dense",
    paths.KEY: "mha/key_dense",
    paths.VALUE: "mha/value_dense",
    paths.ATTENTION_OUTPUT: "mha/output_dense",
    paths.LAYERNORM_BEFORE: "layer_norm_1",
    paths.LAYERNORM_AFTER: "layer_norm_2",
}
_BLOCKS = {
    "ViTBackbone": (
        "vi_t_encoder/encoder_layers/vi_t_encoder_block",
        {**_VIT_BLOCK, paths.MLP_FC1: "mlp/dense_1", paths.MLP_FC2: "mlp/dense_2"},
    ),
    "DeiTBackbone": (
        "dei_t_encoder/encoder_layers/dei_t_encoder_block",
        {**_VIT_BLOCK, paths.MLP_FC1: "mlp/dense", paths.MLP_FC2: "output_layer/dense"},
    ),
    "DINOV2Backbone": (
        "dinov2_encoder/layers/dinov2_layer",
        {
            paths.QUERY: "attention/attention/query_dense",
            paths.KEY: "attention/attention/key_dense",
            paths.VALUE: "attention/attention/value_dense",
            paths.ATTENTION_OUTPUT: "attention/attention/output_dense",
            paths.LAYERNORM_BEFORE: "norm1",
            paths.LAYERNORM_AFTER: "norm2",
            paths.ATTENTION_SCALE: "layer_scale1",
            paths.MLP_SCALE: "layer_scale2",
            paths.MLP_FC1: "mlp/fc1",
            paths.MLP_FC2: "mlp/fc2",
        },
    ),
}
_DINOV2_SWIGLU = {paths.MLP_FC1: "mlp/weights_in", paths.MLP_FC2: "mlp/weights_out"}
# Top-level layers: keras_vit layer -> keras-hub layer.
_TOP = {
    "ViTBackbone": {
        paths.PATCH_PROJECTION: "vi_t_patching_and_embedding/patch_embedding",
        paths.FINAL_LAYERNORM: "vi_t_encoder/layer_norm",
    },
    "DeiTBackbone": {
        paths.PATCH_PROJECTION: "dei_t_embeddings/patch_embedding",
        paths.FINAL_LAYERNORM: "dei_t_encoder/layer_norm",
    },
    "DINOV2Backbone": {
        paths.PATCH_PROJECTION: "dinov2_embedding/patch_embeddings/projection",
        paths.FINAL_LAYERNORM: "layer_normalization",
    },
}
# The embedding layer that owns the tables, whose variables are numbered in creation order.
_EMBEDDINGS = {
    "ViTBackbone": "vi_t_patching_and_embedding",
    "DeiTBackbone": "dei_t_embeddings",
    "DINOV2Backbone": "dinov2_embedding",
}
# Variable name -> index within its layer (Dense, Conv2D, EinsumDense, LayerNormalization).
_VARIABLE_INDEX = {"kernel": 0, "bias": 1, "gamma": 0, "beta": 1, "scale": 0}

# Layouts: how a keras-hub tensor's shape follows from the keras_vit weight's.
SAME, HEADS_IN, HEADS_BIAS, HEADS_OUT, NO_BATCH = (
    "same",
    "heads_in",
    "heads_bias",
    "heads_out",
    "nb",
)
# The keras-hub position embeddings of DINOv2, kept apart: they are resized, not copied.
DINOV2_POSITIONS = "dinov2_positions"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One keras-hub dataset and the keras_vit weight it fills.

    Attributes:
        name: the dataset's path in the weight file(s); task datasets start
            with `TASK_PREFIX`.
        keras_path: the keras_vit weight path.
        layout: one of the layouts above.
    """

    name: str
    keras_path: str
    layout: str = SAME


def _layout(keras_path: str) -> str:
    """The layout of a layer variable: keras' MultiHeadAttention splits the heads."""
    weight = paths.parse(keras_path)
    if weight.layer in (paths.QUERY, paths.KEY, paths.VALUE):
        return HEADS_IN if weight.variable == "kernel" else HEADS_BIAS
    if weight.layer == paths.ATTENTION_OUTPUT and weight.variable == "kernel":
        return HEADS_OUT
    return SAME


def keras_hub_names(
    config: ViTConfig,
    layout: PresetLayout,
    keras_paths: list[str],
    with_head: bool,
) -> tuple[list[Entry], list[str], list[str]]:
    """The name table: which keras-hub dataset fills each keras_vit weight.

    Args:
        config: the model's config.
        layout: the preset's `PresetLayout`.
        keras_paths: the weights to fill (a new head's are left out).
        with_head: whether the task's head (and pre-logits) are read.

    Returns:
        `(entries, zeros, ignored)`: the datasets to read; the keras_vit
        weights keras-hub has no tensor for and that are exactly zero in its
        model (a patch projection without bias); the datasets deliberately
        left unread (DINOv2's resized copy of its position embeddings).

    Example:
        >>> entries, _, _ = keras_hub_names(config, layout, [w.path for w in model.weights], True)
        >>> entries[0].name
        'layers/vi_t_patching_and_embedding/vars/0'
    """
    kind = layout.backbone_class
    embeddings = f"layers/{_EMBEDDINGS[kind]}/vars"
    # The tables of each embedding layer, in the order the layer creates them.
    if kind == "ViTBackbone":
        tables = {paths.CLS_TOKEN: f"{embeddings}/0"}
        tables[paths.POSITION_EMBEDDING] = f"layers/{_EMBEDDINGS[kind]}/position_embedding/vars/0"
    else:
        order = {
            "DeiTBackbone": [paths.CLS_TOKEN, paths.DISTILLATION_TOKEN, paths.POSITION_EMBEDDING],
            "DINOV2Backbone": [
                paths.CLS_TOKEN,
                *([paths.MASK_TOKEN] if config.use_mask_token else []),
                *([paths.REGISTER_TOKENS] if config.num_register_tokens else []),
                "interpolated",
                paths.POSITION_EMBEDDING,
            ],
        }[kind]
        tables = {table: f"{embeddings}/{index}" for index, table in enumerate(order)}
    ignored = [tables.pop("interpolated")] if "interpolated" in tables else []
    block_root, block_layers = _BLOCKS[kind]
    if kind == "DINOV2Backbone" and config.mlp_type == "swiglu":
        block_layers = {**block_layers, **_DINOV2_SWIGLU}
    heads = {}
    if with_head:
        names = ["dense", "dense_1"]  # the task's Dense layers, in creation order
        if layout.pre_logits_size:
            heads[paths.PRE_LOGITS] = names.pop(0)
        heads[paths.HEAD] = names.pop(0)

    entries, zeros = [], []
    for keras_path in keras_paths:
        weight = paths.parse(keras_path)
        if weight.variable is None:
            name = tables.get(keras_path)
            table_layout = (
                NO_BATCH
                if keras_path
                in ((paths.POSITION_EMBEDDING,) if kind == "ViTBackbone" else (paths.MASK_TOKEN,))
                else SAME
            )
            if kind == "DINOV2Backbone" and keras_path == paths.POSITION_EMBEDDING:
                table_layout = DINOV2_POSITIONS
            entries.append(Entry(name or f"(none for {keras_path})", keras_path, table_layout))
            continue
        index = _VARIABLE_INDEX.get(weight.variable)
        if weight.block is not None:
            layer = block_layers.get(weight.layer)
            layer = layer and f"layers/{_numbered(block_root, weight.block)}/{layer}"
        elif weight.layer in heads:
            layer = f"{TASK_PREFIX}layers/{heads[weight.layer]}"
        else:
            layer = _TOP[kind].get(weight.layer)
            layer = layer and f"layers/{layer}"
        if keras_path == f"{paths.PATCH_PROJECTION}/bias" and not layout.patch_bias:
            zeros.append(keras_path)
            continue
        if layer is None or index is None:
            entries.append(Entry(f"(none for {keras_path})", keras_path))
            continue
        entries.append(Entry(f"{layer}/vars/{index}", keras_path, _layout(keras_path)))
    return entries, zeros, ignored


def stored_shape(keras_shape: tuple, layout: str, num_heads: int) -> tuple:
    """The shape keras-hub stores a keras_vit weight of `keras_shape` in.

    Args:
        keras_shape: the keras_vit weight's shape.
        layout: the entry's layout.
        num_heads: the attention heads, which keras' MultiHeadAttention keeps as an axis.

    Returns:
        e.g. `(D, heads, D // heads)` for a query kernel of `(D, D)`.

    Example:
        >>> stored_shape((768, 768), HEADS_IN, 12)
        (768, 12, 64)
    """
    if layout == HEADS_IN:
        return (keras_shape[0], num_heads, keras_shape[1] // num_heads)
    if layout == HEADS_BIAS:
        return (num_heads, keras_shape[0] // num_heads)
    if layout == HEADS_OUT:
        return (num_heads, keras_shape[0] // num_heads, keras_shape[1])
    if layout == NO_BATCH:
        return tuple(keras_shape[1:])
    return tuple(keras_shape)
