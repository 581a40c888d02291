"""The `keras-vit` command line.

keras-vit convert SRC DST [--image-size N] [--classes N] [--overwrite] [--verify]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def max_difference_vs_transformers(model, source: str | Path) -> float:
    """Largest absolute difference between the model's and transformers' `last_hidden_state`.

    Both run on the same random batch at the model's image size; transformers
    interpolates its position embeddings when that size is not the checkpoint's.

    Args:
        model: a `keras_vit.ViT` converted from `source`.
        source: the transformers checkpoint directory or Hub repo id.

    Returns:
        The maximum absolute difference (needs torch and transformers).
    """
    import keras
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    reference = transformers.ViTModel.from_pretrained(str(source), add_pooling_layer=False).eval()
    height, width = model.config.image_pair
    images = np.random.default_rng(0).standard_normal((2, height, width, model.config.num_channels))
    images = images.astype("float32")
    source_size = reference.config.image_size
    source_size = (source_size, source_size) if isinstance(source_size, int) else tuple(source_size)
    with torch.no_grad():
        expected = reference(
            torch.from_numpy(images.transpose(0, 3, 1, 2)),
            interpolate_pos_encoding=(height, width) != source_size,
        ).last_hidden_state.numpy()
    ours = keras.ops.convert_to_numpy(model.encode(images)["last_hidden_state"])
    return float(np.abs(ours - expected).max())


def convert(args: argparse.Namespace) -> str:
    """Runs `keras-vit convert`; returns the one-line summary."""
    from keras_vit import ViT
    from keras_vit.conversion.atomic import atomic_path, refuse_existing

    destination = Path(args.dst)
    refuse_existing(destination, args.overwrite)
    start = time.perf_counter()
    model = ViT.from_pretrained(args.src, image_size=args.image_size, classes=args.classes)
    if destination.name.endswith(".weights.h5"):
        with atomic_path(destination, overwrite=args.overwrite) as temporary:
            model.save_weights(str(temporary))
    elif destination.suffix == ".keras":
        with atomic_path(destination, overwrite=args.overwrite) as temporary:
            model.save(str(temporary))
    else:
        model.save_pretrained(destination, overwrite=args.overwrite)
    summary = (
        f"converted {args.src} -> {destination}: {model.count_params():,} parameters "
        f"in {time.perf_counter() - start:.1f} s"
    )
    if args.verify:
        difference = max_difference_vs_transformers(model, args.src)
        summary += f", max abs difference vs transformers {difference:.2e}"
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `keras-vit` command.

    Args:
        argv: the arguments (default: `sys.argv[1:]`).

    Returns:
        The exit code: 0 on success, 1 on a conversion error, 2 on bad usage.

    Example:
        $ keras-vit convert ./vit-base-patch16-224 vit_b16.keras --verify
    """
    parser = argparse.ArgumentParser(prog="keras-vit", description="keras_vit tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert_parser = commands.add_parser(
        "convert",
        help="convert a transformers ViT checkpoint",
        description="Convert a transformers ViT checkpoint (a directory or a Hub repo) to a "
        ".keras file, a .weights.h5 file, or a directory that transformers and keras_vit "
        "both load.",
    )
    convert_parser.add_argument(
        "src", help="checkpoint directory, Hub repo id (org/name) or hf:// URL"
    )
    convert_parser.add_argument("dst", help="X.keras, X.weights.h5, or a directory")
    convert_parser.add_argument("--image-size", type=int, help="resample to this resolution")
    convert_parser.add_argument("--classes", type=int, help="attach a new head of this size")
    convert_parser.add_argument("--overwrite", action="store_true", help="replace DST")
    convert_parser.add_argument(
        "--verify", action="store_true", help="compare with transformers (needs torch)"
    )
    args = parser.parse_args(argv)
    try:
        print(convert(args))
    except (ValueError, OSError, ImportError) as error:
        print(f"keras-vit {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
