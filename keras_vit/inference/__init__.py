"""Fast inference: `compile_for_inference` returns a compiled copy of a model.

Every inference-only speed path lives here and applies to that copy only: its
weights cast once to the inference precision, XLA compilation on JAX and
TensorFlow, and on torch an Inductor-compiled graph (`torch_graph`) with q, k
and v stacked into one matmul (`stacked_projections`).
"""

from keras_vit.inference.compiled_copy import (
    PRECISIONS,
    CompiledViT,
    compile_for_inference,
    default_jit_compile,
    native_bfloat16,
)

__all__ = [
    "PRECISIONS",
    "CompiledViT",
    "compile_for_inference",
    "default_jit_compile",
    "native_bfloat16",
]
