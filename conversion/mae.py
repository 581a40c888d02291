"""transformers' `ViTMAEForPreTraining` checkpoints <-> keras_vit's `MaskedAutoencoder`.

The encoder's tensors go through the `vit_mae` family's adapter as a `ViT`'s do;
the decoder's names are the family's `decoder` table. Both fixed sin-cos
tables are recomputed on load and written from the model on export.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_vit.atomic_files import atomic_path
from keras_vit.conversion.checkpoint import read_checkpoint, read_json_object
from keras_vit.conversion.convert import hf_to_keras, keras_to_hf
from keras_vit.conversion.families import family_of
from keras_vit.conversion.hf_config import check_exportable, config_to_hf
from keras_vit.conversion.pretrained import (
    HF_CONFIG,
    assign_weights,
    hf_backbone_config,
    naming_the_file,
    write_transformers_files,
)
from keras_vit.model import weight_paths as paths
from keras_vit.model.initializers import skip_random_init
from keras_vit.model.mae import MAEConfig, MaskedAutoencoder
from keras_vit.model.preprocessing import ImageProcessor

# transformers' `ViTMAEConfig` defaults for the fields a config.json may leave out.
_MAE_FIELDS = {
    "decoder_hidden_size": 512,
    "decoder_num_hidden_layers": 8,
    "decoder_num_attention_heads": 16,
    "decoder_intermediate_size": 2048,
    "mask_ratio": 0.75,
    "norm_pix_loss": False,
}


def mae_config_from_hf(hf_config: dict[str, Any]) -> MAEConfig:
    """The `MAEConfig` of a transformers `ViTMAEConfig` dict.

    Args:
        hf_config: a parsed `config.json` of model_type `vit_mae`.

    Returns:
        Its decoder and masking options, with transformers' defaults for
        missing keys (so `norm_pix_loss` is False unless the file says so).

    Example:
        >>> mae_config_from_hf({"model_type": "vit_mae", "norm_pix_loss": True}).norm_pix_loss
        True
    """
    return MAEConfig(**{key: hf_config.get(key, default) for key, default in _MAE_FIELDS.items()})


def mae_config_to_hf(model: MaskedAutoencoder) -> dict[str, Any]:
    """The transformers `config.json` dict of a masked autoencoder (`ViTMAEForPreTraining`).

    Example:
        >>> transformers.ViTMAEConfig(**mae_config_to_hf(mae))
    """
    hf = config_to_hf(model.config)
    hf.update(model.mae_config.to_dict())
    hf["architectures"] = [family_of(model.config.model_type).decoder.pretraining_class]
    return hf


def load_mae_pretrained(
    directory: str | os.PathLike,
    seed: int | None = None,
    verbose: bool = True,
    dtype: Any = None,
    name: str | None = None,
    **overrides: Any,
) -> MaskedAutoencoder:
    """Builds a `MaskedAutoencoder` from a local `ViTMAEForPreTraining` checkpoint directory.

    Every tensor of the checkpoint is used, decoder included; missing,
    unexpected and mis-shaped tensors are reported together in one error.

    Args:
        directory: holds `config.json` (model_type `vit_mae`) and the weights.
        seed: seeds the masks' random draws.
        verbose: show a progress bar.
        dtype: the model's dtype policy.
        name: the model's name.
        **overrides: `MAEConfig` fields (e.g. `mask_ratio`, `norm_pix_loss`)
            and `ViTConfig` fields (e.g. `image_size`: both sin-cos tables are
            recomputed for the new grid).

    Returns:
        The model.

    Example:
        >>> mae = load_mae_pretrained("vit-mae-base/", mask_ratio=0.5)
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory.")
    config = hf_backbone_config(directory)
    if config.model_type != "vit_mae":
        raise ValueError(
            f"{directory} holds a {config.model_type!r} checkpoint; MaskedAutoencoder loads "
            "transformers' ViTMAEForPreTraining (model_type 'vit_mae'). Load it with "
            "keras_vit.ViT.from_pretrained instead."
        )
    hf_config = read_json_object(directory / HF_CONFIG)
    mae_fields = {field.name for field in dataclasses.fields(MAEConfig)}
    with naming_the_file(directory / HF_CONFIG):
        mae_config = mae_config_from_hf(
            {**hf_config, **{k: v for k, v in overrides.items() if k in mae_fields}}
        )
    config = dataclasses.replace(
        config, id2label=None, **{k: v for k, v in overrides.items() if k not in mae_fields}
    )
    arguments = {
        key: value for key, value in (("dtype", dtype), ("name", name)) if value is not None
    }
    with skip_random_init():
        model = MaskedAutoencoder(config, mae_config, seed=seed, **arguments)
    family = family_of(config.model_type)
    fixed = (
        family.tables[paths.POSITION_EMBEDDING],
        family.decoder.tables[paths.DECODER_POSITION_EMBEDDING],
    )
    weights = model.vit.weights + model.decoder.weights
    assign_weights(
        model,
        hf_to_keras(
            read_checkpoint(directory),
            {variable.path: tuple(variable.shape) for variable in weights},
            source_grid=config.grid_size,
            target_grid=config.grid_size,
            ignore_prefixes=fixed,
            config=config,
        ),
        verbose=verbose,
    )
    return model


def save_mae_pretrained(
    model: MaskedAutoencoder, directory: str | os.PathLike, overwrite: bool = False
) -> None:
    """Writes a `ViTMAEForPreTraining` checkpoint directory: `config.json`,
    `model.safetensors` (encoder under `vit.`, and the decoder) and
    `preprocessor_config.json`.

    Args:
        model: the masked autoencoder.
        directory: the destination, written whole or not at all.
        overwrite: replace an existing destination.

    Example:
        >>> save_mae_pretrained(mae, "my-mae/")
        >>> transformers.ViTMAEForPreTraining.from_pretrained("my-mae/")
    """
    config = model.config
    check_exportable(config)
    weights = {
        variable.path: keras.ops.convert_to_numpy(variable)
        for variable in model.vit.weights + model.decoder.weights
    }
    weights[paths.POSITION_EMBEDDING] = np.asarray(model.vit.embeddings.position_embedding)
    weights[paths.DECODER_POSITION_EMBEDDING] = np.asarray(model.decoder.position_embedding)
    with atomic_path(directory, overwrite=overwrite, directory=True) as temporary:
        write_transformers_files(
            temporary,
            keras_to_hf(weights, with_head=True, config=config),
            mae_config_to_hf(model),
            ImageProcessor(config.image_size),
        )
