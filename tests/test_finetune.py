"""The whole fine-tuning path on a tiny image folder, and the examples/finetune.py main job."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

from keras_vit import ViT, ViTConfig
from keras_vit.data import Augmentation, load_image_classification, make_loaders
from keras_vit.training import compile_for_finetuning, finetuning_callbacks
from tests.conftest import PETS, TINY, to_numpy

ROOT = Path(__file__).resolve().parent.parent


def test_folder_to_fit_to_save_pretrained_and_back(pets_dir, tmp_path):
    data = load_image_classification(data_dir=pets_dir)
    model = ViT(ViTConfig(**TINY, classes=3, id2label=data.id2label, classifier_activation=None))
    assert model.config.id2label == dict(enumerate(PETS))
    loaders = make_loaders(data, 32, batch_size=8, augmentation=Augmentation())
    compile_for_finetuning(model, total_steps=12, learning_rate=3e-3)
    images, labels = loaders["train"][0]
    losses = [float(model.train_on_batch(images, labels)[0]) for _ in range(4)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    model.fit(
        loaders["train"],
        validation_data=loaders["validation"],
        epochs=1,
        steps_per_epoch=2,
        callbacks=finetuning_callbacks(tmp_path / "run"),
        verbose=0,
    )
    loss, accuracy = model.evaluate(loaders["validation"], verbose=0)
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0
    model.save_pretrained(tmp_path / "model")
    reloaded = ViT.from_pretrained(tmp_path / "model")
    assert reloaded.config.id2label == dict(enumerate(PETS))
    validation_images, _ = loaders["validation"][0]
    np.testing.assert_array_equal(
        to_numpy(reloaded.predict(validation_images, verbose=0)),
        to_numpy(model.predict(validation_images, verbose=0)),
    )
    assert (
        model.decode_predictions(model.predict(validation_images, verbose=0), top=1)[0][0][0]
        in PETS
    )


def test_finetune_script_prints_test_accuracy_last(pets_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "finetune.py"),
            f"--data-dir={pets_dir}",
            "--epochs=1",
            "--batch-size=8",
            "--workers=1",
            f"--output={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": keras.backend.backend()},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("test_accuracy: ") and 0.0 <= float(last.split()[-1]) <= 1.0
    assert len(last.split()[-1]) == 6  # four decimals
    assert "val_accuracy" in result.stdout  # per-epoch validation accuracy
    for name in ("best.weights.h5", "history.csv", "training_curves.png", "model/config.json"):
        assert (tmp_path / "run" / name).is_file(), name
