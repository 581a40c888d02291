"""Named pretrained weights (`ViTB16(weights="imagenet21k")`) and the Hub repos behind them."""

from __future__ import annotations

# (variant, name) -> Hub repo. The name says what the weights were trained on or
# with: "imagenet" (ImageNet-1k classifiers, or MAE / MSN pretraining on it),
# "imagenet21k" (ViTModel with the pre-logits pooler, no head), "dino" (DINO,
# no head), "lvd142m" / "lvd1689m" (DINOv2 / DINOv3, no head).
NAMED_WEIGHTS: dict[tuple[str, str], str] = {
    ("ViTTi16", "imagenet"): "WinKawaks/vit-tiny-patch16-224",
    ("ViTS16", "imagenet"): "WinKawaks/vit-small-patch16-224",
    ("ViTS16", "dino"): "facebook/dino-vits16",
    ("ViTB16", "imagenet21k"): "google/vit-base-patch16-224-in21k",
    ("ViTB16", "imagenet"): "google/vit-base-patch16-224",
    ("ViTB16", "imagenet-384"): "google/vit-base-patch16-384",
    ("ViTB16", "dino"): "facebook/dino-vitb16",
    ("ViTB32", "imagenet21k"): "google/vit-base-patch32-224-in21k",
    ("ViTB32", "imagenet-384"): "google/vit-base-patch32-384",
    ("ViTL16", "imagenet21k"): "google/vit-large-patch16-224-in21k",
    ("ViTL16", "imagenet"): "google/vit-large-patch16-224",
    ("ViTL16", "imagenet-384"): "google/vit-large-patch16-384",
    ("ViTL32", "imagenet21k"): "google/vit-large-patch32-224-in21k",
    ("ViTL32", "imagenet-384"): "google/vit-large-patch32-384",
    ("ViTH14", "imagenet21k"): "google/vit-huge-patch14-224-in21k",
    ("ViTS8", "dino"): "facebook/dino-vits8",
    ("ViTB8", "dino"): "facebook/dino-vitb8",
    ("DeiTTi16", "imagenet"): "facebook/deit-tiny-patch16-224",
    ("DeiTS16", "imagenet"): "facebook/deit-small-patch16-224",
    ("DeiTB16", "imagenet"): "facebook/deit-base-patch16-224",
    ("DeiTB16", "imagenet-384"): "facebook/deit-base-patch16-384",
    ("DeiTTi16Distilled", "imagenet"): "facebook/deit-tiny-distilled-patch16-224",
    ("DeiTS16Distilled", "imagenet"): "facebook/deit-small-distilled-patch16-224",
    ("DeiTB16Distilled", "imagenet"): "facebook/deit-base-distilled-patch16-224",
    ("DeiTB16Distilled", "imagenet-384"): "facebook/deit-base-distilled-patch16-384",
    ("DINOv2S14", "lvd142m"): "facebook/dinov2-small",
    ("DINOv2B14", "lvd142m"): "facebook/dinov2-base",
    ("DINOv2L14", "lvd142m"): "facebook/dinov2-large",
    ("DINOv2G14", "lvd142m"): "facebook/dinov2-giant",
    ("DINOv2S14Registers", "lvd142m"): "facebook/dinov2-with-registers-small",
    ("DINOv2B14Registers", "lvd142m"): "facebook/dinov2-with-registers-base",
    ("DINOv2L14Registers", "lvd142m"): "facebook/dinov2-with-registers-large",
    ("DINOv2G14Registers", "lvd142m"): "facebook/dinov2-with-registers-giant",
    # Gated on the Hub: accept the licence on the model page and log in first.
    ("DINOv3S16", "lvd1689m"): "facebook/dinov3-vits16-pretrain-lvd1689m",
    ("DINOv3B16", "lvd1689m"): "facebook/dinov3-vitb16-pretrain-lvd1689m",
    ("DINOv3L16", "lvd1689m"): "facebook/dinov3-vitl16-pretrain-lvd1689m",
    ("DINOv3HPlus16", "lvd1689m"): "facebook/dinov3-vith16plus-pretrain-lvd1689m",
    # ViTMAEForPreTraining checkpoints: the encoder loads, the decoder is left out.
    ("MAEB16", "imagenet"): "facebook/vit-mae-base",
    ("MAEL16", "imagenet"): "facebook/vit-mae-large",
    ("MAEH14", "imagenet"): "facebook/vit-mae-huge",
    ("MSNS16", "imagenet"): "facebook/vit-msn-small",
    ("MSNB16", "imagenet"): "facebook/vit-msn-base",
    ("MSNL16", "imagenet"): "facebook/vit-msn-large",
}
# Repos the Hub serves only to logged-in users who accepted the model's licence.
GATED_REPOS = frozenset(
    repo for (variant, _), repo in NAMED_WEIGHTS.items() if variant.startswith("DINOv3")
)


def weight_names(variant: str) -> list[str]:
    """The weight names a variant accepts.

    Args:
        variant: e.g. `"ViTB16"`.

    Returns:
        The names, in `NAMED_WEIGHTS`' order; empty for an unknown variant.

    Example:
        >>> weight_names("ViTB16")
        ['imagenet21k', 'imagenet', 'imagenet-384', 'dino']
    """
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
        The table: variant, weight name, Hub repo (marked "gated" where the
        Hub asks for a licence to be accepted first).

    Example:
        >>> keras_vit.list_weights()
        | Variant | Name | Repo |
        ...
    """
    rows = ["| Variant | Name | Repo |", "|---|---|---|"]
    rows += [
        f"| {variant} | `{name}` | {repo}{' (gated)' * (repo in GATED_REPOS)} |"
        for (variant, name), repo in NAMED_WEIGHTS.items()
    ]
    table = "\n".join(rows)
    print(table)
    return table
