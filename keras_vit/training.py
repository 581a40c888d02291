"""The ViT paper's fine-tuning recipe for Keras: optimizer, schedule, loss, callbacks.

`compile_for_finetuning(model, total_steps, ...)` is the recipe in one call:
AdamW (beta 0.9, 0.999) with weight decay on kernels only, linear warmup then
cosine decay, gradient clipping at global norm 1, optional label smoothing,
layer-wise learning-rate decay and a frozen backbone. Its loss and accuracy
(`ClassCrossentropy`, `ClassAccuracy`) take integer labels and the target
distributions of MixUp / CutMix batches alike. Stochastic depth
(`drop_path_rate`), the zero-initialised head (`classes=`) and mixed precision
(`dtype="mixed_bfloat16"`) are chosen when the model is built.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
from keras import ops

from keras_vit.atomic_files import atomic_path
from keras_vit.distillation import Distiller, class_targets
from keras_vit.model import ViT
from keras_vit.model import weight_paths as paths

# The record of an output folder's runs (see RunRecord).
RUN_FILE = "run.json"


def no_weight_decay(model: keras.Model) -> list[keras.Variable]:
    """The trainable variables the recipe keeps out of weight decay.

    Args:
        model: a `keras_vit.ViT`.

    Returns:
        Biases, LayerNorm gammas and betas, layer scales, the [CLS], mask,
        distillation and register tokens and the position embeddings (and
        a masked autoencoder's decoder's): everything but the kernels.

    Example:
        >>> [v.path for v in no_weight_decay(model)][:2]
        ['embeddings/cls_token', 'embeddings/position_embedding']
    """
    return [
        variable
        for variable in model.trainable_variables
        if variable.path in paths.TABLES + paths.DECODER_TABLES
        or paths.is_layernorm(variable.path)
        or paths.parse(variable.path).layer in paths.LAYER_SCALES
        or paths.parse(variable.path).variable == "bias"
    ]


def warmup_cosine(
    peak_learning_rate: float, total_steps: int, warmup_steps: int
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warmup from 0 to the peak, then cosine decay to 0 at `total_steps`.

    Args:
        peak_learning_rate: the rate reached after warmup.
        total_steps: optimizer steps in the whole run.
        warmup_steps: steps of linear warmup (less than `total_steps`).

    Returns:
        A Keras learning-rate schedule.

    Example:
        >>> float(warmup_cosine(1e-3, 100, 10)(10))
        0.001
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps={warmup_steps} must be >= 0 and below total_steps={total_steps}; "
            "lower the warmup or train for more steps."
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=total_steps - warmup_steps,
        warmup_target=peak_learning_rate,
        warmup_steps=warmup_steps,
    )


def layer_decay_multipliers(model: ViT, layer_decay: float) -> dict[str, float]:
    """Learning-rate multipliers per variable path, decaying towards the input.

    Args:
        model: a `keras_vit.ViT` with L blocks.
        layer_decay: the factor per block, e.g. 0.75.

    Returns:
        path -> multiplier: `layer_decay ** (L + 1)` for the embeddings,
        `layer_decay ** (L - i)` for block `i`, and 1 for the final LayerNorm,
        pre-logits and head.

    Example:
        >>> layer_decay_multipliers(model, 0.5)["encoder/layer_11/mlp_fc2/kernel"]
        1.0
    """
    depth = model.config.num_hidden_layers
    multipliers = {}
    for variable in model.trainable_variables:
        block = paths.parse(variable.path).block
        if variable.path.startswith(f"{paths.EMBEDDINGS}/"):
            distance = depth + 1
        elif block is not None:
            distance = depth - block
        else:
            distance = 0
        multipliers[variable.path] = layer_decay**distance
    return multipliers


class LayerDecayAdamW(keras.optimizers.AdamW):
    """AdamW whose step size is scaled per variable (layer-wise learning-rate decay).

    Args:
        multipliers: variable path -> learning-rate multiplier (missing: 1),
            e.g. from `layer_decay_multipliers`.
        **kwargs: `keras.optimizers.AdamW` arguments.

    Example:
        >>> LayerDecayAdamW(layer_decay_multipliers(model, 0.75), learning_rate=1e-3)
    """

    def __init__(self, multipliers: dict[str, float], **kwargs: Any):
        super().__init__(**kwargs)
        self.multipliers = dict(multipliers)

    def build(self, variables):
        # Backends hand update_step their own variable objects (TF: a bare
        # ResourceVariable without a path), so look multipliers up by index.
        self._scales = [self.multipliers.get(variable.path, 1.0) for variable in variables]
        super().build(variables)

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scales[self._get_variable_index(variable)]
        super().update_step(gradient, variable, ops.multiply(learning_rate, scale))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "multipliers": self.multipliers}


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels or target distributions, with label smoothing.

    Labels are integer class ids `(B,)` (validation, test, plain training) or
    target distributions `(B, classes)` (training batches mixed by MixUp /
    CutMix, see `keras_vit.data.Augmentation`); smoothing applies to both,
    after mixing, as in timm.

    Args:
        label_smoothing: mass spread uniformly over all classes (0 disables).
        from_logits: whether predictions are logits rather than probabilities.
        name: the loss name.

    Example:
        >>> loss = ClassCrossentropy(label_smoothing=0.1)
        >>> loss(np.array([2]), np.array([[0.1, 0.1, 0.8]]))
        >>> loss(np.array([[0.0, 0.4, 0.6]]), np.array([[0.1, 0.1, 0.8]]))
    """

    def __init__(
        self,
        label_smoothing: float = 0.0,
        from_logits: bool = False,
        name: str = "class_crossentropy",
        **kwargs: Any,
    ):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        targets = class_targets(y_true, y_pred.shape[-1], self.label_smoothing)
        return keras.losses.categorical_crossentropy(
            ops.cast(targets, y_pred.dtype), y_pred, from_logits=self.from_logits
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "label_smoothing": self.label_smoothing,
            "from_logits": self.from_logits,
        }


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassAccuracy(keras.metrics.MeanMetricWrapper):
    """Top-1 accuracy on integer labels or target distributions.

    A target distribution `(B, classes)` counts as its most likely class: for
    MixUp / CutMix training batches that is the class with the larger share,
    an approximate training accuracy; validation labels are integers.

    Args:
        name: the metric name.

    Example:
        >>> metric = ClassAccuracy()
        >>> metric.update_state(np.array([[0.3, 0.7]]), np.array([[0.2, 0.8]]))
        >>> float(metric.result())
        1.0
    """

    def __init__(self, name: str = "accuracy", **kwargs: Any):
        super().__init__(_class_accuracy, name=name, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


def _class_accuracy(y_true, y_pred):
    """1.0 where the top class of `y_pred` is the label (or the target's top class), else 0.0."""
    labels = ops.argmax(class_targets(y_true, y_pred.shape[-1]), axis=-1)
    return ops.cast(ops.equal(labels, ops.argmax(y_pred, axis=-1)), "float32")


def compile_for_finetuning(
    model: ViT | Distiller,
    total_steps: int,
    learning_rate: float = 1e-3,
    warmup_steps: int | None = None,
    weight_decay: float = 0.05,
    label_smoothing: float = 0.0,
    layer_decay: float | None = None,
    freeze_backbone: bool = False,
    clip_global_norm: float = 1.0,
    metrics: Sequence[Any] | None = None,
) -> ViT | Distiller:
    """Compiles a `ViT`, or a `Distiller` around one, with the fine-tuning recipe.

    Args:
        model: a `keras_vit.ViT` with a head (`classes=`); a new head is
            zero-initialised. Or a `keras_vit.Distiller`: the recipe trains its
            student, with the Distiller's loss (DeiT's).
        total_steps: optimizer steps of the whole run (epochs x batches per epoch).
        learning_rate: the peak learning rate.
        warmup_steps: linear warmup steps; default 5% of `total_steps`.
        weight_decay: decoupled AdamW weight decay, applied to kernels only
            (see `no_weight_decay`).
        label_smoothing: label smoothing of the cross-entropy (a Distiller's
            is its own: `Distiller(..., label_smoothing=)`).
        layer_decay: layer-wise learning-rate decay factor (e.g. 0.75); `None` disables.
        freeze_backbone: train only the class head and, for a distilled DeiT,
            the distillation head: a linear probe on frozen features (embeddings,
            blocks, final LayerNorm and pre-logits stay as they are).
        clip_global_norm: clip gradients to this global norm.
        metrics: compile metrics; default `[ClassAccuracy()]`, reported as
            "accuracy", which takes integer labels and MixUp / CutMix targets alike.

    Returns:
        The model, compiled.

    Example:
        >>> model = keras_vit.ViTB16(weights="imagenet21k", classes=10, drop_path_rate=0.1)
        >>> compile_for_finetuning(model, total_steps=10 * len(train_batches))
        >>> model.fit(train_batches, validation_data=validation_batches, epochs=10)
    """
    distiller = isinstance(model, Distiller)
    student = model.student if distiller else model
    if not student.config.classes:
        raise ValueError(
            "compile_for_finetuning needs a model with a classification head; build it with "
            "classes=N (a new head is zero-initialised)."
        )
    if distiller and label_smoothing:
        raise ValueError(
            "A Distiller's label smoothing is part of its loss: pass it as "
            "Distiller(..., label_smoothing=...), and leave compile_for_finetuning's at 0."
        )
    if freeze_backbone:
        for layer in student.layers:
            layer.trainable = layer.name in (paths.HEAD, paths.DISTILLATION_HEAD)
    warmup = round(0.05 * total_steps) if warmup_steps is None else warmup_steps
    options = dict(
        learning_rate=warmup_cosine(learning_rate, total_steps, warmup),
        weight_decay=weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        global_clipnorm=clip_global_norm,
    )
    if layer_decay is None:
        optimizer = keras.optimizers.AdamW(**options)
    else:
        optimizer = LayerDecayAdamW(layer_decay_multipliers(student, layer_decay), **options)
    optimizer.exclude_from_weight_decay(var_list=no_weight_decay(student))
    loss = None
    if not distiller:
        from_logits = model.config.classifier_activation is None
        loss = ClassCrossentropy(label_smoothing, from_logits=from_logits)
    metrics = [ClassAccuracy()] if metrics is None else list(metrics)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


class BestWeights(keras.callbacks.Callback):
    """Saves the weights whenever the monitored metric improves, atomically.

    Args:
        path: a `.weights.h5` file; written to a temporary name, then renamed.
        monitor: the metric, e.g. `"val_accuracy"`.
        mode: `"max"` or `"min"`.
        restore_at_end: load the best weights back when training ends.
        best: the score of the weights already at `path` (when resuming a run):
            only better ones replace them, and they are restored at the end
            even if none does. `None`: there are none yet.

    Example:
        >>> model.fit(..., callbacks=[BestWeights("out/best.weights.h5")])
    """

    def __init__(
        self,
        path: str | os.PathLike,
        monitor: str = "val_accuracy",
        mode: str = "max",
        restore_at_end: bool = True,
        best: float | None = None,
    ):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        self.path = Path(path)
        self.monitor, self.mode, self.restore_at_end = monitor, mode, restore_at_end
        self.best = (-math.inf if mode == "max" else math.inf) if best is None else best
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(
                f"BestWeights monitors {self.monitor!r}, which fit did not report (it has "
                f"{sorted(logs or {})}). Pass validation_data, or monitor another metric."
            )
        if value > self.best if self.mode == "max" else value < self.best:
            self.best, self.best_epoch = float(value), epoch
            with atomic_path(self.path, overwrite=True) as temporary:
                self.model.save_weights(str(temporary))

    def on_train_end(self, logs=None):
        if self.restore_at_end and math.isfinite(self.best):
            self.model.load_weights(str(self.path))


class TrainingLog(keras.callbacks.Callback):
    """Keeps `history.csv` (every epoch) and draws `training_curves.png` (at the end).

    `history.csv` has a row per epoch, numbered from 0 across resumed runs, and
    is rewritten atomically after each epoch, so an interrupted run leaves every
    finished epoch and no partial line. The PNG plots loss and, when `fit`
    reports it, accuracy (train and validation) per epoch.

    Args:
        directory: where both files go.
        resume: continue the `history.csv` already there (if any) instead of
            starting a new one.

    Example:
        >>> model.fit(..., callbacks=[TrainingLog("out")])
    """

    def __init__(self, directory: str | os.PathLike, resume: bool = False):
        super().__init__()
        self.csv_path = Path(directory) / "history.csv"
        self.png_path = Path(directory) / "training_curves.png"
        self.rows: list[dict[str, float]] = []
        if resume and self.csv_path.exists():
            with self.csv_path.open(newline="") as file:
                rows = csv.DictReader(file)
                self.rows = [
                    {k: float(v) for k, v in row.items() if k != "epoch" and v} for row in rows
                ]

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({key: float(value) for key, value in logs.items()})
        columns = ["epoch", *dict.fromkeys(key for row in self.rows for key in row)]
        with atomic_path(self.csv_path, overwrite=True) as temporary:
            with temporary.open("w", newline="") as file:
                writer = csv.DictWriter(file, columns)
                writer.writeheader()
                writer.writerows({"epoch": i, **row} for i, row in enumerate(self.rows))

    def on_train_end(self, logs=None):
        if not self.rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot

        metrics = [metric for metric in ("loss", "accuracy") if metric in self.rows[-1]]
        figure, axes = pyplot.subplots(
            1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False
        )
        epochs = range(1, len(self.rows) + 1)
        for axis, metric in zip(axes[0], metrics, strict=True):
            for key in (metric, "val_" + metric):
                if key in self.rows[-1]:
                    values = [row.get(key, math.nan) for row in self.rows]
                    axis.plot(epochs, values, marker="o", label=key)
            axis.set_xlabel("epoch")
            axis.set_title(metric)
            axis.legend()
        figure.tight_layout()
        with atomic_path(self.png_path, overwrite=True) as temporary:
            figure.savefig(temporary, dpi=100)
        pyplot.close(figure)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _fingerprint(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of `path`: an atomic rewrite (a rename) changes the inode."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


class RunRecord(keras.callbacks.Callback):
    """Keeps `run.json` in an output folder: its runs, and which run wrote each artefact.

    `run.json` holds `runs` (each with an `id`, `started` / `updated` times,
    `status`: running, completed, interrupted or failed, the `epochs` it
    finished and its `arguments`) and `artefacts` (name -> the `run` id that
    last wrote it and when, `written`). An artefact counts as written by this
    run once its inode or modification time differs from when the record
    was created. It is rewritten atomically at creation, after every epoch
    (put this callback after the ones that write artefacts) and by `update`.

    Args:
        folder: the output folder.
        arguments: what the run was started with (JSON, with `str` for others).
        artefacts: the names, in `folder`, of the files and folders to track.
        resume: add this run to the `run.json` already in `folder`, keeping
            its runs and artefacts, instead of starting a new record.

    Example:
        >>> record = RunRecord("out", {"epochs": 3}, ["best.weights.h5", "history.csv"])
        >>> model.fit(..., callbacks=[*finetuning_callbacks("out"), record])
        >>> record.update("completed")
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        arguments: dict[str, Any],
        artefacts: Sequence[str],
        resume: bool = False,
    ):
        super().__init__()
        self.folder = Path(folder)
        self.path = self.folder / RUN_FILE
        previous = json.loads(self.path.read_text()) if resume and self.path.exists() else {}
        self.run = {
            "id": f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}",
            "started": _now(),
            "updated": None,
            "status": "running",
            "epochs": 0,
            "arguments": arguments,
        }
        self.runs = [*previous.get("runs", []), self.run]
        self.artefacts: dict[str, dict[str, str]] = previous.get("artefacts", {})
        self.seen = {name: _fingerprint(self.folder / name) for name in artefacts}
        self.update("running")

    def written(self) -> list[str]:
        """The artefacts this run wrote (and that are still there).

        Returns:
            Their names, in the order given at creation.

        Example:
            >>> record.written()
            ['best.weights.h5', 'history.csv']
        """
        return [
            name for name in self.seen if self.artefacts.get(name, {}).get("run") == self.run["id"]
        ]

    def update(self, status: str) -> None:
        """Records the run's status and what it wrote since the last update, in `run.json`.

        Args:
            status: "running", "completed", "interrupted" or "failed".

        Example:
            >>> record.update("interrupted")
        """
        for name, before in self.seen.items():
            now = _fingerprint(self.folder / name)
            if now == before:
                continue
            self.seen[name] = now
            if now is None:
                self.artefacts.pop(name, None)
            else:
                written = datetime.datetime.fromtimestamp(now[1] / 1e9, datetime.timezone.utc)
                when = written.isoformat(timespec="seconds")
                self.artefacts[name] = {"run": self.run["id"], "written": when}
        self.run.update(status=status, updated=_now())
        record = {"runs": self.runs, "artefacts": self.artefacts}
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path, overwrite=True) as temporary:
            temporary.write_text(json.dumps(record, indent=2, default=str) + "\n")

    def on_epoch_end(self, epoch, logs=None):
        self.run["epochs"] += 1
        self.update("running")


def finetuning_callbacks(
    output_dir: str | os.PathLike, resume: bool = False
) -> list[keras.callbacks.Callback]:
    """The recipe's callbacks, writing into `output_dir`.

    Args:
        output_dir: where `best.weights.h5` (best validation accuracy, restored
            at the end), `history.csv` and `training_curves.png` go.
        resume: continue the run already in `output_dir`: append to its
            `history.csv`, and replace its `best.weights.h5` only with better
            weights (its best `val_accuracy` in `history.csv` is the one to beat).
            Without a `best.weights.h5` there, the first epoch sets the best.

    Returns:
        `[BestWeights, TrainingLog]`.

    Example:
        >>> model.fit(..., callbacks=finetuning_callbacks("runs/digits"))
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    log = TrainingLog(output_dir, resume=resume)
    weights = output_dir / "best.weights.h5"
    scores = [row["val_accuracy"] for row in log.rows if "val_accuracy" in row]
    best = max(scores, default=None) if weights.exists() else None
    return [BestWeights(weights, best=best), log]
