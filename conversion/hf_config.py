"""transformers' `config.json` / `preprocessor_config.json` <-> keras_vit, per family."""

from __future__ import annotations

from typing import Any

from keras_vit.conversion.families import family_of
from keras_vit.model import weight_paths as paths
from keras_vit.model.config import ViTConfig

# transformers' config fields that keras_vit reads, per family, with the
# defaults transformers uses for keys a config.json leaves out.
_COMMON = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "hidden_act": "gelu",
    "initializer_range": 0.02,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
}
_VIT_LIKE = {
    **_COMMON,
    "intermediate_size": 3072,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-12,
    "qkv_bias": True,
}
_POOLER = {"pooler_output_size": None, "pooler_act": "tanh"}
_DINOV2 = {
    **_COMMON,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-6,
    "patch_size": 14,
    "qkv_bias": True,
    "layerscale_value": 1.0,
    "drop_path_rate": 0.0,
}
_FIELDS = {
    "vit": {**_VIT_LIKE, **_POOLER},
    "deit": {**_VIT_LIKE, **_POOLER},
    "vit_mae": _VIT_LIKE,
    "vit_msn": {**_VIT_LIKE, "layer_norm_eps": 1e-6},
    "dinov2": _DINOV2,
    "dinov2_with_registers": {**_DINOV2, "patch_size": 16, "num_register_tokens": 4},
    "dinov3_vit": {
        **_COMMON,
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
        "layer_norm_eps": 1e-5,
        "rope_theta": 100.0,
        "key_bias": False,
        "proj_bias": True,
        "mlp_bias": True,
        "layerscale_value": 1.0,
        "drop_path_rate": 0.0,
        "num_register_tokens": 0,
    },
}
# What each family fixes that a config.json does not say.
_FIXED = {
    "deit": {"distillation_token": True},
    "vit_mae": {"position_embedding": "sincos"},
    "dinov2": {"use_mask_token": True},
    # Its `interpolate_pos_encoding` passes `antialias=True`; DINOv2's does not.
    "dinov2_with_registers": {"use_mask_token": True, "resample_antialias": True},
    "dinov3_vit": {"position_embedding": "rope", "use_mask_token": True},
}


def _swiglu_width(hidden_size: int, mlp_ratio: float) -> int:
    """DINOv2's SwiGLU hidden width: 2/3 of the MLP's, rounded up to a multiple of 8."""
    return (int(int(hidden_size * mlp_ratio) * 2 / 3) + 7) // 8 * 8


