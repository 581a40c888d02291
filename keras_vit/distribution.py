"""Training on many devices with Keras 3's distribution API (`keras.distribution`).

Keras does the work: `DataParallel` replicates the model and splits every
global batch across devices; `ModelParallel` with a `DeviceMesh` and a
`LayoutMap` also splits weights. This module chooses between them for a ViT
(`configure`), gives the Megatron-style layout of a ViT's weights
(`layout_map`), checks mesh and batch sizes against the model, and estimates
each device's memory for training (`training_memory`).

`keras.distribution` runs on the JAX backend. On TensorFlow use
`tf.distribute`, on PyTorch torch's `DistributedDataParallel`; `configure`
says so when called on those backends.
"""

from __future__ import annotations

import functools
import json
import math
import re

import keras

from keras_vit.model import ViT
from keras_vit.model import weight_paths as paths
from keras_vit.model.config import ViTConfig

BATCH_AXIS = "batch"
MODEL_AXIS = "model"
STRATEGIES = ("data", "model", "auto")

# Megatron-style tensor parallelism, as regexes over the stable weight paths.
# MODEL_AXIS marks the axis split across the mesh's model axis. Column-split
# kernels (and their biases) give each device a slice of the heads or MLP
# units; row-split kernels consume those slices, and XLA sums their partial
# outputs. Every other weight (embeddings and the prefix tokens, LayerNorms,
# layer scales, the row-split layers' biases, pre-logits, heads) is replicated.
# The gated MLP's gate is split like mlp_fc1. SwiGLU's fused mlp_fc1 holds its
# gate and values halves side by side on the output axis, so a column split
# gives a device gate columns or value columns, not matching slices of both.
# The numbers stay right: under jit, XLA's SPMD partitioner computes what the
# unsharded program does and moves the halves' activations together for their
# product (tests/support/multi_device_jax.py checks it). That costs one
# exchange of the block's MLP activations; replicating the kernel instead would
# hold and compute the block's largest matmul whole on every device.
_COLUMN_SPLIT = (paths.QUERY, paths.KEY, paths.VALUE, paths.MLP_FC1, paths.MLP_GATE)
_ROW_SPLIT = (paths.ATTENTION_OUTPUT, paths.MLP_FC2)
MEGATRON_LAYOUT: dict[str, tuple[str | None, ...]] = {
    **{paths.every_block_pattern(layer, "kernel"): (None, MODEL_AXIS) for layer in _COLUMN_SPLIT},
    **{paths.every_block_pattern(layer, "bias"): (MODEL_AXIS,) for layer in _COLUMN_SPLIT},
    **{paths.every_block_pattern(layer, "kernel"): (MODEL_AXIS, None) for layer in _ROW_SPLIT},
}

# Bytes per value of the dtypes `training_memory` knows.
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Assumed memory of a device that does not report its own (CPUs do not).
DEFAULT_DEVICE_MEMORY = 16 * 2**30
# "auto" keeps weights, gradients and optimizer state within this share of a
# device's memory; the rest is left for activations.
STATE_MEMORY_SHARE = 0.5

_ALTERNATIVES = {
    "tensorflow": (
        "build and compile the model inside `tf.distribute.MirroredStrategy().scope()` "
        "(one host; MultiWorkerMirroredStrategy or TPUStrategy for more) and call fit as usual"
    ),
    "torch": (
        "launch one process per GPU with torchrun and wrap the model in "
        "`torch.nn.parallel.DistributedDataParallel`, as in Keras' guide "
        "'Multi-GPU distributed training with PyTorch'"
    ),
}


def _require_jax() -> None:
    backend = keras.backend.backend()
    if backend != "jax":
        alternative = _ALTERNATIVES.get(backend, "use that framework's own distribution tools")
        raise RuntimeError(
            f"keras.distribution runs only on the JAX backend, and this process uses "
            f"KERAS_BACKEND={backend!r}. Set KERAS_BACKEND=jax before importing keras, or, "
            f"on {backend}, {alternative}."
        )


