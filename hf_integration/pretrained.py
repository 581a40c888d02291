"""Loading keras_vit models by Hub repo id, `hf://` URL, local directory or weight name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from keras_vit.conversion.keras_hub_config import is_keras_hub_preset, keras_hub_backbone_config
from keras_vit.conversion.mae import load_mae_pretrained
from keras_vit.conversion.pretrained import hf_backbone_config, load_pretrained, reshapes_checkpoint
from keras_vit.hf_integration.download import (
    download_checkpoint,
    download_keras_hub_preset,
    split_source,
)
from keras_vit.hf_integration.named_weights import named_weights_repo, weight_names
from keras_vit.model import ViT
from keras_vit.model.mae import MaskedAutoencoder

# The Hub arguments of `from_pretrained`, which `mae_from_pretrained` takes through **kwargs.
HUB_ARGUMENTS = ("revision", "token", "cache_dir", "force_download", "local_files_only")


def from_pretrained(
    source: str | os.PathLike,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    variant: str | None = None,
    **kwargs: Any,
) -> ViT:
    """Builds a `ViT` from a Hub repo or a local transformers / keras_vit checkpoint.

    Args:
        source: `org/name`, `hf://org/name`, or a local directory, holding a
            transformers or keras_vit checkpoint, or a keras-hub preset of a
            ViT, DeiT or DINOv2 backbone or image classifier.
        revision: a branch, tag or commit sha of the repo.
        token: a Hub token for private or gated repos (default: the logged-in one).
        cache_dir: another cache than huggingface_hub's default.
        force_download: download again even if cached.
        local_files_only: use the local cache only (as `HF_HUB_OFFLINE=1`).
        variant: check that the checkpoint has this variant's shape, e.g. `"ViTB16"`.
        **kwargs: `image_size`, `classes`, `include_top`, `verbose`,
            `include_preprocessing`, `dtype`, `name` and `ViTConfig` overrides;
            see `keras_vit.conversion.load_pretrained`.

    Returns:
        The model. Loaded from a repo, its `config.base_model` is the repo id.

    Example:
        >>> model = from_pretrained("google/vit-base-patch16-224-in21k", classes=10)
    """
    hub = dict(
        revision=revision,
        token=token,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
    )
    directory, repo_id = split_source(source)
    if repo_id is not None:
        try:
            directory = download_checkpoint(
                repo_id, **hub, keras_native=not reshapes_checkpoint(**kwargs)
            )
        except FileNotFoundError:  # no transformers weights: maybe a keras-hub preset
            directory = download_keras_hub_preset(repo_id, **hub)
            if directory is None:
                raise
    if variant is not None:
        check_variant(directory, variant, source)
    model = load_pretrained(directory, **kwargs)
    if repo_id is not None:
        model.config.base_model = repo_id
    return model


def mae_from_pretrained(source: str | os.PathLike, **kwargs: Any) -> MaskedAutoencoder:
    """Builds a `MaskedAutoencoder` from a `ViTMAEForPreTraining` Hub repo or directory.

    Args:
        source: `org/name`, `hf://org/name`, or a local directory.
        **kwargs: the Hub's `revision`, `token`, `cache_dir`, `force_download`
            and `local_files_only`, as for `from_pretrained`; then `seed`,
            `verbose`, `dtype`, `name`, and `MAEConfig` and `ViTConfig`
            overrides (see `keras_vit.conversion.mae.load_mae_pretrained`).

    Returns:
        The model. Loaded from a repo, its `config.base_model` is the repo id.

    Example:
        >>> mae = mae_from_pretrained("facebook/vit-mae-base", revision="main")
    """
    hub = {name: kwargs.pop(name) for name in HUB_ARGUMENTS if name in kwargs}
    directory, repo_id = split_source(source)
    if repo_id is not None:
        directory = download_checkpoint(repo_id, **hub, keras_native=False)
    model = load_mae_pretrained(directory, **kwargs)
    if repo_id is not None:
        model.config.base_model = repo_id
    return model


def check_variant(directory: Path, variant: str, source: str | os.PathLike) -> None:
    """Raises a ValueError if the checkpoint in `directory` is not `variant`'s family and shape.

    The message names the builder the checkpoint does fit, when there is one.
    """
    from keras_vit.variants import VARIANTS, variant_config

    keras_hub = is_keras_hub_preset(directory)
    found = (keras_hub_backbone_config if keras_hub else hf_backbone_config)(directory)
    mismatched = _differences(found, variant_config(variant))
    if mismatched:
        fitting = [name for name in VARIANTS if not _differences(found, variant_config(name))]
        builder = f"keras_vit.{fitting[0]}" if fitting else "the builder of its family and size"
        raise ValueError(
            f"{source} is not a {variant} checkpoint: it has {', '.join(mismatched)}. Use "
            f"{builder}, or keras_vit.ViT.from_pretrained({str(source)!r})."
        )


def _differences(found, expected) -> list[str]:
    """What a checkpoint's config has that a variant's does not: family, size, patch."""
    fields = (
        "model_type",
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "intermediate_size",
        "patch_pair",
    )
    return [
        f"{field.replace('_pair', '_size')} {getattr(found, field)!r} "
        f"(expected {getattr(expected, field)!r})"
        for field in fields
        if getattr(found, field) != getattr(expected, field)
    ]


def from_weights_argument(variant: str, weights: str, **kwargs: Any) -> ViT:
    """Builds a variant from its builder's `weights=` argument.

    Args:
        variant: e.g. `"ViTB16"`.
        weights: a weight name of the variant (`"imagenet21k"`, see
            `list_weights()`), a repo id, an `hf://` URL or a local directory.
        **kwargs: as for `from_pretrained`.

    Returns:
        The model.

    Example:
        >>> model = from_weights_argument("ViTB16", "imagenet21k", classes=5)
    """
    repo = named_weights_repo(variant, weights)
    if repo is None and "/" not in weights and not Path(weights).is_dir():
        raise ValueError(
            f"Unknown weights {weights!r} for {variant}. Valid names: "
            f"{weight_names(variant)} (see keras_vit.list_weights()); or pass None, a "
            "'.weights.h5' file, a Hub repo id, an 'hf://' URL or a checkpoint directory."
        )
    return from_pretrained(repo or weights, variant=variant, **kwargs)
