"""`MaskedAutoencoder.from_pretrained` by Hub repo id, against the loopback Hub."""

import numpy as np

from keras_vit import MaskedAutoencoder
from tests.conftest import to_numpy
from tests.conversion.conftest import random_images
from tests.conversion.test_mae import MAE, reference_outputs
from tests.support.family_models import make_family_model, write_hub_repo


def test_a_pretraining_repo_loads_by_its_id(hub, tmp_path):
    reference = make_family_model("ViTMAEForPreTraining", "ViTMAEConfig", 3, **MAE)
    write_hub_repo(reference, tmp_path / "repo")
    hub.plant("facebook/tiny-mae", tmp_path / "repo")
    mae = MaskedAutoencoder.from_pretrained("facebook/tiny-mae", verbose=False)
    assert mae.config.base_model == "facebook/tiny-mae"
    assert sorted(hub.downloads("facebook/tiny-mae")) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    images = random_images(mae)
    noise = np.random.default_rng(0).random((2, 16)).astype("float32")
    ours = mae.reconstruct(images, noise=noise)
    theirs = reference_outputs(reference, images, noise)
    np.testing.assert_allclose(to_numpy(ours["logits"]), theirs.logits.numpy(), atol=1e-4, rtol=0)
