"""Fine-tune a ViT on an image-classification data set, on any Keras backend.

    python examples/finetune.py                           # offline: scikit-learn's digits
    python examples/finetune.py --data-dir DIR            # your folder: DIR/<class>/<image>
    python examples/finetune.py --dataset NAME --model ViTB16 --weights imagenet21k
    python examples/finetune.py --data-dir DIR --model DINOv2S14 --weights lvd142m --linear-probe
    python examples/finetune.py --data-dir DIR --model ./my-checkpoint   # any family's checkpoint
    python examples/finetune.py --weights runs/pretrain_mae/model   # after pretrain_mae.py
    KERAS_BACKEND=jax python examples/finetune.py --distribution data   # every visible device
    python examples/finetune.py --data-dir DIR --model DeiTS16Distilled --teacher cnn.keras

With no --dataset / --data-dir, scikit-learn's handwritten digits (1,797 images,
10 classes) are exported once to an `imagefolder` directory under --output and
loaded with `datasets` like any user folder, and a small ViT is trained from
scratch (nothing can be downloaded offline). The recipe is
`keras_vit.training.compile_for_finetuning`. The last line printed is
`test_accuracy: 0.XXXX`.

`--model` is `small`, a variant of any family (`ViTB16`, `DeiTS16Distilled`,
`DINOv2S14`, `DINOv3B16`, ...; `--weights` names its pretrained weights), or a
checkpoint directory or Hub repo id of any family, loaded with
`ViT.from_pretrained`. With `small`, `--weights DIR` fine-tunes the checkpoint
directory DIR instead, in its own architecture: e.g. the `model/` folder of
`examples/pretrain_mae.py`, whose MAE encoder gets a new head (its decoder is
left out). `--linear-probe` (also `--freeze-backbone`) trains the
class heads only, on frozen features: DINOv2's classic evaluation.

`--teacher PATH` trains a distilled DeiT student (`DeiTS16Distilled`, ..., a
checkpoint with a distillation head, or `small`, which then gets the
distillation token and head) with DeiT's distillation from a fixed teacher: a
`.keras` file or a directory `ViT.from_pretrained` loads, scoring the same
classes. `--distillation hard` (default) or `soft`, with `--distillation-alpha`
and `--temperature`; see `keras_vit.Distiller`. The student is what is saved.

`--distribution data|model|auto` trains on every visible device with
`keras_vit.distribution.configure` (Keras' distribution API, JAX backend):
`--batch-size` is the global batch, split across the data-parallel replicas.

The output folder holds one run's artefacts: `best.weights.h5`, `history.csv`,
`training_curves.png`, `model/` and `run.json`, which lists the runs (id, times,
status, epochs, arguments) and, for each artefact, the run that wrote it and
when. A folder that holds anything but the digits export is refused unless
`--overwrite` (delete those artefacts first, then train anew) or `--resume`
(continue from its `best.weights.h5` for `--epochs` more epochs with a fresh
optimizer and learning-rate schedule, appending to `history.csv`; only better
weights replace the best ones) says what to do with it. Ctrl-C stops training
cleanly: the best weights so far are restored and saved (`model/` too), with
the history and curves; run.json says "interrupted" and the exit status is 130.

DeiT's data-efficient augmentations are options, all off by default:
`--randaugment 2 --randaugment-magnitude 0.9 --random-erasing 0.25 --mixup 0.8
--cutmix 1.0` is DeiT's recipe, with Keras' layers (see
`keras_vit.data.Augmentation`); with MixUp or CutMix the training labels are
mixed target distributions, and the training accuracy is against their top class.

A data folder needs two or more class subfolders, and every image in it is
decoded once before training: unreadable ones are all listed, to be removed or
replaced, and nothing trains.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import keras

import keras_vit
from keras_vit.data import (
    Augmentation,
    ImageClassificationData,
    export_digits_imagefolder,
    load_image_classification,
    make_loaders,
)
from keras_vit.training import (
    RUN_FILE,
    RunRecord,
    compile_for_finetuning,
    finetuning_callbacks,
)

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
# What a run writes into --output, besides run.json, which records who wrote each.
ARTEFACTS = ("best.weights.h5", "history.csv", "training_curves.png", "model")
# A cache of the digits export, kept across runs.
DIGITS_FOLDER = "digits_imagefolder"


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse `type` that parses with `kind` and refuses values <= 0 (and NaN, inf).

    Args:
        kind: `int` or `float`.

    Returns:
        The parser, named like `kind` for argparse's "invalid int value" message.

    Example:
        >>> parser.add_argument("--lr", type=positive(float))
    """

    def parse(text: str) -> float:
        value = kind(text)
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags `load_data` reads: --dataset or --data-dir, and the column overrides.

    Args:
        parser: the script's parser.

    Returns:
        Nothing.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_data_arguments(parser)
        >>> parser.parse_args(["--data-dir", "photos"]).data_dir
        PosixPath('photos')
    """
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", help="a `datasets` name on the Hub")
    source.add_argument("--data-dir", type=Path, help="an imagefolder: DIR/<class>/<image>")
    parser.add_argument("--image-column", help="default: the column of Image features")
    parser.add_argument("--label-column", help="default: the column of ClassLabel features")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument(
        "--label-fraction",
        type=float,
        default=1.0,
        help="train on this stratified share of the training labels (validation included)",
    )
    parser.add_argument(
        "--model",
        default="small",
        help="small, a variant (ViTB16, DINOv2S14, ...), or a checkpoint directory or Hub repo",
    )
    parser.add_argument(
        "--weights",
        default="none",
        help="a variant's weights (imagenet21k, a repo, ...), a checkpoint directory, or none",
    )
    parser.add_argument("--image-size", type=int, help="default: 32 for small, else 224")
    parser.add_argument("--epochs", type=positive(int), default=60)
    parser.add_argument("--batch-size", type=positive(int), default=32)
    parser.add_argument("--lr", type=positive(float), default=1e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth rate")
    parser.add_argument(
        "--position-embedding",
        choices=["learned", "sincos"],
        default="learned",
        help="--model small's positions: learned, or MAE's fixed 2-D sin-cos",
    )
    parser.add_argument("--layer-decay", type=float, help="layer-wise learning-rate decay")
    parser.add_argument(
        "--linear-probe",
        "--freeze-backbone",
        dest="freeze_backbone",
        action="store_true",
        help="train the class heads only, on frozen features",
    )
    parser.add_argument(
        "--teacher", help="distil from this model: a .keras file or a checkpoint directory"
    )
    parser.add_argument(
        "--distillation", choices=keras_vit.distillation.MODES, help="with --teacher; default hard"
    )
    parser.add_argument(
        "--distillation-alpha", type=float, default=0.5, help="the teacher term's weight"
    )
    parser.add_argument(
        "--temperature", type=positive(float), default=1.0, help="soft distillation's tau"
    )
    parser.add_argument("--no-crop", action="store_true", help="no random resized crop")
    parser.add_argument("--no-flip", action="store_true", help="no horizontal flip")
    parser.add_argument(
        "--randaugment", type=int, default=0, metavar="OPS", help="RandAugment ops (DeiT: 2)"
    )
    parser.add_argument(
        "--randaugment-magnitude", type=float, default=0.9, help="RandAugment strength in [0, 1]"
    )
    parser.add_argument("--mixup", type=positive(float), metavar="ALPHA", help="DeiT: 0.8")
    parser.add_argument("--cutmix", type=positive(float), metavar="ALPHA", help="DeiT: 1.0")
    parser.add_argument("--random-erasing", type=float, default=0.0, metavar="P", help="DeiT: 0.25")
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
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite", action="store_true", help="delete the run already in --output first"
    )
    existing.add_argument(
        "--resume", action="store_true", help="continue from --output's best.weights.h5"
    )
    parser.add_argument("--push-to-hub", metavar="REPO", help="push the result to this repo")
    return parser.parse_args(argv)


def check_model(args: argparse.Namespace) -> None:
    """Refuses a --model that is no preset, variant or checkpoint, and --weights that do not fit it.

    `small` takes `--weights none` or a checkpoint directory; a variant, the
    names `keras_vit.list_weights()` gives, a repo or a directory; a checkpoint
    (`--model DIR` or a repo id), no --weights.

    Args:
        args: the parsed arguments.

    Returns:
        Nothing; raises SystemExit with a one-line message instead.

    Example:
        >>> check_model(parse_arguments(["--model", "ViTB99"]))
        SystemExit: Unknown --model ViTB99: give small, a variant (...), or a checkpoint ...
    """
    if args.model == "small" and args.weights != "none" and not Path(args.weights).is_dir():
        raise SystemExit(
            f"--model small has no named weights, and --weights {args.weights} is no directory: "
            "give a checkpoint directory (e.g. pretrain_mae.py's OUTPUT/model), or --weights none."
        )
    if args.model == "small" or args.model in keras_vit.VARIANTS:
        return
    if "/" not in args.model and not Path(args.model).is_dir():
        raise SystemExit(
            f"Unknown --model {args.model}: give small, a variant ({', '.join(keras_vit.VARIANTS)})"
            ", or a checkpoint directory or Hub repo id (org/name)."
        )
    if args.weights != "none":
        raise SystemExit(
            f"--weights {args.weights} goes with a variant name; --model {args.model} is a "
            "checkpoint, which brings its own weights. Drop --weights."
        )


def architecture(args: argparse.Namespace) -> keras_vit.ViTConfig | None:
    """The shape of the model to train, before it is built (heads, widths, depth).

    `None` for a checkpoint: its shape is known once it is read, so `--distribution`
    cannot check the mesh against it beforehand.
    """
    if args.model == "small" and args.weights == "none":
        return keras_vit.ViTConfig(**SMALL, position_embedding=args.position_embedding)
    if args.model in keras_vit.VARIANTS:
        return keras_vit.variant_config(args.model)
    return None


def build_model(args: argparse.Namespace, classes: int, id2label: dict[int, str]):
    """The model to fine-tune: the small preset, a variant (pretrained or not) or a checkpoint
    (`--model DIR`, a repo id, or `--model small --weights DIR`), which keeps its architecture.

    transformers has no MAE classifier, so an MAE encoder (`vit_mae`) is fine-tuned and saved
    as a plain `vit`: the same architecture (fixed sin-cos positions too) and weights.
    """
    head = dict(
        classes=classes,
        id2label=id2label,
        drop_path_rate=args.drop_path,
        classifier_activation=None,
    )
    checkpoint = args.model
    if args.model == "small":
        checkpoint = None if args.weights == "none" else args.weights
    elif args.model in keras_vit.VARIANTS:
        checkpoint = None
    if checkpoint is not None:
        model = keras_vit.ViT.from_pretrained(
            checkpoint, image_size=args.image_size, dtype=args.precision, verbose=False, **head
        )
    elif args.model == "small":
        size = args.image_size or SMALL["image_size"]
        distilled = {}
        if args.teacher:  # a DeiT: [CLS], the distillation token, and a head on each
            distilled = dict(model_type="deit", distillation_token=True, distillation_head=True)
        config = keras_vit.ViTConfig(
            **{**SMALL, "image_size": size},
            position_embedding=args.position_embedding,
            **head,
            **distilled,
        )
        model = keras_vit.ViT(config, dtype=args.precision)
    else:
        weights = None if args.weights == "none" else args.weights
        model = keras_vit.build_variant(
            args.model, weights=weights, image_size=args.image_size, dtype=args.precision, **head
        )
    if model.config.model_type == "vit_mae":
        plain = dataclasses.replace(model.config, model_type="vit")
        pretrained, model = model, keras_vit.ViT(plain, dtype=args.precision)
        model.set_weights(pretrained.get_weights())
    return model


def with_teacher(args: argparse.Namespace, student: keras_vit.ViT) -> keras.Model:
    """What `fit` trains: the student alone, or a `keras_vit.Distiller` around it with --teacher.

    Args:
        args: the parsed arguments.
        student: the model `build_model` built.

    Returns:
        `student`, or a `Distiller` of it and the --teacher; raises SystemExit
        with a one-line message when they do not fit together.

    Example:
        >>> with_teacher(parse_arguments(["--teacher", "cnn.keras"]), student)
        <Distiller ...>
    """
    if not args.teacher:
        return student
    if student.distillation_head is None:
        raise SystemExit(
            f"--teacher needs a student with a distillation token and head; --model {args.model} "
            "has none. Use a distilled DeiT (DeiTTi16Distilled, DeiTS16Distilled, "
            "DeiTB16Distilled), such a checkpoint, or --model small without --weights."
        )
    try:
        teacher = keras_vit.load_teacher(args.teacher)
        return keras_vit.Distiller(
            student,
            teacher,
            mode=args.distillation or "hard",
            alpha=args.distillation_alpha,
            temperature=args.temperature,
            label_smoothing=args.label_smoothing,
        )
    except (OSError, ValueError) as error:
        raise SystemExit(f"--teacher {args.teacher}: {error}") from error


def check_output(args: argparse.Namespace) -> None:
    """Refuses an --output that holds a run unless --overwrite or --resume says what to do.

    Args:
        args: the parsed arguments.

    Returns:
        Nothing; raises SystemExit with a one-line message instead.

    Example:
        >>> check_output(parse_arguments(["--output", "runs/done"]))
        SystemExit: --output runs/done is not empty: pass --overwrite ... or --resume ...
    """
    output = args.output
    if output.exists() and not output.is_dir():
        raise SystemExit(f"--output {output} is a file; give a folder.")
    if args.resume and not (output / "best.weights.h5").is_file():
        raise SystemExit(
            f"--resume: {output} holds no best.weights.h5 to continue from (no epoch finished "
            "there); start without --resume."
        )
    held = output.is_dir() and any(path.name != DIGITS_FOLDER for path in output.iterdir())
    if held and not (args.overwrite or args.resume):
        raise SystemExit(
            f"--output {output} is not empty: pass --overwrite to replace the run in it, or "
            "--resume to continue it."
        )


def start_run(args: argparse.Namespace, artefacts: tuple[str, ...] = ARTEFACTS) -> RunRecord:
    """Deletes the previous run's artefacts if --overwrite, and starts `run.json`.

    Args:
        args: the parsed arguments, after `check_output`.
        artefacts: the names of what the script writes into --output.

    Returns:
        The record of this run, to pass to `fit` as the last callback.

    Example:
        >>> record = start_run(args)
    """
    if args.overwrite:
        for path in (args.output / name for name in (RUN_FILE, *artefacts)):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    return RunRecord(args.output, vars(args), artefacts, resume=getattr(args, "resume", False))


def save_best(model: keras_vit.ViT, output: Path) -> None:
    """Saves `model` (its best weights restored) as `output/model`, once there are best weights."""
    if (output / "best.weights.h5").exists():
        model.save_pretrained(output / "model", overwrite=True)


def main(argv: list[str] | None = None) -> float:
    args = parse_arguments(argv)
    check_model(args)
    check_output(args)
    try:
        return finetune(args)
    except KeyboardInterrupt:
        print(f"Interrupted before training: no run written to {args.output}.", file=sys.stderr)
        raise SystemExit(130) from None


def load_data(
    args: argparse.Namespace, label_fraction: float = 1.0
) -> tuple[ImageClassificationData, bool]:
    """The --dataset or --data-dir data, or else the digits, exported once under --output.

    Args:
        args: the parsed arguments (`dataset`, `data_dir`, `image_column`,
            `label_column`, `seed`, `output`).
        label_fraction: the stratified share of the training labels to keep.

    Returns:
        The data, and whether they are the digits; raises SystemExit with a
        one-line message for data that cannot be used.

    Example:
        >>> data, digits = load_data(parse_arguments([]))
        >>> len(data.train), digits
        (1293, True)
    """
    digits = args.dataset is None and args.data_dir is None
    data_dir = export_digits_imagefolder(args.output / DIGITS_FOLDER) if digits else args.data_dir
    try:
        data = load_image_classification(
            source=args.dataset,
            data_dir=data_dir,
            image_column=args.image_column,
            label_column=args.label_column,
            seed=args.seed,
            label_fraction=label_fraction,
        )
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(str(error)) from error
    return data, digits


def finetune(args: argparse.Namespace) -> float:
    """Loads the data, builds and trains the model, evaluates it; returns the test accuracy."""
    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    if args.model_parallel and not args.distribution:
        raise SystemExit("--model-parallel needs --distribution model.")
    if args.distillation and not args.teacher:
        raise SystemExit(f"--distillation {args.distillation} needs --teacher.")
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
    data, digits = load_data(args, args.label_fraction)
    model = build_model(args, len(data.label_names), data.id2label)
    if args.resume:
        try:
            model.load_weights(str(args.output / "best.weights.h5"))
        except ValueError as error:
            raise SystemExit(
                f"--resume: {args.output / 'best.weights.h5'} does not fit this model ({error}); "
                "resume with the arguments of the run that wrote it (run.json lists them)."
            ) from error
    augmentation = DIGITS_AUGMENTATION if digits else Augmentation()
    augmentation = dataclasses.replace(
        augmentation,
        random_resized_crop=not args.no_crop,
        horizontal_flip=augmentation.horizontal_flip and not args.no_flip,
        randaugment_ops=args.randaugment,
        randaugment_magnitude=args.randaugment_magnitude,
        random_erasing=args.random_erasing,
        mixup=args.mixup,
        cutmix=args.cutmix,
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
    trainee = with_teacher(args, model)
    compile_for_finetuning(
        trainee,
        total_steps=args.epochs * len(loaders["train"]),
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        label_smoothing=0.0 if args.teacher else args.label_smoothing,  # else the Distiller's
        layer_decay=args.layer_decay,
        freeze_backbone=args.freeze_backbone,
    )
    record = start_run(args)
    try:
        accuracy = train_and_evaluate(trainee, model, loaders, args, record)
    except KeyboardInterrupt:
        record.update("interrupted")
        saved = ", ".join(record.written()) or "nothing"
        print(
            f"Interrupted after {record.run['epochs']} epoch(s): saved {saved} in {args.output}; "
            "run.json marks the run interrupted. Continue it with --resume.",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    except BaseException:
        record.update("failed")
        raise
    record.update("completed")
    minutes = (time.perf_counter() - start) / 60
    print(f"best validation epoch restored; saved to {args.output / 'model'}; {minutes:.1f} min")
    print(f"test_accuracy: {accuracy:.4f}")
    return accuracy


def train_and_evaluate(
    trainee: keras.Model,
    model: keras_vit.ViT,
    loaders: dict[str, keras.utils.PyDataset],
    args: argparse.Namespace,
    record: RunRecord,
) -> float:
    """Trains with the recipe's callbacks, saves the best model, evaluates it.

    `trainee` is what `fit` trains: `model` itself, or a `keras_vit.Distiller`
    of it (`with_teacher`); `model`, the student, is what is saved and pushed.

    On Ctrl-C, finishes as `fit` would (best weights restored, curves drawn),
    saves the model, and raises the KeyboardInterrupt on.
    """
    callbacks = [*finetuning_callbacks(args.output, resume=args.resume), record]
    try:
        trainee.fit(
            loaders["train"],
            validation_data=loaders["validation"],
            epochs=args.epochs,
            callbacks=callbacks,
            verbose=2,
        )
    except KeyboardInterrupt:
        for callback in callbacks:
            callback.on_train_end()
        save_best(model, args.output)
        raise
    save_best(model, args.output)
    if args.push_to_hub:
        print(f"pushed: {model.push_to_hub(args.push_to_hub).commit_url}")
    evaluation = loaders.get("test") or loaders["validation"]
    if "test" not in loaders:
        print("The data has no test split: evaluating on the validation split.")
    _, accuracy = trainee.evaluate(evaluation, verbose=0)
    return accuracy


if __name__ == "__main__":
    main()
