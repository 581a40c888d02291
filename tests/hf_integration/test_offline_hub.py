"""Loading cached Hub repos again without the Hub, and downloads that the network cuts.

The repos hold files that keras_vit never fetches (README.md, .gitattributes, tf_model.h5,
flax_model.msgpack), as real `google/vit-*` repos and our own pushes do. The loads without the
Hub run in subprocesses, because huggingface_hub reads `HF_HUB_OFFLINE` and `HF_ENDPOINT` once,
at import.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_vit import ViT
from keras_vit.cli import main
from tests.conftest import randomize_head, to_numpy
from tests.conversion.conftest import make_hf_model, random_images
from tests.hf_integration.test_pretrained_hub import tiny_model

ROOT = Path(__file__).resolve().parents[2]
PLANTED, PUSHED, UNCACHED = "google/vit-tiny-patch8-32", "me/pushed-vit", "org/uncached"
PREPROCESSOR = {"do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
LOADER = """
import json, sys
import keras, numpy as np
import keras_vit

images, repos = np.load(sys.argv[1]), sys.argv[2:]
outputs, errors = {}, {}
for repo in repos:
    try:
        model = keras_vit.ViT.from_pretrained(repo)
    except OSError as error:
        errors[repo] = str(error)
    else:
        outputs[repo] = keras.ops.convert_to_numpy(model(images)).tolist()
print(json.dumps({"outputs": outputs, "errors": errors}))
"""


@contextlib.contextmanager
def closed_port():
    """A port on 127.0.0.1 that is bound but never listens, so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def load_in_subprocess(images, repos, **environment):
    """Loads `repos` in a fresh Python with the session's Hub cache; returns (outputs, errors)."""
    path = Path(os.environ["HF_HOME"], "images.npy")
    np.save(path, images)
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(path), *repos],
        env={**os.environ, **environment},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    outputs = {repo: np.asarray(values, "float32") for repo, values in result["outputs"].items()}
    return outputs, result["errors"]


@pytest.fixture
def loaded_online(hub, token, tmp_path):
    """Plants a transformers repo and pushes a keras_vit one, then loads both from the Hub.

    Returns the images and each repo's outputs on them.
    """
    make_hf_model("ViTForImageClassification", image_size=32, patch_size=8).save_pretrained(
        tmp_path / "planted"
    )
    (tmp_path / "planted" / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    hub.plant(PLANTED, tmp_path / "planted")
    randomize_head(tiny_model()).push_to_hub(PUSHED, token=token)
    images = random_images(tiny_model())
    outputs = {repo: to_numpy(ViT.from_pretrained(repo)(images)) for repo in (PLANTED, PUSHED)}
    for repo in (PLANTED, PUSHED):  # what an offline load must not ask for
        unfetched = {"README.md", ".gitattributes"} - set(hub.downloads(repo))
        assert unfetched <= set(hub.repo_files(repo)) and unfetched
    return images, outputs


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE=1", "endpoint-down"])
def test_cached_repos_load_again_without_the_hub(hub, loaded_online, offline):
    images, online = loaded_online
    hub.requests.clear()
    with closed_port() as port:
        down = f"http://127.0.0.1:{port}"
        environment = {"HF_HUB_OFFLINE": "1"} if offline else {"HF_ENDPOINT": down}
        outputs, errors = load_in_subprocess(images, [*online, UNCACHED], **environment)
    assert hub.requests == []  # offline, nothing asked the live test Hub either
    assert sorted(outputs) == sorted(online)
    for repo, expected in online.items():
        np.testing.assert_array_equal(outputs[repo], expected)
    assert list(errors) == [UNCACHED]
    reason = (
        "HF_HUB_OFFLINE=1 or local_files_only=True keeps keras_vit from asking the Hub"
        if offline
        else f"the Hub at {down} could not be asked (ConnectError"
    )
    assert errors[UNCACHED].startswith(
        f"{UNCACHED} is not in the local Hugging Face cache, and {reason}"
    )
    assert "Connect once without HF_HUB_OFFLINE=1" in errors[UNCACHED]


def test_a_load_needing_files_never_fetched_says_so_offline(hub, token, go_offline):
    tiny_model().push_to_hub(PUSHED, token=token)
    ViT.from_pretrained(PUSHED)  # keras_vit's own files, not model.safetensors
    go_offline()
    assert ViT.from_pretrained(PUSHED).config.classes == 3
    with pytest.raises(OSError, match=rf"{PUSHED} is only partly in the local .*HF_HUB_OFFLINE=1"):
        ViT.from_pretrained(PUSHED, classes=7)


@pytest.fixture
def cut_repo(hub, tmp_path):
    """A planted repo whose every file download the Hub then cuts."""
    make_hf_model("ViTModel", image_size=32, patch_size=8).save_pretrained(tmp_path / "cut")
    hub.plant("org/cut", tmp_path / "cut")
    hub.cut_downloads = True
    return "org/cut"


def test_cut_downloads_raise_a_connection_error(hub, cut_repo):
    with pytest.raises(ConnectionError, match=f"{cut_repo} from the Hub at {hub.endpoint}"):
        ViT.from_pretrained(cut_repo)
    assert hub.downloads(cut_repo).count("config.json") > 1  # huggingface_hub retried


def test_cut_downloads_are_one_line_from_the_cli(hub, cut_repo, tmp_path, capsys):
    assert main(["convert", cut_repo, str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith(f"keras-vit convert: error: Could not download {cut_repo} from ")
    assert "RemoteProtocolError" in error and "HF_HUB_OFFLINE=1" in error
    assert not (tmp_path / "out").exists()
