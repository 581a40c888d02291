"""Checkpoint conversion, installed as `keras_vit.conversion`.

transformers' ViT checkpoints (safetensors, sharded or not, and legacy
`pytorch_model.bin`) and `config.json` to keras_vit and back, in numpy. The
data path is `read_checkpoint` -> `hf_to_keras` -> the model's variables;
export is `keras_to_hf` -> `model.safetensors`. keras-hub presets of ViT, DeiT
and DINOv2 are read by `load_keras_hub_preset`; MAE pretraining checkpoints
(`ViTMAEForPreTraining`, decoder included) by `load_mae_pretrained`.
"""

from keras_vit.conversion.checkpoint import Checkpoint, read_checkpoint, write_safetensors
from keras_vit.conversion.convert import CheckpointMismatchError, hf_to_keras, keras_to_hf
from keras_vit.conversion.hf_config import config_from_hf, config_to_hf
from keras_vit.conversion.keras_hub_config import is_keras_hub_preset
from keras_vit.conversion.keras_hub_preset import load_keras_hub_preset
from keras_vit.conversion.mae import load_mae_pretrained, save_mae_pretrained
from keras_vit.conversion.names import canonical_hf_name, hf_name_for
from keras_vit.conversion.pretrained import load_pretrained, save_pretrained

__all__ = [
    "Checkpoint",
    "CheckpointMismatchError",
    "canonical_hf_name",
    "config_from_hf",
    "config_to_hf",
    "hf_name_for",
    "hf_to_keras",
    "is_keras_hub_preset",
    "keras_to_hf",
    "load_keras_hub_preset",
    "load_mae_pretrained",
    "load_pretrained",
    "read_checkpoint",
    "save_mae_pretrained",
    "save_pretrained",
    "write_safetensors",
]
