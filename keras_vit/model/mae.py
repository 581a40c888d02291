"""`MaskedAutoencoder`: MAE pretraining (He et al., 2021) around a keras_vit `ViT`.

The encoder is a plain `ViT` (`model_type="vit_mae"`, fixed sin-cos
positions) that sees only the visible patches and [CLS]; `MAEDecoder`
predicts every patch's pixels; the loss is the mean squared error over the
masked patches. `encoder()` hands the pretrained `ViT` on for fine-tuning.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any

import keras
from keras import ops

from keras_vit.model.config import ViTConfig, is_positive_int
from keras_vit.model.mae_decoder import MAEDecoder
from keras_vit.model.masking import (
    denormalize_patches,
    masked_patch_loss,
    normalize_patches,
    patchify,
    random_masking,
    unpatchify,
)
from keras_vit.model.vit import ViT


@dataclasses.dataclass
class MAEConfig:
    """The masked autoencoder's options beyond its encoder's `ViTConfig`.

    Field names are transformers' `ViTMAEConfig`'s; the defaults are MAE's
    ViT-B recipe.

    Args:
        decoder_hidden_size: the decoder's token width; a multiple of 4 (its
            sin-cos position embeddings) and of `decoder_num_attention_heads`.
        decoder_num_hidden_layers: decoder blocks.
        decoder_num_attention_heads: heads per decoder attention layer.
        decoder_intermediate_size: hidden width of each decoder MLP.
        mask_ratio: the fraction of each image's patches hidden from the
            encoder, in (0, 1).
        norm_pix_loss: predict each patch's pixels standardised by the patch's
            own mean and variance (MAE's default, and its better targets);
            transformers' `ViTMAEConfig` defaults to False.

    Example:
        >>> MAEConfig(decoder_hidden_size=16, decoder_num_attention_heads=2).mask_ratio
        0.75
    """

    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_num_attention_heads: int = 16
    decoder_intermediate_size: int = 2048
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.startswith("decoder_"):
                if not is_positive_int(value):
                    raise ValueError(f"{field.name} must be a positive int, got {value!r}.")
                setattr(self, field.name, int(value))
        ratio = self.mask_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio < 1:
            raise ValueError(
                f"mask_ratio must be a number strictly between 0 and 1, got {ratio!r}: it is the "
                "fraction of each image's patches hidden from the encoder (MAE uses 0.75)."
            )
        self.mask_ratio = float(ratio)
        if not isinstance(self.norm_pix_loss, bool):
            raise ValueError(f"norm_pix_loss must be True or False, got {self.norm_pix_loss!r}.")
        width, heads = self.decoder_hidden_size, self.decoder_num_attention_heads
        if width % heads or width % 4:
            raise ValueError(
                f"decoder_hidden_size={width} must be divisible by "
                f"decoder_num_attention_heads={heads} and by 4 (its sin-cos position "
                "embeddings); pick a width that is."
            )

    def to_dict(self) -> dict[str, Any]:
        """Returns every field as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MAEConfig:
        """Builds a config from `to_dict()` output; unknown keys raise a ValueError."""
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"Unknown MAEConfig field(s) {unknown}. Valid fields: {names}.")
        return cls(**values)


def check_encoder_config(config: ViTConfig) -> None:
    """Raises a ValueError naming every option of `config` an MAE encoder cannot have.

    Args:
        config: the encoder's config.

    Example:
        >>> check_encoder_config(variant_config("MAEB16"))  # passes
    """
    wrong = {
        "model_type": (config.model_type, "vit_mae"),
        "position_embedding": (config.position_embedding, "sincos"),
        "distillation_token": (config.distillation_token, False),
        "num_register_tokens": (config.num_register_tokens, 0),
        "classes": (config.classes, None),
        "pre_logits": (config.pre_logits, False),
        "use_mask_token": (config.use_mask_token, False),
    }
    problems = [
        f"{name}={value!r} (use {wanted!r})"
        for name, (value, wanted) in wrong.items()
        if value != wanted
    ]
    if problems:
        raise ValueError(
            "A MaskedAutoencoder's encoder is MAE's ViT: fixed sin-cos positions, [CLS] as "
            "the only prefix token, and no head (add one to encoder() after pretraining). "
            f"This config has {'; '.join(problems)}. Fix them, e.g. with "
            "dataclasses.replace(config, ...), or start from variant_config('MAEB16')."
        )


