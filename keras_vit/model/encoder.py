"""The pre-LayerNorm Transformer encoder: blocks and their stack."""

from __future__ import annotations

import keras
from keras import ops

from keras_vit.kernels import KERNELS
from keras_vit.model.activations import get_activation
from keras_vit.model.attention import MultiHeadSelfAttention
from keras_vit.model.initializers import truncated_normal
from keras_vit.model.layers import LayerNorm, LayerScale, Linear, constructor_config


@keras.saving.register_keras_serializable(package="keras_vit")
class EncoderBlock(keras.layers.Layer):
    """One encoder block: `x + MHSA(LN(x))`, then `x + MLP(LN(x))`.

    Dropout (`dropout_rate`) and stochastic depth (`drop_path_rate`, whole
    residual branches dropped per sample) apply to both residual branches.
    With `layerscale_value`, each branch is first scaled per channel by a
    learned `LayerScale`.

    Args:
        hidden_size: token width D.
        num_heads: attention heads.
        intermediate_size: MLP hidden width.
        hidden_act: MLP activation by its transformers name (`"gelu"` is exact).
        layer_norm_eps: LayerNorm epsilon.
        qkv_bias: whether Q/K/V projections have biases.
        dropout_rate: dropout on each residual branch's output.
        attention_dropout_rate: dropout on attention probabilities.
        drop_path_rate: probability of dropping a residual branch in training.
        initializer_range: std of the truncated-normal kernel initializers.
        key_bias, proj_bias, rope_grid, rope_theta: as for
            `MultiHeadSelfAttention`.
        mlp_type: `"mlp"`, `"swiglu"` or `"gated"` (see `mlp`).
        mlp_bias: whether the MLP's projections have biases.
        layerscale_value: the layer scales' initial value, or `None` for none.
        **kwargs: standard Keras layer arguments.

    Example:
        >>> block = EncoderBlock(32, 2, 64)
        >>> block(np.zeros((1, 5, 32), "float32")).shape
        (1, 5, 32)
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-6,
        qkv_bias: bool = True,
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        initializer_range: float = 0.02,
        key_bias: bool = True,
        proj_bias: bool = True,
        rope_grid: tuple[int, int] | None = None,
        rope_theta: float = 100.0,
        mlp_type: str = "mlp",
        mlp_bias: bool = True,
        layerscale_value: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.qkv_bias = qkv_bias
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.initializer_range = initializer_range
        self.key_bias = key_bias
        self.proj_bias = proj_bias
        self.rope_grid = rope_grid
        self.rope_theta = rope_theta
        self.mlp_type = mlp_type
        self.mlp_bias = mlp_bias
        self.layerscale_value = layerscale_value
        # SwiGLU's gate is SiLU whatever `hidden_act` says, as in DINOv2.
        self.activation = get_activation("silu" if mlp_type == "swiglu" else hidden_act)
        policy = self.dtype_policy
        initializer = truncated_normal(initializer_range)
        self.layernorm_before = LayerNorm(
            epsilon=layer_norm_eps, dtype=policy, name="layernorm_before"
        )
        self.attention = MultiHeadSelfAttention(
            hidden_size,
            num_heads,
            qkv_bias=qkv_bias,
            dropout_rate=attention_dropout_rate,
            initializer_range=initializer_range,
            key_bias=key_bias,
            proj_bias=proj_bias,
            rope_grid=rope_grid,
            rope_theta=rope_theta,
            dtype=policy,
            name="attention",
        )
        self.layernorm_after = LayerNorm(
            epsilon=layer_norm_eps, dtype=policy, name="layernorm_after"
        )

        def linear(units, name):
            return Linear(
                units, use_bias=mlp_bias, kernel_initializer=initializer, dtype=policy, name=name
            )

        # SwiGLU's one input projection holds the gate's and the values' halves.
        self.mlp_fc1 = linear(intermediate_size * (2 if mlp_type == "swiglu" else 1), "mlp_fc1")
        self.mlp_gate = linear(intermediate_size, "mlp_gate") if mlp_type == "gated" else None
        self.mlp_fc2 = linear(hidden_size, "mlp_fc2")
        self.attention_scale, self.mlp_scale = (
            (
                LayerScale(layerscale_value, dtype=policy, name="attention_scale"),
                LayerScale(layerscale_value, dtype=policy, name="mlp_scale"),
            )
            if layerscale_value is not None
            else (None, None)
        )
        self.dropout = keras.layers.Dropout(dropout_rate, dtype=policy)
        # Stochastic depth is dropout with one draw per sample.
        self.drop_path = keras.layers.Dropout(
            drop_path_rate, noise_shape=(None, 1, 1), dtype=policy
        )

    def build(self, input_shape):
        self.layernorm_before.build(input_shape)
        self.attention.build(input_shape)
        self.layernorm_after.build(input_shape)
        self.mlp_fc1.build(input_shape)
        self.mlp_fc2.build((*input_shape[:-1], self.intermediate_size))
        for layer in (self.mlp_gate, self.attention_scale, self.mlp_scale):
            if layer is not None:
                layer.build(input_shape)

    def mlp(self, x):
        """The MLP of `mlp_type`.

        - `"mlp"`: `fc2(act(fc1 x))`;
        - `"swiglu"`: `fc2(silu(a) * b)`, where `[a, b] = fc1 x`;
        - `"gated"`: `fc2(act(gate x) * fc1 x)`.
        """
        if self.mlp_type == "mlp":
            return self.mlp_fc2(self.activation(self.mlp_fc1(x)))
        if self.mlp_type == "swiglu":
            gate, values = ops.split(self.mlp_fc1(x), 2, axis=-1)
        else:
            gate, values = self.mlp_gate(x), self.mlp_fc1(x)
        return self.mlp_fc2(self.activation(gate) * values)

    def residual_branch(self, branch, scale, training):
        """A residual branch's output after layer scale (if any), then dropout and
        stochastic depth (training only)."""
        if scale is not None:
            branch = scale(branch)
        return self.drop_path(self.dropout(branch, training=training), training=training)

    def call(self, x, return_attention_scores: bool = False, training=None):
        x = KERNELS.fence_gradient(x)
        attended = self.attention(
            self.layernorm_before(x),
            return_attention_scores=return_attention_scores,
            training=training,
        )
        attended, probs = attended if return_attention_scores else (attended, None)
        # The paper's equations 2 and 3. The fence changes only how the gradient is scheduled.
        x = KERNELS.fence_gradient(
            x + self.residual_branch(attended, self.attention_scale, training)
        )
        x = x + self.residual_branch(self.mlp(self.layernorm_after(x)), self.mlp_scale, training)
        return (x, probs) if return_attention_scores else x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **constructor_config(self)}


@keras.saving.register_keras_serializable(package="keras_vit")
class Encoder(keras.layers.Layer):
    """A stack of `EncoderBlock`s named `layer_0` ... `layer_{L-1}`.

    The stochastic-depth rate grows linearly from 0 at the first block to
    `drop_path_rate` at the last.

    Args:
        num_layers: number of blocks L.
        block_config: keyword arguments shared by every `EncoderBlock`
            (without `drop_path_rate`).
        drop_path_rate: the last block's stochastic-depth rate.
        **kwargs: standard Keras layer arguments.

    Example:
        >>> encoder = Encoder(2, {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64})
        >>> encoder(np.zeros((1, 5, 32), "float32"), output_attentions=True)["attentions"][0].shape
        (1, 2, 5, 5)
    """

    def __init__(self, num_layers: int, block_config: dict, drop_path_rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.block_config = dict(block_config)
        self.drop_path_rate = drop_path_rate
        self.blocks = [
            EncoderBlock(
                **self.block_config,
                drop_path_rate=drop_path_rate * index / max(num_layers - 1, 1),
                dtype=self.dtype_policy,
                name=f"layer_{index}",
            )
            for index in range(num_layers)
        ]

    def build(self, input_shape):
        for block in self.blocks:
            block.build(input_shape)

    def call(
        self,
        x,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        training=None,
    ):
        """Runs the blocks.

        Returns the final hidden states, or, when either flag is set, a dict
        with `last_hidden_state`, `hidden_states` (L+1 tensors, the input
        first) and `attentions` (L tensors of shape `(B, heads, N, N)`); a
        flag that is not set gives an empty tuple.
        """
        hidden_states, attentions = [x], []
        for block in self.blocks:
            x = block(x, return_attention_scores=output_attentions, training=training)
            if output_attentions:
                x, probs = x
                attentions.append(probs)
            if output_hidden_states:  # kept alive only when asked for: memory is reused
                hidden_states.append(x)
        if not (output_hidden_states or output_attentions):
            return x
        return {
            "last_hidden_state": x,
            "hidden_states": tuple(hidden_states) if output_hidden_states else (),
            "attentions": tuple(attentions),
        }

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **constructor_config(self)}