def check_model_parallel(config: ViTConfig, model_parallel: int) -> None:
    """Raises a ValueError if `model_parallel` devices cannot split this model's layers.

    The Megatron layout gives each device whole heads and an equal slice of
    the MLP, so the model-parallel size must divide both.

    Args:
        config: the model's `ViTConfig`.
        model_parallel: the size of the mesh's model axis.

    Example:
        >>> check_model_parallel(variant_config("ViTB16"), 4)   # 12 heads, MLP 3072: fine
        >>> check_model_parallel(variant_config("ViTB16"), 8)
        Traceback (most recent call last):
        ValueError: ... 12 attention heads ...
    """
    problems = [
        f"{size} {what}"
        for size, what in (
            (config.num_attention_heads, "attention heads"),
            (config.intermediate_size, "MLP units (intermediate_size)"),
        )
        if size % model_parallel
    ]
    if problems:
        raise ValueError(
            f"A model-parallel size of {model_parallel} cannot split the model's "
            f"{' and '.join(problems)} evenly across devices. Use a size that divides both: "
            f"{model_parallel_sizes(config, config.num_attention_heads)}."
        )


def model_parallel_sizes(config: ViTConfig | None, device_count: int) -> list[int]:
    """The model-axis sizes that split both the devices and the model's layers evenly.

    Args:
        config: the model's `ViTConfig`, or `None` to consider the devices only.
        device_count: the number of devices of the mesh.

    Returns:
        Every size that divides `device_count` and, given `config`, its number
        of heads and MLP width; ascending, starting at 1.

    Example:
        >>> model_parallel_sizes(variant_config("ViTB16"), 8)   # 12 heads
        [1, 2, 4]
    """
    return [
        n
        for n in range(1, device_count + 1)
        if device_count % n == 0
        and (config is None or not (config.num_attention_heads % n or config.intermediate_size % n))
    ]


def layout_map(
    mesh: keras.distribution.DeviceMesh,
    model_dim: str = MODEL_AXIS,
    config: ViTConfig | None = None,
) -> keras.distribution.LayoutMap:
    """The Megatron-style `LayoutMap` of a ViT's weights over `mesh`.

    Q/K/V, the first MLP kernel (SwiGLU's fused one too) and the gated MLP's
    gate are split by columns (their biases too), the attention output and
    second MLP kernel by rows; everything else is replicated. The keys are
    `MEGATRON_LAYOUT`'s regexes over weight paths.

    Args:
        mesh: a `keras.distribution.DeviceMesh` with an axis named `model_dim`.
        model_dim: the mesh axis that weights are split across.
        config: the model's `ViTConfig`; if given, the model axis's size is
            checked against its heads and MLP width (`check_model_parallel`).

    Returns:
        A `keras.distribution.LayoutMap` for `keras.distribution.ModelParallel`.

    Example:
        >>> mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"))
        >>> layouts = layout_map(mesh, config=variant_config("ViTB16"))
        >>> keras.distribution.set_distribution(
        ...     keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch"))
        >>> model = keras_vit.ViTB16()       # built after: its weights are sharded
    """
    if model_dim not in mesh.axis_names:
        raise ValueError(
            f"The mesh has axes {list(mesh.axis_names)}, none named {model_dim!r}; "
            "pass model_dim= the axis to split weights across."
        )
    if config is not None:
        check_model_parallel(config, mesh.shape[list(mesh.axis_names).index(model_dim)])
    layouts = keras.distribution.LayoutMap(mesh)
    for pattern, axes in MEGATRON_LAYOUT.items():
        layouts[pattern] = tuple(model_dim if axis == MODEL_AXIS else axis for axis in axes)
    return layouts


def data_parallel_size() -> int:
    """The number of pieces the current Keras distribution splits each batch into.

    Returns:
        The data-parallel replica count (the mesh's batch axis), or 1 when no
        distribution is set.

    Example:
        >>> configure("data")          # on 8 devices
        >>> data_parallel_size()
        8
    """
    distribution = keras.distribution.distribution()
    return 1 if distribution is None else distribution.num_model_replicas


