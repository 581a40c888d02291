"""A torch forward pass captured as one graph and compiled by Inductor, weights frozen in."""

from __future__ import annotations

import os
import shutil

import keras

from keras_vit.attention import matmul_attention_for_compiler
from keras_vit.stacked_projections import write_versions


class InferenceGraph:
    """Runs `model(images, training=False)` on torch as a compiled graph of ATen ops.

    The first call for a batch shape runs the model once under
    `torch.fx.experimental.proxy_tensor.make_fx`, which records every ATen op
    of the forward pass (none of Keras' or keras_vit's Python is left in the
    graph; attention as two matmuls, `matmul_attention_for_compiler`), and
    compiles that graph with `torch.compile` and Inductor's
    `freezing` option: the weights become constants, so Inductor folds their
    casts and hands oneDNN pre-packed matrices. On an AVX-512 CPU a bfloat16
    ViT-B/16 ran 1.29x transformers' speed at batch 1 and 1.12x at batch 8, and
    a float32 ViT-Ti/16 at batch 32 1.26x (`benchmarks/NOTES.md`).

    Compiling takes seconds (about 15 s for ViT-B/16 on 2 cores) and happens
    once per batch shape and input dtype. A batch smaller than one already
    compiled for the same image shape is padded with zero images to that size
    and cut back, so the last, short batch of `predict` compiles nothing new.
    Inductor's frozen copy of the weights costs their memory once more. When
    any of the model's weights changes (`assign`, `load_weights`), every graph
    is dropped and the next call compiles again.

    Args:
        model: a built Keras model on the torch backend that takes one tensor.

    Example:
        >>> graph = InferenceGraph(fast)
        >>> features = graph(torch.from_numpy(images))  # compiles on the first call
    """

    def __init__(self, model: keras.Model):
        if keras.backend.backend() != "torch":
            raise ValueError(
                "InferenceGraph compiles torch graphs, but the backend is "
                f"{keras.backend.backend()}: there, compile the model with jit_compile=True (XLA)."
            )
        if not cpp_compiler_found():
            raise RuntimeError(
                "InferenceGraph compiles with Inductor, which needs a C++ compiler: none was "
                "found as $CXX or g++. Install one (e.g. `apt install g++`), or pass "
                "jit_compile=False to compile_for_inference."
            )
        self.model = model
        # Keras assigns weights in place, so these tensors see every later change.
        self._weights = [variable.value for variable in model.weights]
        self._weights_key = None
        self._graphs = {}  # (batch size, (image shape, dtype)) -> compiled callable

    def __call__(self, images):
        """The model's output for `images`, from the graph compiled for their shape.

        Args:
            images: a torch tensor of a batch of images.

        Returns:
            The model's output tensor for the batch.
        """
        import torch

        weights_key = write_versions(self._weights)
        if weights_key != self._weights_key:
            self._graphs.clear()
            self._weights_key = weights_key
        batch, image = images.shape[0], (tuple(images.shape[1:]), images.dtype)
        graph_batch = min(
            (size for size, other in self._graphs if other == image and size >= batch),
            default=batch,
        )
        with torch.no_grad():
            if (graph_batch, image) not in self._graphs:
                self._graphs[(graph_batch, image)] = self._compile(images)
            if graph_batch > batch:
                padding = images.new_zeros((graph_batch - batch, *images.shape[1:]))
                images = torch.cat([images, padding])
            return self._graphs[(graph_batch, image)](images)[:batch]

    def _compile(self, images):
        import torch
        from torch._inductor import config as inductor_config
        from torch.fx.experimental.proxy_tensor import make_fx

        with matmul_attention_for_compiler():
            captured = make_fx(lambda x: self.model(x, training=False))(images)
        compiled = torch.compile(captured, dynamic=False)
        # Inductor reads `freezing` when it compiles, on the first call (an
        # `options=` entry of `torch.compile` does not reach it).
        with inductor_config.patch(freezing=True):
            compiled(images)
        return compiled


def cpp_compiler_found() -> bool:
    """Whether Inductor's C++ compiler is on this machine: `$CXX`, or else `g++`.

    Returns:
        True when `InferenceGraph` can compile.

    Example:
        >>> cpp_compiler_found()  # with g++ installed
        True
    """
    return shutil.which(os.environ.get("CXX") or "g++") is not None
