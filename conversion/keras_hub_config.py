"""keras-hub preset directories: their files, and their configs as `ViTConfig`s.

A keras-hub preset directory holds `config.json` (the backbone as Keras
serialises it: `module`, `class_name`, `config`), `metadata.json`,
`model.weights.h5` (or `model.weights.json` and its `model_*.weights.h5`
shards), and for a task also `task.json` and `task.weights.h5`. This module
tells a preset from other checkpoints, lists the files to download, and maps
each supported backbone's (and image classifier's) config onto `ViTConfig`
plus a `PresetLayout`: what the weights look like on disk.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from keras_vit.conversion.checkpoint import read_json_object
from keras_vit.model.config import ViTConfig

CONFIG = "config.json"
METADATA = "metadata.json"
TASK_CONFIG = "task.json"
BACKBONE_WEIGHTS = "model.weights.h5"
SHARDED_BACKBONE_INDEX = "model.weights.json"
SHARD_PATTERN = "model_*.weights.h5"
TASK_WEIGHTS = "task.weights.h5"
# Datasets of `task.weights.h5` are named with this prefix, to keep them apart
# from the backbone's.
TASK_PREFIX = "task/"

# keras-hub backbone class -> the transformers family keras_vit gives it.
BACKBONES = {"ViTBackbone": "vit", "DeiTBackbone": "deit", "DINOV2Backbone": "dinov2"}
# keras-hub task class -> the backbone class it is read with.
TASKS = {"ViTImageClassifier": "ViTBackbone", "DeiTImageClassifier": "DeiTBackbone"}
SUPPORTED = (
    f"backbones {', '.join(BACKBONES)} and image classifiers {', '.join(TASKS)} "
    "(a preset saved by keras-hub's save_to_preset)"
)


def read_keras_hub_config(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The Keras-serialised `config.json` of a keras-hub preset, or `None` for other directories.

    Args:
        directory: any checkpoint directory.

    Returns:
        The parsed file when it is a Keras object (`class_name` and `config`,
        no transformers `model_type`), else `None` (no such file, or a
        transformers / keras_vit `config.json`).

    Example:
        >>> read_keras_hub_config("vit_base_patch16_224_imagenet/")["class_name"]
        'ViTBackbone'
    """
    path = Path(directory) / CONFIG
    if not path.is_file():
        return None
    try:
        config = read_json_object(path)
    except ValueError:
        return None  # the transformers path reports a broken config.json
    if "model_type" in config or not {"class_name", "config"} <= set(config):
        return None
    return config


def is_keras_hub_preset(directory: str | os.PathLike) -> bool:
    """Whether a directory holds a keras-hub (Keras-serialised) preset rather than a
    transformers checkpoint.

    Args:
        directory: a checkpoint directory.

    Returns:
        True when its `config.json` is a Keras object (`class_name` / `config`).

    Example:
        >>> is_keras_hub_preset("vit_base_patch16_224_imagenet/")
        True
    """
    return read_keras_hub_config(directory) is not None


def keras_hub_preset_files(available: list[str] | set[str]) -> list[str] | None:
    """The files of a Hub repo that loading it as a keras-hub preset needs.

    Args:
        available: the repo's file names.

    Returns:
        `config.json`, `metadata.json`, the backbone's weights (one file or
        the shards and their index) and the task's config and weights when
        present; `None` when the repo is not laid out as a keras-hub preset.

    Example:
        >>> keras_hub_preset_files(["config.json", "metadata.json", "model.weights.h5"])
        ['config.json', 'metadata.json', 'model.weights.h5']
    """
    available = set(available)
    if not {CONFIG, METADATA} <= available:
        return None
    if BACKBONE_WEIGHTS in available:
        weights = [BACKBONE_WEIGHTS]
    elif SHARDED_BACKBONE_INDEX in available:
        weights = [SHARDED_BACKBONE_INDEX, SHARD_PATTERN]
    else:
        return None
    task = [name for name in (TASK_CONFIG, TASK_WEIGHTS) if name in available]
    return [CONFIG, METADATA, *weights, *task]


