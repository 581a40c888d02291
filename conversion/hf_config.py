"""transformers' `config.json` / `preprocessor_config.json` <-> keras_vit."""

from __future__ import annotations

from typing import Any

from keras_vit.model.config import ViTConfig

SUPPORTED_MODEL_TYPES = ("vit",)

# transformers' ViTConfig defaults, for keys a config.json leaves out.
_HF_DEFAULTS = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
    "pooler_output_size": None,
    "pooler_act": "tanh",
}
VIT_MODEL = "ViTModel"
VIT_CLASSIFIER = "ViTForImageClassification"


def config_from_hf(hf_config: dict[str, Any]) -> ViTConfig:
    """Maps a transformers ViT `config.json` to a `ViTConfig`.

    The result describes the backbone; whether a head or pre-logits exist is
    decided by the checkpoint's tensors, so `classes` is `None` and
    `pre_logits` is `False` here. `id2label` is carried over.

    Args:
        hf_config: the parsed `config.json`.

    Returns:
        A `ViTConfig` with transformers' values (`layer_norm_eps` defaults to
        transformers' 1e-12 when absent).

    Example:
        >>> config_from_hf({"model_type": "vit", "hidden_size": 192, ...})
    """
    model_type = hf_config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"model_type {model_type!r} is not supported: keras_vit converts "
            f"{list(SUPPORTED_MODEL_TYPES)} checkpoints (transformers' ViTModel, "
            "ViTForImageClassification and ViTForMaskedImageModeling)."
        )
    values = {key: hf_config.get(key, default) for key, default in _HF_DEFAULTS.items()}
    values["id2label"] = hf_config.get("id2label") or None  # ViTConfig parses the keys
    return ViTConfig(**values, classes=None, pre_logits=False, classifier_activation=None)


def config_to_hf(config: ViTConfig) -> dict[str, Any]:
    """Maps a `ViTConfig` to a transformers `config.json` dict.

    Args:
        config: a config transformers can represent (see `check_exportable`).

    Returns:
        The dict, with `model_type` "vit" and `architectures`
        `["ViTForImageClassification"]` when the model has a head, else
        `["ViTModel"]`.

    Example:
        >>> transformers.ViTConfig(**config_to_hf(model.config))
    """
    check_exportable(config)
    hf = {key: getattr(config, key) for key in _HF_DEFAULTS}
    hf["pooler_output_size"] = config.pre_logits_size
    for key in ("image_size", "patch_size"):
        if isinstance(hf[key], tuple):
            hf[key] = list(hf[key])
    hf["encoder_stride"] = config.patch_pair[0]
    hf["model_type"] = "vit"
    hf["architectures"] = [VIT_CLASSIFIER if config.classes else VIT_MODEL]
    if config.classes:
        labels = config.id2label or {i: f"LABEL_{i}" for i in range(config.classes)}
        hf["id2label"] = {str(i): label for i, label in labels.items()}
        hf["label2id"] = {label: i for i, label in labels.items()}
    return hf


def check_exportable(config: ViTConfig) -> None:
    """Raises a ValueError if transformers' ViT cannot represent `config`."""
    problems = []
    if config.pooling == "gap":
        problems.append("pooling='gap' (transformers' ViT classifies the [CLS] token)")
    if config.pre_logits and config.classes:
        problems.append(
            "pre_logits together with a head (transformers' ViTForImageClassification "
            "has no pooler)"
        )
    if problems:
        raise ValueError(
            "This model cannot be saved in transformers' format: "
            + "; ".join(problems)
            + ". Save it with model.save('model.keras') instead, or rebuild it with "
            "pooling='token' and without pre-logits under the head."
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