def check_batch_size(batch_size: int, replicas: int | None = None) -> None:
    """Raises a ValueError if a global batch cannot be split evenly across replicas.

    Args:
        batch_size: the global batch size.
        replicas: the data-parallel replica count; default `data_parallel_size()`.

    Example:
        >>> check_batch_size(30, replicas=8)
        Traceback (most recent call last):
        ValueError: The global batch size 30 is not divisible by the 8 data-parallel ...
    """
    replicas = data_parallel_size() if replicas is None else replicas
    if batch_size % replicas:
        lower = batch_size - batch_size % replicas
        options = f"{lower} or {lower + replicas}" if lower else str(replicas)
        raise ValueError(
            f"The global batch size {batch_size} is not divisible by the {replicas} "
            f"data-parallel replicas it is split across. Use a multiple of {replicas}, "
            f"e.g. {options}."
        )


def _weight_shapes(config: ViTConfig) -> dict[str, tuple[int, ...]]:
    """Path -> shape of every weight of `ViT(config)`, without allocating any."""
    from keras.src.backend.common import global_state

    # Variables created in a stateless scope are shapes only, and wait in a
    # global list to be initialised when the next scope closes. These never
    # should be, so the list is put back as it was.
    pending = list(global_state.get_global_attribute("uninitialized_variables", []))
    try:
        with keras.StatelessScope(initialize_variables=False):
            model = ViT(config)
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)
    return {weight.path: tuple(weight.shape) for weight in model.weights}


@functools.lru_cache(maxsize=32)
def _split_and_whole_values(config_json: str) -> tuple[int, int]:
    """How many values of a ViT's weights `MEGATRON_LAYOUT` splits, and how many it does not."""
    split = whole = 0
    for path, shape in _weight_shapes(ViTConfig.from_dict(json.loads(config_json))).items():
        if any(re.fullmatch(pattern, path) for pattern in MEGATRON_LAYOUT):
            split += math.prod(shape)
        else:
            whole += math.prod(shape)
    return split, whole


