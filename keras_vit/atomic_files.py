"""Writing files and directories all at once: to a temporary path, then a rename.

The temporary path sits beside the destination and is named
`.NAME.keras-vit-tmp.HOST.PID.RANDOM`. An existing destination is first renamed aside
to `.NAME.keras-vit-old.HOST.PID.RANDOM`, the new one is renamed in, and only then is the
old one deleted: no moment exists at which neither is on disk. A process killed midway
leaves these names behind; the next write to the same destination from this host
removes the ones whose process is gone (and puts back an old destination that was moved
aside but never replaced).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

TEMPORARY = "keras-vit-tmp"
ASIDE = "keras-vit-old"


def refuse_existing(
    path: str | os.PathLike, overwrite: bool, protect: Iterable[str | os.PathLike] = ()
) -> None:
    """Checks that writing `path` can neither fail late nor destroy other files.

    Args:
        path: the destination file or directory.
        overwrite: whether an existing destination may be replaced.
        protect: paths that must survive the write (e.g. the conversion's source).

    Raises:
        ValueError: `path` is the current directory or contains it, or contains
            one of `protect`.
        FileExistsError: `path` exists (other than as an empty directory) and
            `overwrite` is false.

    Example:
        >>> refuse_existing("out/model", overwrite=True, protect=["checkpoints/vit"])
    """
    path = Path(path).absolute()
    if Path.cwd().resolve().is_relative_to(path.resolve()):
        raise ValueError(
            f"Refusing to write to {path}: it is the current directory or contains it, and "
            "replacing it would delete everything in it. Name a new subdirectory instead."
        )
    for kept in protect:
        if Path(kept).exists() and Path(kept).resolve().is_relative_to(path.resolve()):
            raise ValueError(
                f"Refusing to write to {path}: it contains {kept}, which replacing it would "
                "delete. Choose a destination outside it."
            )
    empty_directory = path.is_dir() and not any(path.iterdir())
    if path.exists() and not empty_directory and not overwrite:
        raise FileExistsError(
            f"{path} already exists. Pass overwrite=True (--overwrite) to replace it."
        )


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_leftovers(path: str | os.PathLike) -> list[Path]:
    """Removes what killed writes to `path` left beside it, from this host's dead processes.

    A destination that a killed write had moved aside and not yet replaced is
    renamed back to `path` instead of being removed.

    Args:
        path: a destination written through `atomic_path`.

    Returns:
        The leftovers that were removed or restored.

    Example:
        >>> clean_leftovers("out/model.keras")
        [PosixPath('out/.model.keras.keras-vit-tmp.host.4242.1f0c9a.keras')]
    """
    path = Path(path).absolute()
    host = socket.gethostname()
    handled = []
    if not path.parent.is_dir():
        return handled
    for kind in (ASIDE, TEMPORARY):  # restore before anything else can take the name
        ours = re.compile(rf"\.{re.escape(path.name)}\.{kind}\.{re.escape(host)}\.(\d+)\.")
        for leftover in sorted(path.parent.glob(f".{path.name}.{kind}.*")):
            match = ours.match(leftover.name)
            if match is None or not _process_is_gone(int(match.group(1))):
                continue
            if kind == ASIDE and not path.exists() and not path.is_symlink():
                os.replace(leftover, path)
            else:
                _remove(leftover)
            handled.append(leftover)
    return handled


def _sibling(path: Path, kind: str) -> Path:
    name = f".{path.name}.{kind}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    return path.with_name(name + "".join(path.suffixes))


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike,
    overwrite: bool = False,
    directory: bool = False,
    protect: Iterable[str | os.PathLike] = (),
) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it replaces `path`.

    If the body raises, the temporary file or directory is removed and `path`
    is left as it was, so no partial output is ever visible. Leftovers of
    earlier killed writes to `path` are cleaned first (`clean_leftovers`).

    Args:
        path: the final file or directory.
        overwrite: replace an existing `path`; otherwise refuse it up front.
        directory: yield a created temporary directory rather than a file name.
        protect: paths that `path` must not contain (see `refuse_existing`).

    Returns:
        A context manager yielding the temporary path. A temporary file keeps
        `path`'s full suffix (`.keras`, `.weights.h5`), which Keras checks.

    Example:
        >>> with atomic_path("out/model.keras") as tmp:
        ...     model.save(tmp)
    """
    path = Path(path).absolute()
    refuse_existing(path, overwrite, protect)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    temporary = _sibling(path, TEMPORARY)
    if directory:
        temporary.mkdir()
    try:
        yield temporary
        if (path.is_dir() and not path.is_symlink()) or (temporary.is_dir() and path.exists()):
            aside = _sibling(path, ASIDE)
            os.replace(path, aside)
            try:
                os.replace(temporary, path)
            except BaseException:
                os.replace(aside, path)
                raise
            _remove(aside)
        else:  # a file replaces a file (or nothing) in one atomic rename
            os.replace(temporary, path)
    finally:
        _remove(temporary)
