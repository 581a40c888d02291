"""save_pretrained: bit-for-bit round trips, loadable by transformers, written atomically."""

import json

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from keras_vit import ViT, ViTConfig
from keras_vit.conversion import pretrained
from tests.conftest import TINY, randomize_head, to_numpy
from tests.conversion.conftest import CHECKPOINTS, nchw, random_images

TOLERANCE = 1e-4


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_hf_to_keras_to_hf_is_bit_for_bit(hf_checkpoints, tmp_path, name):
    directory, _ = hf_checkpoints[name]
    ViT.from_pretrained(directory, verbose=False).save_pretrained(tmp_path / "out")
    original = load_file(directory / "model.safetensors")
    exported = load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(exported) == sorted(original)
    for tensor_name, value in original.items():
        assert exported[tensor_name].dtype == value.dtype
        np.testing.assert_array_equal(exported[tensor_name], value, err_msg=tensor_name)


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_transformers_loads_the_export_without_warnings(hf_checkpoints, tmp_path, name):
    directory, reference = hf_checkpoints[name]
    model = ViT.from_pretrained(directory, verbose=False)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    architecture = config["architectures"][0]
    assert architecture == type(reference).__name__
    loaded, info = getattr(transformers, architecture).from_pretrained(
        tmp_path, output_loading_info=True, attn_implementation="eager"
    )
    assert not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    images = random_images(model)
    with torch.no_grad():
        got = loaded.eval()(nchw(images))
    if config["architectures"] == ["ViTForImageClassification"]:
        np.testing.assert_allclose(got.logits.numpy(), to_numpy(model(images)), atol=TOLERANCE)
        assert loaded.config.id2label == reference.config.id2label
    else:
        np.testing.assert_allclose(
            got.pooler_output.numpy(), to_numpy(model(images)), atol=TOLERANCE
        )


def test_auto_model_for_image_classification_loads_the_export(hf_checkpoints, tmp_path):
    directory, reference = hf_checkpoints["labels"]
    model = ViT.from_pretrained(directory, verbose=False)
    model.save_pretrained(tmp_path)
    loaded, info = transformers.AutoModelForImageClassification.from_pretrained(
        tmp_path, output_loading_info=True
    )
    assert not any(info.values())
    images = random_images(model)
    with torch.no_grad():
        np.testing.assert_allclose(
            loaded.eval()(nchw(images)).logits.numpy(),
            reference(nchw(images)).logits.numpy(),
            atol=TOLERANCE,
        )
    processor = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 32, "width": 32}


def test_headless_model_without_pooler_loads_as_vit_model(tmp_path):
    model = ViT(ViTConfig(**TINY, classes=None))
    model.save_pretrained(tmp_path)
    loaded, info = transformers.ViTModel.from_pretrained(
        tmp_path, add_pooling_layer=False, output_loading_info=True
    )
    assert not any(info.values())
    images = random_images(model)
    with torch.no_grad():
        expected = loaded.eval()(nchw(images)).last_hidden_state.numpy()
    np.testing.assert_allclose(
        to_numpy(model.encode(images)["last_hidden_state"]), expected, atol=TOLERANCE
    )


def test_keras_native_fast_path_is_exact(tmp_path):
    model = randomize_head(ViT(ViTConfig(**TINY, classes=3, id2label={0: "a", 1: "b", 2: "c"})))
    model.save_pretrained(tmp_path)
    for name in ("keras_vit_config.json", "model.weights.h5", "config.json", "model.safetensors"):
        assert (tmp_path / name).is_file()
    reloaded = ViT.from_pretrained(tmp_path)
    assert reloaded.config == model.config
    images = random_images(model)
    np.testing.assert_array_equal(to_numpy(reloaded(images)), to_numpy(model(images)))


def test_new_head_is_zero_initialised_and_drops_labels(hf_checkpoints):
    directory, _ = hf_checkpoints["labels"]
    model = ViT.from_pretrained(directory, classes=5, verbose=False)
    assert model.config.classes == 5 and model.config.id2label is None
    np.testing.assert_array_equal(to_numpy(model.get_layer("head").kernel), np.zeros((32, 5)))
    images = random_images(model)
    np.testing.assert_array_equal(to_numpy(model(images)), np.zeros((2, 5)))


def test_headless_checkpoint_gets_a_new_head(hf_checkpoints):
    directory, reference = hf_checkpoints["square_pooler"]
    model = ViT.from_pretrained(directory, classes=4, verbose=False)
    assert model.config.classes == 4 and not model.config.pre_logits
    images = random_images(model)
    with torch.no_grad():
        expected = reference(nchw(images)).last_hidden_state.numpy()
    np.testing.assert_allclose(
        to_numpy(model.encode(images)["last_hidden_state"]), expected, atol=TOLERANCE
    )


def test_include_top(hf_checkpoints):
    directory, reference = hf_checkpoints["labels"]
    features = ViT.from_pretrained(directory, include_top=False, verbose=False)
    assert features.config.classes is None
    images = random_images(features)
    with torch.no_grad():
        cls_token = reference.vit(nchw(images)).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(to_numpy(features(images)), cls_token, atol=TOLERANCE)
    headless, _ = hf_checkpoints["square_pooler"]
    with pytest.raises(ValueError, match="no classification head; pass classes=N"):
        ViT.from_pretrained(headless, include_top=True)


def test_overrides_reach_the_config(hf_checkpoints):
    directory, _ = hf_checkpoints["labels"]
    model = ViT.from_pretrained(directory, drop_path_rate=0.1, verbose=False)
    assert model.config.drop_path_rate == 0.1 and model.config.classes == 3


def test_decode_predictions_uses_id2label(hf_checkpoints):
    directory, _ = hf_checkpoints["labels"]
    model = ViT.from_pretrained(directory, verbose=False)
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], "float32")
    decoded = model.decode_predictions(scores, top=2)
    assert decoded == [
        [("dog", pytest.approx(0.7)), ("fox", pytest.approx(0.2))],
        [("cat", pytest.approx(0.5)), ("fox", pytest.approx(0.3))],
    ]
    unlabeled = ViT(ViTConfig(**TINY, classes=3))
    assert unlabeled.decode_predictions(scores, top=1) == [
        [("1", pytest.approx(0.7))],
        [("0", pytest.approx(0.5))],
    ]
    with pytest.raises(ValueError, match="no classification head"):
        ViT(ViTConfig(**TINY)).decode_predictions(scores)


def test_existing_destination_is_refused_unless_overwrite(tmp_path):
    model = ViT(ViTConfig(**TINY, classes=3))
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="already exists.*overwrite=True"):
        model.save_pretrained(tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "user data"
    model.save_pretrained(tmp_path, overwrite=True)
    assert (tmp_path / "config.json").is_file() and not (tmp_path / "keep.txt").exists()


def test_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pretrained, "_write_json", fail)
    with pytest.raises(OSError, match="disk full"):
        ViT(ViTConfig(**TINY, classes=3)).save_pretrained(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_models_transformers_cannot_represent_are_refused(tmp_path):
    with pytest.raises(ValueError, match="pooling='gap'.*model.save"):
        ViT(ViTConfig(**TINY, classes=3, pooling="gap")).save_pretrained(tmp_path / "gap")
    with pytest.raises(ValueError, match="pre_logits together with a head"):
        ViT(ViTConfig(**TINY, classes=3, pre_logits=True)).save_pretrained(tmp_path / "pl")
    assert list(tmp_path.iterdir()) == []
