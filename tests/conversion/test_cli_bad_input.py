"""`keras-vit`: a damaged checkpoint or image gives one line naming the file, exit status 1,
and no traceback."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_vit import ViT, load_image
from keras_vit.cli import EXPLAIN_FILES, main
from tests.conftest import tiny_config


@pytest.fixture
def checkpoint(hf_checkpoints, tmp_path):
    """A copy of a real transformers checkpoint, free to damage."""
    original, _ = hf_checkpoints["labels"]
    return shutil.copytree(original, tmp_path / "checkpoint")


def edit_config(directory, edit):
    path = directory / "config.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    return path


def one_line_error(capsys, *arguments) -> str:
    assert main(list(arguments)) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    (line,) = captured.err.strip().splitlines()
    return line


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda config: [1, 2], "must hold a JSON object"),
        (lambda config: {**config, "num_attention_heads": 0}, "num_attention_heads must be"),
        (lambda config: {**config, "hidden_size": "32"}, "hidden_size must be a positive int"),
        (lambda config: {**config, "layer_norm_eps": -1}, "layer_norm_eps must be"),
        (lambda config: {**config, "id2label": {"x": "cat"}}, "id2label keys must be"),
    ],
)
def test_a_bad_config_json_is_named(checkpoint, tmp_path, capsys, edit, expected):
    path = edit_config(checkpoint, edit)
    line = one_line_error(capsys, "convert", str(checkpoint), str(tmp_path / "out"))
    assert str(path) in line and expected in line


def test_invalid_json_is_named(checkpoint, tmp_path, capsys):
    (checkpoint / "config.json").write_text('{"model_type": "vit",')
    line = one_line_error(capsys, "convert", str(checkpoint), str(tmp_path / "out"))
    assert str(checkpoint / "config.json") in line and "not valid JSON" in line


def test_a_bad_keras_vit_config_json_is_named(tmp_path, capsys):
    ViT(tiny_config(classes=3)).save_pretrained(tmp_path / "ours")
    path = tmp_path / "ours" / "keras_vit_config.json"
    stored = json.loads(path.read_text())
    stored["config"]["patch_size"] = 8.0
    path.write_text(json.dumps(stored))
    line = one_line_error(capsys, "convert", str(tmp_path / "ours"), str(tmp_path / "out"))
    assert str(path) in line and "patch_size must be a positive int" in line


def test_a_sharded_index_without_weight_map_is_named(checkpoint, tmp_path, capsys):
    (checkpoint / "model.safetensors").rename(checkpoint / "model-00001-of-00001.safetensors")
    index = checkpoint / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 1}}))
    line = one_line_error(capsys, "convert", str(checkpoint), str(tmp_path / "out"))
    assert str(index) in line and "has no weight_map" in line


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    """A 13000x13000 PNG of one colour: a small file with 169 million pixels."""
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    Image.new("RGB", (13000, 13000), (200, 30, 30)).save(path)
    return path


def test_a_huge_image_is_reduced_while_decoded(huge_png):
    pixels = load_image(huge_png, max_side=512)
    assert pixels.shape == (512, 512, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[256, 256], [200, 30, 30])


# `keras-vit explain` in a fresh process, printing its own peak RSS (KiB on Linux).
EXPLAIN_PEAK = """
import resource, sys
from keras_vit.cli import EXPLAIN_FILES, main
code = main(["explain", *sys.argv[1:]])
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_explain_on_a_huge_image_stays_small(huge_png, tmp_path):
    ViT(tiny_config(classes=3)).save_pretrained(tmp_path / "model")
    arguments = [str(huge_png), "--model", str(tmp_path / "model"), "--output", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-c", EXPLAIN_PEAK, *arguments],
        capture_output=True,
        text=True,
        timeout=300,
    )
    code, peak_kib = result.stdout.split()[-2:]
    assert code == "0", result.stderr
    assert sorted(path.name for path in tmp_path.glob("*.png")) == sorted(EXPLAIN_FILES)
    # Decoding in full took 12.6 GiB (the float64 copies of 169 million pixels); the
    # backend, the model and one 8-bit decode of the PNG stay well under 3 GiB.
    assert int(peak_kib) < 3 * 2**20, f"peak RSS {int(peak_kib) / 2**20:.1f} GiB"


def test_a_decompression_bomb_is_one_line(huge_png, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 13000 * 13000 // 4)  # refuses over 2x this
    ViT(tiny_config(classes=3)).save_pretrained(tmp_path / "model")
    line = one_line_error(capsys, "explain", str(huge_png), "--model", str(tmp_path / "model"))
    assert str(huge_png) in line and "decompression bomb" in line


def test_a_file_that_is_not_an_image_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.png").write_text("not an image")
    ViT(tiny_config(classes=3)).save_pretrained(tmp_path / "model")
    line = one_line_error(
        capsys, "explain", str(tmp_path / "notes.png"), "--model", str(tmp_path / "model")
    )
    assert "cannot be read as an image" in line
