"""Writes the frozen-contract fixtures: run once, from the commit before the redesign.

`vit_frozen.keras` and `vit_frozen.weights.h5` hold one small model with a
random head, pre-logits and labels. `outputs_<backend>.npz` holds what that
commit's code computed for `images` on each backend: class scores, and
`encode`'s last hidden state and hidden states. `test_frozen_contract.py`
loads the files with today's code and compares.

    for b in jax tensorflow torch; do
        KERAS_BACKEND=$b python tests/model/frozen/make_frozen.py
    done
"""

import os
import sys
from pathlib import Path

import keras
import numpy as np

import keras_vit

HERE = Path(__file__).parent
CONFIG = dict(
    image_size=32,
    patch_size=8,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    layer_norm_eps=1e-12,
    pre_logits=True,
    classes=5,
    id2label={i: f"class_{i}" for i in range(5)},
)


def main() -> None:
    keras.utils.set_random_seed(0)
    if keras.backend.backend() == "jax" or "--write-model" in sys.argv:
        model = keras_vit.ViT(keras_vit.ViTConfig(**CONFIG), name="frozen_vit")
        rng = np.random.default_rng(1)
        for weight in model.weights:  # every weight random, the head included
            weight.assign((rng.standard_normal(weight.shape) * 0.2).astype("float32"))
        model.save(HERE / "vit_frozen.keras")
        model.save_weights(HERE / "vit_frozen.weights.h5")
        images = np.random.default_rng(2).standard_normal((3, 32, 32, 3)).astype("float32")
        np.save(HERE / "images.npy", images)
    images = np.load(HERE / "images.npy")
    model = keras.saving.load_model(HERE / "vit_frozen.keras")
    encoded = model.encode(images, output_hidden_states=True)
    np.savez(
        HERE / f"outputs_{keras.backend.backend()}.npz",
        scores=keras.ops.convert_to_numpy(model(images)),
        last_hidden_state=keras.ops.convert_to_numpy(encoded["last_hidden_state"]),
        pooler_output=keras.ops.convert_to_numpy(encoded["pooler_output"]),
        **{
            f"hidden_state_{i}": keras.ops.convert_to_numpy(h)
            for i, h in enumerate(encoded["hidden_states"])
        },
    )
    print(os.environ.get("KERAS_BACKEND"), "written")


if __name__ == "__main__":
    main()
