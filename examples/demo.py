"""Build ViT-B/16, classify a random batch, and print what came out.

    KERAS_BACKEND=jax python examples/demo.py [--variant ViTB16] [--batch-size 2]

This is the main job until the fine-tuning recipe lands. Weights are random
(`keras_vit.ViTB16(weights="imagenet21k")` needs huggingface.co, which this
project's CI cannot reach), so the predictions are meaningless; the shapes,
parameter count and timing are not.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

import keras_vit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="ViTB16", choices=list(keras_vit.VARIANTS))
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args()

    model = keras_vit.build_variant(args.variant, include_preprocessing=True)
    config = model.config
    print(f"backend: {keras.backend.backend()}")
    print(
        f"{args.variant}: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads, patch {config.patch_size}, "
        f"{model.count_params():,} parameters (closed form: {config.count_params():,})"
    )
    # Raw 0..255 images of an arbitrary size: the baked-in ImageProcessor resizes them.
    images = np.random.default_rng(0).integers(0, 256, (args.batch_size, 256, 320, 3))
    start = time.perf_counter()
    probabilities = model.predict(images.astype("float32"), verbose=0)
    seconds = time.perf_counter() - start
    outputs = model.encode(model.preprocessor.preprocess(images), output_attentions=True)
    print(f"input images:      {images.shape}")
    print(
        f"class scores:      {probabilities.shape}, max {probabilities.max():.4f} "
        "(uniform: the head is zero-initialised, as for fine-tuning)"
    )
    print(f"last_hidden_state: {tuple(outputs['last_hidden_state'].shape)}")
    print(
        f"attentions:        {len(outputs['attentions'])} x {tuple(outputs['attentions'][0].shape)}"
    )
    print(f"predict time:      {seconds:.2f} s (includes compilation)")


if __name__ == "__main__":
    main()
