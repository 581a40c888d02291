"""examples/train_teacher.py: the CNN teacher of DeiT distillation, trained and saved."""

import importlib
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_vit import Distiller, ViT, ViTConfig
from tests.conftest import PETS, TINY, to_numpy

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def script(monkeypatch):
    """examples/train_teacher.py as a module (it imports finetune.py beside it)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("train_teacher")


def test_small_cnn_maps_images_to_logits(script):
    cnn = script.small_cnn(32, 7, width=4)
    assert cnn.output_shape == (None, 7)
    logits = to_numpy(cnn(np.random.default_rng(0).normal(size=(2, 32, 32, 3))))
    assert logits.shape == (2, 7) and not np.allclose(logits.sum(-1), 1.0)


def test_trains_saves_and_teaches(script, pets_dir, tmp_path, capsys):
    output = tmp_path / "teacher"
    arguments = [f"--data-dir={pets_dir}", "--epochs=1", "--batch-size=8", "--width=4"]
    accuracy = script.main([*arguments, f"--output={output}"])
    assert 0.0 <= accuracy <= 1.0
    assert capsys.readouterr().out.splitlines()[-1] == f"test_accuracy: {accuracy:.4f}"
    teacher = keras.saving.load_model(output / script.TEACHER_FILE)
    assert teacher.output_shape == (None, len(PETS))
    with pytest.raises(SystemExit, match="exists: pass --overwrite"):
        script.main([*arguments, f"--output={output}"])

    student = ViT(
        ViTConfig(**TINY, classes=len(PETS), distillation_token=True, distillation_head=True)
    )
    Distiller(student, output / script.TEACHER_FILE)  # fits the student's classes


def test_a_label_fraction_too_small_is_refused(script, pets_dir, tmp_path):
    with pytest.raises(SystemExit, match="too few for 3 classes"):
        script.main([f"--data-dir={pets_dir}", "--label-fraction=0.1", f"--output={tmp_path}"])
