"""A torch forward pass captured as one graph and compiled by Inductor, weights frozen in."""

from __future__ import annotations

import os
import shutil

import keras
import numpy as np
import torch
from torch._inductor import config as inductor_config
from torch.fx.experimental.proxy_tensor import make_fx

from keras_vit.inference.stacked_projections import write_versions
from keras_vit.kernels import xla


class InferenceGraph:
    """Runs `model(images, training=False)` on torch as a compiled graph of ATen ops.

    The first call for a batch shape runs the model once under
    `torch.fx.experimental.proxy_tensor.make_fx`, which records every ATen op
    of the forward pass (none of Keras' or keras_vit's Python is left in the
    graph), and compiles that graph with `torch.compile` and Inductor's
    `freezing` option: the weights become constants, so Inductor folds their
    casts and hands oneDNN pre-packed matrices. The model's attention layers
    take the two-matmul kernel (`keras_vit.kernels.xla.attention`), which
    Inductor fuses with its neighbours better than it runs PyTorch's SDPA.

    Compiling takes seconds and happens once per batch shape and input dtype.
    A batch smaller than one already compiled for the same image shape is
    padded with zero images to that size and cut back, so the last, short
    batch of `predict` compiles nothing new. Inductor's frozen copy of the
    weights costs their memory once more. When any of the model's weights
    changes (`assign`, `load_weights`), every graph is dropped and the next
    call compiles again.

    Args:
        model: a built `keras_vit.ViT` on the torch backend.

    Example:
        >>> graph = InferenceGraph(fast)
        >>> features = graph(torch.from_numpy(images))  # compiles on the first call
    """

    def __init__(self, model):
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
        for block in model.encoder.blocks:
            block.attention.attention_kernel = xla.attention
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

    def predict_step(self, data):
        """`predict`'s step on the graph: a numpy batch is shared with torch, not copied.

        Args:
            data: a batch as Keras' predict loop passes it.

        Returns:
            The model's output for the batch.
        """
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(images, np.ndarray) and images.dtype.kind == "f" and images.flags.writeable:
            return self(torch.from_numpy(images))
        return self(keras.ops.convert_to_tensor(images))

    def _compile(self, images):
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
