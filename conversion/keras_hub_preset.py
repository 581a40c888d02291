"""Loading keras-hub presets of ViT, DeiT and DINOv2 as keras_vit models.

`load_keras_hub_preset` reads the preset's config (`keras_hub_config`), opens
its Keras weight files with h5py (which Keras installs), places each dataset by
the backbone class's name table (`keras_hub_names`), checks everything before
assigning anything, and builds a `ViT` whose outputs are keras-hub's. Only
DINOv2's position embeddings need a backend: keras-hub resizes them for the
input size with `keras.ops.image.resize` whenever it loads the preset, and
keras_vit does the same so that both agree.
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
from keras_vit.conversion.keras_hub_config import (
    BACKBONE_WEIGHTS,
    CONFIG,
    SHARDED_BACKBONE_INDEX,
    TASK_CONFIG,
    TASK_PREFIX,
    TASK_WEIGHTS,
    TASKS,
    PresetLayout,
    config_from_keras_hub,
    supported_backbone_config,
    unsupported_preset_error,
)
from keras_vit.conversion.keras_hub_names import (
    DINOV2_POSITIONS,
    Entry,
    keras_hub_names,
    stored_shape,
)
from keras_vit.model import weight_paths as paths
from keras_vit.model.config import ViTConfig

logger = logging.getLogger("keras_vit")


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


def load_keras_hub_preset(
    directory: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    classes: int | None = None,
    include_top: bool | None = None,
    verbose: bool = True,
    **arguments: Any,
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
        **arguments: `include_preprocessing` (keras_vit's `ImageProcessor`
            at the model's front; keras-hub's preprocessor is not read: see
            the notes), `dtype`, `name`, and other `ViTConfig` fields, e.g.
            `pooling=None` to output the token sequence as keras-hub's
            backbone does.

    Returns:
        The `ViT`.

    Raises:
        ValueError: the preset is of another keras-hub class, or uses an
            option keras_vit cannot reproduce; the message names it.
        CheckpointMismatchError: the weights do not fit the config.

    Example:
        >>> model = load_keras_hub_preset("vit_base_patch16_224_imagenet/")
    """
    from keras_vit.conversion.pretrained import (
        assign_weights,
        naming_the_file,
        split_model_arguments,
    )
    from keras_vit.model import ViT
    from keras_vit.model.initializers import skip_random_init

    directory = Path(directory)
    model_arguments, overrides = split_model_arguments(arguments)
    backbone = supported_backbone_config(directory)
    task = None
    if (directory / TASK_CONFIG).is_file() and include_top is not False:
        task = read_json_object(directory / TASK_CONFIG)
        if task.get("class_name") not in TASKS:
            raise unsupported_preset_error(directory, "task", task)
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
