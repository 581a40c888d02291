"""The model folder holds the math only: Keras layers and `keras.ops`.

No backend checks, no torch (or other framework) imports, and no private APIs
of Keras or anyone else; where a backend has a faster primitive, the layers get
it from `keras_vit.kernels`. These tests read the source files.
"""

import ast
from pathlib import Path

import pytest

import keras_vit.model

MODEL_FILES = sorted(Path(keras_vit.model.__file__).parent.glob("*.py"))
FRAMEWORKS = ("torch", "jax", "jaxlib", "tensorflow", "flax")


def own_names(tree: ast.Module) -> set[str]:
    """Names this project defines in the file: its functions, classes and attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def violations(source: str) -> list[str]:
    tree = ast.parse(source)
    ours = own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            modules += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for module in modules:
                if module.split(".")[0] in FRAMEWORKS or module.startswith("keras.src"):
                    found.append(f"line {node.lineno}: imports {module}")
        elif isinstance(node, ast.Attribute):
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            if private and node.attr not in ours:
                found.append(f"line {node.lineno}: private attribute .{node.attr}")
            if node.attr == "backend" and ast.unparse(node.value) in (
                "keras",
                "keras.backend",
                "backend",
            ):
                found.append(f"line {node.lineno}: asks which backend runs")
    return found


def test_the_model_folder_has_its_files():
    names = {path.name for path in MODEL_FILES}
    assert {"attention.py", "embeddings.py", "encoder.py", "layers.py", "vit.py"} <= names


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda path: path.name)
def test_model_source_has_no_backend_branch_framework_import_or_private_api(path):
    assert violations(path.read_text()) == []


@pytest.mark.parametrize(
    "source, problem",
    [
        ("import keras\nif keras.backend.backend() == 'torch': pass", "asks which backend"),
        ("from keras import backend\nbackend.backend()", "asks which backend"),
        ("def f():\n    import torch", "imports torch"),
        ("from torch.nn import functional", "imports torch.nn"),
        ("from keras.src.backend.common import global_state", "imports keras.src"),
        ("x = layer._remat_mode", "private attribute ._remat_mode"),
        ("v = tensor._version", "private attribute ._version"),
    ],
)
def test_the_rules_catch_each_kind_of_violation(source, problem):
    assert any(problem in found for found in violations(source))


def test_the_rules_allow_a_layers_own_helpers():
    source = "class A:\n    def _helper(self):\n        return self._helper()\n"
    assert violations(source) == []