def _mlp_ratio(config: ViTConfig) -> int:
    """The whole `mlp_ratio` (transformers' DINOv2 configs take an int) that gives a
    DINOv2 config's intermediate size back."""
    d, m = config.hidden_size, config.intermediate_size
    for ratio in range(1, 2 * m // d + 2):  # SwiGLU's width is about 2/3 of d * ratio
        width = _swiglu_width(d, ratio) if config.mlp_type == "swiglu" else d * ratio
        if width == m:
            return ratio
    raise ValueError(
        f"intermediate_size={m} is not what a whole DINOv2 mlp_ratio gives for "
        f"hidden_size={d} (mlp_type={config.mlp_type!r}); use such a width."
    )


def config_from_hf(hf_config: dict[str, Any]) -> ViTConfig:
    """Maps a transformers ViT-family `config.json` to a `ViTConfig`.

    The result describes the backbone; whether a head or pre-logits exist is
    decided by the checkpoint's tensors, so `classes` is `None` and
    `pre_logits` is `False` here. `id2label` is carried over.

    Args:
        hf_config: the parsed `config.json` of one of `FAMILIES`' model types.

    Returns:
        A `ViTConfig` with transformers' values and defaults (e.g.
        `layer_norm_eps` 1e-12 for ViT, 1e-6 for DINOv2, 1e-5 for DINOv3),
        and `model_type` set.

    Example:
        >>> config_from_hf({"model_type": "dinov2", "hidden_size": 384}).mlp_type
        'mlp'
    """
    model_type = family_of(hf_config.get("model_type")).model_type
    values = {key: hf_config.get(key, default) for key, default in _FIELDS[model_type].items()}
    values.update(_FIXED.get(model_type, {}))
    if model_type.startswith("dinov2"):
        ratio = hf_config.get("mlp_ratio", 4)
        swiglu = bool(hf_config.get("use_swiglu_ffn", False))
        values["mlp_type"] = "swiglu" if swiglu else "mlp"
        hidden = values["hidden_size"]
        values["intermediate_size"] = (
            _swiglu_width(hidden, ratio) if swiglu else int(hidden * ratio)
        )
    if model_type == "dinov3_vit":
        query, value = hf_config.get("query_bias", True), hf_config.get("value_bias", True)
        if query != value:
            raise ValueError(
                f"query_bias={query} with value_bias={value}: keras_vit gives the query and "
                "the value the same bias setting (qkv_bias)."
            )
        values["qkv_bias"] = query
        values["attention_probs_dropout_prob"] = hf_config.get("attention_dropout", 0.0)
        values["mlp_type"] = "gated" if hf_config.get("use_gated_mlp", False) else "mlp"
    values["id2label"] = hf_config.get("id2label") or None  # ViTConfig parses the keys
    return ViTConfig(
        **values,
        model_type=model_type,
        classes=None,
        pre_logits=False,
        classifier_activation=None,
    )


def architecture(config: ViTConfig) -> str:
    """The transformers class a `ViTConfig` exports as: the family's base model, its
    classifier, or DeiT's classifier with a distillation head."""
    family = family_of(config.model_type)
    if not config.classes:
        return family.base_class
    return family.teacher_class if config.distillation_head else family.classifier_class


def config_to_hf(config: ViTConfig) -> dict[str, Any]:
    """Maps a `ViTConfig` to a transformers `config.json` dict of its family.

    Args:
        config: a config transformers can represent (see `check_exportable`).

    Returns:
        The dict, with the config's `model_type` and `architectures` naming
        the family's classifier when the model has a head, else its base model.

    Example:
        >>> transformers.AutoConfig.for_model(**config_to_hf(model.config))
    """
    check_exportable(config)
    model_type = config.model_type
    hf = {key: getattr(config, key) for key in _FIELDS[model_type] if hasattr(config, key)}
    if "pooler_output_size" in hf:
        hf["pooler_output_size"] = config.pre_logits_size
    for key in ("image_size", "patch_size"):
        if isinstance(hf[key], tuple):
            hf[key] = list(hf[key])
    if model_type in ("vit", "deit"):
        hf["encoder_stride"] = config.patch_pair[0]
    if model_type.startswith("dinov2"):
        hf["mlp_ratio"] = _mlp_ratio(config)
        hf["use_swiglu_ffn"] = config.mlp_type == "swiglu"
    if model_type == "dinov3_vit":
        hf.update(
            query_bias=config.qkv_bias,
            value_bias=config.qkv_bias,
            key_bias=config.qkv_bias and config.key_bias,
            attention_dropout=config.attention_probs_dropout_prob,
            use_gated_mlp=config.mlp_type == "gated",
        )
    hf["model_type"] = model_type
    hf["architectures"] = [architecture(config)]
    if config.classes:
        labels = config.id2label or {i: f"LABEL_{i}" for i in range(config.classes)}
        hf["id2label"] = {str(i): label for i, label in labels.items()}
        hf["label2id"] = {label: i for i, label in labels.items()}
    return hf


# What each family's transformers models can hold, beyond the common encoder.
_FAMILY_OPTIONS = {
    "vit": {"position_embedding": ("learned", "sincos"), "mlp_type": ("mlp",)},
    "deit": {"position_embedding": ("learned", "sincos"), "mlp_type": ("mlp",)},
    "vit_mae": {"position_embedding": ("sincos",), "mlp_type": ("mlp",)},
    "vit_msn": {"position_embedding": ("learned", "sincos"), "mlp_type": ("mlp",)},
    "dinov2": {"position_embedding": ("learned",), "mlp_type": ("mlp", "swiglu")},
    "dinov2_with_registers": {"position_embedding": ("learned",), "mlp_type": ("mlp", "swiglu")},
    "dinov3_vit": {"position_embedding": ("rope",), "mlp_type": ("mlp", "gated")},
}


def check_exportable(config: ViTConfig) -> None:
    """Raises a ValueError naming every part of `config` its transformers family cannot hold.

    Args:
        config: the model's config; `model_type` names the family.

    Example:
        >>> check_exportable(ViTConfig(pooling="gap", classes=3))
        ValueError: ... pooling='gap' ...
    """
    family = family_of(config.model_type)
    problems = [
        f"{name}={getattr(config, name)!r} (its models have {allowed})"
        for name, allowed in _FAMILY_OPTIONS[config.model_type].items()
        if getattr(config, name) not in allowed
    ]
    dinov3 = config.model_type == "dinov3_vit"
    vit_like = config.model_type in ("vit", "deit", "vit_mae", "vit_msn")
    registers = config.model_type in ("dinov2_with_registers", "dinov3_vit")
    unsupported = {
        "distillation_token": config.distillation_token != (config.model_type == "deit"),
        "num_register_tokens": config.num_register_tokens and not registers,
        "layerscale_value": (config.layerscale_value is None) != vit_like,
        "key_bias": not (config.key_bias or dinov3),
        "proj_bias": not (config.proj_bias or dinov3),
        "mlp_bias": not (config.mlp_bias or dinov3),
    }
    problems += [f"{name}={getattr(config, name)!r}" for name, bad in unsupported.items() if bad]
    if config.classes:
        pooling = "token_and_gap" if config.model_type.startswith("dinov2") else "token"
        if family.classifier_class is None:
            problems.append(f"a classification head ({family.model_type} has no classifier class)")
        elif config.pooling != pooling:
            problems.append(f"pooling={config.pooling!r} under the head ({pooling!r} expected)")
        if config.pre_logits:
            problems.append(
                f"pre_logits together with a head ({architecture(config)} has no pooler)"
            )
    elif config.pre_logits and (
        paths.PRE_LOGITS not in family.top_modules or config.pooling != "token"
    ):
        problems.append(
            f"pre_logits on pooling={config.pooling!r} "
            f"({family.base_class}'s pooler, if any, reads [CLS])"
        )
    if problems:
        raise ValueError(
            f"This model cannot be saved in transformers' {config.model_type!r} format: "
            + "; ".join(problems)
            + ". Save it with model.save('model.keras') instead, or change model_type or "
            "these options."
        )


def preprocessor_to_hf(image_size: tuple[int, int], mean, std, rescale_factor) -> dict[str, Any]:
    """A transformers `preprocessor_config.json` for `ViTImageProcessor`."""
    return {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": image_size[0], "width": image_size[1]},
        "resample": 2,  # PIL bilinear
        "do_rescale": True,
        "rescale_factor": rescale_factor,
        "do_normalize": True,
        "image_mean": list(mean),
        "image_std": list(std),
    }
