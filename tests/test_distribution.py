"""keras_vit.distribution: layouts, size checks, memory and loaders on every backend.

The sharding itself needs several JAX devices, and JAX fixes its device count
when it starts: `test_on_8_virtual_jax_devices` runs `tests/support/multi_device_jax.py`
in a JAX pytest process with 8 virtual CPU devices. It runs JAX whatever this
suite's backend, so it runs in the jax pass only (`in_the_jax_pass_only`).
"""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras.src.backend.common import global_state

from keras_vit import ViT, distribution
from keras_vit.data import ImageBatches, load_image_classification, make_loaders
from keras_vit.model.preprocessing import ImageProcessor
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parent.parent
# JAX child processes keep compiled XLA programs here (git ignores it), so that
# later runs compile nothing again.
JAX_CACHE = ROOT / ".pytest_cache" / "jax_compilation"
# For tests that start JAX child processes whatever the suite's backend: under
# tensorflow and torch they would repeat the jax pass's work exactly.
in_the_jax_pass_only = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="starts JAX processes whatever the backend; runs in the KERAS_BACKEND=jax pass",
)
CONFIG = tiny_config(num_attention_heads=4, classes=3, classifier_activation=None)
# The Megatron layout within a block, written out independently of keras_vit's regexes.
COLUMN, ROW, SPLIT_BIAS = (None, "model"), ("model", None), ("model",)
BLOCK_LAYOUT = {
    "attention/query/kernel": COLUMN,
    "attention/key/kernel": COLUMN,
    "attention/value/kernel": COLUMN,
    "attention/query/bias": SPLIT_BIAS,
    "attention/key/bias": SPLIT_BIAS,
    "attention/value/bias": SPLIT_BIAS,
    "attention/output/kernel": ROW,
    "mlp_fc1/kernel": COLUMN,
    "mlp_fc1/bias": SPLIT_BIAS,
    "mlp_fc2/kernel": ROW,
}


# The gated MLP's gate is split like mlp_fc1. SwiGLU's fused mlp_fc1 (its gate and
# values halves side by side on the output axis) is split by columns too: a device
# then holds gate columns or value columns, and XLA moves the halves together for
# their product (multi_device_jax.py checks the numbers); replicating it instead
# would repeat the block's largest matmul on every device.
GATE_LAYOUT = {"mlp_gate/kernel": COLUMN, "mlp_gate/bias": SPLIT_BIAS}
FAMILY_HEADS = dict(num_attention_heads=4, classes=3, classifier_activation=None)
MLP_KINDS = {
    "swiglu": tiny_config(
        **FAMILY_HEADS,
        mlp_type="swiglu",
        layerscale_value=0.5,
        num_register_tokens=2,
        pooling="token_and_gap",
    ),
    "gated": tiny_config(
        **FAMILY_HEADS,
        mlp_type="gated",
        hidden_act="silu",
        layerscale_value=0.5,
        num_register_tokens=2,
        key_bias=False,
        position_embedding="rope",
    ),
}


def expected_axes(path: str, ndim: int) -> tuple:
    """How a weight should be split: `BLOCK_LAYOUT` inside a block, else replicated."""
    within_block = re.sub(r"^encoder/layer_\d+/", "", path)
    replicated = (None,) * ndim
    if within_block == path:
        return replicated
    return {**BLOCK_LAYOUT, **GATE_LAYOUT}.get(within_block, replicated)


@in_the_jax_pass_only
def test_on_8_virtual_jax_devices():
    checks = ROOT / "tests" / "support" / "multi_device_jax.py"
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": flags,
        "JAX_COMPILATION_CACHE_DIR": str(JAX_CACHE),
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(checks), "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    count = len(re.findall(r"^def test_", checks.read_text(), re.MULTILINE))
    assert re.match(rf"=* ?{count} passed in ", summary), summary  # none skipped


def test_layout_map_splits_attention_and_mlp_and_replicates_the_rest():
    mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "tensor"), devices=["cpu:0"])
    layouts = distribution.layout_map(mesh, model_dim="tensor", config=CONFIG)
    model = ViT(CONFIG)
    for variable in model.weights:
        layout = layouts[variable.path]
        axes = layout.axes if layout is not None else (None,) * len(variable.shape)
        expected = expected_axes(variable.path, len(variable.shape))
        assert axes == tuple("tensor" if a == "model" else a for a in expected), variable.path
    split = [v.path for v in model.weights if layouts[v.path] is not None]
    assert len(split) == CONFIG.num_hidden_layers * len(BLOCK_LAYOUT)


