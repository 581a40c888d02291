"""Fetching a checkpoint directory from the Hugging Face Hub, only the files needed.

A repo holds a transformers or keras_vit checkpoint (`download_checkpoint`) or
a keras-hub preset (`download_keras_hub_preset`).

Downloads go through `huggingface_hub` into its shared cache, so `HF_HOME`,
`HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_TOKEN` work as for
every Hugging Face library, and huggingface_hub's progress bars are shown.
Offline, or with the Hub unreachable, a repo loads from the cache when an
earlier load fetched the same files. huggingface_hub's errors are re-raised
as `OSError`s that say what to do, and network failures that outlast its
retries as `ConnectionError`s. A gated repo (DINOv3) that refuses access
raises a `PermissionError` saying to accept its licence and log in.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from keras_vit.conversion.checkpoint import PYTORCH_BIN, SAFETENSORS, SAFETENSORS_INDEX
from keras_vit.conversion.keras_hub_config import keras_hub_preset_files
from keras_vit.conversion.pretrained import (
    HF_CONFIG,
    KERAS_CONFIG,
    KERAS_WEIGHTS,
    PREPROCESSOR_CONFIG,
)

HF_URL_PREFIX = "hf://"
SHARD_PATTERN = "model-*-of-*.safetensors"


def split_source(source: str | os.PathLike) -> tuple[Path | None, str | None]:
    """Tells a local checkpoint directory from a Hub repo id.

    Args:
        source: a local directory, `org/name`, or `hf://org/name`.

    Returns:
        `(directory, None)` for an existing local directory, else `(None, repo_id)`.

    Example:
        >>> split_source("hf://google/vit-base-patch16-224")
        (None, 'google/vit-base-patch16-224')
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    text = os.fspath(source)
    if not text.startswith(HF_URL_PREFIX):
        if Path(text).is_dir():
            return Path(text), None
        if Path(text).exists() or text.startswith((".", "/", "~")):
            raise FileNotFoundError(
                f"{text} is not a directory. Pass a checkpoint directory, or a Hub repo id "
                "as 'org/name'."
            )
    repo_id = text.removeprefix(HF_URL_PREFIX).strip("/")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(
            f"{text!r} is neither a local directory nor a valid Hub repo id ({error}). Pass "
            "an existing directory, 'org/name' or 'hf://org/name'."
        ) from error
    return None, repo_id


def files_to_fetch(repo_id: str, available: Iterable[str], keras_native: bool) -> list[str]:
    """The files of a repo that loading it needs (patterns for sharded weights).

    Args:
        repo_id: the repo, for error messages.
        available: the repo's file names.
        keras_native: whether keras_vit's own files can be used as they are.

    Returns:
        `config.json`, `preprocessor_config.json` when present, and one set of
        weights: keras_vit's own if usable, else safetensors (sharded or
        not), else `pytorch_model.bin`.

    Example:
        >>> files_to_fetch("org/vit", ["config.json", "model.safetensors"], False)
        ['config.json', 'model.safetensors']
    """
    available = set(available)
    if HF_CONFIG not in available:
        raise FileNotFoundError(
            f"{repo_id} has no {HF_CONFIG}, so it is not a transformers or keras_vit "
            f"checkpoint (files: {sorted(available)[:10]}). Check the repo id."
        )
    wanted = [HF_CONFIG] + [PREPROCESSOR_CONFIG] * (PREPROCESSOR_CONFIG in available)
    if keras_native and {KERAS_CONFIG, KERAS_WEIGHTS} <= available:
        return wanted + [KERAS_CONFIG, KERAS_WEIGHTS]
    if SAFETENSORS_INDEX in available:
        return wanted + [SAFETENSORS_INDEX, SHARD_PATTERN]
    for weights in (SAFETENSORS, PYTORCH_BIN):
        if weights in available:
            return wanted + [weights]
    raise FileNotFoundError(
        f"{repo_id} has no ViT weights: expected {SAFETENSORS}, {SAFETENSORS_INDEX} or "
        f"{PYTORCH_BIN} (files: {sorted(available)[:10]}). Only PyTorch-format "
        "transformers checkpoints convert; TensorFlow- or Flax-only repos do not."
    )


def download_checkpoint(
    repo_id: str,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    keras_native: bool = True,
) -> Path:
    """Downloads (or finds in the cache) the files needed to load a Hub repo.

    Args:
        repo_id: `org/name`.
        revision: a branch, tag or commit sha; the default branch if `None`.
        token: a Hub token; by default the logged-in one or `HF_TOKEN`.
        cache_dir: another cache than huggingface_hub's default.
        force_download: download again even if cached.
        local_files_only: use the cache only (also implied by `HF_HUB_OFFLINE=1`).
        keras_native: fetch keras_vit's own files instead of the transformers
            weights when the repo has them.

    Returns:
        The local snapshot directory.

    Raises:
        FileNotFoundError: the repo holds no weights keras_vit reads (see
            `files_to_fetch`).

    Example:
        >>> directory = download_checkpoint("google/vit-base-patch16-224")
    """
    return _download(
        repo_id,
        lambda available: files_to_fetch(repo_id, available, keras_native),
        revision=revision,
        token=token,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
    )


