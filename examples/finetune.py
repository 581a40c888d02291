"""Fine-tune a ViT on an image-classification data set, on any Keras backend.

    python examples/finetune.py                           # offline: scikit-learn's digits
    python examples/finetune.py --data-dir DIR            # your folder: DIR/<class>/<image>
    python examples/finetune.py --dataset NAME --model ViTB16 --weights imagenet21k
    KERAS_BACKEND=jax python examples/finetune.py --distribution data   # every visible device

With no --dataset / --data-dir, scikit-learn's handwritten digits (1,797 images,
10 classes) are exported once to an `imagefolder` directory under --output and
loaded with `datasets` like any user folder, and a small ViT is trained from
scratch (nothing can be downloaded offline). The recipe is
`keras_vit.training.compile_for_finetuning`. The last line printed is
`test_accuracy: 0.XXXX`.

`--distribution data|model|auto` trains on every visible device with
`keras_vit.distribution.configure` (Keras' distribution API, JAX backend):
`--batch-size` is the global batch, split across the data-parallel replicas.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import keras

import keras_vit
from keras_vit.data import (
    Augmentation,
    export_digits_imagefolder,
    load_image_classification,
    make_loaders,
)
from keras_vit.training import compile_for_finetuning, finetuning_callbacks

# A ViT sized for the 8x8 digits, enlarged to 32x32: a patch per 2x2 original pixels.
SMALL = dict(
    image_size=32,
    patch_size=8,
    hidden_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=256,
)
# Digits are not mirror-symmetric, and a tight crop can cut one in half.
DIGITS_AUGMENTATION = Augmentation(horizontal_flip=False, scale=(0.85, 1.0), ratio=(0.9, 1.1))


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", help="a `datasets` name on the Hub")
    source.add_argument("--data-dir", type=Path, help="an imagefolder: DIR/<class>/<image>")
    parser.add_argument("--image-column", help="default: the column of Image features")
    parser.add_argument("--label-column", help="default: the column of ClassLabel features")
    parser.add_argument(
        "--model", default="small", choices=["small", *keras_vit.VARIANTS], help="architecture"
    )
    parser.add_argument("--weights", default="none", help="imagenet21k, imagenet, a repo, none")
    parser.add_argument("--image-size", type=int, help="default: 32 for small, else 224")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth rate")
    parser.add_argument("--layer-decay", type=float, help="layer-wise learning-rate decay")
    parser.add_argument("--freeze-backbone", action="store_true", help="train the head only")
    parser.add_argument("--no-crop", action="store_true", help="no random resized crop")
    parser.add_argument("--no-flip", action="store_true", help="no horizontal flip")
    parser.add_argument("--precision", choices=["float32", "mixed_bfloat16"], default="float32")
    parser.add_argument("--workers", type=int, default=1, help="loader threads")
    parser.add_argument(
        "--distribution",
        choices=keras_vit.distribution.STRATEGIES,
        help="train on every visible device (JAX backend); default: one device",
    )
    parser.add_argument("--model-parallel", type=int, help="model axis size for --distribution")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("runs/finetune"))
    parser.add_argument("--push-to-hub", metavar="REPO", help="push the result to this repo")
    return parser.parse_args(argv)


def architecture(args: argparse.Namespace) -> keras_vit.ViTConfig:
    """The shape of the model to train, before it is built (heads, widths, depth)."""
    if args.model == "small":
        return keras_vit.ViTConfig(**SMALL)
    return keras_vit.variant_config(args.model)


def build_model(args: argparse.Namespace, classes: int, id2label: dict[int, str]):
    """The model to fine-tune: a builder variant (pretrained or not) or the small preset."""
    head = dict(
        classes=classes,
        id2label=id2label,
        drop_path_rate=args.drop_path,
        classifier_activation=None,
    )
    if args.model == "small":
        if args.weights != "none":
            raise SystemExit("--model small has no pretrained weights; use --weights none.")
        size = args.image_size or SMALL["image_size"]
        config = keras_vit.ViTConfig(**{**SMALL, "image_size": size}, **head)
        return keras_vit.ViT(config, dtype=args.precision)
    weights = None if args.weights == "none" else args.weights
    return keras_vit.build_variant(
        args.model, weights=weights, image_size=args.image_size, dtype=args.precision, **head
    )


def main(argv: list[str] | None = None) -> float:
    args = parse_arguments(argv)
    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    if args.model_parallel and not args.distribution:
        raise SystemExit("--model-parallel needs --distribution model.")
    if args.distribution:
        # Before the model is built: weights take their device layout when created.
        try:
            distribution = keras_vit.distribution.configure(
                args.distribution, model_parallel=args.model_parallel, config=architecture(args)
            )
            keras_vit.distribution.check_batch_size(args.batch_size)
        except (RuntimeError, ValueError) as error:
            raise SystemExit(f"--distribution {args.distribution}: {error}") from error
        print(f"distribution: {distribution}")
    digits = args.dataset is None and args.data_dir is None
    data_dir = export_digits_imagefolder(args.output / "digits_imagefolder") if digits else None
    data = load_image_classification(
        source=args.dataset,
        data_dir=args.data_dir or data_dir,
        image_column=args.image_column,
        label_column=args.label_column,
        seed=args.seed,
    )
    model = build_model(args, len(data.label_names), data.id2label)
    augmentation = DIGITS_AUGMENTATION if digits else Augmentation()
    augmentation = dataclasses.replace(
        augmentation,
        random_resized_crop=not args.no_crop,
        horizontal_flip=augmentation.horizontal_flip and not args.no_flip,
    )
    loaders = make_loaders(
        data,
        model.config.image_size,
        batch_size=args.batch_size,
        augmentation=augmentation,
        workers=args.workers,
        seed=args.seed,
    )
    print(
        f"backend {keras.backend.backend()}: {len(data.train)} train / {len(data.validation)} "
        f"validation / {len(data.test) if data.test is not None else 0} test images, "
        f"{len(data.label_names)} classes; {model.count_params():,} parameters"
    )
    compile_for_finetuning(
        model,
        total_steps=args.epochs * len(loaders["train"]),
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        layer_decay=args.layer_decay,
        freeze_backbone=args.freeze_backbone,
    )
    model.fit(
        loaders["train"],
        validation_data=loaders["validation"],
        epochs=args.epochs,
        callbacks=finetuning_callbacks(args.output),
        verbose=2,
    )
    model.save_pretrained(args.output / "model", overwrite=True)
    if args.push_to_hub:
        print(f"pushed: {model.push_to_hub(args.push_to_hub).commit_url}")
    evaluation = loaders.get("test") or loaders["validation"]
    if "test" not in loaders:
        print("The data has no test split: evaluating on the validation split.")
    _, accuracy = model.evaluate(evaluation, verbose=0)
    minutes = (time.perf_counter() - start) / 60
    print(f"best validation epoch restored; saved to {args.output / 'model'}; {minutes:.1f} min")
    print(f"test_accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
