"""Pretrain a ViT as a masked autoencoder (MAE), on unlabelled images, on any Keras backend.

    python examples/pretrain_mae.py                         # offline: scikit-learn's digits
    python examples/pretrain_mae.py --data-dir DIR          # your folder: DIR/<class>/<image>
    python examples/pretrain_mae.py --patch-size 4 --mask-ratio 0.6 --epochs 50
    python examples/finetune.py --weights runs/pretrain_mae/model   # then fine-tune the encoder

The data are found and loaded as `examples/finetune.py` does (with no --dataset
/ --data-dir, scikit-learn's digits are exported once under --output), and the
training split's images are used without their labels. The encoder is
finetune.py's small ViT with MAE's fixed sin-cos positions (`--patch-size`, 8
by default, or 4 for a finer grid); the decoder is narrower still. Each image
loses a random `--mask-ratio` of its patches, and the loss is the mean squared
error of the predicted pixels of those patches, normalised per patch unless
`--no-norm-pix-loss`. The recipe is MAE's: AdamW (betas 0.9, 0.95) with weight
decay on kernels only, linear warmup over 5% of the steps, then cosine decay.

The output folder holds `reconstructions/epoch_NNN.png` (the same validation
images under the same masks, before training (000) and after each epoch: the
original, what the encoder saw, and the reconstruction), `history.csv`,
`training_curves.png`, `model/` (a transformers `ViTMAEForPreTraining`
checkpoint, encoder and decoder, that `finetune.py --weights` fine-tunes) and
`run.json` (see `keras_vit.training.RunRecord`). A folder that holds anything
but the digits export is refused unless `--overwrite` says to delete that run
first. Ctrl-C stops training: the model so far is saved, with the history and
curves, run.json says "interrupted" and the exit status is 130. The last line
printed is `final_loss: X.XXXX`, the last epoch's training loss.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import keras
import numpy as np

import keras_vit
from keras_vit.data import (
    Augmentation,
    make_loaders,
)
from keras_vit.model.masking import kept_patches
from keras_vit.plotting import plot_reconstructions
from keras_vit.training import TrainingLog, no_weight_decay, warmup_cosine


def _finetune_script():
    """examples/finetune.py as a module: its small ViT, digits folder and flag parsers."""
    spec = importlib.util.spec_from_file_location(
        "finetune", Path(__file__).with_name("finetune.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


finetune = _finetune_script()

# What a run writes into --output, besides run.json, which records who wrote each.
ARTEFACTS = ("reconstructions", "history.csv", "training_curves.png", "model")
# Validation images shown in each reconstructions/epoch_NNN.png.
SHOWN_IMAGES = 8


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    positive_int, positive_float = finetune.positive(int), finetune.positive(float)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    finetune.add_data_arguments(parser)
    parser.add_argument("--image-size", type=positive_int, default=finetune.SMALL["image_size"])
    parser.add_argument("--patch-size", type=positive_int, default=finetune.SMALL["patch_size"])
    parser.add_argument("--mask-ratio", type=float, default=0.75, help="share of patches hidden")
    parser.add_argument(
        "--norm-pix-loss",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="predict each patch's pixels normalised by its own mean and variance",
    )
    parser.add_argument("--decoder-hidden-size", type=positive_int, default=64)
    parser.add_argument("--decoder-layers", type=positive_int, default=2)
    parser.add_argument("--decoder-heads", type=positive_int, default=4)
    parser.add_argument(
        "--decoder-intermediate-size", type=positive_int, help="default: 2x the decoder width"
    )
    parser.add_argument("--epochs", type=positive_int, default=100)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--workers", type=positive_int, default=1, help="loader threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("runs/pretrain_mae"))
    parser.add_argument(
        "--overwrite", action="store_true", help="delete the run already in --output first"
    )
    return parser.parse_args(argv)


def build_configs(args: argparse.Namespace) -> tuple[keras_vit.ViTConfig, keras_vit.MAEConfig]:
    """The encoder's and the decoder's configs from the flags.

    Args:
        args: the parsed arguments.

    Returns:
        `(ViTConfig, MAEConfig)`; raises SystemExit with a one-line message
        for sizes or a mask ratio that cannot work.

    Example:
        >>> build_configs(parse_arguments(["--mask-ratio", "1.2"]))
        SystemExit: --mask-ratio 1.2: mask_ratio must be a number strictly between 0 and 1, ...
    """
    sizes = dict(image_size=args.image_size, patch_size=args.patch_size)
    try:
        encoder = keras_vit.ViTConfig(
            **{**finetune.SMALL, **sizes}, model_type="vit_mae", position_embedding="sincos"
        )
    except ValueError as error:
        raise SystemExit(f"--image-size / --patch-size: {error}") from error
    width = args.decoder_hidden_size
    try:
        decoder = keras_vit.MAEConfig(
            decoder_hidden_size=width,
            decoder_num_hidden_layers=args.decoder_layers,
            decoder_num_attention_heads=args.decoder_heads,
            decoder_intermediate_size=args.decoder_intermediate_size or 2 * width,
            mask_ratio=args.mask_ratio,
            norm_pix_loss=args.norm_pix_loss,
        )
    except ValueError as error:
        ratio = "mask_ratio" in str(error)
        flags = f"--mask-ratio {args.mask_ratio}" if ratio else "--decoder-hidden-size / -heads"
        raise SystemExit(f"{flags}: {error}") from error
    patches = encoder.grid_size[0] * encoder.grid_size[1]
    if kept_patches(patches, args.mask_ratio) == 0:
        raise SystemExit(
            f"--mask-ratio {args.mask_ratio} leaves the encoder none of the {patches} patches of "
            "each image; lower it, or use a smaller --patch-size."
        )
    return encoder, decoder


def check_output(output: Path, overwrite: bool) -> None:
    """Refuses an --output that holds a run (anything but the digits export) without --overwrite.

    Args:
        output: the --output folder.
        overwrite: whether --overwrite was given.

    Returns:
        Nothing; raises SystemExit with a one-line message instead.

    Example:
        >>> check_output(Path("runs/done"), overwrite=False)
        SystemExit: --output runs/done is not empty: pass --overwrite ...
    """
    if output.exists() and not output.is_dir():
        raise SystemExit(f"--output {output} is a file; give a folder.")
    held = output.is_dir() and any(path.name != finetune.DIGITS_FOLDER for path in output.iterdir())
    if held and not overwrite:
        raise SystemExit(
            f"--output {output} is not empty: pass --overwrite to replace the run in it, or "
            "give another folder."
        )


class ImagesOnly(keras.utils.PyDataset):
    """The images of labelled batches, without the labels: what a masked autoencoder fits.

    Args:
        batches: a `keras_vit.data.ImageBatches` (or any PyDataset of
            `(images, labels, ...)` tuples); its loader settings are kept.

    Example:
        >>> mae.fit(ImagesOnly(make_loaders(data, 32)["train"]), epochs=1)
    """

    def __init__(self, batches: keras.utils.PyDataset):
        super().__init__(
            workers=batches.workers,
            use_multiprocessing=batches.use_multiprocessing,
            max_queue_size=batches.max_queue_size,
        )
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.batches[index][0]

    def on_epoch_end(self) -> None:
        self.batches.on_epoch_end()


class ReconstructionSnapshots(keras.callbacks.Callback):
    """Draws the model's reconstructions of fixed images under fixed masks, epoch by epoch.

    `folder/epoch_000.png` shows the untrained model, `epoch_NNN.png` the model
    after epoch NNN (see `keras_vit.plotting.plot_reconstructions`).

    Args:
        folder: where the PNGs go.
        images: `(B, H, W, C)` normalised images.
        noise: `(B, num_patches)`, the masks (see `MaskedAutoencoder.reconstruct`).
        processor: the `ImageProcessor` that normalised them, to undo it for display.

    Example:
        >>> mae.fit(..., callbacks=[ReconstructionSnapshots("out/r", images, noise, processor)])
    """

    def __init__(self, folder: Path, images: np.ndarray, noise: np.ndarray, processor):
        super().__init__()
        self.folder, self.images, self.noise = Path(folder), images, noise
        self.mean = np.asarray(processor.image_mean, np.float32)
        self.std = np.asarray(processor.image_std, np.float32)

    def _draw(self, epoch: int, title: str) -> None:
        out = self.model.reconstructed_images(self.images, noise=self.noise)
        mask, reconstruction = (
            keras.ops.convert_to_numpy(out[key]) for key in ("mask", "reconstruction")
        )
        path = self.folder / f"epoch_{epoch:03d}.png"
        shown = (self.images * self.std + self.mean, mask, reconstruction * self.std + self.mean)
        plot_reconstructions(*shown, path, title=title)

    def on_train_begin(self, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        self._draw(0, "before training")

    def on_epoch_end(self, epoch, logs=None):
        self._draw(epoch + 1, f"epoch {epoch + 1}: loss {(logs or {}).get('loss', np.nan):.4f}")


def main(argv: list[str] | None = None) -> float:
    args = parse_arguments(argv)
    configs = build_configs(args)
    check_output(args.output, args.overwrite)
    try:
        return pretrain(args, *configs)
    except KeyboardInterrupt:
        print(f"Interrupted before training: no run written to {args.output}.", file=sys.stderr)
        raise SystemExit(130) from None


def pretrain(
    args: argparse.Namespace, encoder: keras_vit.ViTConfig, decoder: keras_vit.MAEConfig
) -> float:
    """Loads the images, pretrains the MAE, saves it; returns the last epoch's loss."""
    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    data, digits = finetune.load_data(args)
    # MAE's augmentation is a random resized crop (scale 0.2-1) and a flip; digits keep finetune's.
    augmentation = finetune.DIGITS_AUGMENTATION if digits else Augmentation(scale=(0.2, 1.0))
    loaders = make_loaders(
        data,
        encoder.image_size,
        batch_size=args.batch_size,
        augmentation=augmentation,
        workers=args.workers,
        seed=args.seed,
    )
    mae = keras_vit.MaskedAutoencoder(encoder, decoder, seed=args.seed)
    steps = args.epochs * len(loaders["train"])
    optimizer = keras.optimizers.AdamW(
        learning_rate=warmup_cosine(args.lr, steps, round(0.05 * steps)),
        weight_decay=args.weight_decay,
        beta_1=0.9,
        beta_2=0.95,
    )
    optimizer.exclude_from_weight_decay(var_list=no_weight_decay(mae))
    mae.compile(optimizer=optimizer)
    print(
        f"backend {keras.backend.backend()}: {len(data.train)} train / {len(data.validation)} "
        f"validation images; {mae.num_patches} patches of {args.patch_size}x{args.patch_size}, "
        f"{kept_patches(mae.num_patches, decoder.mask_ratio)} visible; "
        f"{mae.vit.count_params():,} encoder + {mae.decoder.count_params():,} decoder parameters"
    )
    shown = loaders["validation"][0][0][:SHOWN_IMAGES]
    noise = np.random.default_rng(args.seed).random((len(shown), mae.num_patches), np.float32)
    snapshots = ReconstructionSnapshots(
        args.output / "reconstructions", shown, noise, loaders["validation"].processor
    )
    log = TrainingLog(args.output)
    record = finetune.start_run(args, ARTEFACTS)
    try:
        history = mae.fit(
            ImagesOnly(loaders["train"]),
            validation_data=ImagesOnly(loaders["validation"]),
            epochs=args.epochs,
            callbacks=[snapshots, log, record],
            verbose=2,
        ).history
    except KeyboardInterrupt:
        log.on_train_end()
        mae.save_pretrained(args.output / "model", overwrite=True)
        record.update("interrupted")
        print(
            f"Interrupted after {record.run['epochs']} epoch(s): saved "
            f"{', '.join(record.written()) or 'nothing'} in {args.output}.",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    except BaseException:
        record.update("failed")
        raise
    mae.save_pretrained(args.output / "model", overwrite=True)
    record.update("completed")
    minutes = (time.perf_counter() - start) / 60
    print(
        f"saved to {args.output / 'model'}; {minutes:.1f} min. Fine-tune its encoder with: "
        f"python examples/finetune.py --weights {args.output / 'model'}"
    )
    print(f"final_val_loss: {history['val_loss'][-1]:.4f}")
    print(f"final_loss: {history['loss'][-1]:.4f}")
    return history["loss"][-1]


if __name__ == "__main__":
    main()
