"""The `README.md` model card written next to a saved or pushed model."""

from __future__ import annotations

from keras_vit.conversion.hf_config import architecture
from keras_vit.model import ViT

TAGS = ["keras", "keras-vit", "vision-transformer", "image-classification"]
# The card's tags end with the family's transformers model_type ("vit", "deit",
# "dinov2", ...), the tag the Hub gives that family's transformers repos.


def model_card(model: ViT, repo_id: str | None = None) -> str:
    """Renders a Hub model card: YAML metadata, usage for keras_vit and transformers,
    the architecture table and the labels.

    Args:
        model: the model being saved.
        repo_id: where it is pushed, for the usage snippets; a placeholder if `None`.

    Returns:
        The card's Markdown text. Its metadata holds `library_name: keras`, `tags`
        (`TAGS` and the family's model_type, e.g. `dinov2`),
        `pipeline_tag` (`image-classification` with a head, else
        `image-feature-extraction`), `base_model` when the weights came from
        another Hub repo, and `labels` when the head has names.

    Example:
        >>> Path("README.md").write_text(model_card(model, "me/my-vit"))
    """
    from huggingface_hub import ModelCardData

    config = model.config
    repo = repo_id or "path/to/this-model"
    base_model = config.base_model if config.base_model not in (None, repo_id) else None
    labels = [config.id2label[i] for i in sorted(config.id2label)] if config.id2label else None
    metadata = ModelCardData(
        library_name="keras",
        tags=[*TAGS, config.model_type],
        pipeline_tag="image-classification" if config.classes else "image-feature-extraction",
        base_model=base_model,
        labels=labels if config.classes else None,
    )
    # The family's own class, except for a plain classifier, which the Auto class finds.
    plain_classifier = config.classes and not config.distillation_head
    transformers_class = (
        "AutoModelForImageClassification" if plain_classifier else architecture(config)
    )
    height, width = config.image_pair
    sections = [
        f"---\n{metadata.to_yaml()}\n---",
        f"# {repo.rsplit('/', 1)[-1]}",
        "A Vision Transformer (Dosovitskiy et al., 2020) saved with "
        "[keras_vit](https://pypi.org/project/keras-vit-hf/). This repo loads in keras_vit "
        "on TensorFlow, JAX or PyTorch, and in transformers."
        + (
            f" It was fine-tuned from [{base_model}](https://huggingface.co/{base_model})."
            * bool(base_model)
        ),
        "## Usage",
        f'```python\nimport keras_vit\n\nmodel = keras_vit.ViT.from_pretrained("{repo}")\n```',
        f"```python\nfrom transformers import {transformers_class}\n\n"
        f'model = {transformers_class}.from_pretrained("{repo}")\n```',
        "## Architecture",
        "| Layers | Hidden size | Heads | MLP size | Patch | Image size | Parameters |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {config.num_hidden_layers} | {config.hidden_size} | {config.num_attention_heads} "
        f"| {config.intermediate_size} | {_pair_text(config.patch_pair)} | "
        f"{_pair_text((height, width))} | {model.count_params():,} |",
    ]
    if config.classes:
        names = ", ".join(labels) if labels else "unnamed (`LABEL_0` ...)"
        sections += ["## Labels", f"{config.classes} classes: {names}."]
    return "\n\n".join(sections) + "\n"


def _pair_text(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"
