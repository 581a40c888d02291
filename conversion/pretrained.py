"""keras_vit models from local transformers checkpoints, and back.

`load_pretrained` reads `config.json` and the weights of a checkpoint
directory and builds a `ViT` with them. `save_pretrained` writes a directory
that transformers and keras_vit both load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_vit.atomic_files import atomic_path
from keras_vit.conversion.checkpoint import read_checkpoint, read_json_object, write_safetensors
from keras_vit.conversion.convert import hf_to_keras, keras_to_hf
from keras_vit.conversion.families import family_of
from keras_vit.conversion.hf_config import (
    check_exportable,
    config_from_hf,
    config_to_hf,
    preprocessor_to_hf,
)
from keras_vit.conversion.keras_hub_config import is_keras_hub_preset
from keras_vit.conversion.keras_hub_preset import load_keras_hub_preset
from keras_vit.conversion.names import canonical_hf_name
from keras_vit.model import ViT
from keras_vit.model import weight_paths as paths
from keras_vit.model.config import ViTConfig
from keras_vit.model.initializers import skip_random_init
from keras_vit.model.preprocessing import ImageProcessor

logger = logging.getLogger("keras_vit")

HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
KERAS_CONFIG = "keras_vit_config.json"
KERAS_WEIGHTS = "model.weights.h5"
# Parts of transformers checkpoints that keras_vit has no use for.
UNUSED_PREFIXES = ("decoder.",)


def hf_backbone_config(directory: str | os.PathLike) -> ViTConfig:
    """The backbone `ViTConfig` of a checkpoint directory's `config.json`.

    Args:
        directory: a checkpoint directory.

    Returns:
        `config_from_hf` of the file.

    Raises:
        FileNotFoundError: there is no `config.json`.
        ValueError: the file is not a JSON object or holds invalid values; the
            message names the file.

    Example:
        >>> hf_backbone_config("vit-base-patch16-224").hidden_size
        768
    """
    path = Path(directory) / HF_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} has no {HF_CONFIG}. Point at a checkpoint directory written by "
            "transformers' or keras_vit's save_pretrained."
        )
    with naming_the_file(path):
        return config_from_hf(read_json_object(path))


@contextlib.contextmanager
def naming_the_file(path: Path) -> Iterator[None]:
    """Re-raises a ValueError or TypeError from the body as a ValueError that names `path`."""
    try:
        yield
    except (ValueError, TypeError) as error:
        message = str(error)
        raise ValueError(message if str(path) in message else f"{path}: {message}") from None


# `load_pretrained` arguments that never change the stored weights, and those that
# change them only when given a value.
# `ViT(...)`'s own keyword arguments, beside its config.
MODEL_ARGUMENTS = ("include_preprocessing", "dtype", "name")
_WEIGHT_PRESERVING_ARGUMENTS = ("verbose", *MODEL_ARGUMENTS)
_RESHAPING_ARGUMENTS = ("image_size", "classes", "include_top")


def reshapes_checkpoint(**arguments: Any) -> bool:
    """Whether `load_pretrained` arguments change the stored model, so that a
    directory's Keras-native files cannot be used as they are.

    Args:
        **arguments: keyword arguments of `load_pretrained`.

    Returns:
        True if `image_size`, `classes` or `include_top` is given a value, or
        any `ViTConfig` override is given; `verbose`, `include_preprocessing`,
        `dtype` and `name` do not change the weights.

    Example:
        >>> reshapes_checkpoint(classes=10), reshapes_checkpoint(verbose=False)
        (True, False)
    """
    return any(
        key not in _WEIGHT_PRESERVING_ARGUMENTS
        and (value is not None or key not in _RESHAPING_ARGUMENTS)
        for key, value in arguments.items()
    )


def split_model_arguments(arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Splits loading arguments into `ViT(...)`'s own and the `ViTConfig` overrides.

    Args:
        arguments: keyword arguments of a loader beyond its sizes, e.g.
            `{"dtype": "bfloat16", "name": None, "drop_path_rate": 0.1}`.

    Returns:
        `(model_arguments, overrides)`: `include_preprocessing`, `dtype` and
        `name` where they are not `None`, then everything else.

    Example:
        >>> split_model_arguments({"dtype": "bfloat16", "name": None, "drop_path_rate": 0.1})
        ({'dtype': 'bfloat16'}, {'drop_path_rate': 0.1})
    """
    model_arguments = {
        key: value
        for key, value in arguments.items()
        if key in MODEL_ARGUMENTS and value is not None
    }
    overrides = {key: value for key, value in arguments.items() if key not in MODEL_ARGUMENTS}
    return model_arguments, overrides


