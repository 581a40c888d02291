"""`ViTConfig`: the single description of a Vision Transformer's shape.

Field names follow transformers' `ViTConfig` wherever one exists, so that a
Hugging Face `config.json` maps onto this class field by field. The fields
after `pooler_act` are Keras-specific.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from keras_vit.model.activations import ACTIVATIONS

POOLING_MODES = ("token", "gap", "token_and_gap", None)
POSITION_EMBEDDINGS = ("learned", "sincos", "rope")
MLP_TYPES = ("mlp", "swiglu", "gated")
# transformers model types that keras_vit converts both ways (`keras_vit.conversion`).
MODEL_TYPES = ("vit", "deit", "dinov2", "dinov2_with_registers", "dinov3_vit", "vit_mae", "vit_msn")
# Families whose transformers `pooler_output` is the normalised [CLS] token.
CLS_POOLER_MODEL_TYPES = ("dinov2", "dinov2_with_registers", "dinov3_vit")


def as_pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """Returns `value` as a `(height, width)` pair of positive ints.

    Args:
        value: an int (square) or a sequence of two ints.
        name: the argument's name, used in the error message.

    Returns:
        A tuple `(height, width)`.

    Example:
        >>> as_pair(224, "image_size")
        (224, 224)
    """
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2 or not all(is_positive_int(v) for v in pair):
        raise ValueError(
            f"{name} must be a positive int or a (height, width) pair of positive ints, "
            f"got {value!r}."
        )
    return int(pair[0]), int(pair[1])


def is_positive_int(value: Any) -> bool:
    """Whether `value` is an integer above zero: a Python or NumPy int, but not a bool.

    Args:
        value: anything.

    Returns:
        True for 1, 2, ...; False for 0, -1, 2.0, "2", True.

    Example:
        >>> is_positive_int(768), is_positive_int(768.0)
        (True, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _is_number(value: Any) -> bool:
    """Whether `value` is a real number, Python's or NumPy's (a bool is not one here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def class_index(key: Any) -> int:
    """An `id2label` key as an int: ints stay, digit strings (JSON's keys) are parsed.

    Args:
        key: the key.

    Returns:
        The class index.

    Example:
        >>> class_index("3")
        3
    """
    if isinstance(key, numbers.Integral) and not isinstance(key, bool) and key >= 0:
        return int(key)
    if isinstance(key, str) and key.isdigit():
        return int(key)
    raise ValueError(f"id2label keys must be class indices (0, 1, ...), got {key!r}.")


POSITIVE_INT_FIELDS = (
    "num_channels",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
)
OPTIONAL_POSITIVE_INT_FIELDS = ("pooler_output_size", "classes")
BOOLEAN_FIELDS = (
    "qkv_bias",
    "key_bias",
    "proj_bias",
    "mlp_bias",
    "pre_logits",
    "use_mask_token",
    "distillation_token",
    "distillation_head",
    "resample_antialias",
)


@dataclasses.dataclass
class ViTConfig:
    """The hyper-parameters of a Vision Transformer.

    Args:
        image_size: input side (int) or `(height, width)`; each side must be a
            multiple of the patch size.
        patch_size: patch side (int) or `(height, width)`.
        num_channels: channels of the input images.
        hidden_size: token width D.
        num_hidden_layers: number of encoder blocks L.
        num_attention_heads: heads per attention layer; must divide `hidden_size`.
        intermediate_size: hidden width of each MLP.
        hidden_act: MLP activation, by its transformers name (`"gelu"` is exact GELU).
        hidden_dropout_prob: dropout on embeddings and on each block's residual branches.
        attention_probs_dropout_prob: dropout on the attention probabilities.
        initializer_range: standard deviation of the truncated-normal initializers.
        layer_norm_eps: LayerNorm epsilon. 1e-6 as in the paper; transformers'
            default is 1e-12, so converted checkpoints carry their own value.
        qkv_bias: whether the query, key and value projections have biases.
        key_bias: whether the key projection has a bias when `qkv_bias` is
            set (DINOv3 has none).
        proj_bias: whether the attention's output projection has a bias.
        mlp_bias: whether the MLP's projections have biases.
        pooler_output_size: width of the pre-logits layer; defaults to `hidden_size`.
        pooler_act: activation of the pre-logits layer.
        pooling: `"token"` ([CLS]), `"gap"` (mean of the patch tokens),
            `"token_and_gap"` (both, concatenated: DINOv2's classifier) or
            `None` (the model outputs the whole token sequence).
        pre_logits: whether a Dense + `pooler_act` layer follows pooling
            (transformers' "pooler", the paper's pre-logits).
        classes: size of the classification head; `None` for no head.
        classifier_activation: activation applied to the head's output
            (`None` gives logits).
        drop_path_rate: stochastic-depth rate of the last block; block `i` uses
            `drop_path_rate * i / (L - 1)`.
        position_embedding: `"learned"` (1-D, trainable), `"sincos"` (fixed
            2-D, MAE) or `"rope"` (2-D rotary on queries and keys, DINOv3).
        rope_theta: the RoPE base period.
        num_register_tokens: learned register tokens between [CLS] and the
            patches (DINOv2 with registers, DINOv3); they carry no position.
        distillation_token: a learned DeiT distillation token after [CLS],
            with its own position embedding.
        distillation_head: a second head, on the distillation token; the
            model's scores are the mean of both heads' (DeiT's inference rule).
        layerscale_value: initial value of the per-channel layer scale on each
            residual branch (DINOv2, DINOv3); `None` for no layer scale.
        mlp_type: `"mlp"` (fc2(act(fc1 x))), `"swiglu"` (DINOv2: one fused
            input projection, silu(first half) * second half) or `"gated"`
            (DINOv3: act(gate x) * fc1 x).
        resample_antialias: resample learned position embeddings for another
            image size with PyTorch's antialiased bicubic kernel, as DINOv2
            with registers does, instead of the plain one.
        model_type: the transformers family the model converts to and from
            (one of `MODEL_TYPES`).
        use_mask_token: add a learned [MASK] embedding that replaces masked
            patches (`encode(..., bool_masked_pos=...)`), as in transformers'
            `ViTModel(use_mask_token=True)` and masked-image-modeling checkpoints.
        id2label: class index -> label name, for decoding predictions.
        base_model: the Hub repo the weights were loaded from, if any; model
            cards written by `push_to_hub` name it as `base_model`.

    Example:
        >>> config = ViTConfig(image_size=32, patch_size=8, hidden_size=32,
        ...                    num_hidden_layers=2, num_attention_heads=2,
        ...                    intermediate_size=64)
        >>> config.grid_size
        (4, 4)
    """

    image_size: int | tuple[int, int] = 224
    patch_size: int | tuple[int, int] = 16
    num_channels: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    pooler_output_size: int | None = None
    pooler_act: str = "tanh"
    pooling: str | None = "token"
    pre_logits: bool = False
    classes: int | None = None
    classifier_activation: str | None = None
    drop_path_rate: float = 0.0
    position_embedding: str = "learned"
    use_mask_token: bool = False
    id2label: dict[int, str] | None = None
    base_model: str | None = None
    key_bias: bool = True
    proj_bias: bool = True
    mlp_bias: bool = True
    rope_theta: float = 100.0
    num_register_tokens: int = 0
    distillation_token: bool = False
    distillation_head: bool = False
    layerscale_value: float | None = None
    mlp_type: str = "mlp"
    resample_antialias: bool = False
    model_type: str = "vit"

    def __post_init__(self):
        for name in POSITIVE_INT_FIELDS + OPTIONAL_POSITIVE_INT_FIELDS:
            value, optional = getattr(self, name), name in OPTIONAL_POSITIVE_INT_FIELDS
            if value is None and optional:
                continue
            if not is_positive_int(value):
                or_none = " or None" if optional else ""
                raise ValueError(f"{name} must be a positive int{or_none}, got {value!r}.")
            setattr(self, name, int(value))  # NumPy ints become Python ints
        for name in ("layer_norm_eps", "rope_theta", "layerscale_value"):
            value = getattr(self, name)
            if not (_is_number(value) and value > 0) and not (
                name == "layerscale_value" and value is None
            ):
                or_none = " or None" if name == "layerscale_value" else ""
                raise ValueError(f"{name} must be a number above 0{or_none}, got {value!r}.")
        if not (
            isinstance(self.num_register_tokens, numbers.Integral) and self.num_register_tokens >= 0
        ):
            raise ValueError(
                f"num_register_tokens must be an int >= 0, got {self.num_register_tokens!r}."
            )
        self.num_register_tokens = int(self.num_register_tokens)
        for name in BOOLEAN_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if self.id2label is not None:
            if not isinstance(self.id2label, dict):
                raise ValueError(
                    f"id2label must map class indices to names, e.g. {{0: 'cat'}}, "
                    f"got {self.id2label!r}."
                )
            # JSON turns int keys into strings.
            self.id2label = {class_index(key): label for key, label in self.id2label.items()}
            if self.classes is not None and len(self.id2label) != self.classes:
                raise ValueError(
                    f"id2label has {len(self.id2label)} labels but classes={self.classes}; "
                    "give one label per class, or id2label=None."
                )
        # Normalise pairs given as lists (e.g. from JSON) to tuples, and NumPy ints to ints.
        for name in ("image_size", "patch_size"):
            value = getattr(self, name)
            pair = as_pair(value, name)
            setattr(self, name, pair if isinstance(value, (tuple, list)) else pair[0])
        image, patch = (
            as_pair(self.image_size, "image_size"),
            as_pair(self.patch_size, "patch_size"),
        )
        for side, size, step in zip(("height", "width"), image, patch, strict=True):
            if size % step:
                raise ValueError(
                    f"image_size {self.image_size!r}: the {side} {size} is not divisible by "
                    f"patch_size {self.patch_size!r}. Use a multiple of {step}, "
                    f"e.g. {size - size % step or step} or {size - size % step + step}."
                )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}; "
                "pick a head count that divides it."
            )
        if self.pooling not in POOLING_MODES:
            raise ValueError(
                f"Unknown pooling {self.pooling!r}. Use one of {POOLING_MODES}: 'token' for the "
                "[CLS] token, 'gap' for the mean of patch tokens, None for the token sequence."
            )
        if self.pooling is None and (self.pre_logits or self.classes):
            raise ValueError(
                "pooling=None outputs the whole token sequence, so it cannot feed "
                f"pre_logits={self.pre_logits} or a classification head "
                f"(classes={self.classes}). Use pooling='token' or 'gap', or drop the head "
                "(include_top=False, pre_logits=False)."
            )
        for name in ("hidden_act", "pooler_act"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ValueError(
                    f"Unknown {name} {getattr(self, name)!r}. Supported: {sorted(ACTIVATIONS)}."
                )
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(
                f"Unknown position_embedding {self.position_embedding!r}. "
                f"Use one of {POSITION_EMBEDDINGS}."
            )
        if self.position_embedding == "sincos" and self.hidden_size % 4:
            raise ValueError(
                f"position_embedding='sincos' needs hidden_size divisible by 4, "
                f"got {self.hidden_size}."
            )
        for name, choices in (("mlp_type", MLP_TYPES), ("model_type", MODEL_TYPES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"Unknown {name} {getattr(self, name)!r}. Use one of {choices}.")
        if self.position_embedding == "rope" and self.head_size % 4:
            raise ValueError(
                "position_embedding='rope' needs a head size (hidden_size / "
                f"num_attention_heads) divisible by 4, got {self.head_size}."
            )
        if self.distillation_head and not (self.distillation_token and self.classes):
            raise ValueError(
                "distillation_head=True needs distillation_token=True and a head (classes=N): "
                "the second head reads the distillation token."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate"):
            value = getattr(self, name)
            if not (_is_number(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}.")

    @property
    def image_pair(self) -> tuple[int, int]:
        """The image size as `(height, width)`."""
        return as_pair(self.image_size, "image_size")

    @property
    def grid_size(self) -> tuple[int, int]:
        """The patch grid `(rows, columns)`."""
        (height, width), (ph, pw) = self.image_pair, self.patch_pair
        return height // ph, width // pw

    @property
    def patch_pair(self) -> tuple[int, int]:
        """The patch size as `(height, width)`."""
        return as_pair(self.patch_size, "patch_size")

    @property
    def pre_logits_size(self) -> int:
        """Width of the pre-logits layer."""
        return self.pooler_output_size or self.hidden_size

    @property
    def head_size(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: [CLS], the distillation token, the registers."""
        return 1 + int(self.distillation_token) + self.num_register_tokens

    @property
    def pooled_size(self) -> int:
        """Width of the pooled features: D, or 2D for `"token_and_gap"`."""
        return self.hidden_size * (2 if self.pooling == "token_and_gap" else 1)

    def count_params(self) -> int:
        """The model's parameter count in closed form, without building it.

        Returns:
            The number of weights `keras_vit.ViT(config).count_params()` reports.
            Fixed sin-cos position embeddings are not weights and are not counted.

        Example:
            >>> from keras_vit import variant_config
            >>> variant_config("ViTB16", classes=1000).count_params()
            86567656
        """
        d, m = self.hidden_size, self.intermediate_size
        rows, cols = self.grid_size
        ph, pw = self.patch_pair
        patch = ph * pw * self.num_channels * d + d
        # [CLS], [MASK], the distillation token and the registers
        tokens = d * (1 + self.use_mask_token + self.distillation_token + self.num_register_tokens)
        if self.position_embedding == "learned":
            tokens += (rows * cols + 1 + self.distillation_token) * d
        qkv_biases = (2 + self.key_bias) * d if self.qkv_bias else 0
        attention = 4 * d * d + qkv_biases + (d if self.proj_bias else 0)
        mlp_inputs = {"mlp": 1, "swiglu": 2, "gated": 2}[self.mlp_type]
        mlp = (
            (mlp_inputs * (d * m + m) + (m * d + d)) if self.mlp_bias else (1 + mlp_inputs) * d * m
        )
        layer_scale = 2 * d if self.layerscale_value is not None else 0
        block = 4 * d + attention + mlp + layer_scale
        total = patch + tokens + self.num_hidden_layers * block + 2 * d
        features = self.pooled_size
        if self.pre_logits:
            total += features * self.pre_logits_size + self.pre_logits_size
            features = self.pre_logits_size
        if self.classes:
            total += features * self.classes + self.classes
        if self.distillation_head:
            total += d * self.classes + self.classes
        return total

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict of every field (pairs become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ViTConfig:
        """Builds a config from `to_dict()` output; unknown keys raise a ValueError.

        Args:
            values: field names and values.

        Returns:
            A `ViTConfig`.

        Example:
            >>> ViTConfig.from_dict(ViTConfig().to_dict()) == ViTConfig()
            True
        """
        unknown = sorted(set(values) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(
                f"Unknown ViTConfig field(s) {unknown}. Valid fields: "
                f"{[field.name for field in dataclasses.fields(cls)]}."
            )
        return cls(**values)
