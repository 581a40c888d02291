"""keras-hub presets of ViT, DeiT and DINOv2 to keras_vit.

A keras-hub preset directory holds `config.json` (the backbone as Keras
serialises it: `module`, `class_name`, `config`), `metadata.json`,
`model.weights.h5` (or `model.weights.json` and its `model_*.weights.h5`
shards), and for a task also `task.json` and `task.weights.h5`. The weight
files are Keras' own format: one HDF5 dataset per variable, at
`layers/<layer>/.../vars/<index>`, where `<layer>` is the snake-cased class name
of each layer (with `_1`, `_2`, ... for repeats) and `<index>` counts the
layer's variables in creation order.

`load_keras_hub_preset` reads those files with h5py (which Keras installs),
maps the datasets onto keras_vit's weight paths with one name table per
backbone class, checks everything before assigning anything, and builds a
`ViT` whose outputs are keras-hub's. Only DINOv2's position embeddings need a
backend: keras-hub resizes them for the input size with `keras.ops.image.resize`
whenever it loads the preset, and keras_vit does the same so that both agree.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from keras_vit.conversion.checkpoint import Checkpoint, read_json_object
from keras_vit.conversion.convert import CheckpointMismatchError
from keras_vit.model import weight_paths as paths
from keras_vit.model.config import ViTConfig

logger = logging.getLogger("keras_vit")

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


def _unsupported(directory: Path, what: str, entry: dict) -> ValueError:
    module = entry.get("module") or entry.get("registered_name") or "unknown module"
    return ValueError(
        f"{directory} is a keras-hub preset of {what} {entry.get('class_name')!r} ({module}), "
        f"which keras_vit does not read. keras_vit reads the {SUPPORTED}. Load this one with "
        "keras_hub.models.Backbone.from_preset (or the task's from_preset) instead."
    )


# ---------------------------------------------------------------------------
# Configs


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
    backbone = _supported_backbone_config(directory)
    from keras_vit.conversion.pretrained import naming_the_file

    with naming_the_file(directory / CONFIG):
        return config_from_keras_hub(backbone)[0]


# ---------------------------------------------------------------------------
# The name tables


def _numbered(name: str, index: int) -> str:
    """Keras' name for the `index`-th layer of one class in a list: `name`, `name_1`, ..."""
    return name if index == 0 else f"{name}_{index}"


# Block sublayer -> its layer under one block, per backbone class; and where the blocks are.
_VIT_BLOCK = {
    paths.QUERY: "mha/query_dense",
    paths.KEY: "mha/key_dense",
    paths.VALUE: "mha/value_dense",
    paths.ATTENTION_OUTPUT: "mha/output_dense",
    paths.LAYERNORM_BEFORE: "layer_norm_1",
    paths.LAYERNORM_AFTER: "layer_norm_2",
}
_BLOCKS = {
    "ViTBackbone": (
        "vi_t_encoder/encoder_layers/vi_t_encoder_block",
        {**_VIT_BLOCK, paths.MLP_FC1: "mlp/dense_1", paths.MLP_FC2: "mlp/dense_2"},
    ),
    "DeiTBackbone": (
        "dei_t_encoder/encoder_layers/dei_t_encoder_block",
        {**_VIT_BLOCK, paths.MLP_FC1: "mlp/dense", paths.MLP_FC2: "output_layer/dense"},
    ),
    "DINOV2Backbone": (
        "dinov2_encoder/layers/dinov2_layer",
        {
            paths.QUERY: "attention/attention/query_dense",
            paths.KEY: "attention/attention/key_dense",
            paths.VALUE: "attention/attention/value_dense",
            paths.ATTENTION_OUTPUT: "attention/attention/output_dense",
            paths.LAYERNORM_BEFORE: "norm1",
            paths.LAYERNORM_AFTER: "norm2",
            paths.ATTENTION_SCALE: "layer_scale1",
            paths.MLP_SCALE: "layer_scale2",
            paths.MLP_FC1: "mlp/fc1",
            paths.MLP_FC2: "mlp/fc2",
        },
    ),
}
_DINOV2_SWIGLU = {paths.MLP_FC1: "mlp/weights_in", paths.MLP_FC2: "mlp/weights_out"}
# Top-level layers: keras_vit layer -> keras-hub layer.
_TOP = {
    "ViTBackbone": {
        paths.PATCH_PROJECTION: "vi_t_patching_and_embedding/patch_embedding",
        paths.FINAL_LAYERNORM: "vi_t_encoder/layer_norm",
    },
    "DeiTBackbone": {
        paths.PATCH_PROJECTION: "dei_t_embeddings/patch_embedding",
        paths.FINAL_LAYERNORM: "dei_t_encoder/layer_norm",
    },
    "DINOV2Backbone": {
        paths.PATCH_PROJECTION: "dinov2_embedding/patch_embeddings/projection",
        paths.FINAL_LAYERNORM: "layer_normalization",
    },
}
# The embedding layer that owns the tables, whose variables are numbered in creation order.
_EMBEDDINGS = {
    "ViTBackbone": "vi_t_patching_and_embedding",
    "DeiTBackbone": "dei_t_embeddings",
    "DINOV2Backbone": "dinov2_embedding",
}
# Variable name -> index within its layer (Dense, Conv2D, EinsumDense, LayerNormalization).
_VARIABLE_INDEX = {"kernel": 0, "bias": 1, "gamma": 0, "beta": 1, "scale": 0}

