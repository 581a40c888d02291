"""The random weight initializer of keras_vit layers, and a switch to skip it.

A model whose weights are loaded right after it is built (from a checkpoint or
a `.weights.h5` file) has no use for random values. Building it inside
`skip_random_init()` gives zeros instead, which saves the time of sampling and
the transient memory of the samplers: about one model's size on JAX and torch.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import keras

_SKIPPING = contextvars.ContextVar("keras_vit_skip_random_init", default=False)


def truncated_normal(stddev: float) -> keras.initializers.Initializer:
    """The initializer of keras_vit's kernels and tokens.

    Args:
        stddev: the standard deviation (the config's `initializer_range`).

    Returns:
        `TruncatedNormal(stddev)`, or `Zeros()` inside `skip_random_init()`.

    Example:
        >>> keras.layers.Dense(8, kernel_initializer=truncated_normal(0.02))
    """
    if _SKIPPING.get():
        return keras.initializers.Zeros()
    return keras.initializers.TruncatedNormal(stddev=stddev)


@contextlib.contextmanager
def skip_random_init() -> Iterator[None]:
    """Within this context, keras_vit layers built get zeros instead of random weights.

    Use it only when every weight is overwritten right after building.

    Example:
        >>> with skip_random_init():
        ...     model = ViT(config)
        >>> model.load_weights("model.weights.h5")
    """
    token = _SKIPPING.set(True)
    try:
        yield
    finally:
        _SKIPPING.reset(token)
