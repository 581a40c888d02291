"""Weights between transformers' ViT-family state dicts and keras_vit, in numpy.

`hf_to_keras` checks a whole checkpoint against the Keras weights it must
fill before converting anything, and reports every missing, unexpected and
mis-shaped tensor in one error. It then yields converted tensors one at a
time, so a caller can assign and drop each before the next is read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from keras_vit.conversion.checkpoint import Checkpoint
from keras_vit.conversion.families import family_of
from keras_vit.conversion.names import (
    canonical_hf_name,
    hf_file_name,
    hf_name_for,
    keras_shape,
    to_hf_layout,
    to_keras_layout,
)
from keras_vit.model.config import ViTConfig
from keras_vit.model.embeddings import fit_position_embedding
from keras_vit.model.weight_paths import POSITION_EMBEDDING


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model: lists every problem at once."""


def hf_to_keras(
    checkpoint: Checkpoint,
    target_shapes: Mapping[str, tuple],
    source_grid: tuple[int, int],
    target_grid: tuple[int, int],
    ignore_prefixes: tuple[str, ...] = (),
    config: ViTConfig | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Converts a transformers ViT-family checkpoint to keras_vit weights.

    Args:
        checkpoint: the transformers tensors (any naming, see `canonical_hf_name`).
        target_shapes: the Keras weights to fill, path -> shape.
        source_grid: the patch grid the checkpoint's position embeddings cover.
        target_grid: the model's patch grid; position embeddings are
            resampled when it differs.
        ignore_prefixes: canonical name prefixes deliberately left unused
            (e.g. `"classifier."` when a new head replaces the old one).
        config: the model's config, which names the family (`model_type`) and
            its MLP and heads; a plain ViT by default.

    Returns:
        An iterator of `(keras_path, array)`, after the whole checkpoint has
        been checked.

    Raises:
        CheckpointMismatchError: listing missing, unexpected and mis-shaped tensors.

    Example:
        >>> weights = dict(hf_to_keras(read_checkpoint(d), shapes, (14, 14), (14, 14)))
    """
    family = family_of(config.model_type if config else "vit")
    sources = {canonical_hf_name(name, family): name for name in checkpoint}
    missing, mismatched, plan = [], [], []
    for path, shape in target_shapes.items():
        canonical = hf_name_for(path, config)
        if canonical not in sources:
            missing.append(f"{canonical} (for {path}, shape {tuple(shape)})")
            continue
        found = keras_shape(path, checkpoint.shapes[sources[canonical]], family)
        if path == POSITION_EMBEDDING and source_grid != target_grid:
            prefix_tokens = found[1] - source_grid[0] * source_grid[1]
            found = (found[0], prefix_tokens + target_grid[0] * target_grid[1], found[2])
        if found != tuple(shape):
            mismatched.append(f"{sources[canonical]}: expected {tuple(shape)}, found {found}")
        plan.append((path, sources.pop(canonical)))
    unexpected = [
        original
        for canonical, original in sources.items()
        if not canonical.startswith(ignore_prefixes)
        and 0 not in checkpoint.shapes[original]  # an empty table holds nothing
    ]
    if missing or unexpected or mismatched:
        problems = [("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)]
        raise CheckpointMismatchError(
            "The checkpoint does not fit the model:\n"
            + "\n".join(
                f"  {kind} ({len(items)}): " + "; ".join(sorted(items))
                for kind, items in problems
                if items
            )
        )
    for path, name in plan:
        array = to_keras_layout(path, checkpoint[name], family)
        if path == POSITION_EMBEDDING:
            array = fit_position_embedding(
                array,
                source_grid,
                target_grid,
                target_shapes[path],
                antialias=bool(config and config.resample_antialias),
            )
        yield path, array


def keras_to_hf(
    weights: Mapping[str, np.ndarray], with_head: bool, config: ViTConfig | None = None
) -> dict[str, np.ndarray]:
    """Converts keras_vit weights to a transformers state dict.

    Args:
        weights: Keras weight path -> array, e.g. from `model.weights`.
        with_head: name tensors as the family's classifier does (backbone
            under its prefix, e.g. `vit.`, heads at the top); otherwise as its
            base model.
        config: the model's config (the family and its options); a plain
            ViT by default.

    Returns:
        Tensor name -> array in transformers' layout.

    Example:
        >>> state = keras_to_hf({w.path: np.asarray(w) for w in model.weights}, True)
    """
    family = family_of(config.model_type if config else "vit")
    state = {
        hf_file_name(hf_name_for(path, config), with_head, family): to_hf_layout(
            path, np.asarray(array), family
        )
        for path, array in weights.items()
    }
    width = config.hidden_size if config else None
    for table in family.always_stored:
        name = hf_file_name(family.tables[table], with_head, family)
        state.setdefault(name, np.zeros((1, 0, width), "float32"))
    return state
