"""keras_vit: the Vision Transformer in Keras 3, on TensorFlow, JAX and PyTorch."""

from keras_vit import distribution, plotting
from keras_vit.analysis import (
    attention_distance,
    attention_rollout,
    cls_attention,
    fuse_heads,
    mean_attention_distance,
    position_embedding_similarity,
    rollout_matrices,
)
from keras_vit.hf_integration.named_weights import list_weights
from keras_vit.images import load_image
from keras_vit.inference import compile_for_inference, native_bfloat16
from keras_vit.model import (
    Encoder,
    EncoderBlock,
    MultiHeadSelfAttention,
    TokenPooling,
    ViT,
    ViTConfig,
    ViTEmbeddings,
    sincos_position_embeddings,
)
from keras_vit.model.activations import get_activation
from keras_vit.model.initializers import skip_random_init
from keras_vit.model.preprocessing import ImageProcessor
from keras_vit.model.resample import resample_position_embeddings
from keras_vit.variants import (
    VARIANTS,
    ViTB16,
    ViTB32,
    ViTH14,
    ViTL16,
    ViTL32,
    ViTS16,
    ViTTi16,
    build_variant,
    variant_config,
)

__version__ = "0.1.0"

__all__ = [
    "VARIANTS",
    "Encoder",
    "EncoderBlock",
    "ImageProcessor",
    "load_image",
    "MultiHeadSelfAttention",
    "TokenPooling",
    "ViT",
    "ViTB16",
    "ViTB32",
    "ViTConfig",
    "ViTEmbeddings",
    "ViTH14",
    "ViTL16",
    "ViTL32",
    "ViTS16",
    "ViTTi16",
    "attention_distance",
    "attention_rollout",
    "build_variant",
    "cls_attention",
    "compile_for_inference",
    "distribution",
    "fuse_heads",
    "get_activation",
    "list_weights",
    "mean_attention_distance",
    "native_bfloat16",
    "plotting",
    "position_embedding_similarity",
    "resample_position_embeddings",
    "rollout_matrices",
    "sincos_position_embeddings",
    "skip_random_init",
    "variant_config",
]
