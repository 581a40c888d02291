"""keras_vit.data: loading and splitting, augmentation, batching, the digits export, a real fit."""

import math
import os
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

import keras_vit
from keras_vit.data import (
    Augmentation,
    ImageBatches,
    export_digits_imagefolder,
    load_image_classification,
    make_loaders,
)
from tests.conftest import IMAGES_PER_PET, PETS


@pytest.fixture(scope="module")
def pets(pets_dir):
    return load_image_classification(data_dir=pets_dir)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return export_digits_imagefolder(tmp_path_factory.mktemp("digits") / "export")


def image_paths(split: datasets.Dataset) -> list[str]:
    undecoded = split.cast_column("image", datasets.Image(decode=False))
    paths = [image["path"] for image in undecoded["image"]]
    assert all(paths)
    return paths


def all_batches(batches: ImageBatches) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*(batches[index] for index in range(len(batches))), strict=True)
    return np.concatenate(images), np.concatenate(labels)


def labelled_images(count: int, features: dict, **columns: list) -> datasets.Dataset:
    """An in-memory dataset of random grayscale 16x16 images with the given features."""
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(count)]
    all_features = datasets.Features({"img": datasets.Image(), **features})
    return datasets.Dataset.from_dict({"img": images, **columns}, features=all_features)


# Loading and splitting.


def test_image_folder_columns_and_classes(pets):
    assert (pets.image_column, pets.label_column) == ("image", "label")
    assert pets.label_names == list(PETS)
    assert pets.id2label == {0: "cat", 1: "dog", 2: "fox"}
    assert pets.test is None
    assert len(pets.train) + len(pets.validation) == len(PETS) * IMAGES_PER_PET
    assert len(pets.validation) == math.ceil(0.1 * len(PETS) * IMAGES_PER_PET)
    assert not set(image_paths(pets.train)) & set(image_paths(pets.validation))


def test_validation_split_is_deterministic_and_stratified(pets_dir):
    first, second = (
        load_image_classification(data_dir=pets_dir, validation_fraction=0.25) for _ in range(2)
    )
    assert image_paths(first.validation) == image_paths(second.validation)
    other_seed = load_image_classification(data_dir=pets_dir, validation_fraction=0.25, seed=1)
    assert set(image_paths(other_seed.validation)) != set(image_paths(first.validation))
    assert np.bincount(first.validation["label"]).tolist() == [3, 3, 3]
    assert np.bincount(first.train["label"]).tolist() == [9, 9, 9]


def test_in_memory_dataset_with_alternative_column_names():
    names = datasets.ClassLabel(names=["a", "b"])
    train = labelled_images(
        20,
        {"source": datasets.ClassLabel(names=["x", "y", "z"]), "labels": names},
        source=[0] * 20,
        labels=[0, 1] * 10,
    )
    data = load_image_classification(train)
    assert (data.image_column, data.label_column, data.label_names) == ("img", "labels", ["a", "b"])
    assert (len(data.train), len(data.validation), data.test) == (18, 2, None)
    images, labels = make_loaders(data, 8, batch_size=4)["validation"][0]
    assert images.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    assert sorted(labels.tolist()) == [0, 1]


