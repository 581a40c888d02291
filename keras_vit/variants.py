"""The paper's model sizes as one table, and a builder per row."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
from collections.abc import Callable
from typing import Any

from keras_vit.model import ViT
from keras_vit.model.config import ViTConfig
from keras_vit.model.initializers import skip_random_init

# name: (layers, hidden, heads, MLP, patch)
VARIANTS: dict[str, tuple[int, int, int, int, int]] = {
    "ViTTi16": (12, 192, 3, 768, 16),
    "ViTS16": (12, 384, 6, 1536, 16),
    "ViTB16": (12, 768, 12, 3072, 16),
    "ViTB32": (12, 768, 12, 3072, 32),
    "ViTL16": (24, 1024, 16, 4096, 16),
    "ViTL32": (24, 1024, 16, 4096, 32),
    "ViTH14": (32, 1280, 16, 5120, 14),
}

_CONFIG_FIELDS = {field.name for field in dataclasses.fields(ViTConfig)}


def variant_config(variant: str, **overrides: Any) -> ViTConfig:
    """The `ViTConfig` of a named variant, with any field overridden.

    Args:
        variant: one of `VARIANTS`, e.g. `"ViTB16"`.
        **overrides: `ViTConfig` fields to change, e.g. `image_size=384`.

    Returns:
        The config. Nothing is allocated, so this is the cheap way to inspect
        a large model (`variant_config("ViTH14").count_params()`).

    Example:
        >>> variant_config("ViTL16", classes=1000).count_params()
        304326632
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}. Choose one of {list(VARIANTS)}.")
    unknown = sorted(set(overrides) - _CONFIG_FIELDS)
    if unknown:
        raise ValueError(
            f"Unknown argument(s) {unknown} for {variant}. Valid arguments are the builder's "
            f"own and any ViTConfig field: {sorted(_CONFIG_FIELDS)}."
        )
    layers, hidden, heads, mlp, patch = VARIANTS[variant]
    values = {
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "intermediate_size": mlp,
        "patch_size": patch,
    }
    return ViTConfig(**{**values, **overrides})


def build_variant(
    variant: str,
    include_top: bool | None = None,
    weights: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    pooling: str | None = "token",
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
            `imagenet21k` ones have none, and give pre-logits features).
        weights: `None` (random initialisation); a weight name of this variant
            (`"imagenet21k"`, `"imagenet"`, `"imagenet-384"`; see
            `keras_vit.list_weights()`), a Hub repo id, an `hf://` URL or a
            checkpoint directory (downloaded and converted); or the path of a
            `.weights.h5` file saved from a model of this variant.
        image_size: input side or `(height, width)`, multiples of the patch
            size. Default 224, or the checkpoint's; another size resamples the
            position embeddings.
        pooling: `"token"`, `"gap"`, or `None` for the whole token sequence
            (only without a head).
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
    name = name or "vit_" + variant[3:].lower()
    keras_file = weights is not None and os.fspath(weights).endswith(".weights.h5")
    if weights is not None and not keras_file:
        from keras_vit.hf_integration import from_weights_argument

        if variant not in VARIANTS:
            raise ValueError(f"Unknown variant {variant!r}. Choose one of {list(VARIANTS)}.")
        optional = {"pre_logits": pre_logits} if pre_logits is not None else {}
        return from_weights_argument(
            variant,
            os.fspath(weights),
            include_top=include_top,
            image_size=image_size,
            pooling=pooling,
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
    config = variant_config(
        variant,
        image_size=image_size or 224,
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


def _builder(variant: str) -> Callable[..., ViT]:
    layers, hidden, heads, mlp, patch = VARIANTS[variant]

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
    build.__doc__ = (
        f"Builds ViT-{variant[3:-2]}/{patch}: {layers} layers, hidden size {hidden}, "
        f"{heads} heads, MLP {mlp}, patch {patch}.\n\n{shared_args}"
        f"Returns:\n    A `keras_vit.ViT`.\n\n"
        f"Example:\n    >>> model = keras_vit.{variant}(include_top=False, image_size=384)\n"
    )
    return build


ViTTi16 = _builder("ViTTi16")
ViTS16 = _builder("ViTS16")
ViTB16 = _builder("ViTB16")
ViTB32 = _builder("ViTB32")
ViTL16 = _builder("ViTL16")
ViTL32 = _builder("ViTL32")
ViTH14 = _builder("ViTH14")