def load_pretrained(
    directory: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    classes: int | None = None,
    include_top: bool | None = None,
    verbose: bool = True,
    include_preprocessing: bool | None = None,
    dtype: Any = None,
    name: str | None = None,
    **overrides: Any,
) -> ViT:
    """Builds a keras_vit `ViT` from a local transformers ViT checkpoint directory.

    Args:
        directory: holds `config.json` and `model.safetensors` (sharded or
            not) or `pytorch_model.bin`; a directory keras_vit wrote is loaded
            through its Keras-native files when nothing is overridden. A
            keras-hub preset (ViT, DeiT, DINOv2) goes to `load_keras_hub_preset`.
        image_size: build for another resolution; learned position
            embeddings are resampled bicubically, exactly as transformers'
            `interpolate_pos_encoding=True`.
        classes: attach a new zero-initialised head of this size when it
            differs from the checkpoint's (or the checkpoint has none). The
            checkpoint's pre-logits (pooler) is then dropped, as for fine-tuning.
        include_top: keep (`True`) or drop (`False`) the head; by default
            the checkpoint decides.
        verbose: show a progress bar and report unused tensors.
        include_preprocessing: put an `ImageProcessor` at the model's front.
        dtype: the model's dtype policy, e.g. `"mixed_bfloat16"`.
        name: the model's name.
            These three default to what a keras_vit directory stored, else to
            no preprocessing, the global dtype policy and "vit".
        **overrides: other `ViTConfig` fields, e.g. `drop_path_rate=0.1`.

    Returns:
        The model, with `config.id2label` from the checkpoint when its head is kept.

    Example:
        >>> model = load_pretrained("vit-base-patch16-224/", image_size=384)
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory.")
    model_arguments, _ = split_model_arguments(
        dict(include_preprocessing=include_preprocessing, dtype=dtype, name=name)
    )
    keras_native = (directory / KERAS_CONFIG).is_file() and (directory / KERAS_WEIGHTS).is_file()
    reshaped = reshapes_checkpoint(
        image_size=image_size, classes=classes, include_top=include_top, **overrides
    )
    if keras_native and not reshaped:
        stored = read_json_object(directory / KERAS_CONFIG)
        with skip_random_init(), naming_the_file(directory / KERAS_CONFIG):
            model = ViT.from_config({**stored, **model_arguments})
        model.load_weights(str(directory / KERAS_WEIGHTS))
        return model

    if is_keras_hub_preset(directory):
        return load_keras_hub_preset(
            directory,
            image_size=image_size,
            classes=classes,
            include_top=include_top,
            verbose=verbose,
            **model_arguments,
            **overrides,
        )
    base = hf_backbone_config(directory)
    family = family_of(base.model_type)
    checkpoint = read_checkpoint(directory)
    shapes = {canonical_hf_name(name, family): shape for name, shape in checkpoint.shapes.items()}
    teacher_head = family.teacher_heads.get(paths.HEAD)
    distillation_head = teacher_head is not None and f"{teacher_head}.weight" in shapes
    heads = family.head_modules(distillation_head)
    head_shape = shapes.get(f"{heads[paths.HEAD]}.weight") if heads else None
    if include_top and head_shape is None and not classes:
        raise ValueError(
            f"{directory} has no classification head; pass classes=N to attach a new one."
        )
    keep_head = (head_shape is not None or bool(classes)) if include_top is None else include_top
    new_head = keep_head and (head_shape is None or (classes or head_shape[0]) != head_shape[0])
    has_pooler = "pooler.dense.weight" in shapes and not new_head
    ignored = list(UNUSED_PREFIXES)
    if head_shape is not None and (new_head or not keep_head):
        ignored += [f"{module}." for module in heads.values()]
    if "pooler.dense.weight" in shapes and not has_pooler:
        ignored.append("pooler.")
    if family.sincos_positions:  # fixed: recomputed for the model's grid
        ignored.append(family.tables[paths.POSITION_EMBEDDING])
    values = {
        "image_size": image_size or base.image_size,
        "classes": (classes or head_shape[0]) if keep_head else None,
        "distillation_head": distillation_head and keep_head,
        "pre_logits": has_pooler,
        "use_mask_token": family.tables[paths.MASK_TOKEN] in shapes,
        "id2label": base.id2label if keep_head and not new_head else None,
        **overrides,
    }
    if keep_head and family.model_type.startswith("dinov2"):
        values.setdefault("pooling", "token_and_gap")  # DINOv2's classifier reads both
    config = dataclasses.replace(base, **values)
    with skip_random_init():  # every weight but a new (zero) head comes from the checkpoint
        model = ViT(config, **model_arguments)
    unused = sorted(name for name in shapes if name.startswith(tuple(ignored)))
    if unused and verbose:
        logger.info("Not loaded from %s (unused by this model): %s", directory, ", ".join(unused))
    assign_weights(
        model,
        hf_to_keras(
            checkpoint,
            {
                variable.path: tuple(variable.shape)
                for variable in _loaded_variables(model, new_head)
            },
            source_grid=base.grid_size,
            target_grid=config.grid_size,
            ignore_prefixes=tuple(ignored),
            config=config,
        ),
        verbose=verbose,
    )
    return model


def _loaded_variables(model: ViT, new_head: bool) -> list:
    """The model's variables that come from the checkpoint (new heads do not)."""
    new = (f"{paths.HEAD}/", f"{paths.DISTILLATION_HEAD}/") if new_head else ()
    return [v for v in model.weights if not v.path.startswith(new)]


