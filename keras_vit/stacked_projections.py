"""The query, key and value projections as one matrix product, for inference on torch."""

from __future__ import annotations

import keras

from keras_vit.linear import backend_value


class StackedProjections:
    """Computes several `Linear` layers of one input as a single `torch.addmm`.

    The layers keep their own weights (checkpoint conversion and saving see
    nothing new); this object holds their kernels and biases concatenated,
    and rebuilds that copy whenever one of the weights changes (torch bumps a
    tensor's version on every in-place write: `assign`, `load_weights`, an
    optimizer step). One (D, 3D) product instead of three (D, D) ones saves
    two bias copies, two kernel launches and their Python: 4% of a bfloat16
    ViT-B/16 forward at batch 8 on an AMX CPU, within noise on an AVX-512 one
    without AMX (`benchmarks/NOTES.md`). The copy
    costs memory: three D x D kernels per block, a quarter of the encoder's
    weights, which is why only `compile_for_inference` turns it on.

    Args:
        layers: the `Linear` layers, built, with biases, all of the same input width.

    Example:
        >>> stacked = StackedProjections([attention.query, attention.key, attention.value])
        >>> if stacked.applies():
        ...     qkv = stacked(rows)  # (M, 3 * D): the three outputs side by side
    """

    def __init__(self, layers: list[keras.layers.Dense]):
        self.layers = list(layers)
        self._source_key = None
        self._kernel = self._bias = None

    def applies(self) -> bool:
        """Whether the stacked product gives the layers' own results.

        That needs torch, biases on every layer, no LoRA, no quantization, and
        weights stored in the compute dtype (under mixed precision Keras casts
        them on every read, so a stored copy would go stale at once).

        Returns:
            True when `__call__` may replace the layers' calls.
        """
        if keras.backend.backend() != "torch":
            return False
        return all(
            layer.bias is not None
            and not layer.lora_enabled
            and layer.quantization_mode is None
            and layer.dtype_policy.compute_dtype == layer.dtype_policy.variable_dtype
            for layer in self.layers
        )

    def __call__(self, rows):
        """`rows @ [k_1 | k_2 | ...] + [b_1 | b_2 | ...]`.

        Args:
            rows: a (M, D) torch tensor.

        Returns:
            The (M, sum of the layers' units) torch tensor.
        """
        import torch

        kernels = [backend_value(layer.kernel) for layer in self.layers]
        biases = [backend_value(layer.bias) for layer in self.layers]
        source_key = write_versions([*kernels, *biases])
        if source_key != self._source_key:
            # A plain tensor without autograd history, also when built inside `predict`'s
            # inference mode, so that a later call with gradients on can still use it.
            with torch.inference_mode(False), torch.no_grad():
                self._kernel = torch.cat(kernels, dim=1)
                self._bias = torch.cat(biases)
            self._source_key = source_key
        return torch.addmm(self._bias, rows, self._kernel)


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
