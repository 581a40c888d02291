"""The ViT family in transformers: each `model_type`'s classes and tensor names.

A `Family` is the one adapter a transformers `model_type` needs: which
classes hold its backbone and heads, and what the module of each keras_vit
layer (`keras_vit.model.weight_paths`) is called in its checkpoints. Names
here are the on-disk ones, without the backbone prefix that a classifier
checkpoint adds (`deit.`, `dinov2.`, `vit.`, ...).
"""

from __future__ import annotations

import dataclasses

from keras_vit.model import weight_paths as paths

# The block modules of transformers' ViT, which DeiT, MAE and MSN share.
_VIT_BLOCK = {
    paths.QUERY: "attention.attention.query",
    paths.KEY: "attention.attention.key",
    paths.VALUE: "attention.attention.value",
    paths.ATTENTION_OUTPUT: "attention.output.dense",
    paths.MLP_FC1: "intermediate.dense",
    paths.MLP_FC2: "output.dense",
    paths.LAYERNORM_BEFORE: "layernorm_before",
    paths.LAYERNORM_AFTER: "layernorm_after",
}
_DINOV2_BLOCK = {
    **_VIT_BLOCK,
    paths.MLP_FC1: "mlp.fc1",
    paths.MLP_FC2: "mlp.fc2",
    paths.LAYERNORM_BEFORE: "norm1",
    paths.LAYERNORM_AFTER: "norm2",
    paths.ATTENTION_SCALE: "layer_scale1",
    paths.MLP_SCALE: "layer_scale2",
}
_DINOV3_BLOCK = {
    paths.QUERY: "attention.q_proj",
    paths.KEY: "attention.k_proj",
    paths.VALUE: "attention.v_proj",
    paths.ATTENTION_OUTPUT: "attention.o_proj",
    paths.MLP_GATE: "mlp.gate_proj",
    paths.MLP_FC1: "mlp.up_proj",
    paths.MLP_FC2: "mlp.down_proj",
    paths.LAYERNORM_BEFORE: "norm1",
    paths.LAYERNORM_AFTER: "norm2",
    paths.ATTENTION_SCALE: "layer_scale1",
    paths.MLP_SCALE: "layer_scale2",
}
# DINOv2's SwiGLU MLP names its two projections apart from the GELU MLP's.
_SWIGLU_MODULES = {paths.MLP_FC1: "mlp.weights_in", paths.MLP_FC2: "mlp.weights_out"}
_VIT_TOP = {
    paths.PATCH_PROJECTION: "embeddings.patch_embeddings.projection",
    paths.FINAL_LAYERNORM: "layernorm",
    paths.PRE_LOGITS: "pooler.dense",
}
_VIT_TABLES = {
    paths.CLS_TOKEN: "embeddings.cls_token",
    paths.POSITION_EMBEDDING: "embeddings.position_embeddings",
    paths.MASK_TOKEN: "embeddings.mask_token",
    paths.DISTILLATION_TOKEN: "embeddings.distillation_token",
    paths.REGISTER_TOKENS: "embeddings.register_tokens",
}
_CLASSIFIER = {paths.HEAD: "classifier"}


@dataclasses.dataclass(frozen=True)
class DecoderNames:
    """The tensor names of a family's pretraining decoder (MAE's), at the top of its
    pretraining checkpoints, beside the backbone's prefix.

    Attributes:
        pretraining_class: the transformers class with the decoder.
        block: the name of decoder block N's module, with `{}` for N; its
            sublayers are named as the family's encoder blocks' are.
        block_aliases: regexes of other spellings of `block`'s prefix that
            checkpoints hold (`\\1` is N).
        modules: keras_vit decoder layer -> module name.
        tables: keras_vit decoder table path -> tensor name.
    """

    pretraining_class: str
    block: str
    block_aliases: tuple
    modules: dict
    tables: dict


# The Hub's MAE checkpoints name decoder block N `decoder.decoder_layers.N.`; transformers
# 5 saves it as `decoder.decoder_encoder.layer.N.` (and loads both).
_MAE_DECODER = DecoderNames(
    pretraining_class="ViTMAEForPreTraining",
    block="decoder.decoder_layers.{}.",
    block_aliases=(r"^decoder\.decoder_encoder\.layer\.(\d+)\.",),
    modules={
        paths.DECODER_EMBED: "decoder.decoder_embed",
        paths.DECODER_NORM: "decoder.decoder_norm",
        paths.DECODER_PRED: "decoder.decoder_pred",
    },
    tables={
        paths.DECODER_MASK_TOKEN: "decoder.mask_token",
        paths.DECODER_POSITION_EMBEDDING: "decoder.decoder_pos_embed",
    },
)