@keras.saving.register_keras_serializable(package="keras_vit")
class MaskedAutoencoder(keras.Model):
    """A masked autoencoder: MAE pretraining of a keras_vit `ViT` on unlabelled images.

    Each call hides a random `mask_ratio` of every image's patches (drawn with
    a seeded `keras.random.SeedGenerator`, or from a given `noise`), encodes
    [CLS] and the visible patches with the `ViT`, and predicts every patch's
    pixels with `MAEDecoder`. `fit(images)` needs no labels: the loss is the
    mean squared error over the masked patches, against per-patch normalised
    pixels when `norm_pix_loss` is set. A loss given to `compile` is not used.

    Weights convert both ways with transformers' `ViTMAEForPreTraining`
    (`from_pretrained`, `save_pretrained`).

    Args:
        config: the encoder's `ViTConfig` (or its dict): `model_type="vit_mae"`,
            `position_embedding="sincos"`, no head (see `check_encoder_config`).
        mae_config: the decoder and masking options, an `MAEConfig` (or its dict).
        seed: seeds the masks' random draws: the same seed, the same masks.
        dtype: a dtype policy for every layer, e.g. `"mixed_bfloat16"`.
        **kwargs: `keras.Model` arguments such as `name`.

    Example:
        >>> mae = MaskedAutoencoder(variant_config("MAEB16"), seed=0)
        >>> mae.compile(optimizer="adamw")
        >>> mae.fit(images, epochs=1)
        >>> vit = mae.encoder()  # the pretrained ViT, for fine-tuning
    """

    def __init__(
        self,
        config: ViTConfig | dict[str, Any],
        mae_config: MAEConfig | dict[str, Any] | None = None,
        seed: int | None = None,
        dtype: Any = None,
        **kwargs,
    ):
        kwargs.setdefault("name", "masked_autoencoder")
        super().__init__(dtype=dtype, **kwargs)
        config = ViTConfig.from_dict(config) if isinstance(config, dict) else config
        if mae_config is None:
            mae_config = MAEConfig()
        elif isinstance(mae_config, dict):
            mae_config = MAEConfig.from_dict(mae_config)
        check_encoder_config(config)
        self.config = config
        self.mae_config = mae_config
        self.seed = seed
        self.vit = ViT(config, dtype=dtype, name="vit")
        ph, pw = config.patch_pair
        self.decoder = MAEDecoder(
            mae_config.decoder_hidden_size,
            mae_config.decoder_num_hidden_layers,
            config.grid_size,
            ph * pw * config.num_channels,
            block_config={
                "hidden_size": mae_config.decoder_hidden_size,
                "num_heads": mae_config.decoder_num_attention_heads,
                "intermediate_size": mae_config.decoder_intermediate_size,
                "hidden_act": config.hidden_act,
                "layer_norm_eps": config.layer_norm_eps,
                "qkv_bias": config.qkv_bias,
                "dropout_rate": config.hidden_dropout_prob,
                "attention_dropout_rate": config.attention_probs_dropout_prob,
                "initializer_range": config.initializer_range,
            },
            layer_norm_eps=config.layer_norm_eps,
            initializer_range=config.initializer_range,
            dtype=dtype,
            name="decoder",
        )
        self.decoder.build((None, None, config.hidden_size))
        self.seed_generator = keras.random.SeedGenerator(seed, name="masking_seed")
        self.num_patches = config.grid_size[0] * config.grid_size[1]
        self.built = True

    def call(self, images, noise=None, training=None):
        """Masks, encodes and decodes a batch of images.

        Args:
            images: `(B, H, W, C)` normalised images of the config's size.
            noise: optional `(B, num_patches)` floats that choose the mask (the
                smallest are kept), as transformers' `noise=`; drawn uniformly
                with the model's seed generator when `None`.
            training: run dropout and stochastic depth.

        Returns:
            A dict: `logits` `(B, num_patches, ph * pw * C)` float32 predicted
            pixels per patch, in grid order; `mask` `(B, num_patches)`, 1 for
            the masked patches; `ids_restore` `(B, num_patches)`.
        """
        self.vit.check_images(images.shape)
        if noise is None:
            noise = keras.random.uniform(
                (ops.shape(images)[0], self.num_patches), seed=self.seed_generator
            )
        noise = ops.convert_to_tensor(noise)
        if tuple(noise.shape[1:]) != (self.num_patches,):
            raise ValueError(
                f"noise must have shape (batch, {self.num_patches}), one value per patch, "
                f"got {tuple(noise.shape)}."
            )
        ids_keep, mask, ids_restore = random_masking(noise, self.mae_config.mask_ratio)
        vit = self.vit
        tokens = vit.embeddings.embed_kept_patches(images, ids_keep, training=training)
        latent = vit.layernorm(vit.encoder(tokens, training=training))
        logits = self.decoder(latent, ids_restore, training=training)
        return {"logits": ops.cast(logits, "float32"), "mask": mask, "ids_restore": ids_restore}

    def pixel_targets(self, images):
        """The pixels the decoder learns to predict, per patch.

        Args:
            images: `(B, H, W, C)` normalised images.

        Returns:
            `(B, num_patches, ph * pw * C)` float32: the patches' pixels,
            standardised per patch when `norm_pix_loss` is set.
        """
        targets = patchify(ops.cast(images, "float32"), self.config.patch_pair)
        return normalize_patches(targets) if self.mae_config.norm_pix_loss else targets

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """MAE's loss from the images (`x`) and the model's outputs; no labels needed.

        Returns:
            The mean squared error over the masked patches, plus any losses
            the layers added (e.g. regularisers).
        """
        loss = masked_patch_loss(y_pred["logits"], self.pixel_targets(x), y_pred["mask"])
        for extra in self.losses:
            loss = loss + ops.cast(extra, loss.dtype)
        return loss

    def reconstruct(self, images, noise=None) -> dict[str, Any]:
        """Runs MAE on images and returns transformers' `ViTMAEForPreTrainingOutput` fields.

        Args:
            images: `(B, H, W, C)` normalised images of the config's size.
            noise: optional `(B, num_patches)` floats that choose the mask, as
                transformers' `noise=`: the same noise gives the same mask.

        Returns:
            A dict of `loss` (a scalar), `logits` `(B, num_patches, ph * pw *
            C)`, `mask` `(B, num_patches)` (1 = masked) and `ids_restore`
            `(B, num_patches)`.

        Example:
            >>> out = mae.reconstruct(images)
            >>> out["logits"].shape, out["mask"].shape
        """
        images = ops.convert_to_tensor(images)
        outputs = self(images, noise=noise)
        loss = masked_patch_loss(outputs["logits"], self.pixel_targets(images), outputs["mask"])
        return {"loss": loss, **outputs}

    def reconstructed_images(self, images, noise=None) -> dict[str, Any]:
        """MAE's picture of a reconstruction: predicted masked patches among the visible ones.

        With `norm_pix_loss`, each predicted patch is brought back to pixel
        units with the mean and variance of the original patch, as MAE's
        visualisation does.

        Args:
            images: `(B, H, W, C)` normalised images of the config's size.
            noise: optional `(B, num_patches)` floats that choose the mask, as
                in `reconstruct`: fix it to compare reconstructions over time.

        Returns:
            A dict of `mask` `(B, H, W)` float32, 1 on the pixels of masked
            patches, and `reconstruction` `(B, H, W, C)`: the prediction on
            the masked patches, the original pixels on the visible ones, in
            the images' normalised units.

        Example:
            >>> out = mae.reconstructed_images(images, noise=np.random.rand(8, 196))
            >>> out["reconstruction"].shape, out["mask"].shape
            ((8, 224, 224, 3), (8, 224, 224))
        """
        images = ops.cast(ops.convert_to_tensor(images), "float32")
        outputs = self(images, noise=noise)
        patches = patchify(images, self.config.patch_pair)
        predictions = outputs["logits"]
        if self.mae_config.norm_pix_loss:
            predictions = denormalize_patches(predictions, patches)
        masked = ops.expand_dims(outputs["mask"], -1)
        pasted = masked * predictions + (1 - masked) * patches
        grid = (self.config.patch_pair, self.config.grid_size)
        pixel_mask = unpatchify(ops.broadcast_to(masked, ops.shape(patches)), *grid)
        return {"mask": pixel_mask[..., 0], "reconstruction": unpatchify(pasted, *grid)}

    def encoder(self) -> ViT:
        """The encoder: a plain keras_vit `ViT` (model_type `vit_mae`) that shares this
        model's weights, e.g. to fine-tune it with a head after pretraining.

        Example:
            >>> vit = mae.encoder()
            >>> vit.save_pretrained("mae-encoder/")  # a ViTMAEModel for transformers
        """
        return self.vit

    @classmethod
    def from_pretrained(cls, repo_or_path: str | os.PathLike, **kwargs: Any) -> MaskedAutoencoder:
        """Builds a masked autoencoder from a transformers `ViTMAEForPreTraining` checkpoint.

        Args:
            repo_or_path: `org/name`, `hf://org/name`, or a local directory with
                `config.json` and the weights.
            **kwargs: the Hub's `revision`, `token`, `cache_dir`,
                `force_download` and `local_files_only`; `seed`, `verbose`,
                `dtype`, `name`; `MAEConfig` fields (e.g. `mask_ratio=0.75`) and
                `ViTConfig` fields (e.g. `image_size`: the sin-cos tables are
                recomputed for the new grid).

        Returns:
            The model.

        Example:
            >>> mae = MaskedAutoencoder.from_pretrained("facebook/vit-mae-base")
        """
        from keras_vit.hf_integration.pretrained import mae_from_pretrained

        return mae_from_pretrained(repo_or_path, **kwargs)

    def save_pretrained(self, directory: str | os.PathLike, overwrite: bool = False) -> None:
        """Writes a `ViTMAEForPreTraining` checkpoint directory (encoder and decoder).

        Args:
            directory: the destination; written to a temporary directory first.
            overwrite: replace an existing destination.

        Example:
            >>> mae.save_pretrained("my-mae/")
            >>> transformers.ViTMAEForPreTraining.from_pretrained("my-mae/")
        """
        from keras_vit.conversion.mae import save_mae_pretrained

        save_mae_pretrained(self, directory, overwrite=overwrite)

    def get_config(self) -> dict[str, Any]:
        """Returns the constructor arguments, the configs as dicts."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "config": self.config.to_dict(),
            "mae_config": self.mae_config.to_dict(),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MaskedAutoencoder:
        """Rebuilds a (freshly initialised) model from `get_config()` output."""
        return cls(**config)
