"""The `keras-vit` command line.

keras-vit convert SRC DST [--image-size N] [--classes N] [--overwrite] [--verify]
keras-vit explain IMAGE [--model REPO_OR_PATH_OR_VARIANT] [--weights NAME] [--output DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from keras_vit import ViT


def max_difference_vs_transformers(model, source: str | Path) -> float:
    """Largest absolute difference between the model's and transformers' `last_hidden_state`.

    Both run on the same random batch at the model's image size. The
    reference is the family's transformers base model (`ViTModel`,
    `DeiTModel`, `Dinov2Model`, `DINOv3ViTModel`, `ViTMAEModel`, ...), loaded
    from `source`. At a size other than the checkpoint's, ViT, DeiT and MSN
    interpolate their position embeddings and DINOv2 and DINOv3 do what they
    do at every size; MAE runs with nothing masked and no patch shuffled.

    Args:
        model: a `keras_vit.ViT` converted from `source`.
        source: the transformers checkpoint directory or Hub repo id.

    Returns:
        The maximum absolute difference (needs torch and transformers).

    Raises:
        ValueError: an MAE model at another size than its checkpoint's:
            transformers interpolates MAE's fixed sin-cos table where keras_vit
            recomputes it, so the two are not meant to agree.

    Example:
        >>> max_difference_vs_transformers(ViT.from_pretrained("facebook/dinov2-small"),
        ...                                "facebook/dinov2-small")
        9.5e-07
    """
    import keras
    import torch
    import transformers

    from keras_vit.conversion.families import family_of

    transformers.logging.set_verbosity_error()
    family = family_of(model.config.model_type)
    mae = family.model_type == "vit_mae"
    options = {"mask_ratio": 0.0} if mae else {}
    reference = getattr(transformers, family.base_class).from_pretrained(str(source), **options)
    reference.eval()
    height, width = model.config.image_pair
    source_size = reference.config.image_size
    source_size = (source_size, source_size) if isinstance(source_size, int) else tuple(source_size)
    resized = (height, width) != source_size
    if mae and resized:
        raise ValueError(
            f"--verify cannot check an MAE model at {height}x{width}: transformers interpolates "
            "MAE's fixed sin-cos position table, keras_vit recomputes it for the new grid, so "
            "they differ by design. Verify at the checkpoint's size "
            f"({source_size[0]}x{source_size[1]}), then convert again with --image-size."
        )
    images = np.random.default_rng(0).standard_normal((2, height, width, model.config.num_channels))
    pixels = torch.from_numpy(images.astype("float32").transpose(0, 3, 1, 2))
    arguments = {}
    if mae:  # sorted noise: every patch kept, in order
        patches = model.config.grid_size[0] * model.config.grid_size[1]
        arguments["noise"] = torch.arange(patches, dtype=torch.float32).expand(len(images), -1)
    elif not family.model_type.startswith(("dinov2", "dinov3")):
        arguments["interpolate_pos_encoding"] = resized
    with torch.no_grad():
        expected = reference(pixels, **arguments).last_hidden_state.numpy()
    ours = keras.ops.convert_to_numpy(model.encode(images.astype("float32"))["last_hidden_state"])
    return float(np.abs(ours - expected).max())


def convert(args: argparse.Namespace) -> str:
    """Runs `keras-vit convert`; returns the one-line summary."""
    from keras_vit import ViT
    from keras_vit.atomic_files import atomic_path, refuse_existing

    destination = Path(args.dst)
    refuse_existing(destination, args.overwrite, protect=[args.src])
    start = time.perf_counter()
    model = ViT.from_pretrained(args.src, image_size=args.image_size, classes=args.classes)
    seconds = time.perf_counter() - start
    # Verified before anything is written, so a failed check leaves no file behind.
    difference = max_difference_vs_transformers(model, args.src) if args.verify else None
    start = time.perf_counter()
    if destination.name.endswith(".weights.h5"):
        with atomic_path(destination, overwrite=args.overwrite) as temporary:
            model.save_weights(str(temporary))
    elif destination.suffix == ".keras":
        with atomic_path(destination, overwrite=args.overwrite) as temporary:
            model.save(str(temporary))
    else:
        model.save_pretrained(destination, overwrite=args.overwrite)
    seconds += time.perf_counter() - start
    summary = (
        f"converted {args.src} -> {destination}: {model.count_params():,} parameters "
        f"in {seconds:.1f} s"
    )
    if difference is not None:
        summary += f", max abs difference vs transformers {difference:.2e}"
    return summary


EXPLAIN_FILES = ("rollout.png", "position_similarity.png", "attention_distance.png")


def load_model(name: str, weights: str | None) -> ViT:
    """The model `keras-vit explain --model NAME [--weights WEIGHTS]` names.

    Args:
        name: a variant such as `ViTB16`, a checkpoint directory, or a Hub repo id.
        weights: for a variant, a weight name, repo id or file (`None`: random).

    Returns:
        The `keras_vit.ViT`.

    Example:
        >>> load_model("ViTB16", "imagenet").config.classes
        1000
    """
    from keras_vit import VARIANTS, ViT, build_variant

    if name in VARIANTS:
        return build_variant(name, weights=weights)
    if weights is not None:
        raise ValueError(f"--weights goes with a variant name ({', '.join(VARIANTS)}), not {name}.")
    if "/" not in name and not Path(name).is_dir():
        raise ValueError(
            f"Unknown model {name!r}. Give a checkpoint directory, a Hub repo id (org/name) "
            f"or a variant name ({', '.join(VARIANTS)})."
        )
    return ViT.from_pretrained(name, verbose=False)


def explain(args: argparse.Namespace) -> str:
    """Runs `keras-vit explain`: writes the three PNGs into `args.output`.

    Args:
        args: the parsed `image`, `model`, `weights` and `output`.

    Returns:
        The text to print: the top-5 predictions (for a model with a head) and
        the files written. A RoPE model (DINOv3) has no position-embedding
        table, so it gets no `position_similarity.png`, and a note says so.

    Example:
        >>> print(explain(argparse.Namespace(image="4.png", model="runs/finetune/model",
        ...                                  weights=None, output="explained")))
    """
    import keras_vit
    from keras_vit import plotting

    image = keras_vit.load_image(args.image)
    model = load_model(args.model, args.weights)
    pixels = keras_vit.ImageProcessor(model.config.image_pair).preprocess(image)
    lines = []
    if args.model in keras_vit.VARIANTS and args.weights is None:
        lines.append(f"note: {args.model} has random weights; pass --weights for trained ones")
    if model.config.classes:
        scores = np.asarray(model.predict(pixels, verbose=0), dtype="float64")
        if model.config.classifier_activation is None:  # logits
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
        lines.append("top-5 predictions:")
        for label, score in model.decode_predictions(scores, top=5)[0]:
            lines.append(f"  {score:.4f}  {label}")
    output = Path(args.output)
    rollout, similarity, distance = (output / name for name in EXPLAIN_FILES)
    plotting.plot_attention_overlay(image, keras_vit.attention_rollout(model, pixels)[0], rollout)
    plotting.plot_attention_distance(keras_vit.mean_attention_distance(model, pixels), distance)
    written = [rollout, distance]
    if model.config.position_embedding == "rope":
        lines.append(
            f"note: no {similarity.name}: the model uses rotary position embedding (RoPE), "
            "which has no position-embedding table to compare"
        )
    else:
        similarities = keras_vit.position_embedding_similarity(model)
        plotting.plot_position_similarity(similarities, similarity)
        written.insert(1, similarity)
    lines.append(f"wrote {', '.join(map(str, written))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `keras-vit` command.

    Args:
        argv: the arguments (default: `sys.argv[1:]`).

    Returns:
        The exit code: 0 on success, 1 on an error (a message, no traceback),
        2 on bad usage.

    Example:
        $ keras-vit convert ./vit-base-patch16-224 vit_b16.keras --verify
        $ keras-vit explain cat.png --model ViTB16 --weights imagenet --output explained/
    """
    parser = argparse.ArgumentParser(prog="keras-vit", description="keras_vit tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert_parser = commands.add_parser(
        "convert",
        help="convert a transformers checkpoint of the ViT family",
        description="Convert a transformers checkpoint of the ViT family (ViT, DeiT, DINOv2, "
        "DINOv3, MAE, MSN; a directory or a Hub repo) to a "
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
        "--verify",
        action="store_true",
        help="before writing, compare with the family's transformers model (needs torch)",
    )
    convert_parser.set_defaults(run=convert)
    explain_parser = commands.add_parser(
        "explain",
        help="draw what a ViT attends to",
        description="Draw the attention rollout of IMAGE, the position-embedding similarity and "
        f"the mean attention distance of a model into {', '.join(EXPLAIN_FILES)}, and print "
        "the top-5 predictions when the model has a head.",
    )
    explain_parser.add_argument("image", help="an image file (PNG, JPEG, ...)")
    explain_parser.add_argument(
        "--model",
        default="google/vit-base-patch16-224",
        help="checkpoint directory, Hub repo id, or variant name such as ViTB16 "
        "(default: %(default)s)",
    )
    explain_parser.add_argument(
        "--weights", help="with a variant: a weight name such as imagenet (default: random)"
    )
    explain_parser.add_argument(
        "--output", default=".", help="directory for the PNGs (default: %(default)s)"
    )
    explain_parser.set_defaults(run=explain)
    args = parser.parse_args(argv)
    try:
        print(args.run(args))
    except (ValueError, OSError, ImportError) as error:
        print(f"keras-vit {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
