"""A Dense layer whose PyTorch path adds the bias inside the matrix product."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_vit")
class Linear(keras.layers.Dense):
    """`keras.layers.Dense` with the bias fused into the matmul on torch.

    On torch, `inputs @ kernel + bias` becomes a single `torch.addmm` (one
    oneDNN call with the bias as its post-op) instead of a matmul followed by a second
    pass over the output for the bias. That is about 5% of a ViT-B/16 forward
    on a CPU (`benchmarks/NOTES.md`). JAX and TensorFlow (where XLA fuses the
    bias itself) and quantized layers take `Dense`'s own path. Weights, their
    names and LoRA behave exactly as in `Dense`.

    Args:
        units: output width.
        **kwargs: `keras.layers.Dense` arguments.

    Example:
        >>> layer = Linear(4)
        >>> layer(np.ones((2, 3), "float32")).shape
        (2, 4)
    """

    def call(self, inputs, training=None):
        if not fuses_bias_on_torch(self):
            return super().call(inputs, training=training)
        rows = inputs.reshape(-1, inputs.shape[-1])
        outputs = matmul_plus_bias(rows, self.kernel, self.bias)
        return self.activation(outputs.view(*inputs.shape[:-1], self.units))


def fuses_bias_on_torch(layer: keras.layers.Layer) -> bool:
    """Whether `layer` (a Dense or a convolution) takes the one-`addmm` torch path.

    That is: the backend is torch, the layer has a bias, and it is not
    quantized (quantized layers keep Keras' own kernels).

    Args:
        layer: a built `keras.layers.Dense` or convolution.

    Returns:
        True when its `call` may use `matmul_plus_bias`.

    Example:
        >>> layer = Linear(4)
        >>> layer.build((None, 3))
        >>> fuses_bias_on_torch(layer)  # under KERAS_BACKEND=torch
        True
    """
    return (
        keras.backend.backend() == "torch"
        and layer.bias is not None
        and not layer.quantization_mode
    )


def matmul_plus_bias(rows, kernel, bias):
    """`rows @ kernel + bias` as one `torch.addmm`; torch backend only.

    Args:
        rows: a (M, K) torch tensor.
        kernel: a (K, N) torch tensor or Keras variable.
        bias: a (N,) torch tensor or Keras variable.

    Returns:
        The (M, N) torch tensor.

    Example:
        >>> matmul_plus_bias(torch.ones(2, 3), layer.kernel, layer.bias)
    """
    import torch

    return torch.addmm(backend_value(bias), rows, backend_value(kernel))


def backend_value(tensor_or_variable):
    """The backend tensor of a Keras variable (autocast where a scope says so), or the
    tensor itself: `ops.convert_to_tensor` without its search for symbolic inputs.

    Args:
        tensor_or_variable: a `keras.Variable` or a backend tensor.

    Returns:
        A backend tensor.

    Example:
        >>> backend_value(layer.kernel).shape
        (3, 4)
    """
    if isinstance(tensor_or_variable, keras.Variable):
        return tensor_or_variable.value
    return tensor_or_variable
