"""`keras-vit explain`: the three PNGs, the top-5 predictions, and clean errors."""

import numpy as np
import pytest
from PIL import Image

from keras_vit import ImageProcessor, ViT
from keras_vit.cli import EXPLAIN_FILES, main
from tests.conftest import PETS, tiny_config, to_numpy


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "pet.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
        path
    )
    return path


def saved_model(directory, **overrides):
    """A tiny random model whose head is not all zeros, saved with `save_pretrained`."""
    model = ViT(tiny_config(**overrides))
    if model.head is not None:
        kernel = model.head.kernel
        kernel.assign(np.random.default_rng(1).standard_normal(tuple(kernel.shape)))
    model.save_pretrained(directory)
    return model


def explain(image_path, tmp_path):
    """Runs `keras-vit explain` on the model saved in tmp_path/model; checks its three PNGs."""
    output = tmp_path / "out"
    arguments = ["--model", str(tmp_path / "model"), "--output", str(output)]
    assert main(["explain", str(image_path), *arguments]) == 0
    assert sorted(p.name for p in output.iterdir()) == sorted(EXPLAIN_FILES)
    for name in EXPLAIN_FILES:
        with Image.open(output / name) as png:
            assert png.format == "PNG" and min(png.size) >= 300


def test_explain_writes_three_pngs_and_the_top_predictions(tmp_path, image_path, capsys):
    model = saved_model(
        tmp_path / "model", classes=3, id2label=dict(enumerate(PETS)), classifier_activation=None
    )
    explain(image_path, tmp_path)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "top-5 predictions:"
    printed = [line.split() for line in lines[1:4]]  # three classes: three lines
    assert lines[4].startswith("wrote ")
    logits = to_numpy(model(ImageProcessor(32).preprocess(np.asarray(Image.open(image_path)))))[0]
    probabilities = np.exp(logits) / np.exp(logits).sum()
    expected = [(PETS[index], probabilities[index]) for index in np.argsort(-probabilities)]
    assert [label for _, label in printed] == [label for label, _ in expected]
    np.testing.assert_allclose(
        [float(score) for score, _ in printed], [p for _, p in expected], atol=1e-4
    )


def test_explain_a_model_without_a_head_prints_no_predictions(tmp_path, image_path, capsys):
    saved_model(tmp_path / "model", image_size=(32, 48))
    explain(image_path, tmp_path)
    assert "top-5" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model", "NotAModel"], "Unknown model 'NotAModel'"),
        (["--model", "./no/such/dir"], "is not a directory"),
        (["--model", "nobody/no-such-vit"], "nobody/no-such-vit"),
        (["--model", "ViTTi16", "--weights", "nosuch"], "Unknown weights 'nosuch'"),
    ],
)
def test_bad_models_are_errors_not_tracebacks(tmp_path, image_path, capsys, arguments, message):
    output = tmp_path / "out"
    assert main(["explain", str(image_path), *arguments, "--output", str(output)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("keras-vit explain: error: ") and message in error
    assert "Traceback" not in error
    assert not output.exists()


def test_weights_need_a_variant(tmp_path, image_path, capsys):
    saved_model(tmp_path / "model")
    arguments = [
        "explain",
        str(image_path),
        "--model",
        str(tmp_path / "model"),
        "--weights",
        "imagenet",
    ]
    assert main(arguments) == 1
    assert "--weights goes with a variant name" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, b"not an image"])
def test_bad_images_are_errors_not_tracebacks(tmp_path, capsys, content):
    path = tmp_path / "cat.png"
    if content is not None:
        path.write_bytes(content)
    assert main(["explain", str(path), "--model", "ViTB16", "--output", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("keras-vit explain: error: ") and "cat.png" in error
    assert not (tmp_path / "out").exists()
