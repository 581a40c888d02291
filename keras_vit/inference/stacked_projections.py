"""The query, key and value projections as one matrix product, for the compiled copy on torch."""

from __future__ import annotations

import torch

from keras_vit.kernels.torch_eager import tensor_of
from keras_vit.model.attention import MultiHeadSelfAttention


class StackedProjections:
    """An attention layer's `project_qkv` as a single `torch.addmm`.

    The layer keeps its own three weights (checkpoint conversion and saving see
    nothing new). This object holds their kernels and biases concatenated, and
    rebuilds that copy whenever one of them changes (torch bumps a tensor's
    version on every in-place write: `assign`, `load_weights`, an optimizer
    step). The copy costs three D x D kernels per block, a quarter of the
    encoder's weights, which is why only `compile_for_inference` sets it up.
    A projection without a bias (DINOv3's key, or all three with
    `qkv_bias=False`) adds zeros in its part of the stacked bias. Where the
    stacked product would not give the layer's own numbers (LoRA,
    quantization, weights stored in another dtype than the compute dtype), or
    while autograd records, the layer's own three products run.

    Args:
        attention: a built `MultiHeadSelfAttention`.

    Example:
        >>> attention.project_qkv = StackedProjections(attention)
        >>> query, key, value = attention.project_qkv(tokens)  # one matmul
    """

    def __init__(self, attention: MultiHeadSelfAttention):
        self.attention = attention
        self.layers = [attention.query, attention.key, attention.value]
        self._source_key = None
        self._kernel = self._bias = None

    def applies(self) -> bool:
        """Whether the stacked product gives the three layers' own results.

        Returns:
            True when no layer has LoRA or quantization, and each stores its
            weights in its compute dtype (under mixed precision Keras casts
            them on every read, so a stored copy would go stale).
        """
        return all(
            not layer.lora_enabled
            and layer.quantization_mode is None
            and layer.dtype_policy.compute_dtype == layer.dtype_policy.variable_dtype
            for layer in self.layers
        )

    def __call__(self, x) -> tuple:
        """`(query, key, value)` of tokens `x`, each `(B, N, heads, d)`.

        Args:
            x: a `(B, N, D)` torch tensor.

        Returns:
            The three projections, as `MultiHeadSelfAttention.project_qkv` gives them.
        """
        attention = self.attention
        if torch.is_grad_enabled() or not self.applies():
            return MultiHeadSelfAttention.project_qkv(attention, x)
        bias, kernel = self._stacked()
        rows = torch.addmm(bias, x.reshape(-1, attention.hidden_size), kernel)
        shape = (-1, x.shape[1], 3, attention.num_heads, attention.head_size)
        return rows.view(shape).unbind(2)

    def _stacked(self) -> tuple:
        kernels = [tensor_of(layer.kernel) for layer in self.layers]
        biases = [tensor_of(layer.bias) for layer in self.layers if layer.bias is not None]
        source_key = write_versions([*kernels, *biases])
        if source_key != self._source_key:
            # A plain tensor without autograd history, also when built inside
            # `predict`'s inference mode.
            with torch.inference_mode(False), torch.no_grad():
                self._kernel = torch.cat(kernels, dim=1)
                self._bias = torch.cat(
                    [
                        tensor_of(layer.bias)
                        if layer.bias is not None
                        else kernels[0].new_zeros(layer.units)
                        for layer in self.layers
                    ]
                )
            self._source_key = source_key
        return self._bias, self._kernel


def write_versions(tensors: list) -> tuple:
    """What identifies the contents of torch tensors: each one's storage and write count.

    torch bumps a tensor's `_version` on every in-place write (Keras' `assign`,
    `load_weights`, an optimizer step), so a copy or compiled graph made from
    the tensors is current exactly while this tuple is unchanged.

    Args:
        tensors: torch tensors.

    Returns:
        A tuple to compare with an earlier one.

    Example:
        >>> key = write_versions([layer.kernel.value])
    """
    return tuple((tensor.data_ptr(), tensor._version) for tensor in tensors)


def stack_projections(model) -> None:
    """Gives every attention layer of a `ViT` its `StackedProjections`.

    Args:
        model: a built `keras_vit.ViT` on torch (the copy `compile_for_inference` makes).

    Example:
        >>> stack_projections(fast)
    """
    for block in model.encoder.blocks:
        block.attention.project_qkv = StackedProjections(block.attention)
