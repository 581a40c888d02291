"""keras_vit against the loopback Hub: named weights, from_pretrained, push_to_hub, errors."""

import json

import huggingface_hub
import numpy as np
import pytest
import torch
import transformers

import keras_vit
from keras_vit import ViT, ViTConfig
from keras_vit.conversion import read_checkpoint
from keras_vit.hf_integration import NAMED_WEIGHTS, split_source
from keras_vit.hf_integration.download import files_to_fetch
from keras_vit.hf_integration.named_weights import named_weights_repo, weight_names
from tests.conftest import TINY, randomize_head, to_numpy
from tests.conversion.conftest import make_hf_model, nchw, random_images

IN21K = "google/vit-base-patch16-224-in21k"
TOLERANCE = 1e-4


@pytest.fixture(scope="session")
def in21k_directory(tmp_path_factory):
    """A random-weight ViT-B/16 `ViTModel` with pooler, shaped like Google's in21k checkpoint."""
    directory = tmp_path_factory.mktemp("in21k")
    base = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12)
    model = make_hf_model("ViTModel", **base, intermediate_size=3072, image_size=224, patch_size=16)
    model.save_pretrained(directory)
    return directory


@pytest.fixture
def tiny_repo(hub, tmp_path):
    """Plants a tiny random transformers classifier as `org/tiny`; returns the HF model."""
    reference = make_hf_model(
        "ViTForImageClassification", image_size=32, patch_size=8, id2label={0: "a", 1: "b"}
    )
    reference.save_pretrained(tmp_path / "tiny")
    hub.plant("org/tiny", tmp_path / "tiny")
    return reference


def tiny_model():
    return ViT(ViTConfig(**TINY, classes=3, id2label={0: "cat", 1: "dog", 2: "fox"}))


def test_named_weights_match_transformers_and_fetch_only_what_is_needed(hub, in21k_directory):
    files = {path.name: path.read_bytes() for path in in21k_directory.iterdir()}
    hub.plant(IN21K, {**files, "pytorch_model.bin": b"unused", "tf_model.h5": b"unused"})
    model = keras_vit.ViTB16(weights="imagenet21k")
    assert sorted(hub.downloads(IN21K)) == ["config.json", "model.safetensors"]
    assert model.config.classes is None and model.config.pre_logits
    assert model.config.base_model == IN21K
    reference = transformers.ViTModel.from_pretrained(IN21K).eval()
    images = random_images(model, size=(224, 224))[:1]
    with torch.no_grad():
        expected = reference(nchw(images)).pooler_output.numpy()
    ours = to_numpy(model(images))
    assert ours.shape == (1, 768)
    np.testing.assert_allclose(ours, expected, atol=TOLERANCE)


def test_named_weights_load_again_offline(hub, in21k_directory, go_offline):
    hub.plant(IN21K, in21k_directory)
    online = keras_vit.ViTB16(weights="imagenet21k")
    go_offline()
    offline = keras_vit.ViTB16(weights="imagenet21k")
    images = random_images(online, size=(224, 224))[:1]
    np.testing.assert_array_equal(to_numpy(offline(images)), to_numpy(online(images)))


def test_named_weights_with_new_head_and_resolution(hub, in21k_directory):
    hub.plant(IN21K, in21k_directory)
    model = keras_vit.ViTB16(weights="imagenet21k", classes=5, image_size=384)
    assert model.config.classes == 5 and model.config.image_size == 384
    position = to_numpy(model.embeddings.position_embedding)
    assert position.shape == (1, 1 + 24 * 24, 768)
    stored = read_checkpoint(in21k_directory)["embeddings.position_embeddings"]
    expected = keras_vit.resample_position_embeddings(stored, (14, 14), (24, 24))
    np.testing.assert_allclose(position, expected, atol=1e-6)
    np.testing.assert_array_equal(to_numpy(model.get_layer("head").kernel), np.zeros((768, 5)))
    assert model.output_shape == (None, 5)


def test_weights_from_a_local_directory(in21k_directory):
    model = keras_vit.ViTB16(weights=str(in21k_directory), include_top=False, pooling="gap")
    assert model.config.pooling == "gap" and model.config.base_model is None
    assert model.output_shape == (None, 768)


