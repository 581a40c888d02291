"""Multi-head self-attention."""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.kernels import KERNELS, attention_with_probabilities
from keras_vit.model.initializers import truncated_normal
from keras_vit.model.layers import Linear, constructor_config
from keras_vit.model.rope import rope_tables, rotate_patches


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Multi-head self-attention over a token sequence: `softmax(q k^T / sqrt(d)) v`.

    q, k and v are three `Linear` projections (`query`, `key`, `value`), and the
    heads' contexts are joined by a fourth (`output`). The attention itself is
    the backend's kernel (`keras_vit.kernels`). When the probabilities are
    asked for, or attention dropout is active, the reference kernel forms them
    explicitly. The softmax runs in float32. With `rope_grid`, the patch
    tokens' queries and keys are rotated by their 2-D position first (RoPE).

    Args:
        hidden_size: token width D.
        num_heads: number of heads; divides `hidden_size` (`ViTConfig` checks).
        qkv_bias: whether the query, key and value projections have biases.
        key_bias: whether the key keeps its bias when `qkv_bias` is set.
        proj_bias: whether the output projection has a bias.
        rope_grid: the patch grid `(rows, cols)` for rotary position
            embedding, or `None` for none. The patches are the last tokens.
        rope_theta: RoPE's base period.
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
        key_bias: bool = True,
        proj_bias: bool = True,
        rope_grid: tuple[int, int] | None = None,
        rope_theta: float = 100.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.qkv_bias = qkv_bias
        self.key_bias = key_bias
        self.proj_bias = proj_bias
        self.rope_grid = tuple(rope_grid) if rope_grid else None
        self.rope_theta = rope_theta
        self.rope = rope_tables(self.rope_grid, self.head_size, rope_theta) if rope_grid else None
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range

        def projection(name, use_bias=True):
            return Linear(
                hidden_size,
                use_bias=use_bias,
                kernel_initializer=truncated_normal(initializer_range),
                dtype=self.dtype_policy,
                name=name,
            )

        self.query = projection("query", qkv_bias)
        self.key = projection("key", qkv_bias and key_bias)
        self.value = projection("value", qkv_bias)
        self.output_dense = projection("output", proj_bias)
        self.probs_dropout = keras.layers.Dropout(dropout_rate, dtype=self.dtype_policy)
        # The attention kernel, `(q, k, v) -> context`; `compile_for_inference`
        # gives its copy another one.
        self.attention_kernel = KERNELS.attention

    def build(self, input_shape):
        for layer in (self.query, self.key, self.value, self.output_dense):
            layer.build(input_shape)

    def project_qkv(self, x) -> tuple:
        """The queries, keys and values of tokens `x`, each `(B, N, heads, d)`.

        Args:
            x: `(B, N, D)` tokens.

        Returns:
            `(query, key, value)`.
        """
        heads = (-1, x.shape[1], self.num_heads, self.head_size)
        return tuple(ops.reshape(layer(x), heads) for layer in (self.query, self.key, self.value))

    def call(self, x, return_attention_scores: bool = False, training=None):
        query, key, value = self.project_qkv(x)
        if self.rope is not None:
            query, key = (rotate_patches(t, *self.rope) for t in (query, key))
        if return_attention_scores or (training and self.dropout_rate > 0):
            context, probs = attention_with_probabilities(
                query, key, value, dropout=lambda p: self.probs_dropout(p, training=training)
            )
        else:
            context = self.attention_kernel(query, key, value)
        output = self.output_dense(ops.reshape(context, (-1, x.shape[1], self.hidden_size)))
        return (output, probs) if return_attention_scores else output

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **constructor_config(self)}
