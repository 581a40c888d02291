"""The model sizes of the ViT family as one table, and a builder per row."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from keras_vit.model import ViT
from keras_vit.model.config import ViTConfig
from keras_vit.model.initializers import skip_random_init


class Variant(NamedTuple):
    """One row of `VARIANTS`: a model size and the family it belongs to.

    Attributes:
        layers, hidden, heads, mlp, patch: depth, width, attention heads, MLP
            width and patch side.
        family: a key of `FAMILY_CONFIGS`: the transformers `model_type`
            whose checkpoints have this shape.
        options: other `ViTConfig` fields of this row alone, e.g. DINOv2-g's
            SwiGLU MLP.
    """

    layers: int
    hidden: int
    heads: int
    mlp: int
    patch: int
    family: str = "vit"
    options: dict | None = None


# The ViTConfig fields that a family's checkpoints fix, beyond the size.
FAMILY_CONFIGS: dict[str, dict[str, Any]] = {
    "vit": {},
    "deit": {"model_type": "deit", "distillation_token": True},
    "dinov2": {
        "model_type": "dinov2",
        "image_size": 518,
        "layerscale_value": 1.0,
        "use_mask_token": True,
    },
    "dinov2_with_registers": {
        "model_type": "dinov2_with_registers",
        "image_size": 518,
        "layerscale_value": 1.0,
        "use_mask_token": True,
        "num_register_tokens": 4,
        "resample_antialias": True,
    },
    "dinov3_vit": {
        "model_type": "dinov3_vit",
        "position_embedding": "rope",
        "num_register_tokens": 4,
        "key_bias": False,
        "layerscale_value": 1.0,
        "use_mask_token": True,
        "layer_norm_eps": 1e-5,
    },
    "vit_mae": {"model_type": "vit_mae", "position_embedding": "sincos"},
    "vit_msn": {"model_type": "vit_msn"},
}
_SWIGLU = {"mlp_type": "swiglu"}
_GATED_SILU = {"mlp_type": "gated", "hidden_act": "silu"}

VARIANTS: dict[str, Variant] = {
    "ViTTi16": Variant(12, 192, 3, 768, 16),
    "ViTS16": Variant(12, 384, 6, 1536, 16),
    "ViTB16": Variant(12, 768, 12, 3072, 16),
    "ViTB32": Variant(12, 768, 12, 3072, 32),
    "ViTL16": Variant(24, 1024, 16, 4096, 16),
    "ViTL32": Variant(24, 1024, 16, 4096, 32),
    "ViTH14": Variant(32, 1280, 16, 5120, 14),
    "ViTS8": Variant(12, 384, 6, 1536, 8),  # DINO's patch-8 models
    "ViTB8": Variant(12, 768, 12, 3072, 8),
    # DeiT: plain ones are ViTs; distilled ones add a distillation token and head.
    "DeiTTi16": Variant(12, 192, 3, 768, 16),
    "DeiTS16": Variant(12, 384, 6, 1536, 16),
    "DeiTB16": Variant(12, 768, 12, 3072, 16),
    "DeiTTi16Distilled": Variant(12, 192, 3, 768, 16, "deit"),
    "DeiTS16Distilled": Variant(12, 384, 6, 1536, 16, "deit"),
    "DeiTB16Distilled": Variant(12, 768, 12, 3072, 16, "deit"),
    "DINOv2S14": Variant(12, 384, 6, 1536, 14, "dinov2"),
    "DINOv2B14": Variant(12, 768, 12, 3072, 14, "dinov2"),
    "DINOv2L14": Variant(24, 1024, 16, 4096, 14, "dinov2"),
    "DINOv2G14": Variant(40, 1536, 24, 4096, 14, "dinov2", _SWIGLU),
    "DINOv2S14Registers": Variant(12, 384, 6, 1536, 14, "dinov2_with_registers"),
    "DINOv2B14Registers": Variant(12, 768, 12, 3072, 14, "dinov2_with_registers"),
    "DINOv2L14Registers": Variant(24, 1024, 16, 4096, 14, "dinov2_with_registers"),
    "DINOv2G14Registers": Variant(40, 1536, 24, 4096, 14, "dinov2_with_registers", _SWIGLU),
    "DINOv3S16": Variant(12, 384, 6, 1536, 16, "dinov3_vit"),
    "DINOv3B16": Variant(12, 768, 12, 3072, 16, "dinov3_vit"),
    "DINOv3L16": Variant(24, 1024, 16, 4096, 16, "dinov3_vit"),
    "DINOv3HPlus16": Variant(32, 1280, 20, 5120, 16, "dinov3_vit", _GATED_SILU),
    "MAEB16": Variant(12, 768, 12, 3072, 16, "vit_mae"),
    "MAEL16": Variant(24, 1024, 16, 4096, 16, "vit_mae"),
    "MAEH14": Variant(32, 1280, 16, 5120, 14, "vit_mae"),
    "MSNS16": Variant(12, 384, 6, 1536, 16, "vit_msn"),
    "MSNB16": Variant(12, 768, 12, 3072, 16, "vit_msn"),
    "MSNL16": Variant(24, 1024, 16, 4096, 16, "vit_msn"),
}

_CONFIG_FIELDS = {field.name for field in dataclasses.fields(ViTConfig)}
# "DINOv2G14Registers" -> family prefix, size, patch, suffix.
_NAME_PARTS = re.compile(r"(ViT|DeiT|DINOv2|DINOv3|MAE|MSN)(Ti|S|B|L|HPlus|H|G)(\d+)(\w*)")


def variant_config(variant: str, **overrides: Any) -> ViTConfig:
    """The `ViTConfig` of a named variant, with any field overridden.

    Args:
        variant: one of `VARIANTS`, e.g. `"ViTB16"` or `"DINOv2S14"`.
        **overrides: `ViTConfig` fields to change, e.g. `image_size=384`.

    Returns:
        The config: the row's size, its family's fixed fields
        (`FAMILY_CONFIGS`: DINOv2's layer scale, DINOv3's RoPE and registers,
        ...) and the overrides. A distilled DeiT with a head (`classes=N`) gets
        its distillation head too. Nothing is allocated, so this is the cheap
        way to inspect a large model (`variant_config("ViTH14").count_params()`).

    Example:
        >>> variant_config("ViTL16", classes=1000).count_params()
        304326632
        >>> variant_config("DINOv3S16").position_embedding
        'rope'
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}. Choose one of {list(VARIANTS)}.")
    unknown = sorted(set(overrides) - _CONFIG_FIELDS)
    if unknown:
        raise ValueError(
            f"Unknown argument(s) {unknown} for {variant}. Valid arguments are the builder's "
            f"own and any ViTConfig field: {sorted(_CONFIG_FIELDS)}."
        )
    row = VARIANTS[variant]
    values = {
        "num_hidden_layers": row.layers,
        "hidden_size": row.hidden,
        "num_attention_heads": row.heads,
        "intermediate_size": row.mlp,
        "patch_size": row.patch,
        **FAMILY_CONFIGS[row.family],
        **(row.options or {}),
    }
    if values.get("distillation_token"):
        values["distillation_head"] = bool(overrides.get("classes"))
    return ViTConfig(**{**values, **overrides})


