"""Shared fixtures: tiny configs, seeded randomness, a clean dtype policy.

The loopback Hub starts first: `huggingface_hub` reads `HF_ENDPOINT` when it is
first imported, and keras, transformers and the tests all import it.
"""

from tests.hub_server import start_session_hub

start_session_hub()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_vit import ViTConfig  # noqa: E402

TINY = dict(
    image_size=32,
    patch_size=8,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
)


def tiny_config(**overrides) -> ViTConfig:
    """A 2-layer, 32-wide ViT on 32x32 images with 8x8 patches."""
    return ViTConfig(**{**TINY, **overrides})


def to_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _isolate():
    """Seeds every test and restores the global dtype policy afterwards."""
    keras.utils.set_random_seed(0)
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)
    keras.backend.clear_session()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
