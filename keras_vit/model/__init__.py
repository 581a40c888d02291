"""The Vision Transformer's math: Keras layers and `keras.ops` only.

No backend checks, no torch, no private Keras APIs: where a backend has a
faster implementation of a primitive, the layers get it from
`keras_vit.kernels`. Read top to bottom: `config`, `embeddings`, `attention`,
`encoder`, `pooling`, `vit`; then MAE pretraining: `masking`, `mae_decoder`, `mae`.
"""

from keras_vit.model.attention import MultiHeadSelfAttention
from keras_vit.model.config import ViTConfig
from keras_vit.model.embeddings import ViTEmbeddings, sincos_position_embeddings
from keras_vit.model.encoder import Encoder, EncoderBlock
from keras_vit.model.mae import MAEConfig, MaskedAutoencoder
from keras_vit.model.mae_decoder import MAEDecoder
from keras_vit.model.pooling import TokenPooling
from keras_vit.model.preprocessing import ImageProcessor
from keras_vit.model.vit import ViT

__all__ = [
    "Encoder",
    "EncoderBlock",
    "ImageProcessor",
    "MAEConfig",
    "MAEDecoder",
    "MaskedAutoencoder",
    "MultiHeadSelfAttention",
    "TokenPooling",
    "ViT",
    "ViTConfig",
    "ViTEmbeddings",
    "sincos_position_embeddings",
]
