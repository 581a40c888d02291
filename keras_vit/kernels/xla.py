"""Kernel variants for graph compilers: XLA (JAX, TensorFlow), and Inductor on the compiled copy.

Each gives the reference's numbers (tested to 1e-5 in float32) in a form the
compiler turns into less work; `benchmarks/NOTES.md` has the measurements.
"""

from __future__ import annotations

from keras import ops

SQRT_HALF = 0.7071067811865476


# The most query rows one fused attention takes; longer sequences go in blocks.
QUERY_BLOCK = 256


def attention(query, key, value):
    """`softmax(q k^T / sqrt(d)) v`, normalised after the second matmul, in query blocks.

    Dividing the `(N, d)` context by the row sums, instead of the `(N, N)`
    weights, saves a pass over the weights, and the compiler fuses the
    exponent into the second product. Exponents and sums are float32.
    Sequences longer than `QUERY_BLOCK` tokens are split along the queries
    into near-equal blocks of at most that many rows, each attending to every
    key: XLA's CPU runtime (JAX 0.10) runs its fused attention about three
    times slower per element past 256 query rows, and the blocks cost nothing
    on TensorFlow (see `benchmarks/NOTES.md`). Takes and returns what `reference.attention` does.

    Example:
        >>> q = np.ones((1, 5, 2, 4), "float32")
        >>> attention(q, q, q).shape
        (1, 5, 2, 4)
    """
    tokens = query.shape[1]
    if tokens is None or tokens <= QUERY_BLOCK:
        return _attention_block(query, key, value)
    size = -(-tokens // -(-tokens // QUERY_BLOCK))  # blocks of near-equal size
    blocks = [
        _attention_block(query[:, start : start + size], key, value)
        for start in range(0, tokens, size)
    ]
    return ops.concatenate(blocks, axis=1)


def _attention_block(query, key, value):
    query = ops.transpose(query, (0, 2, 1, 3)) * ops.cast(query.shape[-1] ** -0.5, query.dtype)
    logits = ops.cast(ops.matmul(query, ops.transpose(key, (0, 2, 3, 1))), "float32")
    # The shift by the row maximum only keeps `exp` finite and the result does not
    # depend on it, so no gradient flows through it: that spares the compiler the
    # compare-and-select backward of `max`.
    weights = ops.exp(logits - ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True)))
    context = ops.matmul(ops.cast(weights, value.dtype), ops.transpose(value, (0, 2, 1, 3)))
    context = context / ops.cast(ops.sum(weights, axis=-1, keepdims=True), context.dtype)
    return ops.transpose(context, (0, 2, 1, 3))


def gelu(x):
    """Exact GELU written with `erf`, which XLA lowers more cheaply than Keras' `erfc` form.

    Takes and returns what `reference.gelu` does.

    Example:
        >>> gelu(np.zeros(3, "float32"))
    """
    return 0.5 * x * (1.0 + ops.erf(x * SQRT_HALF))


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
    """Returns `x`, and makes XLA store the gradient that flows back into it.

    The gradient of a pre-LayerNorm residual stream is a long chain of cheap
    elementwise sums, one link per block. XLA's CPU fusion copies cheap
    producers into each consumer, so without a fence every block's weight
    gradient recomputes the whole chain above it, and the backward pass grows
    with the square of the depth. A fence at each residual sum cuts the chain.

    Args:
        x: any tensor.

    Returns:
        `x`, unchanged in value and in gradient.

    Example:
        >>> fence_gradient(np.ones((2, 3), "float32")).shape
        (2, 3)
    """
    return _fenced(x)
