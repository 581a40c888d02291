"""Model directories are written whole: `save_pretrained` and `keras-vit convert` refuse
destinations that would destroy other files, as `keras_vit.atomic_files` decides."""

import os

import pytest

from keras_vit import ViT
from keras_vit.cli import main
from tests.conftest import tiny_config


def test_save_pretrained_into_the_current_directory_is_refused(tmp_path, user_files, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = ViT(tiny_config(classes=3))
    with pytest.raises(ValueError, match="current directory.*new subdirectory"):
        model.save_pretrained(".", overwrite=True)
    user_files()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "thesis.tex"]


def test_a_destination_that_contains_the_current_directory_is_refused(tmp_path, user_files):
    inner = tmp_path / "data"
    previous = os.getcwd()
    os.chdir(inner)
    try:
        with pytest.raises(ValueError, match="contains it"):
            ViT(tiny_config(classes=3)).save_pretrained(tmp_path, overwrite=True)
    finally:
        os.chdir(previous)
    user_files()


def test_convert_into_the_current_directory_keeps_every_file(
    hf_checkpoints, tmp_path, user_files, monkeypatch, capsys
):
    source, _ = hf_checkpoints["labels"]
    monkeypatch.chdir(tmp_path)
    assert main(["convert", str(source), ".", "--overwrite"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "current directory" in error
    user_files()


def test_convert_into_a_folder_that_holds_the_source_is_refused(hf_checkpoints, tmp_path, capsys):
    original, _ = hf_checkpoints["labels"]
    runs = tmp_path / "runs"
    source = runs / "checkpoint"
    source.mkdir(parents=True)
    for file in original.iterdir():
        (source / file.name).write_bytes(file.read_bytes())
    assert main(["convert", str(source), str(runs), "--overwrite"]) == 1
    assert f"it contains {source}" in capsys.readouterr().err
    assert (source / "config.json").is_file()