# Layouts: how a keras-hub tensor's shape follows from the keras_vit weight's.
SAME, HEADS_IN, HEADS_BIAS, HEADS_OUT, NO_BATCH = (
    "same",
    "heads_in",
    "heads_bias",
    "heads_out",
    "nb",
)
# The keras-hub position embeddings of DINOv2, kept apart: they are resized, not copied.
DINOV2_POSITIONS = "dinov2_positions"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One keras-hub dataset and the keras_vit weight it fills.

    Attributes:
        name: the dataset's path in the weight file(s); task datasets start
            with `TASK_PREFIX`.
        keras_path: the keras_vit weight path.
        layout: one of the layouts above.
    """

    name: str
    keras_path: str
    layout: str = SAME


def _layout(keras_path: str) -> str:
    """The layout of a layer variable: keras' MultiHeadAttention splits the heads."""
    weight = paths.parse(keras_path)
    if weight.layer in (paths.QUERY, paths.KEY, paths.VALUE):
        return HEADS_IN if weight.variable == "kernel" else HEADS_BIAS
    if weight.layer == paths.ATTENTION_OUTPUT and weight.variable == "kernel":
        return HEADS_OUT
    return SAME


def keras_hub_names(
    config: ViTConfig,
    layout: PresetLayout,
    keras_paths: list[str],
    with_head: bool,
) -> tuple[list[Entry], list[str], list[str]]:
    """The name table: which keras-hub dataset fills each keras_vit weight.

    Args:
        config: the model's config.
        layout: the preset's `PresetLayout`.
        keras_paths: the weights to fill (a new head's are left out).
        with_head: whether the task's head (and pre-logits) are read.

    Returns:
        `(entries, zeros, ignored)`: the datasets to read; the keras_vit
        weights keras-hub has no tensor for and that are exactly zero in its
        model (a patch projection without bias); the datasets deliberately
        left unread (DINOv2's resized copy of its position embeddings).

    Example:
        >>> entries, _, _ = keras_hub_names(config, layout, [w.path for w in model.weights], True)
        >>> entries[0].name
        'layers/vi_t_patching_and_embedding/vars/0'
    """
    kind = layout.backbone_class
    embeddings = f"layers/{_EMBEDDINGS[kind]}/vars"
    # The tables of each embedding layer, in the order the layer creates them.
    if kind == "ViTBackbone":
        tables = {paths.CLS_TOKEN: f"{embeddings}/0"}
        tables[paths.POSITION_EMBEDDING] = f"layers/{_EMBEDDINGS[kind]}/position_embedding/vars/0"
    else:
        order = {
            "DeiTBackbone": [paths.CLS_TOKEN, paths.DISTILLATION_TOKEN, paths.POSITION_EMBEDDING],
            "DINOV2Backbone": [
                paths.CLS_TOKEN,
                *([paths.MASK_TOKEN] if config.use_mask_token else []),
                *([paths.REGISTER_TOKENS] if config.num_register_tokens else []),
                "interpolated",
                paths.POSITION_EMBEDDING,
            ],
        }[kind]
        tables = {table: f"{embeddings}/{index}" for index, table in enumerate(order)}
    ignored = [tables.pop("interpolated")] if "interpolated" in tables else []
    block_root, block_layers = _BLOCKS[kind]
    if kind == "DINOV2Backbone" and config.mlp_type == "swiglu":
        block_layers = {**block_layers, **_DINOV2_SWIGLU}
    heads = {}
    if with_head:
        names = ["dense", "dense_1"]  # the task's Dense layers, in creation order
        if layout.pre_logits_size:
            heads[paths.PRE_LOGITS] = names.pop(0)
        heads[paths.HEAD] = names.pop(0)

    entries, zeros = [], []
    for keras_path in keras_paths:
        weight = paths.parse(keras_path)
        if weight.variable is None:
            name = tables.get(keras_path)
            table_layout = (
                NO_BATCH
                if keras_path
                in ((paths.POSITION_EMBEDDING,) if kind == "ViTBackbone" else (paths.MASK_TOKEN,))
                else SAME
            )
            if kind == "DINOV2Backbone" and keras_path == paths.POSITION_EMBEDDING:
                table_layout = DINOV2_POSITIONS
            entries.append(Entry(name or f"(none for {keras_path})", keras_path, table_layout))
            continue
        index = _VARIABLE_INDEX.get(weight.variable)
        if weight.block is not None:
            layer = block_layers.get(weight.layer)
            layer = layer and f"layers/{_numbered(block_root, weight.block)}/{layer}"
        elif weight.layer in heads:
            layer = f"{TASK_PREFIX}layers/{heads[weight.layer]}"
        else:
            layer = _TOP[kind].get(weight.layer)
            layer = layer and f"layers/{layer}"
        if keras_path == f"{paths.PATCH_PROJECTION}/bias" and not layout.patch_bias:
            zeros.append(keras_path)
            continue
        if layer is None or index is None:
            entries.append(Entry(f"(none for {keras_path})", keras_path))
            continue
        entries.append(Entry(f"{layer}/vars/{index}", keras_path, _layout(keras_path)))
    return entries, zeros, ignored


