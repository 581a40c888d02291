"""keras_vit.distribution on 8 virtual CPU devices with JAX.

Not collected by the suite (the name does not start with `test_`):
`tests/test_distribution.py` runs this file in its own pytest process with
KERAS_BACKEND=jax and XLA_FLAGS=--xla_force_host_platform_device_count=8,
since JAX fixes its device count when it starts and the suite runs on one.
"""

import importlib.util

import jax
import keras
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from keras_vit import ViT, distribution
from keras_vit.data import load_image_classification, make_loaders
from keras_vit.training import compile_for_finetuning
from tests.conftest import tiny_config, to_numpy
from tests.test_distribution import BLOCK_LAYOUT, CONFIG, MLP_KINDS, ROOT, expected_axes


@pytest.fixture(autouse=True)
def _eight_devices():
    assert keras.backend.backend() == "jax" and jax.device_count() == 8, (
        "run with KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=8"
    )


@pytest.fixture
def batch(rng):
    images = rng.standard_normal((16, 32, 32, 3)).astype("float32")
    return images, rng.integers(0, 3, 16)


class BatchSharding(keras.callbacks.Callback):
    """Records the sharding of each image batch `fit` hands to its training step."""

    def __init__(self):
        super().__init__()
        self.shardings = []

    def on_train_begin(self, logs=None):
        step = self.model.train_function

        def spy(state, iterator):
            def batches():
                for data in iterator:
                    self.shardings.append(data[0].sharding)
                    yield data

            return step(state, batches())

        self.model.train_function = spy


def fit_losses(images, labels, callbacks=(), config=CONFIG, weights=None) -> list[float]:
    """Per-step losses of 4 full-batch steps of the recipe on a model seeded with 0
    (or holding `weights`)."""
    keras.utils.set_random_seed(0)
    model = ViT(config)
    if weights is not None:
        model.set_weights(weights)
    model = compile_for_finetuning(model, total_steps=4, learning_rate=1e-2)
    history = model.fit(
        images,
        labels,
        batch_size=16,
        epochs=4,
        shuffle=False,
        callbacks=list(callbacks),
        verbose=0,
    )
    return history.history["loss"]


def test_data_parallel_fit_matches_one_device_and_splits_each_batch(batch):
    single = fit_losses(*batch)
    configured = distribution.configure("data")
    assert isinstance(configured, keras.distribution.DataParallel)
    assert distribution.data_parallel_size() == 8
    spy = BatchSharding()
    parallel = fit_losses(*batch, callbacks=[spy])
    assert len(set(single)) == 4  # the model learns: the comparison is not of constants
    np.testing.assert_allclose(parallel, single, atol=1e-4)
    assert len(spy.shardings) == 4
    for sharding in spy.shardings:
        assert len(sharding.device_set) == 8
        assert sharding.shard_shape((16, 32, 32, 3)) == (2, 32, 32, 3)


