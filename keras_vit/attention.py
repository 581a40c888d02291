"""Multi-head self-attention with a fused path and an explicit-softmax path."""

from __future__ import annotations

import contextlib
import contextvars

import keras
from keras import ops

from keras_vit.initializers import truncated_normal
from keras_vit.linear import Linear
from keras_vit.stacked_projections import StackedProjections
from keras_vit.sublayer_call import call_sublayer

_COMPILER_CAPTURE = contextvars.ContextVar("keras_vit_compiler_capture", default=False)


@contextlib.contextmanager
def matmul_attention_for_compiler():
    """Within this context, attention takes the two-matmul path on every backend.

    `InferenceGraph` records a torch graph in it for Inductor, which fuses the
    scaling, exponent and sums of the two-matmul path with its neighbours and
    runs it 8-18% faster than PyTorch's SDPA kernel over a bfloat16 ViT forward
    (`benchmarks/NOTES.md`). Eager torch keeps SDPA.

    Example:
        >>> with matmul_attention_for_compiler():
        ...     fused_attention_is_faster()
        False
    """
    token = _COMPILER_CAPTURE.set(True)
    try:
        yield
    finally:
        _COMPILER_CAPTURE.reset(token)


def fused_attention_is_faster() -> bool:
    """Whether `ops.dot_product_attention` beats two plain matmuls here.

    On eager torch it is PyTorch's fused SDPA kernel and wins. On a CPU under
    JAX and TensorFlow the fused op is a slower composite, and two batched
    matmuls in (B, heads, N, d) layout are about 1.5-2x faster over a
    ViT-B/16 forward; under Inductor (`matmul_attention_for_compiler`) the
    two matmuls win on torch too (`benchmarks/NOTES.md`).

    Returns:
        True on torch outside `matmul_attention_for_compiler`, else False.

    Example:
        >>> fused_attention_is_faster()  # under KERAS_BACKEND=torch
        True
    """
    return keras.backend.backend() == "torch" and not _COMPILER_CAPTURE.get()