def build_variant(
    variant: str,
    include_top: bool | None = None,
    weights: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    pooling: str | None = "auto",
    classes: int | None = None,
    classifier_activation: str | None = "softmax",
    pre_logits: bool | None = None,
    include_preprocessing: bool = False,
    dtype: Any = None,
    name: str | None = None,
    **overrides: Any,
) -> ViT:
    """Builds a named variant with keras.applications-style arguments.

    Args:
        variant: one of `VARIANTS`.
        include_top: attach a classification head. Default: yes for random
            weights; for pretrained weights, whatever the checkpoint has (the
            `imagenet21k` and self-supervised ones have none, and give features).
        weights: `None` (random initialisation); a weight name of this variant
            (`"imagenet21k"`, `"imagenet"`, `"dino"`, `"lvd142m"`, ...; see
            `keras_vit.list_weights()`), a Hub repo id, an `hf://` URL or a
            checkpoint directory (downloaded and converted); or the path of a
            `.weights.h5` file saved from a model of this variant.
        image_size: input side or `(height, width)`, multiples of the patch
            size. Default: the checkpoint's, or the family's (224; 518 for
            DINOv2); another size resamples learned position embeddings.
        pooling: `"token"` ([CLS]), `"gap"` (mean patch token),
            `"token_and_gap"` (both, concatenated), or `None` for the whole
            token sequence (only without a head). Default `"auto"`: what the
            checkpoint's classifier reads, else `"token_and_gap"` under a
            DINOv2 head (as transformers' DINOv2 classifier) and `"token"`
            everywhere else.
        classes: size of the head. Default 1000, or the checkpoint's; with
            pretrained weights another value attaches a new zero-initialised head.
        classifier_activation: activation of the head, `None` for logits.
        pre_logits: add the Dense + tanh pre-logits layer after pooling.
            Default: no, or whatever the checkpoint has.
        include_preprocessing: take raw 0..255 images of any size.
        dtype: dtype policy, e.g. `"mixed_bfloat16"`.
        name: model name; defaults to the variant's, e.g. `"vit_b16"`.
        **overrides: any other `ViTConfig` field.

    Returns:
        A `keras_vit.ViT`.

    Example:
        >>> model = build_variant("ViTTi16", include_top=False, pooling="gap")
        >>> tuned = build_variant("ViTB16", weights="imagenet21k", classes=10)
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}. Choose one of {list(VARIANTS)}.")
    name = name or _model_name(variant)
    keras_file = weights is not None and os.fspath(weights).endswith(".weights.h5")
    if weights is not None and not keras_file:
        from keras_vit.hf_integration import from_weights_argument

        optional = {"pre_logits": pre_logits} if pre_logits is not None else {}
        if pooling != "auto":
            optional["pooling"] = pooling
        return from_weights_argument(
            variant,
            os.fspath(weights),
            include_top=include_top,
            image_size=image_size,
            classes=classes,
            classifier_activation=classifier_activation,
            include_preprocessing=include_preprocessing,
            dtype=dtype,
            name=name,
            **optional,
            **overrides,
        )
    if keras_file and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights={weights!r}: no such file.")
    include_top = True if include_top is None else include_top
    classes = 1000 if classes is None and include_top else classes
    if pooling == "auto":
        dinov2_head = include_top and VARIANTS[variant].family.startswith("dinov2")
        pooling = "token_and_gap" if dinov2_head else "token"
    if include_top and pooling is None:
        raise ValueError(
            "include_top=True needs a pooled vector, but pooling=None. "
            "Use pooling='token' or 'gap', or include_top=False to get the token sequence."
        )
    if include_top and not classes:
        raise ValueError(
            f"include_top=True needs the number of classes, got classes={classes!r}. "
            "Pass classes=N, or include_top=False for a feature extractor."
        )
    sized = {"image_size": image_size} if image_size is not None else {}
    config = variant_config(
        variant,
        **sized,
        pooling=pooling,
        classes=classes if include_top else None,
        classifier_activation=classifier_activation,
        pre_logits=bool(pre_logits),
        **overrides,
    )
    with skip_random_init() if keras_file else contextlib.nullcontext():
        model = ViT(config, include_preprocessing=include_preprocessing, dtype=dtype, name=name)
    if keras_file:
        model.load_weights(weights)
    return model


def _title(variant: str) -> str:
    """The paper's name of a variant: "ViTB16" -> "ViT-B/16", "DINOv3HPlus16" -> "DINOv3-H+/16"."""
    family, size, patch, suffix = _NAME_PARTS.fullmatch(variant).groups()
    return f"{family}-{size.replace('Plus', '+')}/{patch}" + (f" {suffix.lower()}" * bool(suffix))


