"""Activation functions by their transformers names (`hidden_act`, `pooler_act`)."""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import activations, ops

SQRT_HALF = 0.7071067811865476


def _gelu_exact(x):
    """Exact GELU, `x * Phi(x)`, written with `erf` except on torch.

    Keras' GELU on JAX and TensorFlow goes through `erfc`, which XLA lowers to a
    piecewise approximation with selects and an extra exponential. The `erf` form
    is the one PyTorch computes; on a ViT-B/16 training step on JAX it was 6%
    faster on an AVX2 CPU and within noise on an AMX one (`benchmarks/NOTES.md`).
    On torch, Keras calls PyTorch's fused GELU kernel.
    """
    if keras.backend.backend() == "torch":
        return activations.gelu(x, approximate=False)
    return 0.5 * x * (1.0 + ops.erf(x * SQRT_HALF))


def _gelu_tanh(x):
    return activations.gelu(x, approximate=True)


def _quick_gelu(x):
    return ops.multiply(x, ops.sigmoid(ops.multiply(1.702, x)))


ACTIVATIONS: dict[str, Callable] = {
    "gelu": _gelu_exact,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "quick_gelu": _quick_gelu,
    "relu": activations.relu,
    "silu": activations.silu,
    "swish": activations.silu,
    "tanh": activations.tanh,
    "sigmoid": activations.sigmoid,
    "linear": activations.linear,
}


def get_activation(name: str) -> Callable:
    """Returns the activation function transformers calls `name`.

    Args:
        name: a transformers activation name such as `"gelu"` (exact) or
            `"gelu_pytorch_tanh"` (tanh approximation).

    Returns:
        A function of one tensor.

    Example:
        >>> act = get_activation("gelu")
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}. Supported: {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]
