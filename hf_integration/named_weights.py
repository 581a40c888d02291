"""Named pretrained weights (`ViTB16(weights="imagenet21k")`) and the Hub repos behind them."""

from __future__ import annotations

# (variant, name) -> Hub repo. in21k checkpoints are ViTModel with the pre-logits
# pooler and no head; the others are ViTForImageClassification on ImageNet-1k.
NAMED_WEIGHTS: dict[tuple[str, str], str] = {
    ("ViTTi16", "imagenet"): "WinKawaks/vit-tiny-patch16-224",
    ("ViTS16", "imagenet"): "WinKawaks/vit-small-patch16-224",
    ("ViTB16", "imagenet21k"): "google/vit-base-patch16-224-in21k",
    ("ViTB16", "imagenet"): "google/vit-base-patch16-224",
    ("ViTB16", "imagenet-384"): "google/vit-base-patch16-384",
    ("ViTB32", "imagenet21k"): "google/vit-base-patch32-224-in21k",
    ("ViTB32", "imagenet-384"): "google/vit-base-patch32-384",
    ("ViTL16", "imagenet21k"): "google/vit-large-patch16-224-in21k",
    ("ViTL16", "imagenet"): "google/vit-large-patch16-224",
    ("ViTL16", "imagenet-384"): "google/vit-large-patch16-384",
    ("ViTL32", "imagenet21k"): "google/vit-large-patch32-224-in21k",
    ("ViTL32", "imagenet-384"): "google/vit-large-patch32-384",
    ("ViTH14", "imagenet21k"): "google/vit-huge-patch14-224-in21k",
}


def weight_names(variant: str) -> list[str]:
    """The weight names a variant accepts, e.g. `["imagenet21k", "imagenet", ...]`."""
    return [name for (row_variant, name) in NAMED_WEIGHTS if row_variant == variant]


def named_weights_repo(variant: str, name: str) -> str | None:
    """The Hub repo of a variant's named weights, or `None` if `name` is not a name.

    Args:
        variant: e.g. `"ViTB16"`.
        name: e.g. `"imagenet21k"`.

    Returns:
        e.g. `"google/vit-base-patch16-224-in21k"`.

    Example:
        >>> named_weights_repo("ViTB16", "imagenet21k")
        'google/vit-base-patch16-224-in21k'
    """
    return NAMED_WEIGHTS.get((variant, name))


def list_weights() -> str:
    """Prints (and returns) the table of named weights as Markdown.

    Returns:
        The table: variant, weight name, Hub repo.

    Example:
        >>> keras_vit.list_weights()
        | Variant | Name | Repo |
        ...
    """
    rows = ["| Variant | Name | Repo |", "|---|---|---|"]
    rows += [
        f"| {variant} | `{name}` | {repo} |" for (variant, name), repo in NAMED_WEIGHTS.items()
    ]
    table = "\n".join(rows)
    print(table)
    return table
