"""The whole fine-tuning path on a tiny image folder, and the examples/finetune.py main job."""

import csv
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_vit import ViT, ViTConfig
from keras_vit.data import Augmentation, load_image_classification, make_loaders
from keras_vit.training import compile_for_finetuning, finetuning_callbacks
from tests.conftest import PETS, TINY, to_numpy

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def finetune_script():
    """examples/finetune.py as a module, to call its functions in this process."""
    spec = importlib.util.spec_from_file_location("finetune", ROOT / "examples" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    (run,) = json.loads((tmp_path / "run" / "run.json").read_text())["runs"]
    assert (run["status"], run["epochs"], run["arguments"]["epochs"]) == ("completed", 1, 1)


# The script's output folder, Ctrl-C, and its checks of flags and data.


def run_script(*arguments: str, **popen) -> subprocess.Popen:
    """Starts examples/finetune.py on this backend, with unbuffered output."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "KERAS_BACKEND": keras.backend.backend(),
    }
    script = str(ROOT / "examples" / "finetune.py")
    return subprocess.Popen(
        [sys.executable, script, "--batch-size=8", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def run_json(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def history(folder: Path) -> list[dict[str, str]]:
    with (folder / "history.csv").open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def interrupted(pets_dir, tmp_path_factory):
    """An --output folder whose run got SIGINT during its second epoch, and its stderr."""
    output = tmp_path_factory.mktemp("interrupted") / "run"
    process = run_script(f"--data-dir={pets_dir}", "--epochs=1000", f"--output={output}")
    for line in process.stdout:
        if "val_accuracy" in line:  # epoch 1 has ended, and its callbacks have run
            process.send_signal(signal.SIGINT)
            break
    returncode, _, err = finish(process)
    assert returncode == 130, err[-3000:]
    return output, err


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "run"))


def test_sigint_saves_the_run_and_exits_130(interrupted):
    output, err = interrupted
    assert "Traceback" not in err
    assert f"saved best.weights.h5, history.csv, training_curves.png, model in {output}" in err
    (run,) = run_json(output)["runs"]
    assert run["status"] == "interrupted" and run["epochs"] >= 1
    assert len(history(output)) == run["epochs"]
    artefacts = run_json(output)["artefacts"]
    assert set(artefacts) == {"best.weights.h5", "history.csv", "training_curves.png", "model"}
    assert {artefact["run"] for artefact in artefacts.values()} == {run["id"]}
    saved = ViT.from_pretrained(output / "model")  # the best epoch, saved as a model
    best = ViT.from_pretrained(output / "model")
    best.load_weights(str(output / "best.weights.h5"))
    for weight, expected in zip(saved.weights, best.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(weight), to_numpy(expected))


def test_a_folder_with_a_run_is_refused(interrupted, tmp_path):
    output = copy_of(interrupted[0], tmp_path)
    before = (output / "run.json").read_bytes()
    with pytest.raises(SystemExit) as refused:
        finetune_script().main([f"--output={output}", "--epochs=1"])
    message = str(refused.value.code)
    assert str(output) in message and "--overwrite" in message and "--resume" in message
    assert "\n" not in message  # exit status 1, one line, no traceback
    assert (output / "run.json").read_bytes() == before


def test_resume_continues_from_the_best_weights(interrupted, pets_dir, tmp_path):
    output = copy_of(interrupted[0], tmp_path)
    earlier = history(output)
    best_weights = (output / "best.weights.h5").read_bytes()
    returncode, out, err = finish(
        run_script(f"--data-dir={pets_dir}", "--epochs=1", f"--output={output}", "--resume")
    )
    assert returncode == 0, err[-3000:]
    first, second = run_json(output)["runs"]
    assert (first["status"], second["status"], second["epochs"]) == ("interrupted", "completed", 1)
    rows = history(output)
    assert rows[:-1] == earlier and rows[-1]["epoch"] == str(len(earlier))
    artefacts = run_json(output)["artefacts"]
    assert artefacts["history.csv"]["run"] == artefacts["model"]["run"] == second["id"]
    improved = float(rows[-1]["val_accuracy"]) > max(float(row["val_accuracy"]) for row in earlier)
    assert artefacts["best.weights.h5"]["run"] == (second if improved else first)["id"]
    assert ((output / "best.weights.h5").read_bytes() == best_weights) is not improved


def test_overwrite_leaves_nothing_of_the_old_run(interrupted, pets_dir, tmp_path):
    output = copy_of(interrupted[0], tmp_path)
    returncode, out, err = finish(
        run_script(f"--data-dir={pets_dir}", "--epochs=1", f"--output={output}", "--overwrite")
    )
    assert returncode == 0, err[-3000:]
    (run,) = run_json(output)["runs"]
    assert run["status"] == "completed" and len(history(output)) == 1
    artefacts = run_json(output)["artefacts"]
    assert len(artefacts) == 4 and {a["run"] for a in artefacts.values()} == {run["id"]}


def test_resume_needs_saved_weights(tmp_path):
    with pytest.raises(SystemExit, match=r"--resume: .* holds no best.weights.h5"):
        finetune_script().main([f"--output={tmp_path / 'new'}", "--resume"])


@pytest.mark.parametrize(
    "flag", ["--lr=-0.001", "--lr=0", "--lr=nan", "--batch-size=0", "--epochs=0", "--epochs=-2"]
)
def test_non_positive_flags_are_refused(flag, capsys):
    with pytest.raises(SystemExit) as refused:
        finetune_script().parse_arguments([flag])
    assert refused.value.code == 2
    name, value = flag.split("=")
    assert f"argument {name}: must be a positive number, got {value}" in capsys.readouterr().err


def test_positive_flags_parse():
    args = finetune_script().parse_arguments(["--lr=3e-4", "--batch-size=4", "--epochs=1"])
    assert (args.lr, args.batch_size, args.epochs) == (3e-4, 4, 1)


def test_bad_images_are_refused_before_anything_is_written(pets_dir, tmp_path):
    folder = Path(shutil.copytree(pets_dir, tmp_path / "pets"))
    truncated = folder / "dog" / "3.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(SystemExit) as refused:
        finetune_script().main([f"--data-dir={folder}", f"--output={tmp_path / 'run'}"])
    message = str(refused.value.code)
    assert str(truncated) in message and "remove or replace them" in message
    assert not (tmp_path / "run").exists()


# The script on family checkpoints: any family's directory as --model, and --linear-probe.

FAMILY_CHECKPOINTS = {
    # DINOv2 with registers and layer scale, no head: the linear probe's classic case.
    "dinov2_registers": (
        "Dinov2WithRegistersModel",
        "Dinov2WithRegistersConfig",
        dict(image_size=32, patch_size=8, mlp_ratio=2, layerscale_value=0.5, num_register_tokens=2),
    ),
    # A distilled DeiT with both heads, for the pets' three classes.
    "deit_distilled": (
        "DeiTForImageClassificationWithTeacher",
        "DeiTConfig",
        dict(image_size=32, patch_size=8, intermediate_size=64, num_labels=3),
    ),
}


@pytest.mark.parametrize(
    ("name", "probe"),
    [("dinov2_registers", True), ("deit_distilled", True), ("deit_distilled", False)],
)
def test_finetune_a_family_checkpoint(pets_dir, tmp_path, name, probe):
    from tests.support.family_models import make_family_model, write_hub_repo

    checkpoint = tmp_path / name
    write_hub_repo(
        make_family_model(*FAMILY_CHECKPOINTS[name][:2], 0, **FAMILY_CHECKPOINTS[name][2]),
        checkpoint,
    )
    output = tmp_path / "run"
    arguments = [f"--data-dir={pets_dir}", f"--model={checkpoint}", "--epochs=1", "--lr=0.05"]
    accuracy = finetune_script().main(
        [*arguments, "--batch-size=8", f"--output={output}", *(["--linear-probe"] * probe)]
    )
    assert 0.0 <= accuracy <= 1.0
    before = ViT.from_pretrained(checkpoint, classes=3, verbose=False)
    after = ViT.from_pretrained(output / "model", verbose=False)
    assert after.config.model_type == before.config.model_type
    assert after.config.id2label == dict(enumerate(PETS))
    heads = [p for p in ("head", "distillation_head") if getattr(after, p) is not None]
    assert heads == (["head", "distillation_head"] if name == "deit_distilled" else ["head"])
    changed = {
        new.path
        for old, new in zip(before.weights, after.weights, strict=True)
        if not np.array_equal(to_numpy(old), to_numpy(new))
    }
    head_weights = {f"{head}/{part}" for head in heads for part in ("kernel", "bias")}
    assert head_weights <= changed  # every head trained
    if probe:
        assert changed == head_weights  # and nothing else
    else:
        assert len(changed) > len(head_weights) + 10


def test_weights_go_with_a_variant_and_unknown_models_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="Unknown --model ViTB99"):
        finetune_script().main(["--model=ViTB99", f"--output={tmp_path}"])
    with pytest.raises(SystemExit, match="--weights imagenet goes with a variant name"):
        finetune_script().main(
            [f"--model={tmp_path}", "--weights=imagenet", f"--output={tmp_path}"]
        )


@pytest.mark.parametrize("positions", ["learned", "sincos"])
def test_the_small_model_takes_learned_or_fixed_sincos_positions(positions):
    script = finetune_script()
    args = script.parse_arguments([f"--position-embedding={positions}"])
    model = script.build_model(args, 3, dict(enumerate(PETS)))
    assert model.config.position_embedding == positions
    assert script.architecture(args).position_embedding == positions
    trainable = {variable.path for variable in model.trainable_weights}
    assert any("position_embedding" in path for path in trainable) == (positions == "learned")
