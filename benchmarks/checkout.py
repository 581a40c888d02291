"""A temporary checkout of another commit's keras_vit, for `--baseline REF` runs.

The package is installed editable, with `keras_vit.conversion` and
`keras_vit.hf_integration` mapped to the top-level `conversion/` and
`hf_integration/` folders. A process whose PYTHONPATH starts with a checkout
imports that checkout's `keras_vit`, but its two subpackages would still come
from the installed tree through the editable finder, so `baseline_checkout`
copies them into the checkout's `keras_vit/` and checks where they import from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = ("conversion", "hf_integration")


class Checkout(NamedTuple):
    """A baseline checkout: the `ref` as given, the short `commit` it names, its `path`."""

    ref: str
    commit: str
    path: Path


def git(*args: str) -> str:
    """Runs `git -C ROOT *args`; returns its stdout, stripped. Raises on failure."""
    result = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def with_pythonpath(path: Path, env: dict[str, str]) -> dict[str, str]:
    """`env` with `path` put first on PYTHONPATH."""
    rest = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": os.pathsep.join([str(path), *([rest] if rest else [])])}


def imported_from(path: Path) -> list[Path]:
    """Where `keras_vit` and `keras_vit.conversion` import from with `path` first on
    PYTHONPATH, checked in a fresh interpreter.

    Like a worker, which runs a script, it does not look in the current folder first
    (`-c` would put it at `sys.path[0]`).
    """
    code = (
        "import sys; del sys.path[0]; import keras_vit, keras_vit.conversion as c; "
        "print(keras_vit.__file__); print(c.__file__)"
    )
    env = with_pythonpath(path, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode:
        raise RuntimeError(f"importing keras_vit from {path} failed: {result.stderr[-1000:]}")
    return [Path(line) for line in result.stdout.split()]


def this_tree() -> str:
    """What the current checkout is: its short commit, and whether files were changed."""
    changed = git("--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if changed else "")


@contextmanager
def baseline_checkout(ref: str) -> Iterator[Checkout]:
    """A detached `git worktree` of `ref` in a temporary folder, importable as keras_vit.

    The worktree is removed on leaving the block, also after an error or Ctrl-C.

    Args:
        ref: a git ref of this repository: `HEAD~1`, a branch, a commit.

    Returns:
        A context manager giving the `Checkout`; its `path` is the folder to put first on
        a worker's PYTHONPATH.

    Raises:
        RuntimeError: if `ref` names no commit, or the checkout's keras_vit or
            keras_vit.conversion would not be the ones imported.
    """
    commit = git("rev-parse", "--short", "--verify", f"{ref}^{{commit}}")
    path = Path(tempfile.mkdtemp(prefix=f"keras_vit-{commit}-")).resolve()
    try:
        git("worktree", "add", "--detach", str(path), commit)
        for name in SUBPACKAGES:
            source, target = path / name, path / "keras_vit" / name
            if source.is_dir() and not target.exists():  # a later layout may have them there
                shutil.copytree(source, target)
        files = imported_from(path)
        if not all(file.is_relative_to(path) for file in files):
            raise RuntimeError(f"{ref} would import {', '.join(map(str, files))}, not {path}")
        print(f"baseline {ref} ({commit}): keras_vit from {', '.join(map(str, files))}", flush=True)
        yield Checkout(ref, commit, path)
    finally:
        try:
            git("worktree", "remove", "--force", str(path))
        except RuntimeError:  # the worktree was never added, or is half made
            shutil.rmtree(path, ignore_errors=True)
            git("worktree", "prune")