def _model_name(variant: str) -> str:
    """The default Keras name of a variant: "ViTB16" -> "vit_b16", "DeiTB16Distilled" ->
    "deit_b16_distilled"."""
    family, size, patch, suffix = _NAME_PARTS.fullmatch(variant).groups()
    return f"{family}_{size}{patch}".lower() + (f"_{suffix.lower()}" * bool(suffix))


def _family_text(variant: str) -> str:
    """What a row's family adds to the plain ViT, for its builder's docstring."""
    config = variant_config(variant)
    parts = [f"transformers model_type {config.model_type!r}"]
    if config.distillation_token:
        parts.append("a distillation token (and head, with include_top)")
    if config.num_register_tokens:
        parts.append(f"{config.num_register_tokens} register tokens")
    if config.layerscale_value is not None:
        parts.append("layer scale")
    if config.position_embedding != "learned":
        parts.append(f"{config.position_embedding} position encoding")
    if config.mlp_type != "mlp":
        activation = f" ({config.hidden_act})" * (config.mlp_type == "gated")
        parts.append(f"{config.mlp_type} MLP{activation}")
    if not config.key_bias:
        parts.append("no key bias")
    return ", ".join(parts)


def _builder(variant: str) -> Callable[..., ViT]:
    row = VARIANTS[variant]

    def build(*args: Any, **kwargs: Any) -> ViT:
        return build_variant(variant, *args, **kwargs)

    # Show build_variant's arguments, minus `variant`, in help() and IDEs.
    signature = inspect.signature(build_variant)
    build.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    build.__name__ = build.__qualname__ = variant
    doc = inspect.cleandoc(build_variant.__doc__)
    shared_args = doc[doc.index("Args:") : doc.index("Returns:")].replace(
        "    variant: one of `VARIANTS`.\n", ""
    )
    from keras_vit.hf_integration.named_weights import weight_names

    names = ", ".join(f"`{name!r}`" for name in weight_names(variant)) or "none"
    build.__doc__ = (
        f"Builds {_title(variant)}: {row.layers} layers, hidden size {row.hidden}, "
        f"{row.heads} heads, MLP {row.mlp}, patch {row.patch}; {_family_text(variant)}.\n\n"
        f"Named weights: {names} (see `keras_vit.list_weights()`).\n\n{shared_args}"
        f"Returns:\n    A `keras_vit.ViT`.\n\n"
        f"Example:\n    >>> model = keras_vit.{variant}(include_top=False, image_size=448)\n"
    )
    return build


