"""keras-hub presets (ViT, DeiT, DINOv2; backbones and image classifiers) against keras-hub's
own models, on the current Keras backend. keras-hub is a test-only dependency."""

import json
import shutil
from pathlib import Path

import h5py
import keras_hub  # installed by the Makefile, without its own requirements
import numpy as np
import pytest

from keras_vit import ViT
from keras_vit.conversion import CheckpointMismatchError
from keras_vit.conversion.keras_hub_config import (
    is_keras_hub_preset,
    keras_hub_preset_files,
    supported_backbone_config,
    unsupported_preset_error,
)
from tests.conftest import to_numpy

TOLERANCE = 1e-5
TINY = dict(num_layers=2, num_heads=2, hidden_dim=32)


def vit_backbone(**options):
    values = dict(TINY, image_shape=(32, 32, 3), patch_size=8, mlp_dim=64)
    return keras_hub.models.ViTBackbone(**{**values, **options})


def deit_backbone(**options):
    values = dict(TINY, image_shape=(32, 32, 3), patch_size=8, intermediate_dim=64)
    return keras_hub.models.DeiTBackbone(**{**values, **options})


def dinov2_backbone(**options):
    values = dict(TINY, patch_size=8, intermediate_dim=64, image_shape=(32, 32, 3))
    return keras_hub.models.DINOV2Backbone(**{**values, **options})


# name: a function building the keras-hub model (a backbone or an image classifier)
PRESETS = {
    "vit_backbone": lambda: vit_backbone(
        image_shape=(32, 48, 3),
        use_patch_bias=False,
        use_mlp_bias=False,
        layer_norm_epsilon=1e-5,
    ),
    "vit_classifier": lambda: keras_hub.models.ViTImageClassifier(
        backbone=vit_backbone(use_mha_bias=False),
        num_classes=3,
        intermediate_dim=16,
        activation="softmax",
    ),
    "deit_backbone": lambda: deit_backbone(layer_norm_epsilon=1e-12),
    "deit_classifier": lambda: keras_hub.models.DeiTImageClassifier(
        backbone=deit_backbone(), num_classes=4
    ),
    # Position embeddings learned at 48x48 and resized (with antialiasing) for 32x32.
    "dinov2_swiglu_registers": lambda: dinov2_backbone(
        use_swiglu_ffn=True,
        num_register_tokens=2,
        layer_scale_init_value=0.5,
        position_embedding_shape=(48, 48, 3),
        antialias_in_interpolation=True,
    ),
    "dinov2_plain": lambda: dinov2_backbone(
        use_mask_token=False, position_embedding_shape=(32, 32, 3)
    ),
}
CLASSIFIERS = ["vit_classifier", "deit_classifier"]


def randomize(model, seed):
    """Moves every weight away from its initial value, so that each one matters (LayerNorm
    scales start at 1, biases and tokens near 0). DINOv2's resized copy of its position
    embeddings is left alone: keras-hub derives it from the stored table on loading."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "interpolated" not in weight.path:
            noise = 0.1 * rng.standard_normal(weight.shape).astype("float32")
            weight.assign(to_numpy(weight) + noise)
    return model


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """name -> the preset directory, saved with keras-hub's `save_to_preset`."""
    made = {}
    for seed, (name, build) in enumerate(PRESETS.items()):
        directory = tmp_path_factory.mktemp(name)
        randomize(build(), seed).save_to_preset(str(directory))
        made[name] = directory
    return made


def keras_hub_model(directory):
    """keras-hub's own model, loaded from the preset as keras-hub loads it."""
    if (directory / "task.json").is_file():
        return keras_hub.models.ImageClassifier.from_preset(str(directory))
    return keras_hub.models.Backbone.from_preset(str(directory))


def run(model, images):
    if isinstance(model.input, dict):  # DINOv2 takes {"images": ...}
        return to_numpy(model({"images": images}))
    return to_numpy(model(images))


def random_images(height, width, seed=0):
    return np.random.default_rng(seed).standard_normal((2, height, width, 3)).astype("float32")


