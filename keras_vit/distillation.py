"""DeiT's distillation through attention: a student ViT learns from a fixed teacher.

A distilled DeiT (Touvron et al., 2021) has a distillation token next to
[CLS] and a second head on it. In training, the class head learns the labels
and the distillation head learns the teacher's predictions, either its top
class (hard distillation, DeiT's default) or its temperature-softened
distribution (soft distillation). `Distiller` wraps the student and the
teacher in one `keras.Model` whose `compute_loss` is that loss, so `fit`
trains it on every backend; what is kept afterwards is the student.
"""

from __future__ import annotations

import os
from typing import Any

import keras
from keras import ops

from keras_vit.model import ViT

MODES = ("hard", "soft")


def load_teacher(source: keras.Model | str | os.PathLike) -> keras.Model:
    """The teacher: a Keras model as it is, or a saved one loaded.

    Args:
        source: a `keras.Model`, a `.keras` file, or a checkpoint directory or
            Hub repo id that `keras_vit.ViT.from_pretrained` loads.

    Returns:
        The model (not yet frozen: `Distiller` does that).

    Example:
        >>> teacher = load_teacher("runs/cnn/teacher.keras")
    """
    if isinstance(source, keras.Model):
        return source
    if str(source).endswith(".keras"):
        return keras.saving.load_model(source)
    return ViT.from_pretrained(source, verbose=False)


def class_targets(labels, classes: int, label_smoothing: float = 0.0):
    """Class probabilities `(B, classes)` from integer ids or from one-hot / mixed targets.

    Args:
        labels: integer class ids `(B,)` (or `(B, 1)`), or target
            distributions `(B, classes)` such as MixUp / CutMix make.
        classes: the number of classes.
        label_smoothing: mass spread uniformly over all classes (0 disables),
            after mixing, as timm smooths mixed targets.

    Returns:
        The float32 targets `(B, classes)`.

    Example:
        >>> keras.ops.convert_to_numpy(class_targets(np.array([1]), 4, 0.2)).tolist()
        [[0.05, 0.85, 0.05, 0.05]]
    """
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) == 2 and labels.shape[-1] == classes and classes > 1:
        targets = ops.cast(labels, "float32")
    else:
        targets = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), classes)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / classes
    return targets


def _cross_entropy(targets, logits):
    """Per-example cross-entropy of `(B, C)` target probabilities and logits."""
    return -ops.sum(targets * ops.log_softmax(logits, axis=-1), axis=-1)


