"""DeiT's batch augmentations (RandAugment, random erasing, MixUp, CutMix) and their targets."""

import csv
import math

import keras
import numpy as np
import pytest

from keras_vit import Distiller, ImageProcessor, ViT
from keras_vit.data import Augmentation, ImageBatches, load_image_classification, make_loaders
from keras_vit.training import ClassAccuracy, ClassCrossentropy, compile_for_finetuning
from tests.conftest import PETS, tiny_config, to_numpy
from tests.test_distillation import tiny_student, tiny_teacher
from tests.test_finetune import finetune_script

CLASSES = 5
# Keras 3.15's RandAugment runs its Equalization histogram as a Python loop of
# eager ops on JAX: half a minute for a first batch, too slow for the suite.
RANDAUGMENT = dict(randaugment_ops=2, randaugment_magnitude=0.9)
RECIPE = dict(random_erasing=0.25, mixup=0.8, cutmix=1.0)
if keras.backend.backend() != "jax":
    RECIPE |= RANDAUGMENT


def constant_batch(size: int = 4, side: int = 16) -> np.ndarray:
    """Images filled with 20, 40, 60, ...: every pixel tells which image it came from."""
    values = 20.0 * np.arange(1, size + 1, dtype=np.float32)
    return np.broadcast_to(values[:, None, None, None], (size, side, side, 3)).copy()


def noise_batch(size: int = 4, side: int = 16) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(40, 200, (size, side, side, 3)).astype(np.float32)


def batch_of(augmentation: Augmentation, pixels, seed: int = 0):
    labels = np.arange(len(pixels)) % CLASSES
    return augmentation.apply_batch(pixels, labels, np.random.default_rng(seed), CLASSES)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(RANDAUGMENT, id="randaugment"),
        pytest.param(dict(random_erasing=1.0), id="erasing"),
        pytest.param(dict(mixup=0.8), id="mixup"),
        pytest.param(dict(cutmix=1.0), id="cutmix"),
    ],
)
def test_each_option_changes_the_batch_within_shape_dtype_and_range(options):
    pixels = noise_batch()
    augmentation = Augmentation(**options)
    augmented, targets = batch_of(augmentation, pixels)
    assert augmented.shape == pixels.shape and augmented.dtype == np.float32
    assert 0 <= augmented.min() and augmented.max() <= 255
    assert not np.allclose(augmented, pixels)
    again, again_targets = batch_of(augmentation, pixels)
    np.testing.assert_array_equal(again, augmented)  # the same generator state, the same batch
    np.testing.assert_array_equal(again_targets, targets)
    assert not np.array_equal(batch_of(augmentation, pixels, seed=1)[0], augmented)
    if augmentation.mixes_labels:
        assert targets.shape == (len(pixels), CLASSES) and targets.dtype == np.float32
    else:
        np.testing.assert_array_equal(targets, np.arange(len(pixels)))