@pytest.mark.parametrize("kind", list(MLP_KINDS))
def test_layout_map_splits_gated_and_swiglu_mlps(kind):
    config = MLP_KINDS[kind]
    mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"), devices=["cpu:0"])
    layouts = distribution.layout_map(mesh, config=config)
    model = ViT(config)
    split = {}
    for variable in model.weights:
        layout = layouts[variable.path]
        axes = layout.axes if layout is not None else (None,) * len(variable.shape)
        assert axes == expected_axes(variable.path, len(variable.shape)), variable.path
        if layout is not None:
            split[variable.path.removeprefix("encoder/layer_0/")] = tuple(variable.shape)
    if kind == "swiglu":  # the fused kernel: gate and values, 2 x 64 columns
        assert split["mlp_fc1/kernel"] == (32, 128) and "mlp_gate/kernel" not in split
    else:
        assert split["mlp_gate/kernel"] == split["mlp_fc1/kernel"] == (32, 64)
        assert "attention/key/bias" not in split  # DINOv3 has none
    # The memory estimate follows the layout: split weights take half on each of 2 devices.
    halves = sum(
        math.prod(v.shape) / (2 if "model" in expected_axes(v.path, len(v.shape)) else 1)
        for v in model.weights
    )
    assert distribution.training_memory(config, model_parallel=2)["weights"] == 4 * halves


def test_model_parallel_size_must_divide_heads_and_mlp_width():
    distribution.check_model_parallel(CONFIG, 4)
    with pytest.raises(ValueError, match=r"4 attention heads .* \[1, 2, 4\]"):
        distribution.check_model_parallel(CONFIG, 3)
    with pytest.raises(ValueError, match="66 MLP units"):
        distribution.check_model_parallel(
            tiny_config(num_attention_heads=4, intermediate_size=66), 4
        )
    assert distribution.model_parallel_sizes(CONFIG, 8) == [1, 2, 4]
    assert distribution.model_parallel_sizes(None, 6) == [1, 2, 3, 6]


def test_global_batch_must_divide_across_replicas():
    distribution.check_batch_size(32, replicas=8)
    with pytest.raises(ValueError, match="batch size 30 is not divisible by the 8 .* 24 or 32"):
        distribution.check_batch_size(30, replicas=8)
    with pytest.raises(ValueError, match="e.g. 8"):
        distribution.check_batch_size(4, replicas=8)
    assert distribution.data_parallel_size() == 1  # no distribution set


def test_loaders_give_every_replica_an_equal_slice(pets_dir):
    data = load_image_classification(data_dir=pets_dir)
    processor = ImageProcessor(32)
    with pytest.raises(ValueError, match="batch size 12 is not divisible by the 8"):
        ImageBatches(data.train, "image", "label", processor, batch_size=12, replicas=8)
    # Training drops the last partial batch: 32 images give 2 batches of 12.
    train = make_loaders(data, 32, batch_size=12, augmentation=None, replicas=4)["train"]
    assert len(data.train) == 32 and len(train) == 2
    assert all(len(train[index][0]) == 12 for index in range(len(train)))
    # Evaluation pads its last batch to a multiple of the replicas, with weight 0.
    validation = ImageBatches(data.validation, "image", "label", processor, 8, replicas=8)
    assert len(data.validation) == 4 and len(validation) == 1
    images, labels, weights = validation[0]
    plain_images, plain_labels = ImageBatches(data.validation, "image", "label", processor, 8)[0]
    assert images.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(weights, [1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(images[:4], plain_images)
    np.testing.assert_array_equal(labels[:4], plain_labels)


def test_training_memory_counts_weights_gradients_and_two_moments():
    memory = distribution.training_memory(CONFIG)
    whole = ViT(CONFIG).count_params() * 4
    assert memory == {
        "weights": whole,
        "gradients": whole,
        "optimizer": 2 * whole,
        "total": 4 * whole,
    }
    assert distribution.training_memory(CONFIG, dtype="bfloat16")["total"] == 2 * whole
    split = distribution.training_memory(CONFIG, model_parallel=2)["weights"]
    assert whole / 2 < split < whole  # only the block kernels are split
    with pytest.raises(ValueError, match="3 attention heads"):
        distribution.training_memory(tiny_config(num_attention_heads=3, hidden_size=33), 2)


def test_training_memory_builds_nothing():
    pending = list(global_state.get_global_attribute("uninitialized_variables", []))
    distribution.training_memory(CONFIG)
    # Nothing left behind to be initialised (allocated) when a stateless scope next closes.
    assert global_state.get_global_attribute("uninitialized_variables", []) == pending


def test_configure_outside_jax_names_the_backend_and_the_alternative(monkeypatch):
    backend = keras.backend.backend()
    if backend == "jax":  # only the name matters; the suite's torch and TF runs check for real
        backend = "torch"
        monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    alternative = {"tensorflow": "tf.distribute", "torch": "DistributedDataParallel"}[backend]
    with pytest.raises(RuntimeError, match="runs only on the JAX backend") as error:
        distribution.configure()
    assert f"KERAS_BACKEND='{backend}'" in str(error.value)
    assert alternative in str(error.value)
