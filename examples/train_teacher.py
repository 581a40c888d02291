"""Train a small CNN teacher for DeiT distillation, on any Keras backend.

    python examples/train_teacher.py                       # offline: scikit-learn's digits
    python examples/train_teacher.py --label-fraction 0.1  # the same tenth finetune.py takes
    python examples/train_teacher.py --data-dir DIR --image-size 224   # or --dataset NAME
    python examples/finetune.py --teacher runs/teacher/teacher.keras --distillation hard

DeiT's best teacher was a convnet: its inductive bias (locality, translation
equivariance) is what a ViT lacks on little data, and the distillation token
passes it on. This trains such a teacher on the data and labels `finetune.py`
uses (same export, split, `--label-fraction` and `--seed`), on images
preprocessed exactly as the student's, so `finetune.py --teacher` can feed both
the same batches. It writes `teacher.keras` into `--output`, atomically, and
prints `test_accuracy: 0.XXXX` last.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
from finetune import DIGITS_AUGMENTATION, SMALL, add_data_arguments, load_data, positive

from keras_vit.atomic_files import atomic_path
from keras_vit.data import Augmentation, make_loaders
from keras_vit.training import warmup_cosine

TEACHER_FILE = "teacher.keras"


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--label-fraction", type=float, default=1.0)
    parser.add_argument("--image-size", type=positive(int), default=SMALL["image_size"])
    parser.add_argument("--width", type=positive(int), default=16, help="first stage's channels")
    parser.add_argument("--epochs", type=positive(int), default=20)
    parser.add_argument("--batch-size", type=positive(int), default=32)
    parser.add_argument("--lr", type=positive(float), default=2e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("runs/teacher"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing teacher")
    return parser.parse_args(argv)


def small_cnn(image_size: int, classes: int, width: int = 16) -> keras.Model:
    """A three-stage convnet (conv-BN-ReLU pairs, pooling between) that returns logits.

    Args:
        image_size: the side of the square input images (3 channels).
        classes: the number of classes.
        width: the first stage's channels, doubled at each later stage.

    Returns:
        A `keras.Sequential` mapping `(B, size, size, 3)` to `(B, classes)`.

    Example:
        >>> small_cnn(32, 10).output_shape
        (None, 10)
    """
    layers = [keras.Input((image_size, image_size, 3))]
    for stage, channels in enumerate((width, 2 * width, 4 * width)):
        if stage:
            layers.append(keras.layers.MaxPooling2D())
        for _ in range(2):
            layers += [
                keras.layers.Conv2D(channels, 3, padding="same", use_bias=False),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
            ]
    layers += [
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(classes),
    ]
    return keras.Sequential(layers, name="cnn_teacher")


def main(argv: list[str] | None = None) -> float:
    """Trains the teacher and saves it; returns its test (or validation) accuracy."""
    args = parse_arguments(argv)
    teacher_path = args.output / TEACHER_FILE
    if teacher_path.exists() and not args.overwrite:
        raise SystemExit(f"{teacher_path} exists: pass --overwrite to replace it.")
    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    data, digits = load_data(args, args.label_fraction)
    loaders = make_loaders(
        data,
        args.image_size,
        batch_size=args.batch_size,
        augmentation=DIGITS_AUGMENTATION if digits else Augmentation(),
        seed=args.seed,
    )
    model = small_cnn(args.image_size, len(data.label_names), args.width)
    steps = args.epochs * len(loaders["train"])
    model.compile(
        optimizer=keras.optimizers.AdamW(
            warmup_cosine(args.lr, steps, round(0.05 * steps)), weight_decay=args.weight_decay
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        loaders["train"],
        validation_data=loaders["validation"],
        epochs=args.epochs,
        # Never stops early: keeps the best validation epoch's weights, as finetune.py does.
        callbacks=[
            keras.callbacks.EarlyStopping(
                "val_accuracy", patience=args.epochs, restore_best_weights=True
            )
        ],
        verbose=2,
    )
    with atomic_path(teacher_path, overwrite=args.overwrite) as temporary:
        model.save(temporary)
    _, accuracy = model.evaluate(loaders.get("test") or loaders["validation"], verbose=0)
    minutes = (time.perf_counter() - start) / 60
    print(f"saved {teacher_path} ({model.count_params():,} parameters); {minutes:.1f} min")
    print(f"test_accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
