"""An identity whose gradient XLA must materialise: it keeps a deep model's backward linear."""

from __future__ import annotations

import keras
from keras import ops


@ops.custom_gradient
def _fenced(x):
    def gradient(*args, upstream=None):
        upstream = args[0] if upstream is None else upstream
        # `exp` counts as expensive to XLA, so it is computed once and stored
        # instead of being re-fused into every consumer; `g * exp(g * 0)` is `g`
        # exactly for every finite `g`.
        return upstream * ops.exp(upstream * 0)

    return x, gradient


def fence_gradient(x):
    """Returns `x`; under JAX, makes XLA store the gradient that flows back into `x`.

    The gradient of a pre-LayerNorm residual stream is a long chain of cheap
    elementwise sums, one link per block. XLA's CPU fusion copies cheap producers
    into each consumer, so every block's weight-gradient transpose recomputed the
    whole chain above it: backward time grew with the square of the depth
    (2.7 s of a 9.4 s ViT-B/16 training step, `benchmarks/NOTES.md`). Fencing each
    block's input cuts the chain at every block. TensorFlow's XLA graph does not
    fuse that way, and torch has no XLA, so elsewhere this is the identity.

    Args:
        x: any tensor.

    Returns:
        `x`, unchanged in value and in gradient.

    Example:
        >>> fence_gradient(np.ones((2, 3), "float32")).shape
        (2, 3)
    """
    return _fenced(x) if keras.backend.backend() == "jax" else x
