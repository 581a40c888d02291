"""The weight-path contract: where each weight of a `ViT` lives, by its Keras path.

Every saved file (`.keras`, `.weights.h5`) and every conversion relies on these
paths, e.g. `encoder/layer_3/attention/query/kernel`, so they are defined here
once. Conversion's name tables, the model-parallel layout map and the
weight-decay rule are written in terms of these names. Never rename one.
"""

from __future__ import annotations

import dataclasses
import re

# Layers at the top of the model.
EMBEDDINGS = "embeddings"
PATCH_PROJECTION = "embeddings/patch_projection"
CLS_TOKEN = "embeddings/cls_token"
MASK_TOKEN = "embeddings/mask_token"
DISTILLATION_TOKEN = "embeddings/distillation_token"
REGISTER_TOKENS = "embeddings/register_tokens"
POSITION_EMBEDDING = "embeddings/position_embedding"
FINAL_LAYERNORM = "layernorm"
PRE_LOGITS = "pre_logits"
HEAD = "head"
DISTILLATION_HEAD = "distillation_head"

# Sublayers of block N, under `encoder/layer_N/`.
QUERY = "attention/query"
KEY = "attention/key"
VALUE = "attention/value"
ATTENTION_OUTPUT = "attention/output"
LAYERNORM_BEFORE = "layernorm_before"
LAYERNORM_AFTER = "layernorm_after"
MLP_FC1 = "mlp_fc1"  # the gated MLP's "up" projection
MLP_FC2 = "mlp_fc2"  # the gated MLP's "down" projection
MLP_GATE = "mlp_gate"
ATTENTION_SCALE = "attention_scale"  # layer scale on the attention branch
MLP_SCALE = "mlp_scale"  # layer scale on the MLP branch
BLOCK_SUBLAYERS = (
    QUERY,
    KEY,
    VALUE,
    ATTENTION_OUTPUT,
    LAYERNORM_BEFORE,
    LAYERNORM_AFTER,
    MLP_FC1,
    MLP_FC2,
    MLP_GATE,
    ATTENTION_SCALE,
    MLP_SCALE,
)

# Weights that are whole tables rather than layers' variables.
TABLES = (CLS_TOKEN, MASK_TOKEN, DISTILLATION_TOKEN, REGISTER_TOKENS, POSITION_EMBEDDING)
LAYER_SCALES = (ATTENTION_SCALE, MLP_SCALE)
# Block sublayers only some families have: the gated MLP's gate, the layer scales.
OPTIONAL_BLOCK_SUBLAYERS = (MLP_GATE, *LAYER_SCALES)

# The masked autoencoder's decoder (`keras_vit.model.mae_decoder`), all under `decoder/`.
# Its blocks are `EncoderBlock`s, with the block sublayers above, under
# `decoder/decoder_layers/layer_N/`.
DECODER = "decoder"
DECODER_EMBED = "decoder/decoder_embed"
DECODER_MASK_TOKEN = "decoder/mask_token"
DECODER_POSITION_EMBEDDING = "decoder/position_embedding"  # fixed sin-cos: not a weight
DECODER_NORM = "decoder/decoder_norm"
DECODER_PRED = "decoder/decoder_pred"
DECODER_TABLES = (DECODER_MASK_TOKEN, DECODER_POSITION_EMBEDDING)

LAYERNORMS = (FINAL_LAYERNORM, LAYERNORM_BEFORE, LAYERNORM_AFTER, DECODER_NORM)

_BLOCK = re.compile(r"^encoder/layer_(\d+)/(.+)$")
_DECODER_BLOCK = re.compile(r"^decoder/decoder_layers/layer_(\d+)/(.+)$")


@dataclasses.dataclass(frozen=True)
class WeightPath:
    """A weight path taken apart.

    Attributes:
        block: the encoder block's index, or `None` outside the encoder.
        layer: the layer's path, within the block for block weights
            (`attention/query`), else from the top (`embeddings/patch_projection`);
            for a table, the table's own path.
        variable: the variable's name (`kernel`, `bias`, `gamma`, `beta`), or
            `None` for a table.
    """

    block: int | None
    layer: str
    variable: str | None


def block_path(index: int, sublayer: str) -> str:
    """The path of a block's sublayer.

    Args:
        index: the block's index.
        sublayer: one of `BLOCK_SUBLAYERS`.

    Returns:
        e.g. `encoder/layer_3/attention/query`.

    Example:
        >>> block_path(3, MLP_FC1)
        'encoder/layer_3/mlp_fc1'
    """
    return f"encoder/layer_{index}/{sublayer}"


def every_block_pattern(sublayer: str, variable: str) -> str:
    """A regex matching one variable of one sublayer in every block.

    Args:
        sublayer: one of `BLOCK_SUBLAYERS`.
        variable: `kernel`, `bias`, ...

    Returns:
        e.g. `encoder/layer_\\d+/attention/query/kernel`, as `keras.distribution.LayoutMap` takes.

    Example:
        >>> pattern = every_block_pattern(QUERY, "kernel")
        >>> bool(re.fullmatch(pattern, "encoder/layer_7/attention/query/kernel"))
        True
    """
    return rf"encoder/layer_\d+/{re.escape(sublayer)}/{variable}"


def decoder_block_path(index: int, sublayer: str) -> str:
    """The path of a sublayer of the MAE decoder's block `index`.

    Args:
        index: the decoder block's index.
        sublayer: one of `BLOCK_SUBLAYERS`.

    Returns:
        e.g. `decoder/decoder_layers/layer_0/attention/query`.

    Example:
        >>> decoder_block_path(0, QUERY)
        'decoder/decoder_layers/layer_0/attention/query'
    """
    return f"{DECODER}/decoder_layers/layer_{index}/{sublayer}"


def is_decoder(path: str) -> bool:
    """Whether `path` is a weight of the MAE decoder (`decoder/...`).

    Example:
        >>> is_decoder("decoder/decoder_pred/kernel"), is_decoder("encoder/layer_0/mlp_fc1/bias")
        (True, False)
    """
    return path.startswith(f"{DECODER}/")


def parse(path: str) -> WeightPath:
    """Takes a weight path apart into block, layer and variable.

    Args:
        path: a Keras weight path, e.g. `encoder/layer_3/attention/query/kernel`.

    Returns:
        A `WeightPath`; a block of the MAE decoder parses as a block too
        (`is_decoder` tells the two stacks apart). Paths outside the contract
        (a LoRA or quantization variable, say) parse the same way, by their
        last component.

    Example:
        >>> parse("encoder/layer_3/attention/query/kernel")
        WeightPath(block=3, layer='attention/query', variable='kernel')
    """
    if path in TABLES or path in DECODER_TABLES:
        return WeightPath(None, path, None)
    block = _BLOCK.match(path) or _DECODER_BLOCK.match(path)
    inner = block.group(2) if block else path
    layer, _, variable = inner.rpartition("/")
    return WeightPath(int(block.group(1)) if block else None, layer, variable)


def is_layernorm(path: str) -> bool:
    """Whether `path` is a LayerNorm's scale or offset.

    Args:
        path: a Keras weight path.

    Returns:
        True for `layernorm/*`, every block's `layernorm_before/*` and
        `layernorm_after/*`, and the MAE decoder's `decoder/decoder_norm/*`.

    Example:
        >>> is_layernorm("encoder/layer_0/layernorm_after/gamma")
        True
    """
    return parse(path).layer in LAYERNORMS