def training_memory(
    config: ViTConfig, model_parallel: int = 1, dtype: str = "float32"
) -> dict[str, int]:
    """Bytes per device of a ViT's weights, gradients and AdamW state in training.

    Weights split by `MEGATRON_LAYOUT` take `1 / model_parallel` of their size
    on each device; the others are whole on every device. Gradients and the
    optimizer's two moments follow their weights' layout. Activations, XLA's
    temporary buffers, the input batch and framework overhead are not
    counted: they depend on batch size, resolution and rematerialisation.

    Args:
        config: the model's `ViTConfig`.
        model_parallel: the size of the mesh's model axis (1: data parallel,
            every device holds everything).
        dtype: the dtype of weights, gradients and moments: `"float32"`
            (also `mixed_bfloat16`, which keeps float32 weights), or
            `"bfloat16"` / `"float16"` (a pure half-precision policy).

    Returns:
        Bytes per device: `"weights"`, `"gradients"`, `"optimizer"` (AdamW's
        first and second moments) and their `"total"`.

    Example:
        >>> round(training_memory(variant_config("ViTH14"), model_parallel=8)["total"] / 2**30, 2)
        1.21
    """
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"Unknown dtype {dtype!r}; use one of {sorted(DTYPE_BYTES)}.")
    check_model_parallel(config, model_parallel)
    split, whole = _split_and_whole_values(json.dumps(config.to_dict(), sort_keys=True))
    weights = (split // model_parallel + whole) * DTYPE_BYTES[dtype]
    return {
        "weights": weights,
        "gradients": weights,
        "optimizer": 2 * weights,
        "total": 4 * weights,
    }


def _device_memory() -> int:
    """Bytes of memory of the first device, as JAX reports it, or `DEFAULT_DEVICE_MEMORY`."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("bytes_limit", DEFAULT_DEVICE_MEMORY)


def _auto_model_parallel(config: ViTConfig, device_count: int, memory: int) -> int:
    """The smallest model-parallel size whose training state fits in a device's share."""
    budget = STATE_MEMORY_SHARE * memory
    sizes = model_parallel_sizes(config, device_count)
    for size in sizes:
        if training_memory(config, size)["total"] <= budget:
            return size
    needed = training_memory(config, sizes[-1])["total"]
    raise ValueError(
        f"The model's weights, gradients and AdamW state need {needed / 2**20:,.1f} MiB per "
        f"device even split {sizes[-1]} ways, more than {STATE_MEMORY_SHARE:.0%} of the "
        f"{memory / 2**20:,.1f} MiB per device. Use more devices, a smaller model, or pass "
        "strategy='model' and model_parallel= explicitly."
    )


def configure(
    strategy: str = "data",
    devices: list[str] | None = None,
    model_parallel: int | None = None,
    config: ViTConfig | None = None,
    memory_per_device: int | None = None,
) -> keras.distribution.Distribution:
    """Sets Keras' global distribution for training a ViT on the visible devices.

    Call it before building the model: weights take their layout when created.

    - `"data"`: `keras.distribution.DataParallel` over all `devices`; each
      device holds the whole model and a slice of every batch.
    - `"model"`: `keras.distribution.ModelParallel` over a `(devices /
      model_parallel, model_parallel)` mesh with axes `("batch", "model")` and
      `layout_map`'s Megatron layout. `model_parallel` defaults to the largest
      size that divides the device count, and, given `config`, the heads and
      MLP width.
    - `"auto"`: data parallel, unless the weights, gradients and AdamW state
      (`training_memory`) would take more than half of a device's memory;
      then model parallel with the smallest model axis that brings them under
      half. Device memory is what JAX reports, else `memory_per_device`, else
      16 GiB. Without `config` there is nothing to size, so data parallel.

    Args:
        strategy: `"data"`, `"model"` or `"auto"`.
        devices: device names such as `"gpu:0"`; default
            `keras.distribution.list_devices()` (every process's devices
            after `keras.distribution.initialize()`).
        model_parallel: the size of the model axis, for `"model"`.
        config: the model's `ViTConfig`, to check the model axis against the
            heads and MLP width, and for `"auto"` to size the model.
        memory_per_device: bytes per device, for `"auto"` where devices do
            not report it.

    Returns:
        The `keras.distribution.Distribution` now in effect.

    Example:
        >>> config = keras_vit.variant_config("ViTL16", classes=10)
        >>> keras_vit.distribution.configure("model", model_parallel=4, config=config)
        >>> model = keras_vit.ViT(config)      # Q/K/V and MLP kernels split 4 ways
    """
    _require_jax()
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}; use one of {STRATEGIES}.")
    devices = list(devices or keras.distribution.list_devices())
    if strategy == "auto":
        if model_parallel is not None:
            raise ValueError(
                "strategy='auto' chooses the model axis itself; pass strategy='model' to set "
                f"model_parallel={model_parallel}."
            )
        model_parallel = 1
        if config is not None:
            memory = memory_per_device or _device_memory()
            model_parallel = _auto_model_parallel(config, len(devices), memory)
        strategy = "data" if model_parallel == 1 else "model"
    if strategy == "data":
        if model_parallel not in (None, 1):
            raise ValueError(
                f"strategy='data' replicates the whole model, so model_parallel="
                f"{model_parallel} does not apply; use strategy='model' to split weights."
            )
        distribution = keras.distribution.DataParallel(devices=devices)
    else:
        if model_parallel is None:
            model_parallel = model_parallel_sizes(config, len(devices))[-1]
        if model_parallel < 1 or len(devices) % model_parallel:
            raise ValueError(
                f"model_parallel={model_parallel} does not divide the {len(devices)} devices "
                "into a (batch, model) mesh; use a divisor of the device count."
            )
        mesh = keras.distribution.DeviceMesh(
            (len(devices) // model_parallel, model_parallel), (BATCH_AXIS, MODEL_AXIS), devices
        )
        distribution = keras.distribution.ModelParallel(
            layout_map=layout_map(mesh, MODEL_AXIS, config), batch_dim_name=BATCH_AXIS
        )
    keras.distribution.set_distribution(distribution)
    return distribution
