"""The reference kernels: each primitive in plain `keras.ops`, as the paper writes it.

Every backend can run these, and every faster variant (`xla`, `torch_eager`) is
tested against them. Attention tensors are `(B, N, heads, d)`.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import ops


def attention_with_probabilities(query, key, value, dropout: Callable | None = None):
    """`softmax(q k^T / sqrt(d)) v`, with the softmax probabilities formed explicitly.

    The softmax runs in float32 whatever the compute dtype.

    Args:
        query: `(B, N, heads, d)`.
        key: `(B, N, heads, d)`.
        value: `(B, N, heads, d)`.
        dropout: applied to the probabilities before they weight the values
            (attention dropout in training); `None` for none.

    Returns:
        The context `(B, N, heads, d)` and the probabilities `(B, heads, N, N)`
        (before dropout).

    Example:
        >>> q = np.ones((1, 5, 2, 4), "float32")
        >>> context, probs = attention_with_probabilities(q, q, q)
        >>> probs.shape
        (1, 2, 5, 5)
    """
    query = ops.transpose(query, (0, 2, 1, 3)) * ops.cast(query.shape[-1] ** -0.5, query.dtype)
    logits = ops.matmul(query, ops.transpose(key, (0, 2, 3, 1)))
    probs = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), value.dtype)
    weights = probs if dropout is None else dropout(probs)
    context = ops.matmul(weights, ops.transpose(value, (0, 2, 1, 3)))
    return ops.transpose(context, (0, 2, 1, 3)), probs


def attention(query, key, value):
    """`softmax(q k^T / sqrt(d)) v` over `(B, N, heads, d)` tensors.

    Args:
        query: `(B, N, heads, d)`.
        key: `(B, N, heads, d)`.
        value: `(B, N, heads, d)`.

    Returns:
        The context, `(B, N, heads, d)`.

    Example:
        >>> q = np.ones((1, 5, 2, 4), "float32")
        >>> attention(q, q, q).shape
        (1, 5, 2, 4)
    """
    return attention_with_probabilities(query, key, value)[0]


def dense(inputs, kernel, bias=None):
    """`inputs @ kernel + bias` over the last axis.

    Args:
        inputs: `(..., K)`.
        kernel: `(K, N)`.
        bias: `(N,)`, or `None` for none.

    Returns:
        `(..., N)`.

    Example:
        >>> dense(np.ones((2, 3), "float32"), np.ones((3, 4), "float32")).shape
        (2, 4)
    """
    outputs = ops.matmul(inputs, kernel)
    return outputs if bias is None else ops.add(outputs, bias)


def layer_norm(inputs, gamma, beta, epsilon: float):
    """LayerNorm over the last axis, with the statistics in at least float32.

    Args:
        inputs: `(..., D)`.
        gamma: the scale, `(D,)`.
        beta: the offset, `(D,)`.
        epsilon: added to the variance.

    Returns:
        The normalised tensor, in float32 or wider (the caller casts it).

    Example:
        >>> layer_norm(np.ones((2, 8), "float32"), np.ones(8), np.zeros(8), 1e-6).shape
        (2, 8)
    """
    return ops.layer_normalization(inputs, gamma, beta, axis=-1, epsilon=epsilon)


def patch_projection(images, kernel, bias=None):
    """Cuts channels-last images into patches and projects each: a convolution
    whose stride is its kernel size.

    Args:
        images: `(B, H, W, C)`.
        kernel: `(ph, pw, C, D)`.
        bias: `(D,)`, or `None`.

    Returns:
        The patch grid `(B, H // ph, W // pw, D)`.

    Example:
        >>> images, kernel = np.ones((1, 8, 8, 3), "float32"), np.ones((4, 4, 3, 5), "float32")
        >>> patch_projection(images, kernel).shape
        (1, 2, 2, 5)
    """
    patch = tuple(kernel.shape[:2])
    outputs = ops.conv(images, kernel, strides=patch, padding="valid", data_format="channels_last")
    return outputs if bias is None else ops.add(outputs, bias)


def gelu(x):
    """Exact GELU, `x * Phi(x)`, as Keras computes it.

    Args:
        x: any tensor.

    Returns:
        `x * Phi(x)`.

    Example:
        >>> gelu(np.zeros(3, "float32"))
    """
    return keras.activations.gelu(x, approximate=False)


def fence_gradient(x):
    """The identity: the reference has no gradient fence.

    Args:
        x: any tensor.

    Returns:
        `x`.

    Example:
        >>> fence_gradient(np.ones(3, "float32")).shape
        (3,)
    """
    return x