def assert_close(ours, theirs):
    np.testing.assert_allclose(to_numpy(ours), theirs, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", list(PRESETS))
def test_backbone_output_matches_keras_hub(presets, name):
    directory = presets[name]
    assert is_keras_hub_preset(directory)
    reference = keras_hub_model(directory)
    backbone = getattr(reference, "backbone", reference)
    model = ViT.from_pretrained(directory, verbose=False)
    images = random_images(*model.config.image_pair)
    assert_close(model.encode(images)["last_hidden_state"], run(backbone, images))
    whole_sequence = ViT.from_pretrained(directory, verbose=False, pooling=None, include_top=False)
    assert_close(whole_sequence(images), run(backbone, images))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_output_matches_keras_hub(presets, name):
    directory = presets[name]
    reference = keras_hub_model(directory)
    model = ViT.from_pretrained(directory, verbose=False)
    assert model.config.classes == reference.num_classes
    images = random_images(32, 32, seed=1)
    assert_close(model(images), run(reference, images))


def test_configs_follow_the_presets(presets):
    vit = ViT.from_pretrained(presets["vit_backbone"], verbose=False).config
    assert (vit.model_type, vit.image_size, vit.layer_norm_eps, vit.mlp_bias) == (
        "vit",
        (32, 48),
        1e-5,
        False,
    )
    classifier = ViT.from_pretrained(presets["vit_classifier"], verbose=False).config
    assert classifier.pre_logits and classifier.pre_logits_size == 16
    assert classifier.classifier_activation == "softmax"
    assert not classifier.qkv_bias and not classifier.proj_bias
    deit = ViT.from_pretrained(presets["deit_classifier"], verbose=False).config
    assert deit.distillation_token and not deit.distillation_head and deit.classes == 4
    dinov2 = ViT.from_pretrained(presets["dinov2_swiglu_registers"], verbose=False).config
    assert dinov2.model_type == "dinov2_with_registers"
    assert (dinov2.mlp_type, dinov2.intermediate_size, dinov2.num_register_tokens) == (
        "swiglu",
        48,  # keras-hub keeps 2/3 of intermediate_dim=64, rounded up to a multiple of 8
        2,
    )


def test_dinov2_at_another_size_matches_keras_hub_built_for_it(presets):
    directory = presets["dinov2_swiglu_registers"]
    reference = keras_hub.models.Backbone.from_preset(str(directory), image_shape=(40, 40, 3))
    model = ViT.from_pretrained(directory, image_size=40, verbose=False)
    images = random_images(40, 40, seed=2)
    assert_close(model.encode(images)["last_hidden_state"], run(reference, images))


def test_new_head_or_no_head(presets):
    directory = presets["vit_classifier"]
    backbone = keras_hub_model(directory).backbone
    images = random_images(32, 32, seed=3)
    fresh = ViT.from_pretrained(directory, classes=5, verbose=False)
    assert fresh.config.classes == 5 and not fresh.config.pre_logits
    np.testing.assert_array_equal(to_numpy(fresh(images)), 0.0)  # a new head starts at zero
    headless = ViT.from_pretrained(directory, include_top=False, verbose=False)
    assert headless.head is None
    for model in (fresh, headless):
        assert_close(model.encode(images)["last_hidden_state"], run(backbone, images))
    with pytest.raises(ValueError, match="classes=N"):
        ViT.from_pretrained(presets["deit_backbone"], include_top=True, verbose=False)


def test_sharded_weights(tmp_path):
    directory = tmp_path / "sharded"
    backbone = randomize(deit_backbone(), seed=7)
    backbone.save_to_preset(str(directory), max_shard_size=0.00003)  # about 30 kB a shard
    assert (directory / "model.weights.json").is_file()
    assert len(list(directory.glob("model_*.weights.h5"))) > 1
    model = ViT.from_pretrained(directory, verbose=False)
    images = random_images(32, 32, seed=4)
    assert_close(model.encode(images)["last_hidden_state"], run(keras_hub_model(directory), images))


def test_another_keras_hub_class_is_named(tmp_path):
    text_model = keras_hub.models.BertBackbone(
        vocabulary_size=16,
        num_layers=1,
        num_heads=1,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=8,
    )
    text_model.save_to_preset(str(tmp_path / "bert"))
    with pytest.raises(ValueError, match="BertBackbone") as error:
        ViT.from_pretrained(tmp_path / "bert", verbose=False)
    for supported in ("ViTBackbone", "DeiTBackbone", "DINOV2Backbone", "ViTImageClassifier"):
        assert supported in str(error.value)


def test_gap_pooling_head_is_refused_but_the_backbone_loads(tmp_path):
    task = keras_hub.models.ViTImageClassifier(
        backbone=vit_backbone(), num_classes=2, pooling="gap"
    )
    randomize(task, seed=5).save_to_preset(str(tmp_path / "gap"))
    with pytest.raises(ValueError, match="pooling='gap'.*include_top=False"):
        ViT.from_pretrained(tmp_path / "gap", verbose=False)
    model = ViT.from_pretrained(tmp_path / "gap", include_top=False, verbose=False)
    images = random_images(32, 32, seed=6)
    backbone = keras_hub_model(tmp_path / "gap").backbone
    assert_close(model.encode(images)["last_hidden_state"], run(backbone, images))


def test_every_mismatch_is_listed_at_once(presets, tmp_path):
    directory = tmp_path / "broken"
    shutil.copytree(presets["deit_backbone"], directory)
    with h5py.File(directory / "model.weights.h5", "r+") as handle:
        block = "layers/dei_t_encoder/encoder_layers/dei_t_encoder_block_1"
        del handle[f"{block}/layer_norm_1/vars/1"]
        del handle[f"{block}/mlp/dense/vars/1"]
        handle[f"{block}/mlp/dense/vars/1"] = np.zeros(63, "float32")
        handle["layers/dei_t_encoder/extra/vars/0"] = np.zeros(3, "float32")
    with pytest.raises(CheckpointMismatchError) as error:
        ViT.from_pretrained(directory, verbose=False)
    message = str(error.value)
    assert "missing (1)" in message and "layer_norm_1/vars/1" in message
    assert "unexpected (1)" in message and "extra/vars/0" in message
    assert "wrong shape (1)" in message and "expected (64,), found (63,)" in message


def test_transformers_checkpoints_are_not_taken_for_presets(hf_checkpoints):
    directory, _ = hf_checkpoints["labels"]
    assert not is_keras_hub_preset(directory)
    with pytest.raises(ValueError, match="is not a keras-hub preset"):
        supported_backbone_config(directory)


def test_supported_backbone_config_and_the_error_for_other_classes(presets):
    for name, directory in presets.items():
        assert supported_backbone_config(directory)["class_name"] in (
            "ViTBackbone",
            "DeiTBackbone",
            "DINOV2Backbone",
        ), name
    error = unsupported_preset_error(Path("p"), "task", {"class_name": "ResNetImageClassifier"})
    assert "p is a keras-hub preset of task 'ResNetImageClassifier' (unknown module)" in str(error)
    assert "keras_hub.models.Backbone.from_preset" in str(error)


def test_files_fetched_from_a_hub_repo():
    preset = ["config.json", "metadata.json", "model.weights.h5", "task.json", "tf_model.h5"]
    assert keras_hub_preset_files(preset) == [
        "config.json",
        "metadata.json",
        "model.weights.h5",
        "task.json",
    ]
    sharded = ["config.json", "metadata.json", "model.weights.json", "model_00000.weights.h5"]
    assert keras_hub_preset_files(sharded)[2:] == ["model.weights.json", "model_*.weights.h5"]
    assert keras_hub_preset_files(["config.json", "model.safetensors"]) is None


def test_preset_config_is_what_keras_hub_saved(presets):
    config = json.loads((presets["dinov2_plain"] / "config.json").read_text())
    assert config["class_name"] == "DINOV2Backbone"


def test_hf_url_of_a_preset_repo_loads_online_then_offline(presets, monkeypatch):
    import huggingface_hub

    from tests.support.hub_server import start_session_hub

    start_session_hub().plant("org/keras-hub-vit-classifier", presets["vit_classifier"])
    model = ViT.from_pretrained("hf://org/keras-hub-vit-classifier", verbose=False)
    assert model.config.base_model == "org/keras-hub-vit-classifier"
    images = random_images(32, 32, seed=8)
    expected = run(keras_hub_model(presets["vit_classifier"]), images)
    assert_close(model(images), expected)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    offline = ViT.from_pretrained("org/keras-hub-vit-classifier", verbose=False)
    assert_close(offline(images), expected)
