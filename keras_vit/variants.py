"""The paper's model sizes as one table, and a builder per row."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
from collections.abc import Callable
from typing import Any

from keras_vit.config import ViTConfig
from keras_vit.initializers import skip_random_init
from keras_vit.model import ViT

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
    include_top: bool = True,
    weights: str | None = None,
    image_size: int | tuple[int, int] = 224,
    pooling: str | None = "token",
    classes: int | None = 1000,
    classifier_activation: str | None = "softmax",
    pre_logits: bool = False,
    include_preprocessing: bool = False,
    dtype: Any = None,
    name: str | None = None,
    **overrides: Any,
) -> ViT:
    """Builds a named variant with keras.applications-style arguments.

    Args:
        variant: one of `VARIANTS`.
        include_top: attach a classification head of `classes` outputs.
        weights: `None` (random initialisation) or the path of a
            `.weights.h5` file saved from a model of this variant (position
            embeddings are resampled if its image size differs).
        image_size: input side or `(height, width)`, multiples of the patch size.
        pooling: `"token"`, `"gap"`, or `None` for the whole token sequence
            (only without a head).
        classes: number of classes of the head.
        classifier_activation: activation of the head, `None` for logits.
        pre_logits: add the Dense + tanh pre-logits layer after pooling.
        include_preprocessing: take raw 0..255 images of any size.
        dtype: dtype policy, e.g. `"mixed_bfloat16"`.
        name: model name; defaults to the variant's, e.g. `"vit_b16"`.
        **overrides: any other `ViTConfig` field.

    Returns:
        A `keras_vit.ViT`.

    Example:
        >>> model = build_variant("ViTTi16", include_top=False, pooling="gap")
    """
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
    if weights is not None and not (
        isinstance(weights, str) and weights.endswith(".weights.h5") and os.path.isfile(weights)
    ):
        raise ValueError(
            f"weights={weights!r} is not supported: use None, or the path of an existing "
            "'.weights.h5' file saved with model.save_weights()."
        )
    config = variant_config(
        variant,
        image_size=image_size,
        pooling=pooling,
        classes=classes if include_top else None,
        classifier_activation=classifier_activation,
        pre_logits=pre_logits,
        **overrides,
    )
    with skip_random_init() if weights is not None else contextlib.nullcontext():
        model = ViT(
            config,
            include_preprocessing=include_preprocessing,
            dtype=dtype,
            name=name or "vit_" + variant[3:].lower(),
        )
    if weights is not None:
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