def mixing_partners(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's own share and the other image's index (itself when unmixed)."""
    own = targets[np.arange(len(targets)), np.arange(len(targets))]
    others = targets.copy()
    others[np.arange(len(targets)), np.arange(len(targets))] = 0
    partner = np.where(others.max(-1) > 0, others.argmax(-1), np.arange(len(targets)))
    return own, partner


def test_mixup_targets_are_the_mixing_weights_of_the_images():
    pixels = constant_batch()
    mixed, targets = batch_of(Augmentation(mixup=0.8), pixels)
    np.testing.assert_allclose(targets.sum(-1), 1, rtol=1e-6)
    assert (targets >= 0).all() and (np.count_nonzero(targets, axis=-1) <= 2).all()
    assert (targets[:, len(pixels) :] == 0).all()  # only the batch's classes
    own, partner = mixing_partners(targets)
    expected = own[:, None, None, None] * pixels + (1 - own[:, None, None, None]) * pixels[partner]
    np.testing.assert_allclose(mixed, expected, atol=1e-3)


def test_cutmix_pastes_a_box_of_the_partner_and_mixes_the_targets_by_its_area():
    pixels = constant_batch(side=32)
    mixed, targets = batch_of(Augmentation(cutmix=1.0), pixels)
    np.testing.assert_allclose(targets.sum(-1), 1, rtol=1e-6)
    assert (targets >= 0).all() and (np.count_nonzero(targets, axis=-1) <= 2).all()
    own, partner = mixing_partners(targets)
    for image, share, other, source in zip(mixed, own, partner, range(len(pixels)), strict=True):
        assert set(np.unique(image)) <= {pixels[source, 0, 0, 0], pixels[other, 0, 0, 0]}
        kept = np.mean(image == pixels[source, 0, 0, 0]) if other != source else 1.0
        assert kept == pytest.approx(share, abs=0.1)
    assert (own < 1).any()


@pytest.mark.parametrize("switch, cutmix", [(0.0, False), (1.0, True)])
def test_with_mixup_and_cutmix_the_switch_probability_picks_one(switch, cutmix):
    augmentation = Augmentation(mixup=0.8, cutmix=1.0, switch_probability=switch)
    mixed, _ = batch_of(augmentation, constant_batch())
    pasted = all(set(np.unique(image)) <= set(constant_batch()[:, 0, 0, 0]) for image in mixed)
    assert pasted == cutmix


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(mixup=0.0), "mixup is MixUp's alpha and must be > 0"),
        (dict(mixup=-1.0), "mixup is MixUp's alpha and must be > 0"),
        (dict(cutmix=0.0), r"cutmix is CutMix's alpha and must be in \(0, 1\]"),
        (dict(cutmix=2.0), r"cutmix is CutMix's alpha and must be in \(0, 1\]"),
        (dict(random_erasing=1.5), r"random_erasing must be in \[0, 1\]"),
        (dict(random_erasing=-0.1), r"random_erasing must be in \[0, 1\]"),
        (dict(switch_probability=2.0), r"switch_probability must be in \[0, 1\]"),
        (dict(randaugment_magnitude=9.0), r"randaugment_magnitude must be in \[0, 1\]"),
        (dict(randaugment_ops=-1), "randaugment_ops must be an integer >= 0"),
        (dict(randaugment_ops=1.5), "randaugment_ops must be an integer >= 0"),
        (dict(erasing_scale=(0.0, 0.5)), "erasing_scale must satisfy 0 < low <= high <= 1"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        Augmentation(**options)


RECIPE_MIXUP = Augmentation(mixup=1.0)


def test_mixing_needs_the_class_count(pets_dir):
    import datasets

    with pytest.raises(ValueError, match="pass classes="):
        Augmentation(mixup=0.8).apply_batch(constant_batch(), np.arange(4), np.random.default_rng())
    train = load_image_classification(data_dir=pets_dir).train
    plain = train.cast_column("label", datasets.Value("int64"))
    with pytest.raises(ValueError, match=r"class_encode_column\('label'\)"):
        ImageBatches(
            plain, "image", "label", ImageProcessor(32), augmentation=Augmentation(mixup=1)
        )


def test_loader_batches_are_reproducible_and_carry_target_distributions(pets_dir):
    data = load_image_classification(data_dir=pets_dir)
    augmentation = Augmentation(**RECIPE)
    train = make_loaders(data, 32, batch_size=8, augmentation=augmentation, seed=3)["train"]
    images, targets = train[1]
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.float32
    assert -1 <= images.min() and images.max() <= 1  # normalised after augmenting
    assert targets.shape == (8, len(PETS)) and targets.dtype == np.float32
    np.testing.assert_allclose(targets.sum(-1), 1, rtol=1e-6)
    same = make_loaders(data, 32, batch_size=8, augmentation=augmentation, seed=3)["train"]
    for got, expected in zip(same[1], (images, targets), strict=True):
        np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(train[0][0], images)
    train.on_epoch_end()
    assert not np.array_equal(train[1][0], images)
    plain = make_loaders(data, 32, batch_size=8, augmentation=Augmentation(), seed=3)["train"]
    own = plain[1][1]  # the same rows, unmixed: each keeps a share of its own label
    assert (targets[np.arange(8), own] > 0).all()


# The loss, the accuracy and training on mixed targets


def test_class_crossentropy_and_accuracy_take_labels_and_distributions():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]], np.float32)
    labels = np.array([0, 2])
    mixed = np.array([[0.6, 0.4, 0.0], [0.0, 0.3, 0.7]], np.float32)
    log_probabilities = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    loss = ClassCrossentropy(label_smoothing=0.1, from_logits=True)
    for targets in (np.eye(3)[labels], mixed):
        smoothed = targets * 0.9 + 0.1 / 3
        expected = -(smoothed * log_probabilities).sum(-1).mean()
        for y in (targets, labels) if targets is not mixed else (mixed,):
            np.testing.assert_allclose(float(to_numpy(loss(y, logits))), expected, rtol=1e-5)
    for y, expected in ((labels, 0.5), (mixed, 0.5), (np.array([0, 1]), 1.0)):
        accuracy = ClassAccuracy()
        accuracy.update_state(y, logits)
        assert float(to_numpy(accuracy.result())) == expected
    assert ClassAccuracy.from_config(ClassAccuracy().get_config()).name == "accuracy"


def mixed_batch(size: int = 8, classes: int = 3):
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (size, 32, 32, 3)).astype(np.float32)
    labels = np.arange(size) % classes
    augmentation = Augmentation(mixup=0.8, cutmix=1.0)
    pixels, targets = augmentation.apply_batch(pixels, labels, np.random.default_rng(1), classes)
    return (pixels / 127.5 - 1).astype(np.float32), targets, labels


def test_fit_on_mixed_targets_with_label_smoothing_then_evaluate_on_labels():
    model = ViT(tiny_config(classes=3, classifier_activation=None))
    compile_for_finetuning(model, total_steps=8, learning_rate=3e-3, label_smoothing=0.1)
    images, targets, labels = mixed_batch()
    losses = [float(model.train_on_batch(images, targets)[0]) for _ in range(6)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    loss, accuracy = model.evaluate(images, labels, verbose=0)  # integer labels after soft ones
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0


def test_distiller_fits_on_mixed_targets():
    distiller = Distiller(tiny_student(), tiny_teacher(), mode="hard", label_smoothing=0.1)
    compile_for_finetuning(distiller, total_steps=8, learning_rate=3e-3)
    images, targets, _ = mixed_batch()
    losses = [float(distiller.train_on_batch(images, targets)[0]) for _ in range(4)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_finetune_script_trains_with_deit_augmentations(pets_dir, tmp_path):
    flags = ["--mixup=0.8", "--cutmix=1.0", "--random-erasing=0.25"]
    if keras.backend.backend() != "jax":
        flags += ["--randaugment=2", "--randaugment-magnitude=0.9"]
    accuracy = finetune_script().main(
        [f"--data-dir={pets_dir}", "--epochs=1", "--batch-size=8", *flags]
        + [f"--output={tmp_path / 'run'}"]
    )
    assert 0.0 <= accuracy <= 1.0
    with (tmp_path / "run" / "history.csv").open() as history:
        row = next(csv.DictReader(history))
    assert all(math.isfinite(float(row[key])) for key in ("loss", "accuracy", "val_accuracy"))