def unsupported_preset_error(directory: Path, what: str, entry: dict) -> ValueError:
    """The error for a preset of a keras-hub class keras_vit does not read.

    Args:
        directory: the preset.
        what: `"class"` (a backbone) or `"task"`.
        entry: its Keras-serialised config (`class_name`, `module`, ...).

    Returns:
        A ValueError that names the class and its module, lists what keras_vit
        reads, and points at keras-hub's own `from_preset`.

    Example:
        >>> raise unsupported_preset_error(Path("p"), "class", {"class_name": "ResNetBackbone"})
        ValueError: p is a keras-hub preset of class 'ResNetBackbone' (unknown module), ...
    """
    module = entry.get("module") or entry.get("registered_name") or "unknown module"
    return ValueError(
        f"{directory} is a keras-hub preset of {what} {entry.get('class_name')!r} ({module}), "
        f"which keras_vit does not read. keras_vit reads the {SUPPORTED}. Load this one with "
        "keras_hub.models.Backbone.from_preset (or the task's from_preset) instead."
    )


@dataclasses.dataclass(frozen=True)
class PresetLayout:
    """What a preset's config says beyond `ViTConfig`, needed to read its weights.

    Attributes:
        backbone_class: keras-hub's backbone class name.
        source_grid: the patch grid the stored position embeddings cover.
        source_pixels: the image size they were made for (DINOv2 compares
            pixels, not grids, to decide whether to resize).
        patch_bias: whether the patch projection has a bias (ViT's
            `use_patch_bias`); a missing bias is loaded as zeros.
        head_pooling: the task's pooling, if any.
        num_classes: the task's class count, if any.
        pre_logits_size: the task's `intermediate_dim` (a tanh pre-logits layer), if any.
        classifier_activation: the task's output activation, if any.
    """

    backbone_class: str
    source_grid: tuple[int, int]
    source_pixels: tuple[int, int]
    patch_bias: bool = True
    head_pooling: str | None = None
    num_classes: int | None = None
    pre_logits_size: int | None = None
    classifier_activation: str | None = None


def _image_pair(shape: Any, name: str) -> tuple[int, int]:
    """`(height, width)` of a keras-hub `image_shape` (channels last, as keras-hub saves it)."""
    if not isinstance(shape, (list, tuple)) or len(shape) not in (2, 3):
        raise ValueError(f"{name} must be (height, width, channels), got {shape!r}.")
    if any(side is None for side in shape[:2]):
        raise ValueError(
            f"{name} {shape!r} has no fixed height and width; keras_vit needs them. Pass "
            "image_size=... to build for a size."
        )
    return int(shape[0]), int(shape[1])


