"""`ViT`: the Vision Transformer as a functional `keras.Model`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_vit.model.activations import get_activation
from keras_vit.model.config import CLS_POOLER_MODEL_TYPES, ViTConfig
from keras_vit.model.embeddings import ViTEmbeddings
from keras_vit.model.encoder import Encoder
from keras_vit.model.hub_methods import HubMethods
from keras_vit.model.initializers import truncated_normal
from keras_vit.model.input_checks import InputChecks
from keras_vit.model.layers import LayerNorm
from keras_vit.model.pooling import TokenPooling
from keras_vit.model.preprocessing import ImageProcessor


@keras.saving.register_keras_serializable(package="keras_vit")
class ViT(InputChecks, HubMethods, keras.Model):
    """The Vision Transformer (Dosovitskiy et al., 2020) for any Keras 3 backend.

    Takes channels-last images `(B, H, W, C)` of normalised pixel values (as
    transformers' `pixel_values`, transposed), or raw 0..255 images of any size
    when built with `include_preprocessing=True`. The output depends on the
    config: class scores when `config.classes` is set, otherwise the pooled
    (and, with `pre_logits`, projected) features, or the whole normalised
    token sequence when `pooling=None`.

    Weight paths are stable, e.g. `encoder/layer_3/attention/query/kernel`;
    checkpoint conversion relies on them.

    Args:
        config: a `ViTConfig` or its dict form.
        include_preprocessing: prepend an `ImageProcessor` so the model takes
            raw images of any size.
        dtype: a dtype policy for every layer, e.g. `"mixed_bfloat16"`.
        **kwargs: `keras.Model` arguments such as `name`.

    Example:
        >>> config = ViTConfig(image_size=32, patch_size=8, hidden_size=32,
        ...                    num_hidden_layers=2, num_attention_heads=2,
        ...                    intermediate_size=64, classes=10)
        >>> model = ViT(config)
        >>> model(np.zeros((1, 32, 32, 3), "float32")).shape
        (1, 10)
    """

    def __init__(
        self,
        config: ViTConfig | dict[str, Any],
        include_preprocessing: bool = False,
        dtype: Any = None,
        **kwargs,
    ):
        if isinstance(config, dict):
            config = ViTConfig.from_dict(config)
        height, width = config.image_pair
        preprocessor = None
        if include_preprocessing:
            preprocessor = ImageProcessor((height, width), name="preprocessing")
            inputs = keras.Input((None, None, config.num_channels), name="pixel_values")
        else:
            inputs = keras.Input((height, width, config.num_channels), name="pixel_values")
        embeddings = ViTEmbeddings(
            config.hidden_size,
            config.patch_pair,
            config.grid_size,
            position_embedding=config.position_embedding,
            dropout_rate=config.hidden_dropout_prob,
            initializer_range=config.initializer_range,
            use_mask_token=config.use_mask_token,
            distillation_token=config.distillation_token,
            num_register_tokens=config.num_register_tokens,
            resample_antialias=config.resample_antialias,
            dtype=dtype,
            name="embeddings",
        )
        encoder = Encoder(
            config.num_hidden_layers,
            block_config={
                "hidden_size": config.hidden_size,
                "num_heads": config.num_attention_heads,
                "intermediate_size": config.intermediate_size,
                "hidden_act": config.hidden_act,
                "layer_norm_eps": config.layer_norm_eps,
                "qkv_bias": config.qkv_bias,
                "dropout_rate": config.hidden_dropout_prob,
                "attention_dropout_rate": config.attention_probs_dropout_prob,
                "initializer_range": config.initializer_range,
                "key_bias": config.key_bias,
                "proj_bias": config.proj_bias,
                "rope_grid": config.grid_size if config.position_embedding == "rope" else None,
                "rope_theta": config.rope_theta,
                "mlp_type": config.mlp_type,
                "mlp_bias": config.mlp_bias,
                "layerscale_value": config.layerscale_value,
            },
            drop_path_rate=config.drop_path_rate,
            dtype=dtype,
            name="encoder",
        )
        layernorm = LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name="layernorm")
        pooling = None
        if config.pooling:
            pooling = TokenPooling(
                config.pooling, config.num_prefix_tokens, dtype=dtype, name="pooling"
            )
        pre_logits = None
        if config.pre_logits:
            pre_logits = keras.layers.Dense(
                config.pre_logits_size,
                activation=get_activation(config.pooler_act),
                kernel_initializer=truncated_normal(config.initializer_range),
                dtype=dtype,
                name="pre_logits",
            )
        head = distillation_head = None
        if config.classes:
            # Zero-initialised, as the paper does for every (fine-tuning) head.
            head = keras.layers.Dense(
                config.classes, kernel_initializer="zeros", dtype=dtype, name="head"
            )
        if config.distillation_head:
            distillation_head = keras.layers.Dense(
                config.classes, kernel_initializer="zeros", dtype=dtype, name="distillation_head"
            )

        x = preprocessor(inputs) if preprocessor else inputs
        tokens = layernorm(encoder(embeddings(x)))
        x = pooling(tokens) if pooling else tokens
        if pre_logits:
            x = pre_logits(x)
        if head:
            logits = head(x)
            if distillation_head:  # DeiT's inference rule: the mean of both heads
                logits = (logits + distillation_head(tokens[:, 1])) / 2
            # Scores leave the model in float32, also under mixed precision.
            x = keras.layers.Activation(
                config.classifier_activation or "linear", dtype="float32", name="predictions"
            )(logits)
        super().__init__(inputs, x, dtype=dtype, **kwargs)

        self.config = config
        self.include_preprocessing = include_preprocessing
        self.preprocessor = preprocessor
        self.embeddings = embeddings
        self.encoder = encoder
        self.layernorm = layernorm
        self.pooling = pooling
        self.pre_logits = pre_logits
        self.head = head
        self.distillation_head = distillation_head

    def encode(
        self,
        images,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        training: bool = False,
        bool_masked_pos=None,
    ) -> dict[str, Any]:
        """Runs the backbone and returns transformers-style `ViTModel` outputs.

        Args:
            images: a batch of images, as the model takes them.
            output_hidden_states: also return every layer's hidden states.
            output_attentions: also return every layer's attention probabilities
                (this uses the explicit-softmax attention path).
            training: run dropout and stochastic depth.
            bool_masked_pos: optional `(B, num_patches)` booleans; masked
                patches are replaced by the mask token (needs `use_mask_token`).

        Returns:
            A dict with `last_hidden_state` `(B, N, D)` after the final
            LayerNorm, the prefix tokens first ([CLS], the distillation token,
            the registers), then the patches in row-major order;
            `pooler_output` `(B, P)` when the model has pre-logits, or the
            normalised [CLS] token for the families whose transformers model
            returns that (DINOv2, DINOv3);
            `hidden_states`, L+1 tensors `(B, N, D)` from the embeddings to the
            last block (before the final LayerNorm), if asked; `attentions`, L
            tensors `(B, heads, N, N)` of softmax probabilities, if asked.

        Example:
            >>> out = model.encode(images, output_attentions=True)
            >>> out["attentions"][0].shape  # (B, heads, N, N)
        """
        images = ops.convert_to_tensor(images)
        self.check_images(images.shape)
        x = self.preprocessor(images) if self.preprocessor else images
        encoded = self.encoder(
            self.embeddings(x, bool_masked_pos=bool_masked_pos, training=training),
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            training=training,
        )
        last = encoded["last_hidden_state"] if isinstance(encoded, dict) else encoded
        outputs = {"last_hidden_state": self.layernorm(last)}
        if self.pre_logits:
            outputs["pooler_output"] = self.pre_logits(self.pooling(outputs["last_hidden_state"]))
        elif self.config.model_type in CLS_POOLER_MODEL_TYPES:
            outputs["pooler_output"] = outputs["last_hidden_state"][:, 0]
        if output_hidden_states:
            outputs["hidden_states"] = encoded["hidden_states"]
        if output_attentions:
            outputs["attentions"] = encoded["attentions"]
        return outputs

    def head_logits(self, images, training: bool = False) -> tuple:
        """The class head's and the distillation head's logits, each on its own token.

        The model's output is their mean (DeiT's inference rule); distillation
        training needs them apart.

        Args:
            images: a batch of images, as the model takes them.
            training: run dropout and stochastic depth.

        Returns:
            `(class_logits, distillation_logits)`, each `(B, classes)`.

        Example:
            >>> class_logits, distillation_logits = deit.head_logits(images)
        """
        if self.distillation_head is None:
            raise ValueError(
                "This model has no distillation head; build it with distillation_token=True, "
                "distillation_head=True and classes=N."
            )
        tokens = self.encode(images, training=training)["last_hidden_state"]
        features = self.pooling(tokens)
        if self.pre_logits:
            features = self.pre_logits(features)
        return self.head(features), self.distillation_head(tokens[:, 1])

    def get_config(self) -> dict[str, Any]:
        """Returns the constructor arguments: the `ViTConfig` as a dict, and so on."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "config": self.config.to_dict(),
            "include_preprocessing": self.include_preprocessing,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ViT:
        """Rebuilds a (freshly initialised) model from `get_config()` output."""
        return cls(**config)