def reshape(x, shape: tuple):
    """`keras.ops.reshape` of a concrete tensor, by the tensor's own method on torch.

    Keras' op first searches its arguments for symbolic tensors, which costs
    more Python than the reshape itself on an eager torch forward.

    Args:
        x: a tensor (not symbolic).
        shape: the new shape; one entry may be -1.

    Returns:
        The reshaped tensor (a view where torch can make one).

    Example:
        >>> reshape(np.zeros((2, 6), "float32"), (2, 3, 2)).shape
        (2, 3, 2)
    """
    if keras.backend.backend() == "torch":
        return x.reshape(shape)
    return ops.reshape(x, shape)


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Multi-head self-attention over a token sequence.

    On torch, normal calls use `keras.ops.dot_product_attention` (PyTorch's
    fused SDPA kernel). On JAX and TensorFlow they compute
    `softmax(q k^T / sqrt(d)) v` as two batched matmuls, dividing by the
    softmax sums after the second one. When the attention probabilities are
    requested, or attention dropout is active, the probabilities are formed
    explicitly. Exponents and sums are taken in float32, and all three paths
    give the same numbers (tested to 1e-5 in float32).

    Args:
        hidden_size: token width D.
        num_heads: number of heads; must divide `hidden_size`.
        qkv_bias: whether the query, key and value projections have biases.
        dropout_rate: dropout on the attention probabilities.
        initializer_range: std of the truncated-normal kernel initializer.
        **kwargs: standard Keras layer arguments.

    Example:
        >>> layer = MultiHeadSelfAttention(32, 2)
        >>> out, probs = layer(np.zeros((1, 5, 32), "float32"), return_attention_scores=True)
        >>> probs.shape
        (1, 2, 5, 5)
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        qkv_bias: bool = True,
        dropout_rate: float = 0.0,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}."
            )
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.qkv_bias = qkv_bias
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range

        def dense(name, use_bias=True):
            return Linear(
                hidden_size,
                use_bias=use_bias,
                kernel_initializer=truncated_normal(initializer_range),
                dtype=self.dtype_policy,
                name=name,
            )

        self.query = dense("query", qkv_bias)
        self.key = dense("key", qkv_bias)
        self.value = dense("value", qkv_bias)
        self.output_dense = dense("output")
        self.probs_dropout = keras.layers.Dropout(dropout_rate, dtype=self.dtype_policy)
        self.stacked_projections = None

    def stack_projections(self) -> None:
        """Computes q, k and v as one matmul from now on, outside training, on torch.

        `compile_for_inference` calls this. It keeps a concatenated copy of the
        three kernels (`StackedProjections`, kept in step with the weights), so
        it costs memory, and it only applies where the copy gives the same
        numbers (no LoRA, no quantization, weights in the compute dtype).

        Example:
            >>> layer = MultiHeadSelfAttention(32, 2)
            >>> layer.build((None, 5, 32))
            >>> layer.stack_projections()  # same outputs, one matmul for q, k and v
        """
        self.stacked_projections = StackedProjections([self.query, self.key, self.value])

    def build(self, input_shape):
        for layer in (self.query, self.key, self.value, self.output_dense):
            layer.build(input_shape)

    def _split_heads(self, x, num_tokens):
        return reshape(x, (-1, num_tokens, self.num_heads, self.head_size))

    def _project(self, x, num_tokens, training):
        """q, k and v, each (B, N, heads, d): one stacked matmul where set up, else three."""
        stacked = self.stacked_projections
        if not training and stacked is not None and stacked.applies():
            rows = stacked(x.reshape(-1, self.hidden_size))
            shape = (-1, num_tokens, 3, self.num_heads, self.head_size)
            return rows.view(shape).unbind(2)
        return tuple(
            self._split_heads(call_sublayer(projection, x, training), num_tokens)
            for projection in (self.query, self.key, self.value)
        )

    def call(self, x, return_attention_scores: bool = False, training=None):
        num_tokens = x.shape[1]
        query, key, value = self._project(x, num_tokens, training)
        if return_attention_scores or (training and self.dropout_rate > 0):
            context, probs = self._explicit_attention(query, key, value, training)
        elif fused_attention_is_faster():
            context = self._fused_attention(query, key, value)
        else:
            context = self._matmul_attention(query, key, value)
        context = reshape(context, (-1, num_tokens, self.hidden_size))
        output = call_sublayer(self.output_dense, context, training)
        return (output, probs) if return_attention_scores else output

    def _fused_attention(self, query, key, value):
        """The backend's fused attention kernel. Takes and returns (B, N, heads, d) tensors.

        On torch, PyTorch's SDPA reads the (B, heads, N, d) views of q, k and v
        in place; `ops.dot_product_attention` would first copy each into a
        contiguous tensor.
        """
        scale = self.head_size**-0.5
        if keras.backend.backend() != "torch":
            return ops.dot_product_attention(query, key, value, scale=scale)
        from torch.nn.functional import scaled_dot_product_attention

        heads_first = (tensor.transpose(1, 2) for tensor in (query, key, value))
        return scaled_dot_product_attention(*heads_first, scale=scale).transpose(1, 2)

    def _matmul_attention(self, query, key, value):
        """`softmax(q k^T / sqrt(d)) v` with the normalisation after the second matmul.

        Dividing the (N, d) context by the row sums, instead of the (N, N) weights,
        saves a pass over the weights; XLA then fuses the exponent into the
        second product. About 2x faster than `_explicit_attention` on a CPU.
        Takes and returns (B, N, heads, d) tensors.
        """
        query = ops.transpose(query, (0, 2, 1, 3)) * ops.cast(self.head_size**-0.5, query.dtype)
        logits = ops.cast(ops.matmul(query, ops.transpose(key, (0, 2, 3, 1))), "float32")
        # The shift by the row maximum only keeps `exp` finite; the result does not
        # depend on it, so no gradient flows through it. Saying so spares XLA the
        # compare-and-select backward of `max` (8% of a JAX training step on the earlier
        # AVX2 machine).
        shift = ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True))
        weights = ops.exp(logits - shift)
        context = ops.matmul(ops.cast(weights, value.dtype), ops.transpose(value, (0, 2, 1, 3)))
        context = context / ops.cast(ops.sum(weights, axis=-1, keepdims=True), context.dtype)
        return ops.transpose(context, (0, 2, 1, 3))

    def _explicit_attention(self, query, key, value, training):
        """`softmax(q k^T / sqrt(d)) v` as two batched matmuls in (B, heads, N, d) layout.

        Takes and returns (B, N, heads, d) tensors; also returns the probabilities.
        The softmax runs in float32 whatever the compute dtype.
        """
        query = ops.transpose(query, (0, 2, 1, 3)) * ops.cast(self.head_size**-0.5, query.dtype)
        logits = ops.matmul(query, ops.transpose(key, (0, 2, 3, 1)))
        probs = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), value.dtype)
        dropped = self.probs_dropout(probs, training=training)
        context = ops.matmul(dropped, ops.transpose(value, (0, 2, 1, 3)))
        return ops.transpose(context, (0, 2, 1, 3)), probs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            num_heads=self.num_heads,
            qkv_bias=self.qkv_bias,
            dropout_rate=self.dropout_rate,
            initializer_range=self.initializer_range,
        )
        return config
