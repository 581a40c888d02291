"""Kernel variants for eager PyTorch: one fused ATen call per primitive.

Each takes and returns torch tensors (Keras variables are read through their
`.value`), and gives the reference's numbers (tested to 1e-5 in float32,
2e-2 in bfloat16); `benchmarks/NOTES.md` has the measurements.
"""

from __future__ import annotations

import keras
import torch
import torch.nn.functional as F


def tensor_of(tensor_or_variable):
    """The torch tensor of a Keras variable (autocast where a scope says so), or the tensor.

    Args:
        tensor_or_variable: a `keras.Variable` or a torch tensor.

    Returns:
        A torch tensor.

    Example:
        >>> tensor_of(layer.kernel).shape
        torch.Size([3, 4])
    """
    if isinstance(tensor_or_variable, keras.Variable):
        return tensor_or_variable.value
    return tensor_or_variable


def attention(query, key, value):
    """PyTorch's fused scaled-dot-product attention, reading q, k and v in place.

    SDPA takes `(B, heads, N, d)`: the transposes are views, so nothing is
    copied, where `keras.ops.dot_product_attention` would copy each input.
    Takes and returns what `reference.attention` does, as torch tensors.

    Example:
        >>> q = torch.ones(1, 5, 2, 4)
        >>> attention(q, q, q).shape
        torch.Size([1, 5, 2, 4])
    """
    heads_first = (tensor.transpose(1, 2) for tensor in (query, key, value))
    context = F.scaled_dot_product_attention(*heads_first, scale=query.shape[-1] ** -0.5)
    return context.transpose(1, 2)


def dense(inputs, kernel, bias=None):
    """`inputs @ kernel + bias` as one `torch.addmm`, the bias added inside the product.

    Takes and returns what `reference.dense` does, as torch tensors.

    Example:
        >>> dense(torch.ones(2, 3), torch.ones(3, 4), torch.zeros(4)).shape
        torch.Size([2, 4])
    """
    kernel = tensor_of(kernel)
    if bias is None:
        return torch.matmul(inputs, kernel)
    rows = inputs.reshape(-1, inputs.shape[-1])
    return torch.addmm(tensor_of(bias), rows, kernel).view(*inputs.shape[:-1], kernel.shape[-1])


def layer_norm(inputs, gamma, beta, epsilon: float):
    """`torch.nn.functional.layer_norm`, given bfloat16 tensors as they are.

    Its CPU kernel accumulates the statistics in float32 itself, so the casts
    that Keras' generic LayerNorm makes around it are not needed. float32
    inputs are normalised in float32. Takes what `reference.layer_norm` does,
    and returns the normalised tensor in the inputs' dtype.

    Example:
        >>> layer_norm(torch.ones(2, 8), torch.ones(8), torch.zeros(8), 1e-6).shape
        torch.Size([2, 8])
    """
    gamma, beta = tensor_of(gamma), tensor_of(beta)
    if inputs.dtype == torch.float32:  # float32 inputs to a bfloat16 layer: all in float32
        gamma, beta = gamma.float(), beta.float()
    return F.layer_norm(inputs, inputs.shape[-1:], gamma, beta, epsilon)


def patch_projection(images, kernel, bias=None):
    """The patch convolution as one reshape of the images and one matmul.

    A convolution whose stride is its kernel size is a matrix product of the
    flattened patches with the kernel. oneDNN's convolution would re-lay out
    the `(ph, pw, C, D)` kernel and the channels-last input on every call.
    Takes and returns what `reference.patch_projection` does, as torch tensors.

    Example:
        >>> patch_projection(torch.ones(1, 8, 8, 3), torch.ones(4, 4, 3, 5)).shape
        torch.Size([1, 2, 2, 5])
    """
    kernel = tensor_of(kernel)
    patch_height, patch_width, channels, width = kernel.shape
    rows, columns = images.shape[1] // patch_height, images.shape[2] // patch_width
    patches = images[:, : rows * patch_height, : columns * patch_width]
    patches = patches.reshape(-1, rows, patch_height, columns, patch_width, channels)
    patches = patches.permute(0, 1, 3, 2, 4, 5).reshape(-1, patch_height * patch_width * channels)
    outputs = dense(patches, kernel.reshape(-1, width), bias)
    return outputs.view(-1, rows, columns, width)