def assign_weights(model: ViT, weights, verbose: bool = True) -> None:
    """Assigns `(path, array)` pairs to the model's variables, one at a time.

    Args:
        model: the model to fill.
        weights: an iterable of `(keras_path, array)`, e.g. from `hf_to_keras`.
        verbose: show a progress bar.

    Example:
        >>> assign_weights(model, hf_to_keras(checkpoint, shapes, (14, 14), (14, 14)))
    """
    variables = {variable.path: variable for variable in model.weights}
    progress = keras.utils.Progbar(len(variables), verbose=1 if verbose else 0, unit_name="tensor")
    for count, (path, array) in enumerate(weights, start=1):
        variables[path].assign(array)
        progress.update(count)


def write_transformers_files(
    directory: Path,
    hf_weights: dict[str, np.ndarray],
    hf_config: dict[str, Any],
    processor: ImageProcessor,
) -> None:
    """Writes what transformers reads: the weights, `config.json` and the processor's config.

    Args:
        directory: the (temporary) checkpoint directory.
        hf_weights: transformers-named arrays, as `keras_to_hf` gives.
        hf_config: the transformers `config.json` content.
        processor: the image processor to describe in `preprocessor_config.json`.

    Returns:
        Nothing.

    Example:
        >>> write_transformers_files(tmp, keras_to_hf(weights), config_to_hf(config), processor)
    """
    write_safetensors(hf_weights, directory / HF_WEIGHTS)
    _write_json(directory / HF_CONFIG, hf_config)
    description = preprocessor_to_hf(
        processor.image_size, processor.image_mean, processor.image_std, processor.rescale_factor
    )
    _write_json(directory / PREPROCESSOR_CONFIG, description)


def save_pretrained(
    model: ViT,
    directory: str | os.PathLike,
    overwrite: bool = False,
    extra_files: dict[str, str] | None = None,
) -> None:
    """Writes a directory that transformers and keras_vit both load.

    It holds transformers' `config.json`, `model.safetensors` and
    `preprocessor_config.json`, and keras_vit's own `keras_vit_config.json`
    and `model.weights.h5`. Everything is written to a temporary directory
    first and renamed into place at the end.

    Args:
        model: a `ViT` with [CLS] pooling and no pre-logits under its head.
        directory: the destination.
        overwrite: replace an existing destination.
        extra_files: more text files to write with the rest, name -> content
            (e.g. a `README.md` model card).

    Example:
        >>> save_pretrained(model, "my-vit/")
        >>> transformers.AutoModelForImageClassification.from_pretrained("my-vit/")
    """
    config = model.config
    check_exportable(config)
    weights = {variable.path: keras.ops.convert_to_numpy(variable) for variable in model.weights}
    if config.position_embedding == "sincos":
        weights[paths.POSITION_EMBEDDING] = np.asarray(model.embeddings.position_embedding)
    processor = model.preprocessor or ImageProcessor(config.image_size)
    with atomic_path(directory, overwrite=overwrite, directory=True) as temporary:
        write_transformers_files(
            temporary,
            keras_to_hf(weights, with_head=bool(config.classes), config=config),
            config_to_hf(config),
            processor,
        )
        _write_json(temporary / KERAS_CONFIG, model.get_config())
        model.save_weights(str(temporary / KERAS_WEIGHTS))
        for file_name, content in (extra_files or {}).items():
            (temporary / file_name).write_text(content)


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