class Distiller(keras.Model):
    """A distilled DeiT student and its fixed teacher, trained with DeiT's loss.

    With class-head logits `c`, distillation-head logits `d`, teacher logits
    `t` and labels `y`:

    - hard: `(1 - alpha) CE(c, y) + alpha CE(d, argmax t)`; DeiT's default,
      with `alpha = 1/2`;
    - soft: `(1 - alpha) CE(c, y) + alpha tau^2 KL(softmax(t / tau) || softmax(d / tau))`,
      averaged over the batch (the paper's formula; the DeiT code also
      divides the KL by the number of classes).

    Labels are integer class ids `(B,)` or target distributions `(B, classes)`
    (one-hot, MixUp / CutMix mixtures). The teacher runs in inference mode,
    is made non-trainable and never enters the optimizer. In training, `call`
    returns the pair of head logits that the loss needs (one forward pass);
    otherwise it returns the student's output, the mean of its heads, and
    evaluation reports the student's own cross-entropy (no teacher).
    `save_weights` / `load_weights` read and write the student's weights.

    Args:
        student: a `keras_vit.ViT` with a distillation token and head
            (`distillation_token=True, distillation_head=True, classes=N`),
            e.g. `keras_vit.DeiTS16Distilled(classes=N)`.
        teacher: any Keras model of the same images to `classes` scores, or a
            path `load_teacher` reads.
        mode: `"hard"` or `"soft"`.
        alpha: the distillation term's weight; the labels' is `1 - alpha`.
        temperature: the soft mode's temperature `tau` (> 0).
        label_smoothing: smoothing of the class head's targets.
        teacher_from_logits: whether the teacher returns logits (else
            probabilities). Default: a `ViT` teacher's config says; any other
            model is taken to return logits.
        **kwargs: `keras.Model` arguments such as `name`.

    Example:
        >>> student = keras_vit.DeiTTi16Distilled(classes=10)
        >>> distiller = Distiller(student, "runs/teacher.keras", mode="hard")
        >>> distiller.compile(optimizer="adamw", metrics=["accuracy"])
        >>> distiller.fit(train_batches, epochs=10)
        >>> student.save_pretrained("runs/student")
    """

    def __init__(
        self,
        student: ViT,
        teacher: keras.Model | str | os.PathLike,
        mode: str = "hard",
        alpha: float = 0.5,
        temperature: float = 1.0,
        label_smoothing: float = 0.0,
        teacher_from_logits: bool | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Unknown distillation mode {mode!r}: use 'hard' or 'soft'.")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
        if not isinstance(student, ViT) or student.distillation_head is None:
            raise ValueError(
                "The student needs a distillation token and a distillation head: use a distilled "
                "DeiT (e.g. keras_vit.DeiTS16Distilled(classes=N)) or a ViTConfig with "
                "distillation_token=True, distillation_head=True and classes=N."
            )
        teacher = load_teacher(teacher)
        classes = student.config.classes
        images = keras.KerasTensor((1, *student.config.image_pair, student.config.num_channels))
        teacher_classes = teacher.compute_output_spec(images).shape[-1]
        if teacher_classes != classes:
            raise ValueError(
                f"The teacher scores {teacher_classes} classes and the student {classes}: "
                "they must classify the same classes."
            )
        if teacher_from_logits is None:
            teacher_from_logits = (
                not isinstance(teacher, ViT) or teacher.config.classifier_activation is None
            )
        teacher.trainable = False
        self.student, self.teacher = student, teacher
        self.mode, self.alpha, self.temperature = mode, alpha, temperature
        self.label_smoothing = label_smoothing
        self.teacher_from_logits = teacher_from_logits

    def call(self, images, training: bool = False):
        """`(class_logits, distillation_logits)` in training, else the student's output."""
        if training:
            return self.student.head_logits(images, training=True)
        return self.student(images, training=False)

    def teacher_logits(self, images):
        """The teacher's logits (log-probabilities for a probability teacher), in float32."""
        scores = ops.cast(self.teacher(images, training=False), "float32")
        if not self.teacher_from_logits:
            scores = ops.log(ops.maximum(scores, keras.config.epsilon()))
        return ops.stop_gradient(scores)

    def distillation_loss(self, images, labels, class_logits, distillation_logits):
        """DeiT's loss per example, from the student's two heads and the teacher.

        Args:
            images: the batch, for the teacher.
            labels: integer ids `(B,)` or target distributions `(B, classes)`.
            class_logits: the class head's logits `(B, classes)`.
            distillation_logits: the distillation head's logits `(B, classes)`.

        Returns:
            The loss of each example, `(B,)`.

        Example:
            >>> distiller.distillation_loss(images, labels, *student.head_logits(images))
        """
        class_logits = ops.cast(class_logits, "float32")
        distillation_logits = ops.cast(distillation_logits, "float32")
        classes = self.student.config.classes
        targets = class_targets(labels, classes, self.label_smoothing)
        label_loss = _cross_entropy(targets, class_logits)
        teacher = self.teacher_logits(images)
        if self.mode == "hard":
            teacher_targets = ops.one_hot(ops.argmax(teacher, axis=-1), classes)
            teacher_loss = _cross_entropy(teacher_targets, distillation_logits)
        else:
            tau = self.temperature
            log_teacher = ops.log_softmax(teacher / tau, axis=-1)
            log_student = ops.log_softmax(distillation_logits / tau, axis=-1)
            kl = ops.sum(ops.exp(log_teacher) * (log_teacher - log_student), axis=-1)
            teacher_loss = tau**2 * kl
        return (1.0 - self.alpha) * label_loss + self.alpha * teacher_loss

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """DeiT's loss in training; the student's cross-entropy in evaluation."""
        if training:
            per_example = self.distillation_loss(x, y, *y_pred)
        else:
            from_logits = self.student.config.classifier_activation is None
            scores = ops.cast(y_pred, "float32")
            if not from_logits:
                scores = ops.log(ops.maximum(scores, keras.config.epsilon()))
            targets = class_targets(y, self.student.config.classes, self.label_smoothing)
            per_example = _cross_entropy(targets, scores)
        if sample_weight is not None:
            per_example = per_example * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        loss = ops.mean(per_example)
        for extra in self.losses:
            loss = loss + ops.sum(ops.cast(extra, "float32"))
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """The compiled metrics, on the mean of the two heads in training (DeiT's prediction)."""
        if isinstance(y_pred, (tuple, list)):
            y_pred = (ops.cast(y_pred[0], "float32") + ops.cast(y_pred[1], "float32")) / 2
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def save_weights(self, filepath, overwrite: bool = True, **kwargs: Any) -> None:
        """Saves the student's weights (the teacher is fixed, and brought anew)."""
        self.student.save_weights(filepath, overwrite=overwrite, **kwargs)

    def load_weights(self, filepath, skip_mismatch: bool = False, **kwargs: Any) -> None:
        """Loads the student's weights, as `save_weights` wrote them."""
        self.student.load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)