def test_given_validation_and_test_splits_are_used():
    def split(count):
        names = datasets.ClassLabel(names=["a", "b"])
        return labelled_images(count, {"label": names}, label=[0, 1] * (count // 2))

    splits = datasets.DatasetDict(train=split(10), valid=split(4), test=split(6))
    data = load_image_classification(splits, image_column="img")
    assert (len(data.train), len(data.validation), len(data.test)) == (10, 4, 6)


# Errors.


def test_no_image_column():
    table = datasets.Dataset.from_dict({"text": ["a", "b"], "number": [1, 2]})
    with pytest.raises(ValueError, match=r"no image column.*text: Value\('string'\).*image_col"):
        load_image_classification(table)


def test_label_column_of_plain_ints():
    table = labelled_images(4, {"label": datasets.Value("int64")}, label=[0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"'label' is .*not a datasets.ClassLabel.*class_encode"):
        load_image_classification(table)


def test_unknown_override_column(pets_dir):
    with pytest.raises(ValueError, match=r"no column 'picture'.*image: Image"):
        load_image_classification(data_dir=pets_dir, image_column="picture")


def test_single_class():
    table = labelled_images(4, {"label": datasets.ClassLabel(names=["only"])}, label=[0] * 4)
    with pytest.raises(ValueError, match=r"1 class\(es\) \['only'\].*at least 2"):
        load_image_classification(table)


@pytest.mark.parametrize("layout", ["cat", "train/cat", "."])
def test_folder_of_one_class_needs_two(pets_dir, tmp_path, layout):
    folder = tmp_path / "one"
    shutil.copytree(pets_dir / "cat", folder / layout)
    with pytest.raises(
        ValueError, match=r"folder\(s\) \['(cat|train/cat|\.)'\]: .*at least 2 classes"
    ):
        load_image_classification(data_dir=folder)


@pytest.fixture
def damaged_pets(pets_dir, tmp_path):
    """A copy of the pets folder with a truncated JPEG, a truncated PNG and a text "image"."""
    folder = Path(shutil.copytree(pets_dir, tmp_path / "pets"))
    bad = [folder / "cat" / "3.jpg", folder / "dog" / "0.png", folder / "fox" / "5.png"]
    for path in bad[:2]:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    bad[2].write_text("not an image")
    return folder, bad


def test_unreadable_images_are_all_named_up_front(damaged_pets):
    folder, bad = damaged_pets
    with pytest.raises(
        ValueError, match=r"3 of 36 images cannot be read.*remove or replace them"
    ) as error:
        load_image_classification(data_dir=folder)
    named = [line.split(": ")[0].strip() for line in str(error.value).splitlines()[1:]]
    assert sorted(named) == sorted(str(path.resolve()) for path in bad)


def test_unchecked_folder_loads_despite_bad_images(damaged_pets):
    data = load_image_classification(data_dir=damaged_pets[0], check_images=False)
    assert len(data.train) + len(data.validation) == len(PETS) * IMAGES_PER_PET


def test_empty_and_missing_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no images.*DIR/<class>/<image>.png"):
        load_image_classification(data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"does not exist.*DIR/<class>/<image>.png"):
        load_image_classification(data_dir=tmp_path / "missing")


def test_source_or_data_dir_not_both(pets, pets_dir):
    for arguments in ({"source": pets.train, "data_dir": pets_dir}, {}):
        with pytest.raises(ValueError, match="exactly one of source=.*data_dir="):
            load_image_classification(**arguments)


# Augmentation.


def coordinates(height: int, width: int) -> np.ndarray:
    """An image whose pixels hold their own (row, column)."""
    rows, columns = np.mgrid[:height, :width]
    return np.stack([rows, columns, np.zeros_like(rows)], axis=-1).astype(np.uint8)


def test_augmentation_off_is_identity(rng):
    image = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)
    off = Augmentation(random_resized_crop=False, horizontal_flip=False)
    np.testing.assert_array_equal(off.apply(image, rng), image)


def test_crop_is_a_sub_image_within_scale_and_ratio():
    image = coordinates(60, 80)
    crop = Augmentation(horizontal_flip=False, scale=(0.25, 0.5), ratio=(0.5, 2.0))
    for seed in range(20):
        out = crop.apply(image, np.random.default_rng(seed))
        height, width = out.shape[:2]
        top, left = out[0, 0, :2]
        np.testing.assert_array_equal(out, image[top : top + height, left : left + width])
        # Rounding each side to whole pixels moves the area by at most ~(h + w) / 2 pixels.
        assert 0.25 - 0.02 <= height * width / (60 * 80) <= 0.5 + 0.02
        assert 0.5 - 0.05 <= width / height <= 2.0 + 0.1


def test_impossible_crop_falls_back_to_a_central_crop():
    image = coordinates(40, 40)
    wide = Augmentation(horizontal_flip=False, scale=(1.0, 1.0), ratio=(2.0, 2.0))
    np.testing.assert_array_equal(wide.apply(image, np.random.default_rng(0)), image[10:30])


def test_flip_is_exactly_left_right():
    image = coordinates(6, 9)
    flip = Augmentation(random_resized_crop=False)
    outputs = [flip.apply(image, np.random.default_rng(seed)) for seed in range(10)]
    flipped = [not np.array_equal(out, image) for out in outputs]
    assert 0 < sum(flipped) < len(outputs)
    for out in (out for out, was_flipped in zip(outputs, flipped, strict=True) if was_flipped):
        np.testing.assert_array_equal(out, image[:, ::-1])


def test_same_seed_same_augmentation(rng):
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    augment = Augmentation()
    first, again = (augment.apply(image, np.random.default_rng(7)) for _ in range(2))
    np.testing.assert_array_equal(first, again)
    others = [augment.apply(image, np.random.default_rng(seed)) for seed in range(3)]
    assert any(other.shape != first.shape or (other != first).any() for other in others)


# Batching.


def test_loader_batches(pets):
    loaders = make_loaders(pets, 32, batch_size=5)
    assert set(loaders) == {"train", "validation"}
    for name, batches in loaders.items():
        split = getattr(pets, name)
        assert len(batches) == math.ceil(len(split) / 5)
        images, labels = all_batches(batches)
        assert images.shape == (len(split), 32, 32, 3) and images.dtype == np.float32
        assert images.min() >= -1 and images.max() <= 1 and images.std() > 0.1
        assert labels.dtype == np.int32 and set(labels.tolist()) <= {0, 1, 2}
        assert sorted(labels.tolist()) == sorted(split["label"])
    assert len(loaders["train"][len(loaders["train"]) - 1][1]) == len(pets.train) % 5
    with pytest.raises(IndexError):
        loaders["train"][len(loaders["train"])]
    assert all_batches(loaders["validation"])[1].tolist() == pets.validation["label"]
    assert all_batches(loaders["train"])[1].tolist() != pets.train["label"]


def test_shuffle_reorders_each_epoch_and_keeps_the_images(pets):
    processor = keras_vit.ImageProcessor(32)
    batches = ImageBatches(pets.train, "image", "label", processor, batch_size=8, shuffle=True)
    images, labels = all_batches(batches)
    batches.on_epoch_end()
    next_images, next_labels = all_batches(batches)
    assert labels.tolist() != next_labels.tolist()
    assert sorted(labels.tolist()) == sorted(next_labels.tolist())
    assert sorted(map(bytes, images)) == sorted(map(bytes, next_images))


def test_augmented_batches_depend_only_on_epoch_and_index(pets):
    def augmented():
        processor = keras_vit.ImageProcessor(32)
        return ImageBatches(
            pets.train, "image", "label", processor, 8, shuffle=True, augmentation=Augmentation()
        )

    first, second = augmented(), augmented()
    all_batches(second)
    np.testing.assert_array_equal(first[2][0], second[2][0])
    first.on_epoch_end()
    second.on_epoch_end()
    np.testing.assert_array_equal(first[2][0], second[2][0])
    assert not np.array_equal(first[2][0], augmented()[2][0])


# The digits export.


def exported(directory, split: str) -> dict[int, str]:
    """Digit row index -> class folder name, of every PNG in one split."""
    return {int(path.stem): path.parent.name for path in (directory / split).glob("*/*.png")}


def test_digits_export_files(digits_dir):
    train, test = exported(digits_dir, "train"), exported(digits_dir, "test")
    assert len(train) + len(test) == 1797
    assert not train.keys() & test.keys()
    assert abs(len(test) / 1797 - 0.2) < 0.01
    targets = load_digits().target
    for split in (train, test):
        assert set(split.values()) == {str(digit) for digit in range(10)}
        assert all(str(targets[row]) == digit for row, digit in split.items())


def test_digits_png_round_trips(digits_dir):
    path = next((digits_dir / "test" / "7").glob("*.png"))
    with Image.open(path) as png:
        assert png.mode == "L"
        pixels = np.asarray(png)
    digit = load_digits().images[int(path.stem)]
    expected = digit * 255 / 16
    assert pixels.shape == (8, 8)
    np.testing.assert_allclose(pixels, expected, atol=0.5)


def test_digits_export_is_not_rewritten(digits_dir):
    png = next(digits_dir.glob("train/*/*.png"))
    os.utime(png, ns=(10**18, 10**18))
    assert export_digits_imagefolder(digits_dir) == digits_dir
    assert png.stat().st_mtime_ns == 10**18


def test_interrupted_digits_export_leaves_nothing(tmp_path, monkeypatch):
    saved = []

    def failing_save(image, path, *args, **kwargs):
        saved.append(path)
        if len(saved) == 50:
            raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        export_digits_imagefolder(tmp_path / "digits")
    assert not any(path.is_relative_to(tmp_path / "digits") for path in saved)
    assert list(tmp_path.iterdir()) == []


def test_digits_export_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="neither empty nor a complete digits export"):
        export_digits_imagefolder(tmp_path)


def test_digits_load_as_image_classification(digits_dir):
    data = load_image_classification(data_dir=digits_dir)
    assert data.label_names == [str(digit) for digit in range(10)]
    assert len(data.test) == len(exported(digits_dir, "test"))
    assert len(data.train) + len(data.validation) == len(exported(digits_dir, "train"))
    assert set(data.validation["label"]) == set(range(10))


def test_label_fraction_keeps_a_stratified_share_of_train_only(digits_dir):
    full = load_image_classification(data_dir=digits_dir)
    tenth, again = (
        load_image_classification(data_dir=digits_dir, label_fraction=0.1) for _ in range(2)
    )
    kept = image_paths(tenth.train) + image_paths(tenth.validation)
    assert len(kept) == int(0.1 * (len(full.train) + len(full.validation)))
    assert image_paths(tenth.train) == image_paths(again.train)
    assert image_paths(tenth.test) == image_paths(full.test)
    assert set(image_paths(tenth.validation)) & set(image_paths(tenth.train)) == set()
    labels = [*tenth.train["label"], *tenth.validation["label"]]
    per_class = np.bincount(labels, minlength=10)
    assert per_class.min() >= 14 and per_class.max() <= 15


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_label_fraction_outside_the_unit_interval_is_refused(digits_dir, fraction):
    with pytest.raises(ValueError, match=r"label_fraction must be in \(0, 1\]"):
        load_image_classification(data_dir=digits_dir, label_fraction=fraction)


def test_label_fraction_too_small_for_the_classes_is_refused(digits_dir):
    with pytest.raises(ValueError, match="too few for 10 classes"):
        load_image_classification(data_dir=digits_dir, label_fraction=0.005)


# Training.


def test_fit_evaluate_predict(pets):
    loaders = make_loaders(pets, 32, batch_size=8, workers=2)
    model = keras_vit.ViT(
        keras_vit.ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            classes=3,
            # The head outputs logits by default, which this loss (from_logits=False) turns to NaN.
            classifier_activation="softmax",
        )
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(loaders["train"], validation_data=loaders["validation"], epochs=1)
    assert np.isfinite(history.history["loss"][0]) and np.isfinite(history.history["val_loss"][0])
    assert loaders["train"].epoch > 0  # fit called on_epoch_end
    loss, accuracy = model.evaluate(loaders["validation"])
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    scores = model.predict(loaders["validation"])
    assert scores.shape == (len(pets.validation), 3) and np.isfinite(scores).all()
