"""DeiT distillation: the hard and soft losses against numpy, training, errors, the example."""

import keras
import numpy as np
import pytest

from keras_vit import Distiller, ViT, load_teacher
from keras_vit.training import compile_for_finetuning
from tests.conftest import PETS, randomize_head, tiny_config, to_numpy
from tests.test_finetune import finetune_script

CLASSES = 3


def tiny_student(**overrides) -> ViT:
    """A tiny distilled DeiT whose two heads have random weights (fresh ones score 0)."""
    config = tiny_config(
        classes=CLASSES, distillation_token=True, distillation_head=True, **overrides
    )
    student = randomize_head(ViT(config))
    rng = np.random.default_rng(2)
    for weight in student.distillation_head.weights:
        weight.assign((rng.standard_normal(weight.shape) / 4).astype("float32"))
    return student


def tiny_teacher(classes: int = CLASSES) -> keras.Model:
    """A small random CNN of 32x32 images, with batch norm and dropout (idle in inference)."""
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 4, strides=4),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(classes, bias_initializer="random_normal"),
        ]
    )


def batch(size: int = 8):
    rng = np.random.default_rng(3)
    images = rng.standard_normal((size, 32, 32, 3)).astype("float32")
    return images, np.arange(size) % CLASSES


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def cross_entropy(targets: np.ndarray, logits: np.ndarray) -> np.ndarray:
    return -(targets * log_softmax(logits)).sum(-1)


def loss_of(distiller: Distiller, images, labels) -> float:
    """The Distiller's training loss on one batch, with the student's heads as `fit` sees them."""
    y_pred = distiller(images, training=True)
    return float(to_numpy(distiller.compute_loss(images, labels, y_pred, training=True)))


def numpy_parts(student: ViT, teacher: keras.Model, images):
    class_logits, distillation_logits = (to_numpy(x) for x in student.head_logits(images))
    return class_logits, distillation_logits, to_numpy(teacher(images, training=False))


def test_hard_distillation_is_half_labels_half_teacher_argmax():
    student, teacher = tiny_student(), tiny_teacher()
    images, labels = batch()
    class_logits, distillation_logits, teacher_logits = numpy_parts(student, teacher, images)
    assert np.ptp(class_logits) > 0.1 and np.ptp(distillation_logits) > 0.1  # can fail
    # The teacher must disagree with the labels somewhere, or the two terms are alike.
    assert (teacher_logits.argmax(-1) != labels).any()
    expected = 0.5 * cross_entropy(np.eye(CLASSES)[labels], class_logits) + 0.5 * cross_entropy(
        np.eye(CLASSES)[teacher_logits.argmax(-1)], distillation_logits
    )
    distiller = Distiller(student, teacher, mode="hard")
    np.testing.assert_allclose(loss_of(distiller, images, labels), expected.mean(), rtol=1e-5)


@pytest.mark.parametrize(("alpha", "tau"), [(0.5, 1.0), (0.3, 3.0)])
def test_soft_distillation_is_the_tempered_kl(alpha, tau):
    student, teacher = tiny_student(), tiny_teacher()
    images, labels = batch()
    class_logits, distillation_logits, teacher_logits = numpy_parts(student, teacher, images)
    log_teacher = log_softmax(teacher_logits / tau)
    log_student = log_softmax(distillation_logits / tau)
    kl = (np.exp(log_teacher) * (log_teacher - log_student)).sum(-1)
    label_term = cross_entropy(np.eye(CLASSES)[labels], class_logits)
    expected = ((1 - alpha) * label_term + alpha * tau**2 * kl).mean()
    distiller = Distiller(student, teacher, mode="soft", alpha=alpha, temperature=tau)
    np.testing.assert_allclose(loss_of(distiller, images, labels), expected, rtol=1e-5)
    # A teacher that returns probabilities gives the same loss.
    probabilities = keras.Sequential([teacher, keras.layers.Softmax()])
    from_probabilities = Distiller(
        student, probabilities, mode="soft", alpha=alpha, temperature=tau, teacher_from_logits=False
    )
    np.testing.assert_allclose(loss_of(from_probabilities, images, labels), expected, rtol=1e-4)


