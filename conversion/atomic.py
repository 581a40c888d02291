"""Writing files and directories all at once: to a temporary path, then a rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def refuse_existing(path: str | os.PathLike, overwrite: bool) -> None:
    """Raises FileExistsError if `path` exists (other than as an empty directory)
    and `overwrite` is false."""
    path = Path(path)
    empty_directory = path.is_dir() and not any(path.iterdir())
    if path.exists() and not empty_directory and not overwrite:
        raise FileExistsError(
            f"{path} already exists. Pass overwrite=True (--overwrite) to replace it."
        )


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, overwrite: bool = False, directory: bool = False
) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it replaces `path`.

    If the body raises, the temporary file or directory is removed and `path`
    is left as it was, so no partial output is ever visible.

    Args:
        path: the final file or directory.
        overwrite: replace an existing `path`; otherwise refuse it up front.
        directory: yield a created temporary directory rather than a file name.

    Returns:
        A context manager yielding the temporary path. A temporary file keeps
        `path`'s full suffix (`.keras`, `.weights.h5`), which Keras checks.

    Example:
        >>> with atomic_path("out/model.keras") as tmp:
        ...     model.save(tmp)
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    else:
        suffix = "".join(path.suffixes)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(handle)
        os.unlink(name)
        temporary = Path(name)
    try:
        yield temporary
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(temporary, path)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()
