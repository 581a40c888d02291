"""atomic_path: destinations that would destroy other files are refused, an old destination
survives until the new one is in place, and killed writes leave nothing for good."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from keras_vit import ViT
from keras_vit.atomic_files import atomic_path, clean_leftovers
from tests.conftest import tiny_config


def test_overwrite_replaces_only_the_destination(tmp_path, user_files):
    destination = tmp_path / "my-vit"
    ViT(tiny_config(classes=3)).save_pretrained(destination)
    (destination / "stale.txt").write_text("from the old model")
    ViT(tiny_config(classes=5)).save_pretrained(destination, overwrite=True)
    assert ViT.from_pretrained(destination, verbose=False).config.classes == 5
    assert not (destination / "stale.txt").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "my-vit", "thesis.tex"]
    user_files()


def test_a_failed_rename_puts_the_old_destination_back(tmp_path, monkeypatch):
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "old.txt").write_text("old")
    real_replace = os.replace

    def replace(source, target):
        if Path(source).name.startswith(".out.keras-vit-tmp."):
            raise OSError("disk full")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(destination, overwrite=True, directory=True) as temporary:
            (temporary / "new.txt").write_text("new")
    assert (destination / "old.txt").read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


KILLED_WRITER = """
import os, time
from keras_vit.atomic_files import atomic_path

real_replace = os.replace
def replace(source, target):  # pause after the old destination is moved aside
    real_replace(source, target)
    if ".keras-vit-old." in os.fspath(target):
        print("moved aside", flush=True)
        time.sleep(60)
os.replace = replace

with atomic_path({destination!r}, overwrite=True, directory=True) as temporary:
    (temporary / "weights.bin").write_bytes(b"x" * 1_000_000)
    if {stop_inside!r}:
        print("writing", flush=True)
        time.sleep(60)
"""


def killed_write(destination: Path, stop_inside: bool) -> None:
    """Runs a real write to `destination` in a subprocess and SIGKILLs it midway."""
    script = KILLED_WRITER.format(destination=str(destination), stop_inside=stop_inside)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() in ("writing", "moved aside")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL


def hidden(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_the_next_write_removes_what_a_killed_write_left(tmp_path):
    destination = tmp_path / "model"
    killed_write(destination, stop_inside=True)
    (leftover,) = hidden(tmp_path)
    assert leftover.startswith(".model.keras-vit-tmp.")
    assert (tmp_path / leftover / "weights.bin").stat().st_size == 1_000_000
    ViT(tiny_config(classes=3)).save_pretrained(destination)
    assert hidden(tmp_path) == []
    assert (destination / "config.json").is_file()


def test_an_old_destination_moved_aside_by_a_killed_write_is_restored(tmp_path):
    destination = tmp_path / "model"
    destination.mkdir()
    (destination / "best.weights.h5").write_text("the user's model")
    killed_write(destination, stop_inside=False)
    assert not destination.exists()
    assert len(hidden(tmp_path)) == 2  # the old destination, moved aside, and the new one
    assert len(clean_leftovers(destination)) == 2
    assert (destination / "best.weights.h5").read_text() == "the user's model"
    assert hidden(tmp_path) == []


def test_a_live_writer_s_temporaries_are_left_alone(tmp_path):
    destination = tmp_path / "model.keras"
    with atomic_path(destination) as temporary:
        temporary.write_text("in progress")
        assert clean_leftovers(destination) == []
        assert temporary.read_text() == "in progress"
    assert destination.read_text() == "in progress"
    assert hidden(tmp_path) == []


def test_a_file_keeps_its_suffix_while_written(tmp_path):
    with atomic_path(tmp_path / "vit.weights.h5") as temporary:
        assert temporary.name.endswith(".weights.h5")
        ViT(tiny_config(classes=3)).save_weights(str(temporary))
    assert (tmp_path / "vit.weights.h5").stat().st_size > 0
