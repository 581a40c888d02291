"""`ViT`'s Hugging Face methods and label decoding, on top of `keras_vit.hf_integration`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
from keras import ops

if TYPE_CHECKING:
    from keras_vit.model.vit import ViT


class HubMethods:
    """`from_pretrained`, `save_pretrained`, `push_to_hub` and `decode_predictions` for `ViT`.

    The Hub code is imported when a method is called, so the model never needs
    `huggingface_hub` or `transformers` to be built or run.
    """

    @classmethod
    def from_pretrained(cls, repo_or_path: str | os.PathLike, **kwargs: Any) -> ViT:
        """Builds a model from a Hub repo or a local transformers / keras_vit checkpoint.

        Args:
            repo_or_path: `org/name`, `hf://org/name`, or a local directory with
                `config.json` and `model.safetensors` (sharded or not) or
                `pytorch_model.bin`. Only the files needed are downloaded, into
                the shared Hugging Face cache.
            **kwargs: the Hub's `revision`, `token`, `cache_dir`,
                `force_download` and `local_files_only`; `image_size`
                (resamples position embeddings), `classes` (a new
                zero-initialised head), `include_top`, `verbose`,
                `include_preprocessing`, `dtype`, `name`, and any `ViTConfig`
                field. See `keras_vit.hf_integration.from_pretrained`.

        Returns:
            The model.

        Example:
            >>> model = ViT.from_pretrained("google/vit-base-patch16-224", image_size=384)
        """
        from keras_vit.hf_integration import from_pretrained

        return from_pretrained(repo_or_path, **kwargs)

    def save_pretrained(self, directory: str | os.PathLike, overwrite: bool = False) -> None:
        """Writes a directory that transformers and keras_vit both load, with a model card.

        Args:
            directory: the destination; written to a temporary directory first.
            overwrite: replace an existing destination.

        Example:
            >>> model.save_pretrained("my-vit/")
        """
        from keras_vit.hf_integration import save_pretrained

        save_pretrained(self, directory, overwrite=overwrite)

    def push_to_hub(self, repo_id: str, **kwargs: Any):
        """Uploads the model to the Hub in one commit, as a repo transformers also loads.

        Args:
            repo_id: `org/name`; created if it does not exist.
            **kwargs: `private`, `token`, `commit_message` and `revision`, as
                `keras_vit.hf_integration.push_to_hub` takes them.

        Returns:
            huggingface_hub's `CommitInfo`.

        Example:
            >>> model.push_to_hub("me/my-vit", private=True)
        """
        from keras_vit.hf_integration import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    def decode_predictions(self, scores, top: int = 5) -> list[list[tuple[str, float]]]:
        """Turns class scores into `(label, score)` pairs, best first.

        Args:
            scores: `(B, classes)` output of the model.
            top: how many classes to keep per image.

        Returns:
            For each image, the `top` labels (from `config.id2label`, or the
            class index as a string) with their scores.

        Raises:
            ValueError: the model has no head, or `scores` is not
                `(B, config.classes)`.

        Example:
            >>> model.decode_predictions(model.predict(images), top=3)
        """
        if not self.config.classes:
            raise ValueError("This model has no classification head, so nothing to decode.")
        scores = np.asarray(ops.convert_to_numpy(scores), dtype="float32")
        if scores.ndim != 2 or scores.shape[-1] != self.config.classes:
            raise ValueError(
                f"decode_predictions needs scores of shape (batch, {self.config.classes}), one "
                f"per class of this model, got shape {scores.shape}. Pass this model's output."
            )
        labels = self.config.id2label or {}
        best = np.argsort(-scores, axis=-1)[:, :top]
        return [
            [(labels.get(int(index), str(index)), float(row[index])) for index in indices]
            for row, indices in zip(scores, best, strict=True)
        ]