def test_model_parallel_shards_megatron_style_and_matches_unsharded(batch, rng):
    reference = ViT(CONFIG)
    # Random values everywhere (the head starts at zero), so that every weight counts.
    weights = [rng.normal(0.0, 0.3, w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    expected = to_numpy(reference.predict(batch[0], verbose=0))

    configured = distribution.configure("model", model_parallel=4, config=CONFIG)
    assert configured.device_mesh.shape == (2, 4)
    model = ViT(CONFIG)
    model.set_weights(weights)
    specs = {v.path: tuple(v.value.sharding.spec) for v in model.weights}
    assert specs == {v.path: expected_axes(v.path, len(v.shape)) for v in model.weights}
    split = [path for path, spec in specs.items() if "model" in spec]
    assert len(split) == CONFIG.num_hidden_layers * len(BLOCK_LAYOUT)
    # The memory estimate is what a device really holds.
    held = sum(v.value.addressable_shards[0].data.nbytes for v in model.weights)
    assert held == distribution.training_memory(CONFIG, model_parallel=4)["weights"]

    np.testing.assert_allclose(
        to_numpy(model.predict(batch[0], batch_size=8, verbose=0)), expected, atol=1e-5
    )
    compile_for_finetuning(model, total_steps=2)
    history = model.fit(*batch, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    moments = [v for v in model.optimizer.variables if "attention_query_kernel" in v.path]
    assert moments and all(v.value.sharding.spec == PartitionSpec(None, "model") for v in moments)


def test_gated_and_swiglu_mlps_split_4_ways_give_the_unsharded_numbers(batch, rng):
    """SwiGLU's fused kernel split by columns puts its gate and values halves on
    different devices; XLA must bring them together again for their product.
    (One test for both kinds: test_on_8_virtual_jax_devices counts the tests.)"""
    for kind in MLP_KINDS:
        check_mlp_kind_split_4_ways(batch, rng, kind)
        keras.distribution.set_distribution(None)


def check_mlp_kind_split_4_ways(batch, rng, kind):
    config = MLP_KINDS[kind]
    reference = ViT(config)
    weights = [rng.normal(0.0, 0.3, w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    expected = to_numpy(reference.predict(batch[0], verbose=0))
    single = fit_losses(*batch, config=config, weights=weights)

    distribution.configure("model", model_parallel=4, config=config)
    model = ViT(config)
    model.set_weights(weights)
    specs = {v.path: tuple(v.value.sharding.spec) for v in model.weights}
    assert specs == {v.path: expected_axes(v.path, len(v.shape)) for v in model.weights}
    fc1 = "encoder/layer_0/mlp_fc1/kernel"
    assert specs[fc1] == (None, "model")
    assert model.get_layer("encoder").blocks[0].mlp_fc1.kernel.value.addressable_shards[
        0
    ].data.shape == (32, 128 // 4 if kind == "swiglu" else 64 // 4)
    np.testing.assert_allclose(
        to_numpy(model.predict(batch[0], batch_size=8, verbose=0)), expected, atol=1e-5
    )
    parallel = fit_losses(*batch, config=config, weights=weights)
    assert len(set(single)) == 4
    np.testing.assert_allclose(parallel, single, atol=1e-4)


def test_auto_picks_the_smallest_model_axis_that_fits():
    assert isinstance(
        distribution.configure("auto", config=CONFIG), keras.distribution.DataParallel
    )
    # Room for the state split 2 ways but not whole: a (4, 2) mesh.
    room = 2 * distribution.training_memory(CONFIG, model_parallel=2)["total"]
    configured = distribution.configure("auto", config=CONFIG, memory_per_device=room)
    assert configured.device_mesh.shape == (4, 2)
    with pytest.raises(ValueError, match="per device even split 4 ways"):
        distribution.configure("auto", config=CONFIG, memory_per_device=1000)


def test_mesh_shapes_that_do_not_fit_the_model_or_the_devices():
    with pytest.raises(ValueError, match="does not divide the 8 devices"):
        distribution.configure("model", model_parallel=3)
    with pytest.raises(ValueError, match="4 attention heads"):
        distribution.configure("model", model_parallel=8, config=CONFIG)
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"))
    with pytest.raises(ValueError, match="66 MLP units"):
        distribution.layout_map(
            mesh, config=tiny_config(num_attention_heads=4, intermediate_size=66)
        )
    with pytest.raises(ValueError, match="none named 'tensor'"):
        distribution.layout_map(mesh, model_dim="tensor")
    with pytest.raises(ValueError, match="model_parallel=2 does not apply"):
        distribution.configure("data", model_parallel=2)
    with pytest.raises(ValueError, match="'auto' chooses the model axis itself"):
        distribution.configure("auto", model_parallel=2)


def test_loaders_refuse_a_batch_the_replicas_do_not_divide(pets_dir):
    distribution.configure("model", model_parallel=2, config=CONFIG)  # 4 data replicas
    data = load_image_classification(data_dir=pets_dir)
    with pytest.raises(ValueError, match="batch size 6 is not divisible by the 4"):
        make_loaders(data, 32, batch_size=6)
    assert make_loaders(data, 32, batch_size=8)["validation"].replicas == 4


def load_finetune_example():
    spec = importlib.util.spec_from_file_location("finetune", ROOT / "examples" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_finetune_example_trains_data_parallel(pets_dir, tmp_path, capsys):
    finetune = load_finetune_example()
    arguments = [f"--data-dir={pets_dir}", "--epochs=1", f"--output={tmp_path}"]
    with pytest.raises(SystemExit, match="batch size 12 is not divisible by the 8"):
        finetune.main([*arguments, "--distribution=data", "--batch-size=12"])
    accuracy = finetune.main([*arguments, "--distribution=data", "--batch-size=8"])
    output = capsys.readouterr().out
    assert "distribution: <DataParallel" in output
    assert output.strip().splitlines()[-1] == f"test_accuracy: {accuracy:.4f}"
    assert 0.0 <= accuracy <= 1.0
    assert (tmp_path / "model" / "config.json").is_file()