def test_convert_command_takes_a_repo_id(hub, tiny_repo, tmp_path, capsys):
    from keras_vit.cli import main

    assert main(["convert", "org/tiny", str(tmp_path / "tiny.keras"), "--verify"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("converted org/tiny -> ")
    assert float(summary.rsplit(" ", 1)[-1]) < TOLERANCE


def test_explain_command_takes_a_repo_id(hub, tiny_repo, tmp_path, capsys):
    from PIL import Image

    from keras_vit.cli import EXPLAIN_FILES, main

    Image.new("RGB", (20, 30), "white").save(tmp_path / "white.png")
    output = tmp_path / "out"
    arguments = ["explain", str(tmp_path / "white.png"), "--model", "org/tiny", "--output"]
    assert main([*arguments, str(output)]) == 0
    assert sorted(path.name for path in output.iterdir()) == sorted(EXPLAIN_FILES)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "top-5 predictions:"
    assert sorted(line.split()[1] for line in printed[1:3]) == ["a", "b"]


def test_weights_of_another_size_are_refused(hub, tiny_repo):
    with pytest.raises(ValueError, match="org/tiny is not a ViTB16 checkpoint.*hidden_size 32"):
        keras_vit.ViTB16(weights="org/tiny")


def test_push_then_load_with_keras_vit_and_transformers(hub, token):
    model = randomize_head(tiny_model())
    commit = model.push_to_hub("me/tiny-vit", token=token)
    assert commit.oid == hub.commits("me/tiny-vit")[-1]
    assert len(hub.commits("me/tiny-vit")) == 2  # the repo's creation, then one push
    assert sorted(hub.repo_files("me/tiny-vit")) == [
        ".gitattributes",
        "README.md",
        "config.json",
        "keras_vit_config.json",
        "model.safetensors",
        "model.weights.h5",
        "preprocessor_config.json",
    ]
    images = random_images(model)
    reloaded = ViT.from_pretrained("me/tiny-vit")
    assert sorted(hub.downloads("me/tiny-vit")) == [
        "config.json",
        "keras_vit_config.json",
        "model.weights.h5",
        "preprocessor_config.json",
    ]
    np.testing.assert_array_equal(to_numpy(reloaded(images)), to_numpy(model(images)))
    theirs, info = transformers.AutoModelForImageClassification.from_pretrained(
        "me/tiny-vit", output_loading_info=True
    )
    assert not any(info.values())
    with torch.no_grad():
        logits = theirs.eval()(nchw(images)).logits.numpy()
    np.testing.assert_allclose(logits, to_numpy(model(images)), atol=TOLERANCE)
    assert theirs.config.id2label == {0: "cat", 1: "dog", 2: "fox"}


def test_reshaping_a_pushed_model_reads_the_transformers_weights(hub, token):
    tiny_model().push_to_hub("me/tiny-vit", token=token)
    model = ViT.from_pretrained("me/tiny-vit", classes=7)
    assert "model.safetensors" in hub.downloads() and "model.weights.h5" not in hub.downloads()
    assert model.config.classes == 7


def test_push_with_hf_token_from_the_environment(hub, token, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", token)
    tiny_model().push_to_hub("me/from-env", commit_message="first version")
    assert "config.json" in hub.repo_files("me/from-env")
    assert hub.commit_titles("me/from-env")[-1] == "first version"


def test_push_to_a_branch(hub, token):
    tiny_model().push_to_hub("me/tiny-vit", token=token)
    other = ViT(ViTConfig(**TINY, classes=2))
    other.push_to_hub("me/tiny-vit", token=token, revision="dev")
    assert ViT.from_pretrained("me/tiny-vit").config.classes == 3
    assert ViT.from_pretrained("me/tiny-vit", revision="dev").config.classes == 2


def test_push_without_token_says_how_to_log_in(hub):
    with pytest.raises(PermissionError, match=r"HTTP 401.*hf auth login.*token="):
        tiny_model().push_to_hub("me/tiny-vit")


def test_hf_url_revision_and_bin_fallback(hub, tmp_path):
    first = make_hf_model("ViTModel", seed=1, image_size=32, patch_size=8)
    second = make_hf_model("ViTModel", seed=2, image_size=32, patch_size=8)
    for index, reference in enumerate((first, second)):
        reference.save_pretrained(tmp_path / str(index))
    first_sha = hub.plant("org/vit", tmp_path / "0")
    hub.plant("org/vit", tmp_path / "1")
    model = ViT.from_pretrained("hf://org/vit", revision=first_sha)
    images = random_images(model)
    with torch.no_grad():
        expected = first(nchw(images)).pooler_output.numpy()
    np.testing.assert_allclose(to_numpy(model(images)), expected, atol=TOLERANCE)

    from safetensors.numpy import load_file

    tensors = load_file(tmp_path / "1" / "model.safetensors")
    torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, tmp_path / "model.bin")
    hub.plant(
        "org/legacy",
        {
            "config.json": (tmp_path / "1" / "config.json").read_bytes(),
            "pytorch_model.bin": (tmp_path / "model.bin").read_bytes(),
        },
    )
    legacy = ViT.from_pretrained("org/legacy")
    with torch.no_grad():
        expected = second(nchw(images)).pooler_output.numpy()
    np.testing.assert_allclose(to_numpy(legacy(images)), expected, atol=TOLERANCE)


def test_offline_loads_from_cache_only(hub, tiny_repo, go_offline):
    online = ViT.from_pretrained("org/tiny")
    hub.requests.clear()
    go_offline()
    offline = ViT.from_pretrained("org/tiny")
    assert hub.requests == []
    images = random_images(online)
    np.testing.assert_array_equal(to_numpy(offline(images)), to_numpy(online(images)))
    with pytest.raises(OSError, match="org/other is not in the local Hugging Face cache"):
        ViT.from_pretrained("org/other")


def test_local_files_only_without_cache(hub, tiny_repo):
    with pytest.raises(OSError, match="not in the local Hugging Face cache"):
        ViT.from_pretrained("org/tiny", local_files_only=True)


def test_unreachable_hub_falls_back_to_cache(hub, tiny_repo, monkeypatch):
    ViT.from_pretrained("org/tiny")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    assert ViT.from_pretrained("org/tiny").config.classes == 2
    with pytest.raises(OSError, match="org/uncached is not in the local Hugging Face cache"):
        ViT.from_pretrained("org/uncached")


def test_missing_repo_revision_and_weights_are_explained(hub, tmp_path):
    with pytest.raises(OSError, match="Repo org/nothing was not found.*hf auth login"):
        ViT.from_pretrained("org/nothing")
    config = {"model_type": "vit", "hidden_size": 32}
    hub.plant("org/no-weights", {"config.json": json.dumps(config).encode()})
    with pytest.raises(FileNotFoundError, match="org/no-weights has no ViT weights"):
        ViT.from_pretrained("org/no-weights")
    with pytest.raises(OSError, match="Revision 'nope' does not exist in org/no-weights"):
        ViT.from_pretrained("org/no-weights", revision="nope")
    hub.plant("org/swin", {"config.json": b'{"model_type": "swin"}', "model.safetensors": b""})
    with pytest.raises(ValueError, match="model_type 'swin' is not supported"):
        ViT.from_pretrained("org/swin")
    hub.plant("org/no-config", {"model.safetensors": b""})
    with pytest.raises(FileNotFoundError, match="org/no-config has no config.json"):
        ViT.from_pretrained("org/no-config")


def test_model_card_metadata_and_body(hub, token, tiny_repo):
    model = ViT.from_pretrained("org/tiny", classes=3, drop_path_rate=0.1)
    model.config.id2label = {0: "cat", 1: "dog", 2: "fox"}
    model.push_to_hub("me/tuned", token=token)
    card = huggingface_hub.ModelCard.load("me/tuned")
    assert card.data.library_name == "keras"
    assert card.data.tags == [
        "keras",
        "keras-vit",
        "vision-transformer",
        "image-classification",
        "vit",
    ]
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.base_model == "org/tiny"
    assert card.data.labels == ["cat", "dog", "fox"]
    assert 'keras_vit.ViT.from_pretrained("me/tuned")' in card.text
    assert 'AutoModelForImageClassification.from_pretrained("me/tuned")' in card.text
    assert f"| 2 | 32 | 2 | 64 | 8 | 32 | {model.count_params():,} |" in card.text
    assert "3 classes: cat, dog, fox." in card.text


def test_headless_model_card(tmp_path):
    model = ViT(ViTConfig(**{**TINY, "image_size": (48, 32)}))
    model.save_pretrained(tmp_path / "out")
    card = huggingface_hub.ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert card.data.base_model is None and "labels" not in card.data.to_dict()
    assert 'ViTModel.from_pretrained("path/to/this-model")' in card.text
    assert "| 8 | 48x32 |" in card.text


def test_weight_names_and_repos():
    assert weight_names("ViTB32") == ["imagenet21k", "imagenet-384"]
    assert named_weights_repo("ViTL16", "imagenet") == "google/vit-large-patch16-224"
    assert named_weights_repo("ViTL16", "nope") is None


def test_list_weights_prints_the_table(capsys):
    table = keras_vit.list_weights()
    assert capsys.readouterr().out.strip() == table
    assert "| ViTB16 | `imagenet21k` | google/vit-base-patch16-224-in21k |" in table
    assert len(table.splitlines()) == 2 + len(NAMED_WEIGHTS)
    variants = {variant for variant, _ in NAMED_WEIGHTS}
    assert variants == set(keras_vit.VARIANTS)


@pytest.mark.parametrize(
    "source, message",
    [
        ("not a repo!", "neither a local directory nor a valid Hub repo id"),
        ("./absent", "is not a directory"),
    ],
)
def test_bad_sources(source, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        ViT.from_pretrained(source)


def test_split_source(tmp_path):
    assert split_source(tmp_path) == (tmp_path, None)
    assert split_source("hf://org/name") == (None, "org/name")
    assert split_source("org/name") == (None, "org/name")
    assert split_source("gpt2") == (None, "gpt2")


def test_files_to_fetch():
    everything = [
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "keras_vit_config.json",
        "model.weights.h5",
    ]
    assert files_to_fetch("r", everything, keras_native=True) == [
        "config.json",
        "keras_vit_config.json",
        "model.weights.h5",
    ]
    assert files_to_fetch("r", everything, keras_native=False) == [
        "config.json",
        "model.safetensors",
    ]
    sharded = ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"]
    assert files_to_fetch("r", sharded, False)[1:] == [
        "model.safetensors.index.json",
        "model-*-of-*.safetensors",
    ]
    assert (
        files_to_fetch("r", ["config.json", "pytorch_model.bin"], False)[-1] == "pytorch_model.bin"
    )
