"""Calling a layer's sublayers without Keras' per-call bookkeeping at inference."""

from __future__ import annotations

import keras


def call_sublayer(layer: keras.layers.Layer, inputs, training=None, **kwargs):
    """`layer(inputs, training=training, **kwargs)`, run as `layer.call` outside training.

    Keras' `Layer.__call__` resolves the training flag, opens name and
    autocast scopes and converts the inputs on every call: about 0.12 ms of
    Python on torch, about 9% of a bfloat16 ViT-B/16 forward at batch 8, where
    each block calls nine sublayers (`benchmarks/NOTES.md`). Inside a layer's
    own `call` that work is already done: the parent's `__call__` has opened
    the same autocast scope, and the inputs are in the compute dtype that
    parent and sublayer share. So outside training the sublayer's `call` runs
    directly; in training (dropout, stochastic depth, masks of randomness) it
    goes through `__call__` as usual. JAX and TensorFlow trace the model once,
    so there it only saves tracing time. Quantized and rematerialised layers,
    and any call under a `keras.distribution` (which lays out layer outputs
    in `__call__`), always take `__call__`.

    Args:
        layer: a built sublayer with the caller's dtype policy.
        inputs: its input tensor.
        training: the caller's training flag.
        **kwargs: other arguments of the sublayer's `call`.

    Returns:
        The sublayer's output, the same as `layer(inputs, training=training, **kwargs)`.

    Example:
        >>> def call(self, x, training=None):  # in a layer's call
        ...     return call_sublayer(self.dense, x, training)
    """
    plain = (
        layer.quantization_mode is None
        and layer._remat_mode is None
        and keras.distribution.distribution() is None
    )
    if training or not plain:
        return layer(inputs, training=training, **kwargs)
    return layer.call(inputs, **kwargs)