def stored_shape(keras_shape: tuple, layout: str, num_heads: int) -> tuple:
    """The shape keras-hub stores a keras_vit weight of `keras_shape` in.

    Args:
        keras_shape: the keras_vit weight's shape.
        layout: the entry's layout.
        num_heads: the attention heads, which keras' MultiHeadAttention keeps as an axis.

    Returns:
        e.g. `(D, heads, D // heads)` for a query kernel of `(D, D)`.

    Example:
        >>> stored_shape((768, 768), HEADS_IN, 12)
        (768, 12, 64)
    """
    if layout == HEADS_IN:
        return (keras_shape[0], num_heads, keras_shape[1] // num_heads)
    if layout == HEADS_BIAS:
        return (num_heads, keras_shape[0] // num_heads)
    if layout == HEADS_OUT:
        return (num_heads, keras_shape[0] // num_heads, keras_shape[1])
    if layout == NO_BATCH:
        return tuple(keras_shape[1:])
    return tuple(keras_shape)


# ---------------------------------------------------------------------------
# Keras weight files


def read_keras_weights(directory: str | os.PathLike) -> Checkpoint:
    """Opens a preset's Keras weight files for lazy reads: dataset path -> numpy array.

    Args:
        directory: the preset; its `model.weights.h5` (or sharded
            `model.weights.json`) is read, and `task.weights.h5` when present,
            under names that start with `TASK_PREFIX`.

    Returns:
        A `Checkpoint` of every variable under `layers/` (optimizer state is
        skipped); bfloat16 variables are read as float32.

    Raises:
        FileNotFoundError: the preset has no backbone weights.

    Example:
        >>> read_keras_weights("preset/").shapes["layers/vi_t_encoder/layer_norm/vars/0"]
        (768,)
    """
    import h5py

    directory = Path(directory)
    if (directory / BACKBONE_WEIGHTS).is_file():
        backbone = [directory / BACKBONE_WEIGHTS]
    elif (directory / SHARDED_BACKBONE_INDEX).is_file():
        weight_map = read_json_object(directory / SHARDED_BACKBONE_INDEX).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(
                f"{directory / SHARDED_BACKBONE_INDEX} has no weight_map, so the shards cannot "
                "be found. Save the preset again."
            )
        shards = set()
        for value in weight_map.values():
            shards.update(value if isinstance(value, list) else [value])
        backbone = [directory / shard for shard in sorted(shards)]
    else:
        raise FileNotFoundError(
            f"{directory} is a keras-hub preset without weights: expected {BACKBONE_WEIGHTS} "
            f"or {SHARDED_BACKBONE_INDEX}. Save it with keras-hub's save_to_preset, or "
            "download the whole preset."
        )
    sources = [(file, "") for file in backbone]
    if (directory / TASK_WEIGHTS).is_file():
        sources.append((directory / TASK_WEIGHTS, TASK_PREFIX))
    files, shapes = {}, {}
    for file, prefix in sources:
        try:
            with h5py.File(file, "r") as handle:
                if "layers" not in handle:
                    continue

                def visit(name: str, node, prefix=prefix, file=file) -> None:
                    if isinstance(node, h5py.Dataset):
                        files[f"{prefix}layers/{name}"] = (file, f"layers/{name}")
                        shapes[f"{prefix}layers/{name}"] = tuple(node.shape)

                handle["layers"].visititems(visit)
        except OSError as error:
            raise ValueError(
                f"{file} is not a readable Keras weight file ({error}). It may be truncated: "
                "download or save the preset again."
            ) from error
    return Checkpoint(files, shapes, _load_dataset)


def _load_dataset(location: tuple[Path, str], _: str) -> np.ndarray:
    import h5py

    file, name = location
    with h5py.File(file, "r") as handle:
        dataset = handle[name]
        if dataset.attrs.get("dtype") == "bfloat16":  # Keras stores bfloat16 as raw 2-byte values
            import ml_dtypes

            return np.array(dataset, dtype=ml_dtypes.bfloat16).astype("float32")
        return np.asarray(dataset[()])


# ---------------------------------------------------------------------------
# Loading


def dinov2_position_table(
    table: np.ndarray,
    patch_size: int,
    source_pixels: tuple[int, int],
    target_pixels: tuple[int, int],
    antialias: bool,
) -> np.ndarray:
    """DINOv2 position embeddings for another image size, as keras-hub computes them.

    keras-hub keeps the table learned for `position_embedding_shape` and
    resizes its patch rows with `keras.ops.image.resize` (bicubic, in
    float32) whenever it builds or loads the backbone. The result depends on
    the backend's resize kernel, so this calls the same function on the
    current backend rather than a numpy copy of one of them.

    Args:
        table: `(1, 1 + rows * cols, D)`, [CLS] first, on a square grid.
        patch_size: the patch side.
        source_pixels: the image size the table was learned for.
        target_pixels: the model's image size.
        antialias: keras-hub's `antialias_in_interpolation`.

    Returns:
        `(1, 1 + rows' * cols', D)` for the target's grid; the table itself
        when the image sizes are equal.

    Example:
        >>> dinov2_position_table(np.zeros((1, 1370, 384)), 14, (518, 518), (224, 224), False).shape
        (1, 257, 384)
    """
    if tuple(source_pixels) == tuple(target_pixels):
        return table
    from keras import ops

    width = table.shape[-1]
    side = int(math.isqrt(table.shape[1] - 1))
    patches = ops.reshape(ops.convert_to_tensor(table[:, 1:], "float32"), (1, side, side, width))
    resized = ops.image.resize(
        patches,
        size=(target_pixels[0] // patch_size, target_pixels[1] // patch_size),
        interpolation="bicubic",
        antialias=antialias,
        data_format="channels_last",
    )
    resized = ops.convert_to_numpy(ops.reshape(resized, (1, -1, width)))
    return np.concatenate([table[:, :1], resized.astype(table.dtype)], axis=1)


def plan_keras_hub_weights(
    checkpoint: Checkpoint,
    entries: list[Entry],
    target_shapes: dict[str, tuple],
    config: ViTConfig,
    layout: PresetLayout,
    ignored: list[str],
) -> list[tuple[Entry, Callable[[np.ndarray], np.ndarray]]]:
    """Checks a whole preset against the weights to fill, then says how to convert each.

    Args:
        checkpoint: from `read_keras_weights`.
        entries: from `keras_hub_names`.
        target_shapes: keras_vit path -> the model's shape.
        config: the model's config.
        layout: the preset's `PresetLayout`.
        ignored: datasets deliberately left unread.

    Returns:
        `(entry, convert)` pairs; `convert` turns the stored array into the keras_vit weight.

    Raises:
        CheckpointMismatchError: listing every missing, unexpected and mis-shaped tensor.

    Example:
        >>> plan = plan_keras_hub_weights(checkpoint, entries, shapes, config, layout, ignored)
    """
    from keras_vit.model.embeddings import fit_position_embedding

    heads = config.num_attention_heads
    prefix_tokens = 1 + int(config.distillation_token)
    source_rows = prefix_tokens + layout.source_grid[0] * layout.source_grid[1]
    missing, mismatched, plan = [], [], []
    for entry in entries:
        shape = tuple(target_shapes[entry.keras_path])
        if entry.layout == DINOV2_POSITIONS:
            expected = (1, source_rows, shape[-1])
        elif entry.keras_path == paths.POSITION_EMBEDDING:
            expected = stored_shape((1, source_rows, shape[-1]), entry.layout, heads)
        else:
            expected = stored_shape(shape, entry.layout, heads)
        if entry.name not in checkpoint.shapes:
            missing.append(f"{entry.name} (for {entry.keras_path}, shape {expected})")
            continue
        found = checkpoint.shapes[entry.name]
        if tuple(found) != expected:
            mismatched.append(
                f"{entry.name} (for {entry.keras_path}): expected {expected}, found {tuple(found)}"
            )
            continue
        if entry.layout == DINOV2_POSITIONS:

            def convert(array, shape=shape):
                return dinov2_position_table(
                    array,
                    config.patch_pair[0],
                    layout.source_pixels,
                    config.image_pair,
                    config.resample_antialias,
                )
        elif entry.keras_path == paths.POSITION_EMBEDDING:

            def convert(array, shape=shape):
                return fit_position_embedding(
                    array.reshape((1, *array.shape[-2:])),
                    layout.source_grid,
                    config.grid_size,
                    shape,
                    antialias=config.resample_antialias,
                )
        else:

            def convert(array, shape=shape):
                return array.reshape(shape)

        plan.append((entry, convert))
    used = {entry.name for entry in entries} | set(ignored)
    unexpected = sorted(
        name
        for name in checkpoint.shapes
        if name not in used and not _deliberately_unread(name, entries)
    )
    if missing or unexpected or mismatched:
        problems = [("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)]
        raise CheckpointMismatchError(
            f"The keras-hub {layout.backbone_class} preset does not fit the model:\n"
            + "\n".join(
                f"  {kind} ({len(items)}): " + "; ".join(sorted(items))
                for kind, items in problems
                if items
            )
        )
    return plan


def _deliberately_unread(name: str, entries: list[Entry]) -> bool:
    """Task datasets when the task's head is not kept (a new head, or include_top=False)."""
    reads_task = any(entry.name.startswith(TASK_PREFIX) for entry in entries)
    return name.startswith(TASK_PREFIX) and not reads_task


def _supported_backbone_config(directory: Path) -> dict:
    """The preset's backbone config; a ValueError unless it is a backbone keras_vit reads."""
    backbone = read_keras_hub_config(directory)
    if backbone is None:
        raise ValueError(f"{directory} is not a keras-hub preset (no Keras-serialised {CONFIG}).")
    if backbone["class_name"] not in BACKBONES:
        raise _unsupported(directory, "class", backbone)
    return backbone


def load_keras_hub_preset(
    directory: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    classes: int | None = None,
    include_top: bool | None = None,
    verbose: bool = True,
    include_preprocessing: bool | None = None,
    dtype: Any = None,
    name: str | None = None,
    **overrides: Any,
) -> Any:
    """Builds a keras_vit `ViT` from a keras-hub ViT, DeiT or DINOv2 preset directory.

    The model computes what keras-hub's does: `encode(x)["last_hidden_state"]`
    is the backbone's output, and with the task's head kept, `model(x)` is
    the image classifier's.

    Args:
        directory: a preset saved by keras-hub's `save_to_preset` (or
            downloaded from a Hub repo of one).
        image_size: build for another resolution. DINOv2's position
            embeddings are resized as keras-hub resizes them for that
            `image_shape`; ViT's and DeiT's (which keras-hub never resizes)
            as transformers' `interpolate_pos_encoding=True`.
        classes: attach a new zero-initialised head of this size when it
            differs from the task's (or the preset has no task); the task's
            pre-logits layer is then dropped.
        include_top: keep (`True`) or drop (`False`) the task's head; by
            default the preset decides.
        verbose: show a progress bar and report unread tensors.
        include_preprocessing: put keras_vit's `ImageProcessor` at the
            model's front (keras-hub's preprocessor is not read: see the notes).
        dtype: the model's dtype policy.
        name: the model's name.
        **overrides: other `ViTConfig` fields, e.g. `pooling=None` to output
            the token sequence as keras-hub's backbone does.

    Returns:
        The `ViT`.

    Raises:
        ValueError: the preset is of another keras-hub class, or uses an
            option keras_vit cannot reproduce; the message names it.
        CheckpointMismatchError: the weights do not fit the config.

    Example:
        >>> model = load_keras_hub_preset("vit_base_patch16_224_imagenet/")
    """
    from keras_vit.conversion.pretrained import assign_weights, naming_the_file
    from keras_vit.model import ViT
    from keras_vit.model.initializers import skip_random_init

    directory = Path(directory)
    backbone = _supported_backbone_config(directory)
    task = None
    if (directory / TASK_CONFIG).is_file() and include_top is not False:
        task = read_json_object(directory / TASK_CONFIG)
        if task.get("class_name") not in TASKS:
            raise _unsupported(directory, "task", task)
        if TASKS[task["class_name"]] != backbone["class_name"]:
            raise ValueError(
                f"{directory}: the task {task['class_name']} does not go with the backbone "
                f"{backbone['class_name']}. Save the preset again."
            )
        if not (directory / TASK_WEIGHTS).is_file():
            task = None  # keras-hub also loads the backbone alone then
    with naming_the_file(directory / CONFIG):
        base, layout = config_from_keras_hub(backbone, task)
    has_head = layout.num_classes is not None
    if include_top and not has_head and not classes:
        raise ValueError(
            f"{directory} has no image classifier task (no {TASK_CONFIG} and {TASK_WEIGHTS}); "
            "pass classes=N to attach a new head."
        )
    keep_head = (has_head or bool(classes)) if include_top is None else include_top
    new_head = keep_head and (not has_head or (classes or layout.num_classes) != layout.num_classes)
    read_head = keep_head and not new_head
    values = {
        "image_size": image_size or base.image_size,
        "classes": (classes or layout.num_classes) if keep_head else None,
        "pre_logits": bool(read_head and layout.pre_logits_size),
        "pooler_output_size": layout.pre_logits_size if read_head else None,
        "classifier_activation": layout.classifier_activation if read_head else None,
        **overrides,
    }
    config = dataclasses.replace(base, **values)
    model_arguments = {
        key: value
        for key, value in (
            ("include_preprocessing", include_preprocessing),
            ("dtype", dtype),
            ("name", name),
        )
        if value is not None
    }
    with skip_random_init():
        model = ViT(config, **model_arguments)
    new = (f"{paths.HEAD}/", f"{paths.DISTILLATION_HEAD}/") if new_head else ()
    target_shapes = {
        variable.path: tuple(variable.shape)
        for variable in model.weights
        if not variable.path.startswith(new)
    }
    checkpoint = read_keras_weights(directory)
    entries, zeros, ignored = keras_hub_names(config, layout, list(target_shapes), read_head)
    plan = plan_keras_hub_weights(checkpoint, entries, target_shapes, config, layout, ignored)
    unread = sorted(name for name in checkpoint.shapes if name.startswith(TASK_PREFIX))
    if unread and not read_head and verbose:
        logger.info("Not loaded from %s (the task's head): %s", directory, ", ".join(unread))

    def weights():
        for keras_path in zeros:
            yield keras_path, np.zeros(target_shapes[keras_path], "float32")
        for entry, convert in plan:
            yield entry.keras_path, convert(checkpoint[entry.name])

    assign_weights(model, weights(), verbose=verbose)
    return model
