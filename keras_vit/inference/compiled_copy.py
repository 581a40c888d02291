"""`compile_for_inference`: a copy of a model, cast once and compiled for `predict`."""

from __future__ import annotations

import warnings

import keras

from keras_vit.model import ViT
from keras_vit.model.initializers import skip_random_init

PRECISIONS = ("float32", "bfloat16", "mixed_bfloat16")


@keras.saving.register_keras_serializable(package="keras_vit")
class CompiledViT(ViT):
    """The `ViT` that `compile_for_inference` returns; `predict` may run a compiled graph.

    On torch, `graph` is the copy's `InferenceGraph` (or `None`), and
    `predict` / `predict_on_batch` run it. Everywhere else this is a `ViT`.

    Example:
        >>> fast = compile_for_inference(model)
        >>> isinstance(fast, ViT)
        True
    """

    graph = None

    def predict_step(self, *args):
        if self.graph is None:
            return super().predict_step(*args)  # JAX passes (state, data)
        return self.graph.predict_step(args[0])


def compile_for_inference(
    model: ViT, precision: str = "float32", jit_compile: bool | str = "auto"
) -> ViT:
    """Returns a copy of `model` set up for fast `predict` / `predict_on_batch`.

    With `precision="bfloat16"` the copy holds its weights in bfloat16, cast
    once here, and computes in bfloat16 (a pure `"bfloat16"` dtype policy).
    `mixed_bfloat16` instead keeps float32 weights and casts them on every
    call, which costs time on CPU. LayerNorm statistics and the attention
    softmax still run in float32, and class scores leave the model in float32.
    Expect differences from the float32 model of about 1e-2. The copy is for
    inference: train the original. On torch each attention layer of the copy
    also computes q, k and v as one matmul over a concatenated copy of their
    kernels (`StackedProjections`), which costs a quarter of the encoder's
    weights in memory once more.

    On a CPU without native bfloat16 (no AVX-512), PyTorch emulates bfloat16
    matmuls over 100x slower than float32; on torch this warns, and
    `"float32"` is the fast choice there.

    Args:
        model: a `ViT`, in any dtype policy.
        precision: `"float32"` (the model's numbers to 1e-5, and the
            fastest on CPUs without native bfloat16), `"bfloat16"` or
            `"mixed_bfloat16"` (float32 weights cast on every call, as in
            training).
        jit_compile: on JAX and TensorFlow, passed to `compile` (XLA). On
            torch, True gives the copy an `InferenceGraph`: `predict` then
            runs the forward pass as one Inductor-compiled graph, compiled on
            the first batch of each shape (seconds to a minute). `"auto"`:
            XLA on JAX and TensorFlow, and the graph where torch finds a C++
            compiler. False keeps the copy eager.

    Returns:
        A new, compiled `CompiledViT` (a `ViT`) with the same config and weights.

    Example:
        >>> model = keras_vit.ViTB16(weights="imagenet21k")
        >>> fast = compile_for_inference(model, precision="bfloat16")  # GPU, TPU, AVX-512 CPU
        >>> features = fast.predict(images, batch_size=8)
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not supported; use one of {PRECISIONS}.")
    if not isinstance(model, ViT):
        raise TypeError(f"compile_for_inference takes a keras_vit.ViT, got {type(model).__name__}.")
    if precision != "float32" and not native_bfloat16():
        warnings.warn(
            "PyTorch emulates bfloat16 matmuls on this CPU (it lacks AVX-512), over 100x "
            "slower than float32. Use precision='float32' here.",
            stacklevel=2,
        )
    with skip_random_init():
        fast = CompiledViT(
            model.config,
            include_preprocessing=model.include_preprocessing,
            dtype=precision,
            name=model.name,
        )
    for target, source in zip(fast.weights, model.weights, strict=True):
        target.assign(keras.ops.cast(source.value, target.dtype))
    if keras.backend.backend() != "torch":
        fast.compile(jit_compile=default_jit_compile() if jit_compile == "auto" else jit_compile)
        return fast
    from keras_vit.inference import torch_graph
    from keras_vit.inference.stacked_projections import stack_projections

    stack_projections(fast)
    if torch_graph.cpp_compiler_found() if jit_compile == "auto" else jit_compile:
        fast.graph = torch_graph.InferenceGraph(fast)
    fast.compile(jit_compile=False)  # not Keras' `torch.compile` of `predict_step`
    return fast


def default_jit_compile() -> bool:
    """keras_vit's `jit_compile` for `model.compile`: XLA on JAX and TensorFlow, off for torch.

    XLA pays on JAX and TensorFlow even on a CPU, where Keras' own `"auto"`
    leaves it off for TensorFlow. Keras' `torch.compile` of a whole train or
    predict step takes minutes and gains nothing over eager oneDNN
    (`benchmarks/NOTES.md`); for inference on torch, `compile_for_inference`
    compiles an `InferenceGraph` instead.

    Returns:
        The `jit_compile` value for `model.compile`, as the benchmarks and
        `compile_for_inference` on JAX and TensorFlow use it.

    Example:
        >>> model.compile(jit_compile=default_jit_compile())
    """
    return keras.backend.backend() != "torch"


def native_bfloat16() -> bool:
    """Whether bfloat16 matmuls run at hardware speed on this backend and CPU.

    XLA (JAX, TensorFlow) computes bfloat16 products in float32 registers at
    about float32 speed on any CPU. PyTorch's oneDNN needs AVX-512 (or AMX);
    without it, it falls back to a reference kernel over 100x slower.

    Returns:
        False only on torch with a CPU that oneDNN cannot run bfloat16 on.

    Example:
        >>> native_bfloat16()  # JAX or TensorFlow
        True
    """
    if keras.backend.backend() != "torch":
        return True
    import torch

    return torch.cuda.is_available() or torch.ops.mkldnn._is_mkldnn_bf16_supported()
