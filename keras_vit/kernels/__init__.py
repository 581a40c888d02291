"""The one seam where a backend's fast implementation of a primitive is chosen.

The model computes six primitives through this package: attention, the dense
projection, LayerNorm, the patch projection, GELU and the residual gradient
fence. `reference` implements each in plain `keras.ops`. A backend takes some
of them from a faster variant module instead, as `VARIANTS` lists; which
backend runs is read once, when this package is imported, and `KERNELS` holds
its choice. Model code calls `KERNELS.dense(...)` and so on.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

import keras

from keras_vit.kernels import reference

PRIMITIVES = ("attention", "dense", "layer_norm", "patch_projection", "gelu", "fence_gradient")

# backend -> (variant module, the primitives taken from it); the rest are the reference.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "jax": ("xla", ("attention", "gelu", "fence_gradient")),
    "tensorflow": ("xla", ("attention", "gelu")),
    "torch": ("torch_eager", ("attention", "dense", "layer_norm", "patch_projection")),
}


@dataclasses.dataclass(frozen=True)
class Kernels:
    """One implementation of each primitive; see `reference` for their signatures."""

    attention: Callable
    dense: Callable
    layer_norm: Callable
    patch_projection: Callable
    gelu: Callable
    fence_gradient: Callable


def kernels_for(backend: str) -> Kernels:
    """The kernels a backend runs: `VARIANTS`' choices, and the reference for the rest.

    Args:
        backend: a Keras backend name; one without variants gets the reference.

    Returns:
        A `Kernels`.

    Example:
        >>> kernels_for("jax").attention is xla.attention
        True
    """
    module_name, chosen = VARIANTS.get(backend, ("reference", ()))
    variant = importlib.import_module(f"keras_vit.kernels.{module_name}")
    return Kernels(
        **{name: getattr(variant if name in chosen else reference, name) for name in PRIMITIVES}
    )


KERNELS = kernels_for(keras.backend.backend())
attention_with_probabilities = reference.attention_with_probabilities

__all__ = [
    "KERNELS",
    "PRIMITIVES",
    "VARIANTS",
    "Kernels",
    "attention_with_probabilities",
    "kernels_for",
]
