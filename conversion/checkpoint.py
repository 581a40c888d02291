"""Reading and writing checkpoint files as name -> numpy tensors.

Reading is lazy: `read_checkpoint` opens the files and loads one tensor each
time a name is looked up, so a conversion never holds the checkpoint twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
WEIGHT_FILES = (SAFETENSORS_INDEX, SAFETENSORS, PYTORCH_BIN)


class Checkpoint(Mapping):
    """A read-only mapping from tensor names to numpy arrays, loaded on access.

    Args:
        files: for each tensor name, the file that holds it.
        shapes: for each tensor name, its shape (read from headers, not data).
        loader: `loader(file, name)` returns the tensor as a numpy array.

    Example:
        >>> checkpoint = read_checkpoint("vit-base/")
        >>> checkpoint["embeddings.cls_token"].shape
        (1, 1, 768)
    """

    def __init__(self, files: dict[str, Path], shapes: dict[str, tuple], loader):
        self._files = files
        self.shapes = shapes
        self._loader = loader

    def __getitem__(self, name: str) -> np.ndarray:
        return self._loader(self._files[name], name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def find_weight_file(directory: str | os.PathLike) -> Path:
    """The weight file of an HF checkpoint directory, safetensors preferred.

    Args:
        directory: the checkpoint directory.

    Returns:
        The path of `model.safetensors.index.json`, `model.safetensors` or
        `pytorch_model.bin`, in that order of preference.
    """
    directory = Path(directory)
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(
        f"No ViT weights in {directory}: expected one of {list(WEIGHT_FILES)}. "
        "Point at a directory written by transformers' save_pretrained or keras_vit."
    )


def read_json_object(path: str | os.PathLike) -> dict:
    """Parses a JSON file that must hold an object, naming the file in every error.

    Args:
        path: a `config.json`, `keras_vit_config.json`, index or similar file.

    Returns:
        The parsed dict.

    Raises:
        ValueError: the file is not valid UTF-8 JSON, or holds something other
            than an object.

    Example:
        >>> read_json_object("vit-base/config.json")["model_type"]
        'vit'
    """
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}). Restore or re-save it.") from None
    if not isinstance(value, dict):
        raise ValueError(
            f"{path} must hold a JSON object ({{...}}), but holds a {type(value).__name__}. "
            "Restore or re-save it."
        )
    return value


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Opens an HF checkpoint (a directory or a weight file) for streaming reads.

    Args:
        path: a checkpoint directory, a `.safetensors` file, a sharded
            `model.safetensors.index.json`, or a legacy `pytorch_model.bin`
            (read with `torch.load(weights_only=True)`; needs torch).

    Returns:
        A `Checkpoint` mapping names to numpy arrays.

    Example:
        >>> names = list(read_checkpoint("vit-base/model.safetensors"))
    """
    path = Path(path)
    if path.is_dir():
        path = find_weight_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file {path} does not exist.")
    if path.name.endswith(".index.json"):
        weight_map = read_json_object(path).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(
                f"{path} has no weight_map (tensor name -> shard file), so its shards cannot "
                "be found. Re-save the checkpoint, or restore the index from its source."
            )
        shards = sorted(set(weight_map.values()))
        headers = [_safetensors_header(path.parent / shard) for shard in shards]
    elif path.suffix == ".safetensors":
        headers = [_safetensors_header(path)]
    else:
        return _read_torch_checkpoint(path)
    files = {name: file for file, shapes in headers for name in shapes}
    shapes = {name: shape for _, shapes in headers for name, shape in shapes.items()}
    return Checkpoint(files, shapes, _load_safetensors_tensor)


def _safetensors_header(path: Path) -> tuple[Path, dict[str, tuple]]:
    """The tensor shapes of one safetensors file, read from its header only."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return path, {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(
            f"{path} is not a readable safetensors file ({error}). It may be truncated or "
            "corrupt: download or save it again."
        ) from error


def _load_safetensors_tensor(path: Path, name: str) -> np.ndarray:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return handle.get_tensor(name)
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        raise ValueError(
            f"Could not read tensor {name!r} from {path} ({error}). The file may be truncated "
            "or corrupt, or hold a dtype numpy lacks (bfloat16): save it again in float32."
        ) from error


def _read_torch_checkpoint(path: Path) -> Checkpoint:
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"{path} is a PyTorch pickle; reading it needs torch (`pip install torch`). "
            "Or convert it to model.safetensors, which keras_vit reads without torch."
        ) from error
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({error}).") from error
    tensors = {name: tensor for name, tensor in state.items() if hasattr(tensor, "numpy")}

    def load(_, name):
        tensor = tensors[name]
        return (tensor.float() if tensor.is_floating_point() else tensor).numpy()

    return Checkpoint(
        {name: path for name in tensors},
        {name: tuple(tensor.shape) for name, tensor in tensors.items()},
        load,
    )


def write_safetensors(tensors: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Writes tensors as a transformers-compatible safetensors file.

    Args:
        tensors: names and contiguous numpy arrays.
        path: the destination file. Write it inside `atomic_path` so that a
            failure leaves nothing behind.

    Example:
        >>> write_safetensors(keras_to_hf(weights, with_head=True), "out/model.safetensors")
    """
    from safetensors.numpy import save_file

    save_file(
        {name: np.ascontiguousarray(value) for name, value in tensors.items()},
        str(path),
        metadata={"format": "pt"},
    )
