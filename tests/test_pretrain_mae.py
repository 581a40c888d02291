"""examples/pretrain_mae.py end to end on a tiny folder, then finetune.py --weights on its model."""

import contextlib
import csv
import functools
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_vit import MaskedAutoencoder, ViT
from tests.conftest import PETS, TINY, to_numpy

ROOT = Path(__file__).resolve().parent.parent
# A decoder to match the TINY encoder.
DECODER_FLAGS = ["--decoder-hidden-size=16", "--decoder-layers=1", "--decoder-heads=2"]


@functools.cache
def pretrain_script():
    """examples/pretrain_mae.py as a module; its `finetune` attribute is examples/finetune.py."""
    path = ROOT / "examples" / "pretrain_mae.py"
    spec = importlib.util.spec_from_file_location("pretrain_mae", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pretrained(pets_dir, tmp_path_factory):
    """One epoch of MAE pretraining of a TINY encoder on the pets: the --output folder and
    the lines printed."""
    output = tmp_path_factory.mktemp("pretrain") / "run"
    script = pretrain_script()
    arguments = [f"--data-dir={pets_dir}", "--epochs=1", "--batch-size=8", f"--output={output}"]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        for key, value in TINY.items():  # the script's encoder is finetune.py's SMALL
            patch.setitem(script.finetune.SMALL, key, value)
        loss = script.main([*arguments, *DECODER_FLAGS])
    return output, loss, printed.getvalue().strip().splitlines()


def test_pretraining_writes_the_reconstructions_curves_history_and_model(pretrained):
    output, loss, lines = pretrained
    assert lines[-1] == f"final_loss: {loss:.4f}" and np.isfinite(loss)
    for epoch in ("000", "001"):  # before training, then after the epoch
        with Image.open(output / "reconstructions" / f"epoch_{epoch}.png") as png:
            assert png.format == "PNG" and png.size[0] > png.size[1]
    with (output / "history.csv").open(newline="") as file:
        (row,) = csv.DictReader(file)
    assert set(row) == {"epoch", "loss", "val_loss"} and float(row["loss"]) == pytest.approx(loss)
    assert (output / "training_curves.png").is_file()
    record = json.loads((output / "run.json").read_text())
    (run,) = record["runs"]
    assert (run["status"], run["epochs"], run["arguments"]["mask_ratio"]) == ("completed", 1, 0.75)
    assert set(record["artefacts"]) == {
        "reconstructions",
        "history.csv",
        "training_curves.png",
        "model",
    }
    mae = MaskedAutoencoder.from_pretrained(output / "model", verbose=False)
    assert mae.config.hidden_size == TINY["hidden_size"] and mae.mae_config.norm_pix_loss
    assert mae.mae_config.decoder_hidden_size == 16
    assert not [p.name for p in output.iterdir() if p.name.startswith(".")]  # no temporaries


def test_finetune_weights_dir_starts_from_the_pretrained_encoder(pretrained, pets_dir, tmp_path):
    model_dir = pretrained[0] / "model"
    finetune = pretrain_script().finetune
    args = finetune.parse_arguments([f"--weights={model_dir}", "--drop-path=0"])
    finetune.check_model(args)
    model = finetune.build_model(args, 3, dict(enumerate(PETS)))
    encoder = MaskedAutoencoder.from_pretrained(model_dir, verbose=False).encoder()
    assert model.config.hidden_size == TINY["hidden_size"]  # the checkpoint's architecture
    # A plain ViT (transformers has no MAE classifier) with MAE's fixed sin-cos positions.
    assert (model.config.model_type, model.config.position_embedding) == ("vit", "sincos")
    assert (model.config.pooling, model.config.classes) == ("token", 3)
    expected = {weight.path: to_numpy(weight) for weight in encoder.weights}
    assert {weight.path for weight in model.weights} - set(expected) == {"head/kernel", "head/bias"}
    for weight in model.weights:
        if weight.path in expected:
            np.testing.assert_array_equal(
                to_numpy(weight), expected[weight.path], err_msg=weight.path
            )

    output = tmp_path / "finetuned"
    accuracy = finetune.main(
        [f"--data-dir={pets_dir}", f"--weights={model_dir}", "--epochs=1", "--batch-size=8"]
        + [f"--output={output}"]
    )
    assert 0.0 <= accuracy <= 1.0
    finetuned = ViT.from_pretrained(output / "model", verbose=False)
    assert finetuned.config.id2label == dict(enumerate(PETS))
    assert (finetuned.config.hidden_size, finetuned.config.model_type) == (
        TINY["hidden_size"],
        "vit",
    )


def test_finetune_small_weights_must_be_a_directory(tmp_path):
    finetune = pretrain_script().finetune
    with pytest.raises(SystemExit, match=r"--weights imagenet21k is no directory"):
        finetune.main(["--weights=imagenet21k", f"--output={tmp_path}"])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--mask-ratio=0"], r"--mask-ratio 0.0: mask_ratio must be .* strictly between 0 and 1"),
        (["--mask-ratio=1.2"], r"--mask-ratio 1.2: mask_ratio must be .* strictly between 0 and 1"),
        (["--patch-size=4", "--mask-ratio=0.99"], r"leaves the encoder none of the 64 patches"),
        (["--image-size=36"], r"--image-size / --patch-size: .*not divisible by patch_size 8"),
        (["--decoder-hidden-size=30"], r"--decoder-hidden-size / -heads: .*divisible by"),
    ],
)
def test_bad_flags_are_refused_before_anything_is_written(flags, message, tmp_path):
    with pytest.raises(SystemExit, match=message) as refused:
        pretrain_script().main([*flags, f"--output={tmp_path / 'run'}"])
    assert "\n" not in str(refused.value.code)
    assert not (tmp_path / "run").exists()


def test_a_folder_with_a_run_is_refused_without_overwrite(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n")
    with pytest.raises(SystemExit) as refused:
        pretrain_script().main([f"--output={tmp_path}"])
    message = str(refused.value.code)
    assert str(tmp_path) in message and "not empty" in message and "--overwrite" in message
    assert (tmp_path / "history.csv").read_text() == "epoch,loss\n"
    pretrain_script().check_output(tmp_path, overwrite=True)  # --overwrite lets it through
