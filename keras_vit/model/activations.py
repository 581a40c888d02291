"""Activation functions by their transformers names (`hidden_act`, `pooler_act`)."""

from __future__ import annotations

from collections.abc import Callable

from keras import activations, ops

from keras_vit.kernels import KERNELS


def _gelu_tanh(x):
    return activations.gelu(x, approximate=True)


def _quick_gelu(x):
    return ops.multiply(x, ops.sigmoid(ops.multiply(1.702, x)))


ACTIVATIONS: dict[str, Callable] = {
    "gelu": KERNELS.gelu,
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
