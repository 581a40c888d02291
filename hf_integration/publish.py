"""Saving a model as a repo that transformers and keras_vit both load, and pushing it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from keras_vit.conversion.pretrained import save_pretrained as save_checkpoint
from keras_vit.hf_integration.model_card import model_card
from keras_vit.model import ViT

MODEL_CARD = "README.md"


def save_pretrained(
    model: ViT,
    directory: str | os.PathLike,
    overwrite: bool = False,
    repo_id: str | None = None,
) -> None:
    """Writes the transformers files, keras_vit's own files and a `README.md` model card.

    Args:
        model: the model.
        directory: the destination, written whole or not at all.
        overwrite: replace an existing destination.
        repo_id: the repo the directory is meant for, named in the card's snippets.

    Example:
        >>> save_pretrained(model, "my-vit/")
    """
    save_checkpoint(
        model, directory, overwrite=overwrite, extra_files={MODEL_CARD: model_card(model, repo_id)}
    )


def push_to_hub(
    model: ViT,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
):
    """Creates the repo if needed and uploads the saved model in a single commit.

    Args:
        model: the model.
        repo_id: `org/name` or `name` (under your user).
        private: create the repo as private (an existing repo keeps its visibility).
        token: a Hub token with write access (default: the logged-in one).
        commit_message: default "Upload keras_vit ViT".
        revision: the branch to commit to; created from the default branch if missing.

    Returns:
        huggingface_hub's `CommitInfo` (`.commit_url`, `.oid`).

    Example:
        >>> push_to_hub(model, "me/my-vit")
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with _explained_push_errors(repo_id):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        with tempfile.TemporaryDirectory() as workspace:
            folder = Path(workspace) / "model"
            save_pretrained(model, folder, repo_id=repo_id)
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=commit_message or "Upload keras_vit ViT",
                revision=revision,
            )


@contextlib.contextmanager
def _explained_push_errors(repo_id: str) -> Iterator[None]:
    """Re-raises authentication failures with what to do about them."""
    from huggingface_hub import errors

    try:
        yield
    except errors.HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status in (401, 403):
            raise PermissionError(
                f"The Hub refused to write to {repo_id} (HTTP {status}). Log in with "
                "`hf auth login`, or pass token= with a token that has write access."
            ) from error
        raise