@dataclasses.dataclass(frozen=True)
class Family:
    """One transformers `model_type`: its classes and its tensor names.

    Attributes:
        model_type: transformers' `model_type`.
        base_class: the backbone class, e.g. `Dinov2Model`.
        classifier_class: the image classifier's class, or `None` if the
            family has none.
        prefix: the backbone's name prefix in a classifier's checkpoint.
        block: the name of block N's module, with `{}` for N.
        block_modules: keras_vit block sublayer -> module name within a block.
        top_modules: keras_vit top-level layer -> module name.
        tables: keras_vit table path -> tensor name.
        heads: keras_vit head layer -> module name, in `classifier_class`.
        teacher_class: DeiT's class with a distillation head, or `None`.
        teacher_heads: its heads, as `heads`.
        flat_tables: tables stored as `(rows, D)`, not `(1, rows, D)`.
        sincos_positions: the checkpoint stores fixed sin-cos position
            embeddings, which keras_vit recomputes (MAE).
        always_stored: tables the family's checkpoints hold even when they
            have no rows (DINOv3's registers: `(1, 0, D)`).
        decoder: the names of the family's pretraining decoder, if keras_vit
            converts it (MAE's).
    """

    model_type: str
    base_class: str
    classifier_class: str | None
    prefix: str
    block: str = "encoder.layer.{}."
    block_modules: dict = dataclasses.field(default_factory=lambda: dict(_VIT_BLOCK))
    top_modules: dict = dataclasses.field(default_factory=lambda: dict(_VIT_TOP))
    tables: dict = dataclasses.field(default_factory=lambda: dict(_VIT_TABLES))
    heads: dict = dataclasses.field(default_factory=lambda: dict(_CLASSIFIER))
    teacher_class: str | None = None
    teacher_heads: dict = dataclasses.field(default_factory=dict)
    flat_tables: tuple = ()
    sincos_positions: bool = False
    always_stored: tuple = ()
    decoder: DecoderNames | None = None

    def block_module(self, sublayer: str, mlp_type: str) -> str | None:
        """The module name of a block sublayer, or `None` if the family has none."""
        if mlp_type == "swiglu" and sublayer in _SWIGLU_MODULES:
            return _SWIGLU_MODULES[sublayer]
        return self.block_modules.get(sublayer)

    def head_modules(self, distillation_head: bool) -> dict:
        """The heads of the classifier class a model with (or without) a distillation head uses."""
        return self.teacher_heads if distillation_head else self.heads


_DINOV2 = Family(
    "dinov2",
    "Dinov2Model",
    "Dinov2ForImageClassification",
    "dinov2.",
    block_modules=_DINOV2_BLOCK,
    top_modules={k: v for k, v in _VIT_TOP.items() if k != paths.PRE_LOGITS},
    flat_tables=(paths.MASK_TOKEN,),
)

FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family("vit", "ViTModel", "ViTForImageClassification", "vit."),
        Family(
            "deit",
            "DeiTModel",
            "DeiTForImageClassification",
            "deit.",
            teacher_class="DeiTForImageClassificationWithTeacher",
            teacher_heads={
                paths.HEAD: "cls_classifier",
                paths.DISTILLATION_HEAD: "distillation_classifier",
            },
        ),
        _DINOV2,
        # The same tensors as DINOv2's, under other class names and prefix.
        dataclasses.replace(
            _DINOV2,
            model_type="dinov2_with_registers",
            base_class="Dinov2WithRegistersModel",
            classifier_class="Dinov2WithRegistersForImageClassification",
            prefix="dinov2_with_registers.",
        ),
        Family(
            "dinov3_vit",
            "DINOv3ViTModel",
            None,
            "",
            block="layer.{}.",
            block_modules=_DINOV3_BLOCK,
            top_modules={
                paths.PATCH_PROJECTION: "embeddings.patch_embeddings",
                paths.FINAL_LAYERNORM: "norm",
            },
            heads={},
            always_stored=(paths.REGISTER_TOKENS,),
        ),
        Family(
            "vit_mae",
            "ViTMAEModel",
            None,
            "vit.",
            top_modules={k: v for k, v in _VIT_TOP.items() if k != paths.PRE_LOGITS},
            heads={},
            sincos_positions=True,
            decoder=_MAE_DECODER,
        ),
        Family(
            "vit_msn",
            "ViTMSNModel",
            "ViTMSNForImageClassification",
            "vit.",
            top_modules={k: v for k, v in _VIT_TOP.items() if k != paths.PRE_LOGITS},
        ),
    )
}


def family_of(model_type: str | None) -> Family:
    """The `Family` of a transformers `model_type`.

    Args:
        model_type: a `config.json`'s `model_type`.

    Returns:
        Its `Family`.

    Raises:
        ValueError: keras_vit does not convert this model type; the message
            lists the ones it does.

    Example:
        >>> family_of("dinov2").base_class
        'Dinov2Model'
    """
    if model_type not in FAMILIES:
        raise ValueError(
            f"model_type {model_type!r} is not supported: keras_vit converts "
            f"{list(FAMILIES)} checkpoints."
        )
    return FAMILIES[model_type]
