"""Shared fixtures: tiny configs, seeded randomness, a clean dtype policy.

The loopback Hub starts first: `huggingface_hub` reads `HF_ENDPOINT` when it is
first imported, and keras, transformers and the tests all import it.
"""

from tests.support.hub_server import start_session_hub

start_session_hub()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

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


def randomize_head(model):
    """Gives `model`'s zero-initialised class head random weights, and returns the model.

    A fresh `ViT` scores every image 0, so a comparison of class scores
    through an untouched head cannot fail. The weights are scaled by
    1/sqrt(fan-in), so that scores stay of order 1, as trained ones are.
    """
    rng = np.random.default_rng(1)
    for weight in model.head.weights:
        values = rng.standard_normal(weight.shape) / np.sqrt(weight.shape[0])
        weight.assign(values.astype("float32"))
    return model


def to_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def gradients(loss_of_weights, weights):
    """The gradients of a scalar loss with respect to a list of backend variables, per backend."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def loss(values):
            with keras.StatelessScope(state_mapping=list(zip(weights, values, strict=True))):
                return loss_of_weights()

        return [to_numpy(g) for g in jax.grad(loss)([w.value for w in weights])]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of_weights()
        return [to_numpy(g) for g in tape.gradient(loss, [w.value for w in weights])]
    for weight in weights:
        weight.value.grad = None
    loss_of_weights().backward()
    return [to_numpy(w.value.grad) for w in weights]


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


PETS = ("cat", "dog", "fox")
PET_SIZES = ((20, 24), (30, 30), (24, 20), (36, 28))
PET_FORMATS = (("RGB", "png"), ("L", "png"), ("RGBA", "png"), ("RGB", "jpg"))
IMAGES_PER_PET = 12


@pytest.fixture(scope="session")
def pets_dir(tmp_path_factory):
    """An image folder of 3 classes x 12 random images of varying sizes, modes and formats."""
    root = tmp_path_factory.mktemp("pets")
    rng = np.random.default_rng(0)
    for pet in PETS:
        (root / pet).mkdir()
        for index in range(IMAGES_PER_PET):
            shape = (*PET_SIZES[index % len(PET_SIZES)], 3)
            mode, extension = PET_FORMATS[index % len(PET_FORMATS)]
            image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).convert(mode)
            image.save(root / pet / f"{index}.{extension}")
    return root


@pytest.fixture
def user_files(tmp_path):
    """A folder of unrelated files; returns a function that asserts they are intact."""
    files = {tmp_path / "thesis.tex": "chapter 1", tmp_path / "data" / "labels.csv": "a,b"}
    for path, text in files.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)

    def intact():
        for path, text in files.items():
            assert path.read_text() == text

    return intact
