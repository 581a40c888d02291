"""The Hugging Face Hub, installed as `keras_vit.hf_integration`.

Named weights (`ViTB16(weights="imagenet21k")`), `from_pretrained` by repo id,
`save_pretrained` with a model card, and `push_to_hub`, on top of
`keras_vit.conversion` and `huggingface_hub`.
"""

from keras_vit.hf_integration.download import download_checkpoint, split_source
from keras_vit.hf_integration.model_card import model_card
from keras_vit.hf_integration.named_weights import NAMED_WEIGHTS, list_weights
from keras_vit.hf_integration.pretrained import from_pretrained, from_weights_argument
from keras_vit.hf_integration.publish import push_to_hub, save_pretrained

__all__ = [
    "NAMED_WEIGHTS",
    "download_checkpoint",
    "from_pretrained",
    "from_weights_argument",
    "list_weights",
    "model_card",
    "push_to_hub",
    "save_pretrained",
    "split_source",
]