ViTTi16 = _builder("ViTTi16")
ViTS16 = _builder("ViTS16")
ViTB16 = _builder("ViTB16")
ViTB32 = _builder("ViTB32")
ViTL16 = _builder("ViTL16")
ViTL32 = _builder("ViTL32")
ViTH14 = _builder("ViTH14")
ViTS8 = _builder("ViTS8")
ViTB8 = _builder("ViTB8")
DeiTTi16 = _builder("DeiTTi16")
DeiTS16 = _builder("DeiTS16")
DeiTB16 = _builder("DeiTB16")
DeiTTi16Distilled = _builder("DeiTTi16Distilled")
DeiTS16Distilled = _builder("DeiTS16Distilled")
DeiTB16Distilled = _builder("DeiTB16Distilled")
DINOv2S14 = _builder("DINOv2S14")
DINOv2B14 = _builder("DINOv2B14")
DINOv2L14 = _builder("DINOv2L14")
DINOv2G14 = _builder("DINOv2G14")
DINOv2S14Registers = _builder("DINOv2S14Registers")
DINOv2B14Registers = _builder("DINOv2B14Registers")
DINOv2L14Registers = _builder("DINOv2L14Registers")
DINOv2G14Registers = _builder("DINOv2G14Registers")
DINOv3S16 = _builder("DINOv3S16")
DINOv3B16 = _builder("DINOv3B16")
DINOv3L16 = _builder("DINOv3L16")
DINOv3HPlus16 = _builder("DINOv3HPlus16")
MAEB16 = _builder("MAEB16")
MAEL16 = _builder("MAEL16")
MAEH14 = _builder("MAEH14")
MSNS16 = _builder("MSNS16")
MSNB16 = _builder("MSNB16")
MSNL16 = _builder("MSNL16")