def download_keras_hub_preset(repo_id: str, **hub: Any) -> Path | None:
    """Downloads (or finds in the cache) the files of a repo that holds a keras-hub preset.

    Args:
        repo_id: `org/name`.
        **hub: `revision`, `token`, `cache_dir`, `force_download` and
            `local_files_only`, as for `download_checkpoint`.

    Returns:
        The local snapshot directory, or `None` when the repo's files are not
        laid out as a keras-hub preset (`config.json` as a Keras object,
        `metadata.json`, `model.weights.h5`, ...).

    Example:
        >>> directory = download_keras_hub_preset("org/vit-keras-hub")
    """
    arguments = dict(
        revision=None, token=None, cache_dir=None, force_download=False, local_files_only=False
    )
    return _download(repo_id, keras_hub_preset_files, **{**arguments, **hub})


def _download(
    repo_id: str, choose: Callable[[list[str]], list[str] | None], **hub: Any
) -> Path | None:
    """The snapshot of the files `choose` picks from the repo's listing (`None` if it
    picks nothing), with the cache standing in for a Hub that is offline or unreachable.

    Offline, the listing is the one huggingface_hub cached online; without one
    (nothing cached, or cached by another tool) the snapshot is taken as
    huggingface_hub finds it.
    """
    import httpx2
    import huggingface_hub
    from huggingface_hub import constants, errors

    force_download = hub.pop("force_download")
    local_files_only = hub.pop("local_files_only")
    arguments = dict(repo_id=repo_id, **hub)

    def from_cache() -> Path | None:
        try:
            listing = huggingface_hub.get_cached_repo_tree(
                repo_id, revision=hub["revision"], cache_dir=hub["cache_dir"]
            )
        except errors.CachedRepoTreeNotFoundError:
            patterns = None
        else:
            patterns = choose([entry.path for entry in listing])
            if patterns is None:
                return None
        return Path(
            huggingface_hub.snapshot_download(
                **arguments, allow_patterns=patterns, local_files_only=True
            )
        )

    with _explained_hub_errors(repo_id, hub["revision"]):
        if local_files_only or constants.HF_HUB_OFFLINE:
            return from_cache()
        try:
            info = huggingface_hub.HfApi().model_info(
                repo_id, revision=hub["revision"], token=hub["token"]
            )
        except httpx2.TransportError as unreachable:  # the Hub is unreachable: try the cache
            try:
                return from_cache()
            except errors.LocalEntryNotFoundError as error:
                raise error from unreachable
        patterns = choose([sibling.rfilename for sibling in info.siblings or []])
        if patterns is None:
            return None
        directory = huggingface_hub.snapshot_download(
            **arguments, allow_patterns=patterns, force_download=force_download
        )
    return Path(directory)


@contextlib.contextmanager
def _explained_hub_errors(repo: str, revision: str | None) -> Iterator[None]:
    """Re-raises huggingface_hub's and httpx's errors as OSErrors that say what to do."""
    import httpx2
    from huggingface_hub import constants, errors

    at_revision = f" at revision {revision!r}" if revision else ""
    try:
        yield
    except errors.RevisionNotFoundError as error:
        raise OSError(
            f"Revision {revision!r} does not exist in {repo}. Use an existing branch, tag or "
            "commit sha, or revision=None for the default branch."
        ) from error
    except errors.GatedRepoError as error:  # a subclass of RepositoryNotFoundError
        status = getattr(error.response, "status_code", None)
        who = (
            "you are not logged in"
            if status == 401
            else "your account has not been granted access (or the token cannot read gated repos)"
        )
        raise PermissionError(
            f"{repo} is a gated repo and {who} (HTTP {status}). Accept its licence on "
            f"{constants.ENDPOINT}/{repo} while logged in to the Hub, then log in here with "
            "`hf auth login` (or `huggingface-cli login`), set HF_TOKEN, or pass token=."
        ) from error
    except errors.RepositoryNotFoundError as error:
        raise OSError(
            f"Repo {repo} was not found on the Hub, or you lack access to it. Check the id; "
            "for a private or gated repo log in with `hf auth login` or pass token=."
        ) from error
    except errors.LocalEntryNotFoundError as error:  # raised with the Hub's error as cause
        cause = error.__cause__
        reason = (
            f"the Hub at {constants.ENDPOINT} could not be asked ({type(cause).__name__}: {cause})"
            if cause
            else "HF_HUB_OFFLINE=1 or local_files_only=True keeps keras_vit from asking the Hub"
        )
        cached = (
            "only partly in the local Hugging Face cache (an earlier load fetched other files, "
            "e.g. with other classes= or image_size=, or was cut short)"
            if isinstance(error, errors.IncompleteSnapshotError)
            else "not in the local Hugging Face cache"
        )
        raise OSError(
            f"{repo}{at_revision} is {cached}, and {reason}. Connect once without "
            "HF_HUB_OFFLINE=1 and load it the same way to cache it, or pass a local checkpoint "
            "directory."
        ) from error
    except errors.HfHubHTTPError as error:
        raise OSError(f"Could not download {repo} from the Hub: {error}") from error
    except httpx2.HTTPError as error:
        raise ConnectionError(
            f"Could not download {repo} from the Hub at {constants.ENDPOINT}: the network "
            f"failed through every retry ({type(error).__name__}: {error}). Check the "
            "connection and HF_ENDPOINT, then retry; a copy cached by an earlier load loads "
            "with HF_HUB_OFFLINE=1."
        ) from error