def test_one_hot_mixed_and_smoothed_labels():
    student, teacher = tiny_student(), tiny_teacher()
    images, labels = batch()
    class_logits, distillation_logits, teacher_logits = numpy_parts(student, teacher, images)
    teacher_term = cross_entropy(np.eye(CLASSES)[teacher_logits.argmax(-1)], distillation_logits)
    distiller = Distiller(student, teacher)
    one_hot = np.eye(CLASSES, dtype="float32")[labels]
    assert loss_of(distiller, images, one_hot) == pytest.approx(loss_of(distiller, images, labels))
    mixed = 0.7 * one_hot + 0.3 * one_hot[::-1]  # MixUp's targets
    expected = 0.5 * cross_entropy(mixed, class_logits) + 0.5 * teacher_term
    np.testing.assert_allclose(loss_of(distiller, images, mixed), expected.mean(), rtol=1e-5)
    smoothed = Distiller(student, teacher, label_smoothing=0.1)
    targets = one_hot * 0.9 + 0.1 / CLASSES
    expected = 0.5 * cross_entropy(targets, class_logits) + 0.5 * teacher_term
    np.testing.assert_allclose(loss_of(smoothed, images, labels), expected.mean(), rtol=1e-5)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_fit_lowers_the_loss_and_leaves_the_teacher_alone(mode):
    student, teacher = tiny_student(), tiny_teacher()
    teacher_before = [to_numpy(w) for w in teacher.weights]
    student_before = [to_numpy(w) for w in student.trainable_weights]
    distiller = Distiller(student, teacher, mode=mode, temperature=2.0)
    compile_for_finetuning(distiller, total_steps=6, learning_rate=3e-3, warmup_steps=0)
    assert {id(v) for v in distiller.trainable_variables} == {
        id(v) for v in student.trainable_variables
    }
    images, labels = batch()
    losses = [float(distiller.train_on_batch(images, labels)[0]) for _ in range(5)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    for before, after in zip(teacher_before, teacher.weights, strict=True):
        np.testing.assert_array_equal(before, to_numpy(after))
    changed = [
        not np.array_equal(before, to_numpy(after))
        for before, after in zip(student_before, student.trainable_weights, strict=True)
    ]
    assert all(changed)
    loss, accuracy = distiller.evaluate(images, labels, verbose=0)  # the student alone
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    np.testing.assert_allclose(
        to_numpy(distiller.predict(images, verbose=0)),
        to_numpy(student.predict(images, verbose=0)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_teacher_from_a_keras_file_or_a_checkpoint(tmp_path):
    teacher = tiny_teacher()
    teacher.save(tmp_path / "teacher.keras")
    loaded = load_teacher(tmp_path / "teacher.keras")
    images, _ = batch(2)
    np.testing.assert_allclose(to_numpy(loaded(images)), to_numpy(teacher(images)), rtol=1e-6)
    vit_teacher = randomize_head(ViT(tiny_config(classes=CLASSES)))
    vit_teacher.save_pretrained(tmp_path / "vit")
    distiller = Distiller(tiny_student(), tmp_path / "vit")
    assert isinstance(distiller.teacher, ViT) and not distiller.teacher.trainable_weights


def test_bad_settings_are_refused():
    student, teacher = tiny_student(), tiny_teacher()
    with pytest.raises(ValueError, match="The teacher scores 5 classes and the student 3"):
        Distiller(student, tiny_teacher(classes=5))
    with pytest.raises(ValueError, match="needs a distillation token and a distillation head"):
        Distiller(ViT(tiny_config(classes=CLASSES)), teacher)
    with pytest.raises(ValueError, match="Unknown distillation mode 'medium'"):
        Distiller(student, teacher, mode="medium")
    for temperature in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            Distiller(student, teacher, temperature=temperature)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        Distiller(student, teacher, alpha=1.5)
    with pytest.raises(ValueError, match="label smoothing is part of its loss"):
        compile_for_finetuning(Distiller(student, teacher), total_steps=2, label_smoothing=0.1)


# examples/finetune.py --teacher


def test_finetune_script_distils_from_a_saved_teacher(pets_dir, tmp_path):
    tiny_teacher(classes=len(PETS)).save(tmp_path / "teacher.keras")
    output = tmp_path / "run"
    accuracy = finetune_script().main(
        [
            f"--data-dir={pets_dir}",
            f"--teacher={tmp_path / 'teacher.keras'}",
            "--distillation=hard",
            "--epochs=1",
            "--batch-size=8",
            f"--output={output}",
        ]
    )
    assert 0.0 <= accuracy <= 1.0
    for name in ("best.weights.h5", "history.csv", "training_curves.png", "model/config.json"):
        assert (output / name).is_file(), name
    student = ViT.from_pretrained(output / "model", verbose=False)
    assert student.distillation_head is not None
    saved = [to_numpy(w) for w in student.weights]
    student.load_weights(str(output / "best.weights.h5"))  # the student's weights, not a pair's
    for before, after in zip(saved, student.weights, strict=True):
        np.testing.assert_array_equal(before, to_numpy(after))


def test_finetune_script_refuses_a_student_without_a_distillation_head(tmp_path):
    script = finetune_script()
    tiny_teacher().save(tmp_path / "teacher.keras")
    args = script.parse_arguments([f"--teacher={tmp_path / 'teacher.keras'}"])
    with pytest.raises(SystemExit, match="--teacher needs a student with a distillation token"):
        script.with_teacher(args, ViT(tiny_config(classes=CLASSES)))
    five_classes = tiny_config(classes=5, distillation_token=True, distillation_head=True)
    with pytest.raises(SystemExit, match="scores 3 classes and the student 5"):
        script.with_teacher(args, ViT(five_classes))
    with pytest.raises(SystemExit, match="--distillation soft needs --teacher"):
        script.main(["--distillation=soft", f"--output={tmp_path / 'run'}"])
