"""`keras-vit convert`: every destination kind, --verify, and refusals."""

import keras
import numpy as np
import pytest

from keras_vit import ViT
from keras_vit.cli import main
from tests.conftest import to_numpy
from tests.conversion.conftest import random_images


@pytest.fixture
def source(hf_checkpoints):
    directory, _ = hf_checkpoints["labels"]
    return directory


def expected_scores(source, size=None):
    model = ViT.from_pretrained(source, verbose=False, **({"image_size": size} if size else {}))
    return model, to_numpy(model(random_images(model)))


def test_convert_to_keras_file_with_verify(source, tmp_path, capsys):
    destination = tmp_path / "vit.keras"
    assert main(["convert", str(source), str(destination), "--verify"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith(f"converted {source} -> {destination}: ")
    difference = float(summary.rsplit(" ", 1)[-1])
    assert difference < 1e-4
    model, scores = expected_scores(source)
    loaded = keras.saving.load_model(destination)
    np.testing.assert_array_equal(to_numpy(loaded(random_images(model))), scores)


def test_convert_to_weights_file_at_new_resolution(source, tmp_path, capsys):
    destination = tmp_path / "vit.weights.h5"
    assert main(["convert", str(source), str(destination), "--image-size", "48"]) == 0
    model, scores = expected_scores(source, size=48)
    fresh = ViT(model.config)
    fresh.load_weights(destination)
    np.testing.assert_array_equal(to_numpy(fresh(random_images(model))), scores)


def test_convert_to_directory_with_new_head(source, tmp_path):
    destination = tmp_path / "out"
    assert main(["convert", str(source), str(destination), "--classes", "7"]) == 0
    model = ViT.from_pretrained(destination)
    assert model.config.classes == 7
    assert (destination / "config.json").is_file()


def test_existing_destination_is_refused(source, tmp_path, capsys):
    destination = tmp_path / "vit.keras"
    destination.write_text("precious")
    assert main(["convert", str(source), str(destination)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert destination.read_text() == "precious"
    assert main(["convert", str(source), str(destination), "--overwrite"]) == 0
    assert keras.saving.load_model(destination).config.classes == 3


def test_bad_source_is_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["convert", str(tmp_path), str(tmp_path / "x.keras")]) == 1
    assert "has no config.json" in capsys.readouterr().err
    assert not (tmp_path / "x.keras").exists()
