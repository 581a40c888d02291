"""Multi-head self-attention with a fused path and an explicit-softmax path."""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.initializers import truncated_normal


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Multi-head self-attention over a token sequence.

    Normal calls use `keras.ops.dot_product_attention`, the fused (and, where
    the backend has one, flash) kernel. When the attention probabilities are
    requested, or attention dropout is active in training, it computes
    `softmax(q k^T / sqrt(d))` explicitly, in float32.

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
            return keras.layers.Dense(
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

    def build(self, input_shape):
        for layer in (self.query, self.key, self.value, self.output_dense):
            layer.build(input_shape)

    def _split_heads(self, x, num_tokens):
        return ops.reshape(x, (-1, num_tokens, self.num_heads, self.head_size))

    def call(self, x, return_attention_scores: bool = False, training=None):
        num_tokens = x.shape[1]
        query = self._split_heads(self.query(x), num_tokens)
        key = self._split_heads(self.key(x), num_tokens)
        value = self._split_heads(self.value(x), num_tokens)
        scale = self.head_size**-0.5
        explicit = return_attention_scores or (training and self.dropout_rate > 0)
        if explicit:
            logits = ops.einsum("bqhd,bkhd->bhqk", query, key)
            probs = ops.softmax(ops.cast(logits, "float32") * scale, axis=-1)
            probs = ops.cast(probs, query.dtype)
            dropped = self.probs_dropout(probs, training=training)
            context = ops.einsum("bhqk,bkhd->bqhd", dropped, value)
        else:
            context = ops.dot_product_attention(query, key, value, scale=scale)
        output = self.output_dense(ops.reshape(context, (-1, num_tokens, self.hidden_size)))
        return (output, probs) if return_attention_scores else output

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
