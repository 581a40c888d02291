"""`ViT`: the Vision Transformer as a functional `keras.Model`."""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_vit.model.activations import get_activation
from keras_vit.model.config import ViTConfig
from keras_vit.model.embeddings import ViTEmbeddings
from keras_vit.model.encoder import Encoder
from keras_vit.model.initializers import truncated_normal
from keras_vit.model.layers import LayerNorm
from keras_vit.model.pooling import TokenPooling
from keras_vit.model.preprocessing import ImageProcessor


@keras.saving.register_keras_serializable(package="keras_vit")
class ViT(keras.Model):
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
            },
            drop_path_rate=config.drop_path_rate,
            dtype=dtype,
            name="encoder",
        )
        layernorm = LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name="layernorm")
        pooling = (
            TokenPooling(config.pooling, dtype=dtype, name="pooling") if config.pooling else None
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
        head = None
        if config.classes:
            # Zero-initialised, as the paper does for every (fine-tuning) head.
            head = keras.layers.Dense(
                config.classes, kernel_initializer="zeros", dtype=dtype, name="head"
            )

        x = preprocessor(inputs) if preprocessor else inputs
        x = layernorm(encoder(embeddings(x)))
        if pooling:
            x = pooling(x)
        if pre_logits:
            x = pre_logits(x)
        if head:
            # Scores leave the model in float32, also under mixed precision.
            x = keras.layers.Activation(
                config.classifier_activation or "linear", dtype="float32", name="predictions"
            )(head(x))
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

    def check_images(self, shape: tuple) -> None:
        """Raises a ValueError that names the fix if images of `shape` do not fit.

        Args:
            shape: the shape of an image batch, `(B, H, W, C)`.
        """
        shape = tuple(shape)
        if len(shape) != 4:
            raise ValueError(
                f"ViT takes a batch of channels-last images (B, H, W, C), got shape {shape}. "
                "Add a batch axis, or move channels last (e.g. transpose NCHW with (0, 2, 3, 1))."
            )
        channels = shape[-1]
        if channels is not None and channels != self.config.num_channels:
            raise ValueError(
                f"Images have {channels} channels but this ViT expects "
                f"num_channels={self.config.num_channels}. Convert the images "
                f"(e.g. grayscale to RGB), or build the model with num_channels={channels}."
            )
        if self.include_preprocessing:
            return
        expected = self.config.image_pair
        patch = self.config.patch_pair
        for side, size, step in zip(("height", "width"), shape[1:3], patch, strict=True):
            if size is not None and size % step:
                raise ValueError(
                    f"Image {side} {size} is not divisible by the patch size {step}. Resize or "
                    f"crop to a multiple of {step}, or build with include_preprocessing=True."
                )
        if None not in shape[1:3] and tuple(shape[1:3]) != expected:
            raise ValueError(
                f"Images are {shape[1]}x{shape[2]} but this model was built for "
                f"{expected[0]}x{expected[1]}. Resize them (keras_vit.ImageProcessor), or build "
                f"the model with image_size={tuple(shape[1:3])}: learned position embeddings "
                "are resampled when its weights are loaded with load_weights()."
            )

    def __call__(self, inputs, *args, **kwargs):
        # Before Keras' generic shape check: a message that says how to fix the images.
        if hasattr(inputs, "shape"):
            self.check_images(inputs.shape)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        # fit / predict on JAX reach `call` without `__call__`: check here too.
        self.check_images(inputs.shape)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    # Array inputs are checked before Keras' loops start: an error raised inside
    # a JAX `predict` / `fit` step would leave the model's variables released.
    # An empty array is one such error (Keras' loops find no batch), so `fit` and
    # `evaluate` refuse it and `predict` answers it without entering the loop.
    def check_array_input(self, x, method: str) -> bool:
        """Checks an array given to `fit` / `evaluate` / `predict` before Keras' loop runs.

        Args:
            x: the input; anything without a `shape` (a data set, a generator) passes.
            method: the calling method's name, for the error message.

        Returns:
            Whether `x` is an array of zero images (allowed for `predict` only).

        Example:
            >>> model.check_array_input(np.zeros((0, 224, 224, 3)), "predict")
            True
        """
        if not hasattr(x, "shape"):
            return False
        self.check_images(x.shape)
        if x.shape[0] == 0 and method != "predict":
            raise ValueError(f"{method}() got 0 images; give it at least one.")
        return x.shape[0] == 0

    def fit(self, x=None, *args, **kwargs):
        self.check_array_input(x, "fit")
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self.check_array_input(x, "evaluate")
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        if self.check_array_input(x, "predict"):
            return np.zeros((0, *self.output.shape[1:]), self.output.dtype)
        return super().predict(x, *args, **kwargs)

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
            LayerNorm; `pooler_output` `(B, P)` when the model has pre-logits;
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
        if output_hidden_states:
            outputs["hidden_states"] = encoded["hidden_states"]
        if output_attentions:
            outputs["attentions"] = encoded["attentions"]
        return outputs

    @classmethod
    def from_pretrained(
        cls,
        repo_or_path: str | os.PathLike,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> ViT:
        """Builds a model from a Hub repo or a local transformers / keras_vit checkpoint.

        Args:
            repo_or_path: `org/name`, `hf://org/name`, or a local directory with
                `config.json` and `model.safetensors` (sharded or not) or
                `pytorch_model.bin`. Only the files needed are downloaded, into
                the shared Hugging Face cache.
            revision: a branch, tag or commit sha.
            token: a Hub token for private or gated repos.
            cache_dir: another cache than huggingface_hub's default.
            force_download: download again even if cached.
            local_files_only: use the cache only (as `HF_HUB_OFFLINE=1`).
            **kwargs: `image_size` (resamples position embeddings), `classes`
                (a new zero-initialised head), `include_top`, `verbose`,
                `include_preprocessing`, `dtype`, `name`, and any `ViTConfig`
                field; see `keras_vit.conversion.load_pretrained`.

        Returns:
            The model.

        Example:
            >>> model = ViT.from_pretrained("google/vit-base-patch16-224", image_size=384)
        """
        from keras_vit.hf_integration import from_pretrained

        return from_pretrained(
            repo_or_path,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            **kwargs,
        )

    def save_pretrained(self, directory: str | os.PathLike, overwrite: bool = False) -> None:
        """Writes a directory that transformers and keras_vit both load, with a model card.

        Args:
            directory: the destination; written to a temporary directory first.
            overwrite: replace an existing destination.

        Example:
            >>> model.save_pretrained("my-vit/")
        """
        from keras_vit.hf_integration import save_pretrained

        save_pretrained(self, directory, overwrite=overwrite)

    def push_to_hub(
        self,
        repo_id: str,
        private: bool = False,
        token: str | None = None,
        commit_message: str | None = None,
        revision: str | None = None,
    ):
        """Uploads the model to the Hub in one commit, as a repo transformers also loads.

        Args:
            repo_id: `org/name`; created if it does not exist.
            private: create the repo as private.
            token: a token with write access (default: the logged-in one).
            commit_message: the commit's message.
            revision: the branch to commit to.

        Returns:
            huggingface_hub's `CommitInfo`.

        Example:
            >>> model.push_to_hub("me/my-vit")
        """
        from keras_vit.hf_integration import push_to_hub

        return push_to_hub(
            self,
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message,
            revision=revision,
        )

    def decode_predictions(self, scores, top: int = 5) -> list[list[tuple[str, float]]]:
        """Turns class scores into `(label, score)` pairs, best first.

        Args:
            scores: `(B, classes)` output of the model.
            top: how many classes to keep per image.

        Returns:
            For each image, the `top` labels (from `config.id2label`, or the
            class index as a string) with their scores.

        Raises:
            ValueError: the model has no head, or `scores` is not
                `(B, config.classes)`.

        Example:
            >>> model.decode_predictions(model.predict(images), top=3)
        """
        if not self.config.classes:
            raise ValueError("This model has no classification head, so nothing to decode.")
        scores = np.asarray(ops.convert_to_numpy(scores), dtype="float32")
        if scores.ndim != 2 or scores.shape[-1] != self.config.classes:
            raise ValueError(
                f"decode_predictions needs scores of shape (batch, {self.config.classes}), one "
                f"per class of this model, got shape {scores.shape}. Pass this model's output."
            )
        labels = self.config.id2label or {}
        best = np.argsort(-scores, axis=-1)[:, :top]
        return [
            [(labels.get(int(index), str(index)), float(row[index])) for index in indices]
            for row, indices in zip(scores, best, strict=True)
        ]

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