def config_from_keras_hub(
    backbone: dict[str, Any], task: dict[str, Any] | None = None
) -> tuple[ViTConfig, PresetLayout]:
    """Maps a keras-hub backbone (and task) config onto a `ViTConfig`.

    Args:
        backbone: the preset's `config.json`, parsed (`class_name`, `config`).
        task: its `task.json`, parsed, or `None`.

    Returns:
        `(config, layout)`: the backbone's `ViTConfig` (no head: `classes`
        is `None`), and what else reading the weights needs.

    Raises:
        ValueError: an option keras_vit cannot reproduce exactly (e.g.
            `use_class_token=False`, or a task that pools with `"gap"`).

    Example:
        >>> config, layout = config_from_keras_hub(read_json_object("preset/config.json"))
        >>> config.model_type, layout.source_grid
        ('vit', (14, 14))
    """
    class_name, values = backbone["class_name"], backbone["config"]
    problems = []
    common = dict(
        num_hidden_layers=values["num_layers"],
        num_attention_heads=values["num_heads"],
        hidden_size=values["hidden_dim"],
        hidden_act="gelu",  # keras' exact GELU in all three
        classes=None,
        pre_logits=False,
        classifier_activation=None,
    )
    patch_bias = True
    if class_name in ("ViTBackbone", "DeiTBackbone"):
        image = _image_pair(values["image_shape"], "image_shape")
        num_channels = int(values["image_shape"][-1])
        mha_bias = bool(values.get("use_mha_bias", True))
        specific = dict(
            image_size=image,
            patch_size=tuple(values["patch_size"])
            if isinstance(values["patch_size"], (list, tuple))
            else values["patch_size"],
            num_channels=num_channels,
            layer_norm_eps=values.get("layer_norm_epsilon", 1e-6),
            hidden_dropout_prob=values.get("dropout_rate", 0.0),
            attention_probs_dropout_prob=values.get("attention_dropout", 0.0),
            qkv_bias=mha_bias,
            proj_bias=mha_bias,  # keras' MultiHeadAttention has one switch for all four
        )
        if class_name == "ViTBackbone":
            specific.update(intermediate_size=values["mlp_dim"], model_type="vit")
            specific["mlp_bias"] = bool(values.get("use_mlp_bias", True))
            patch_bias = bool(values.get("use_patch_bias", True))
            if not values.get("use_class_token", True):
                problems.append("use_class_token=False (keras_vit always has a [CLS] token)")
        else:
            specific.update(
                intermediate_size=values["intermediate_dim"],
                model_type="deit",
                distillation_token=True,
            )
        source_pixels = image
    elif class_name == "DINOV2Backbone":
        image = _image_pair(values.get("image_shape", (224, 224, 3)), "image_shape")
        source_pixels = _image_pair(
            values.get("position_embedding_shape", (518, 518, 3)), "position_embedding_shape"
        )
        width = int(values["intermediate_dim"])
        swiglu = bool(values.get("use_swiglu_ffn", False))
        registers = int(values.get("num_register_tokens", 0))
        dropout = values.get("dropout_rate", 0.0)
        specific = dict(
            image_size=image,
            patch_size=int(values["patch_size"]),
            num_channels=int(values.get("image_shape", (224, 224, 3))[-1]),
            # keras-hub's SwiGLU keeps 2/3 of `intermediate_dim`, rounded up to a multiple of 8.
            intermediate_size=(int(width * 2 / 3) + 7) // 8 * 8 if swiglu else width,
            mlp_type="swiglu" if swiglu else "mlp",
            layer_norm_eps=1e-6,  # fixed in keras-hub's DINOv2
            layerscale_value=float(values.get("layer_scale_init_value", 1.0)),
            num_register_tokens=registers,
            use_mask_token=bool(values.get("use_mask_token", True)),
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            drop_path_rate=values.get("drop_path_rate", 0.0),
            resample_antialias=bool(values.get("antialias_in_interpolation", False)),
            model_type="dinov2_with_registers" if registers else "dinov2",
        )
    else:
        raise ValueError(
            f"Unsupported keras-hub backbone {class_name!r}; keras_vit reads {SUPPORTED}."
        )
    patch = specific["patch_size"]
    patch_pair = tuple(patch) if isinstance(patch, tuple) else (patch, patch)
    source_grid = (source_pixels[0] // patch_pair[0], source_pixels[1] // patch_pair[1])

    head = {}
    if task is not None:
        options = task.get("config", {})
        pooling = options.get("pooling", "token")
        if pooling != "token":
            problems.append(
                f"the task's pooling={pooling!r} (keras-hub averages every token, [CLS] "
                "included; keras_vit's heads read [CLS]); pass include_top=False for the backbone"
            )
        activation = options.get("activation")
        if activation is not None and not isinstance(activation, str):
            problems.append(f"the task's activation {activation!r} (only named activations)")
            activation = None
        head = dict(
            head_pooling=pooling,
            num_classes=int(options["num_classes"]),
            pre_logits_size=options.get("intermediate_dim"),
            classifier_activation=activation,
        )
    if problems:
        raise ValueError(
            f"This keras-hub {class_name} preset cannot be loaded exactly: "
            + "; ".join(problems)
            + "."
        )
    config = ViTConfig(**common, **specific)
    return config, PresetLayout(class_name, source_grid, source_pixels, patch_bias, **head)


def keras_hub_backbone_config(directory: str | os.PathLike) -> ViTConfig:
    """The backbone `ViTConfig` of a keras-hub preset directory (its head aside).

    Args:
        directory: a keras-hub preset.

    Returns:
        `config_from_keras_hub` of its `config.json`.

    Raises:
        ValueError: not a keras-hub preset, or one of a class keras_vit does not read.

    Example:
        >>> keras_hub_backbone_config("dinov2_small/").model_type
        'dinov2'
    """
    directory = Path(directory)
    backbone = supported_backbone_config(directory)
    from keras_vit.conversion.pretrained import naming_the_file

    with naming_the_file(directory / CONFIG):
        return config_from_keras_hub(backbone)[0]


def supported_backbone_config(directory: Path) -> dict:
    """The preset's Keras-serialised backbone config, if it is a backbone keras_vit reads.

    Args:
        directory: a keras-hub preset directory.

    Returns:
        The `config.json` object (`class_name`, `config`, ...).

    Raises:
        ValueError: not a keras-hub preset, or a backbone of another class.

    Example:
        >>> supported_backbone_config(Path("vit_base_patch16_224_imagenet"))["class_name"]
        'ViTBackbone'
    """
    backbone = read_keras_hub_config(directory)
    if backbone is None:
        raise ValueError(f"{directory} is not a keras-hub preset (no Keras-serialised {CONFIG}).")
    if backbone["class_name"] not in BACKBONES:
        raise unsupported_preset_error(directory, "class", backbone)
    return backbone
