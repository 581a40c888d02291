"""Fetching a keras-hub preset (ViT, DeiT, DINOv2) from the Hugging Face Hub.

`download_checkpoint` fetches transformers and keras_vit checkpoints; a repo
holding a keras-hub preset instead (`config.json` as a Keras object,
`metadata.json`, `model.weights.h5`, ...) is fetched here, with the same
cache, offline rules and explained errors.
"""

from __future__ import annotations

import os
from pathlib import Path

from keras_vit.conversion.keras_hub_preset import keras_hub_preset_files
from keras_vit.hf_integration.download import _explained_hub_errors


def download_keras_hub_preset(
    repo_id: str,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> Path | None:
    """Downloads (or finds in the cache) the files of a keras-hub preset repo.

    Args:
        repo_id: `org/name`.
        revision: a branch, tag or commit sha; the default branch if `None`.
        token: a Hub token; by default the logged-in one or `HF_TOKEN`.
        cache_dir: another cache than huggingface_hub's default.
        force_download: download again even if cached.
        local_files_only: use the cache only (also implied by `HF_HUB_OFFLINE=1`).

    Returns:
        The local snapshot directory, or `None` when the repo's files are not
        laid out as a keras-hub preset (or, offline, no listing of them is cached).

    Example:
        >>> directory = download_keras_hub_preset("org/vit-keras-hub")
    """
    import huggingface_hub
    from huggingface_hub import constants, errors

    arguments = dict(repo_id=repo_id, revision=revision, cache_dir=cache_dir, token=token)
    offline = local_files_only or constants.HF_HUB_OFFLINE
    with _explained_hub_errors(repo_id, revision):
        if offline:
            try:
                listing = huggingface_hub.get_cached_repo_tree(
                    repo_id, revision=revision, cache_dir=cache_dir
                )
            except errors.CachedRepoTreeNotFoundError:
                return None
            available = [entry.path for entry in listing]
        else:
            info = huggingface_hub.HfApi().model_info(repo_id, revision=revision, token=token)
            available = [sibling.rfilename for sibling in info.siblings or []]
        patterns = keras_hub_preset_files(available)
        if patterns is None:
            return None
        directory = huggingface_hub.snapshot_download(
            **arguments,
            allow_patterns=patterns,
            force_download=force_download and not offline,
            local_files_only=offline,
        )
    return Path(directory)
