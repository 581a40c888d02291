"""The in-memory Hub of `tests/hub_server.py`, driven by the real `huggingface_hub` client."""

import http.client
import json
import urllib.error
import urllib.request
from pathlib import Path

import huggingface_hub
import pytest
import torch
import transformers
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.conversion.conftest import make_hf_model
from tests.support.hub_server import REAL_REPO_FILES, HubServer, git_blob_sha

FILES = {
    "config.json": b'{"model_type": "vit"}',
    "model.safetensors": bytes(range(256)) * 8,
    "extra/notes.txt": b"not needed for loading\n",
}
PLANTED = {**REAL_REPO_FILES, **FILES}  # what `plant("org/x", FILES)` commits


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: str | Path) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_session_env_points_the_client_at_the_server(hub):
    assert huggingface_hub.constants.ENDPOINT == hub.endpoint
    assert huggingface_hub.constants.HF_HUB_DISABLE_XET
    assert not huggingface_hub.constants.HF_HUB_OFFLINE
    assert HfApi().endpoint == hub.endpoint


def test_create_repo_exist_ok(hf_api, hub):
    url = hf_api.create_repo("org/fresh")
    assert (url.repo_id, url.repo_type) == ("org/fresh", "model")
    assert url.startswith(hub.endpoint)
    assert list(hub.repo_files("org/fresh")) == [".gitattributes"]  # like the real Hub
    commits = hub.commits("org/fresh")
    assert len(commits) == 1

    with pytest.raises(HfHubHTTPError) as excinfo:
        hf_api.create_repo("org/fresh")
    assert excinfo.value.response.status_code == 409

    assert hf_api.create_repo("org/fresh", exist_ok=True) == url
    assert hub.commits("org/fresh") == commits


def test_create_repo_without_organization_uses_the_username(hf_api, hub):
    url = hf_api.create_repo("mine", private=True)
    assert url.repo_id == f"{hub.username}/mine"
    assert hf_api.model_info(url.repo_id).private is True


def test_upload_folder_makes_exactly_one_commit(hf_api, hub, tmp_path):
    hf_api.create_repo("org/uploaded")
    before = hub.commits("org/uploaded")
    initial = hub.repo_files("org/uploaded")
    folder = write_tree(tmp_path / "folder", {**FILES, "README.md": b"---\nlicense: mit\n---\n"})

    info = hf_api.upload_folder(repo_id="org/uploaded", folder_path=folder)

    assert hub.commits("org/uploaded") == [*before, info.oid]
    expected = {**initial, **read_tree(folder)}
    assert hub.repo_files("org/uploaded") == expected
    assert sorted(hf_api.list_repo_files("org/uploaded")) == sorted(expected)
    model = hf_api.model_info("org/uploaded", files_metadata=True)
    assert model.sha == info.oid
    assert {s.rfilename: (s.size, s.blob_id) for s in model.siblings} == {
        path: (len(data), git_blob_sha(data)) for path, data in expected.items()
    }
    assert [m for m, p in hub.requests if p.endswith("/commit/main")] == ["POST"]

    # Uploading the same folder again changes nothing: the preupload oids match.
    again = hf_api.upload_folder(repo_id="org/uploaded", folder_path=folder)
    assert again.oid == info.oid
    assert hub.commits("org/uploaded") == [*before, info.oid]


def test_create_commit_adds_and_deletes_and_old_revisions_stay_readable(hf_api, hub):
    first = hub.plant("org/history", FILES)
    info = hf_api.create_commit(
        "org/history",
        operations=[
            CommitOperationAdd("config.json", b'{"model_type": "vit", "v": 2}'),
            CommitOperationDelete("extra/"),
        ],
        commit_message="v2",
        parent_commit=first,
    )
    assert hub.commits("org/history") == [first, info.oid]
    assert sorted(hub.repo_files("org/history")) == sorted(set(PLANTED) - {"extra/notes.txt"})

    old = huggingface_hub.hf_hub_download("org/history", "config.json", revision=first)
    new = huggingface_hub.hf_hub_download("org/history", "config.json")
    assert Path(old).read_bytes() == FILES["config.json"]
    assert json.loads(Path(new).read_bytes())["v"] == 2
    assert hf_api.model_info("org/history", revision=first).sha == first

    with pytest.raises(HfHubHTTPError) as excinfo:  # parent is no longer the head
        hf_api.create_commit(
            "org/history",
            operations=[CommitOperationAdd("late.txt", b"x")],
            commit_message="stale",
            parent_commit=first,
        )
    assert excinfo.value.response.status_code == 412
    assert hub.commits("org/history") == [first, info.oid]


def test_list_repo_tree_top_level_and_subfolder(hf_api, hub):
    hub.plant("org/tree", FILES)
    top = {e.path: type(e).__name__ for e in hf_api.list_repo_tree("org/tree")}
    assert top == {
        **dict.fromkeys(REAL_REPO_FILES, "RepoFile"),
        **{
            "config.json": "RepoFile",
            "model.safetensors": "RepoFile",
            "extra": "RepoFolder",
        },
    }
    sub = list(hf_api.list_repo_tree("org/tree", path_in_repo="extra"))
    assert [(e.path, e.size, e.blob_id) for e in sub] == [
        ("extra/notes.txt", len(FILES["extra/notes.txt"]), git_blob_sha(FILES["extra/notes.txt"]))
    ]
    with pytest.raises(RemoteEntryNotFoundError):
        list(hf_api.list_repo_tree("org/tree", path_in_repo="missing"))


def test_snapshot_and_single_file_downloads_match_and_are_cached(hub):
    sha = hub.plant("org/weights", FILES)

    snapshot = huggingface_hub.snapshot_download("org/weights")
    single = huggingface_hub.hf_hub_download("org/weights", "model.safetensors")

    assert Path(snapshot).name == sha
    assert read_tree(snapshot) == PLANTED
    assert Path(single).read_bytes() == FILES["model.safetensors"]
    assert sorted(hub.downloads("org/weights")) == sorted(PLANTED)  # each file fetched once

    fetched = len(hub.downloads())
    assert huggingface_hub.snapshot_download("org/weights") == snapshot
    assert huggingface_hub.hf_hub_download("org/weights", "model.safetensors") == single
    assert len(hub.downloads()) == fetched


def test_planted_repos_hold_the_files_of_real_vit_repos(hub):
    hub.plant("org/real", FILES)
    files = hub.repo_files("org/real")
    card = huggingface_hub.ModelCard(files["README.md"].decode())
    assert card.data.license == "apache-2.0" and "image-classification" in card.data.tags
    attributes = files[".gitattributes"].decode().splitlines()
    assert {
        "*.h5 filter=lfs diff=lfs merge=lfs -text",
        "*.msgpack filter=lfs diff=lfs merge=lfs -text",
        "*.safetensors filter=lfs diff=lfs merge=lfs -text",
    } <= set(attributes)
    assert files["tf_model.h5"].startswith(b"\x89HDF") and files["flax_model.msgpack"]
    hub.plant("org/real", {"README.md": b"# mine\n"})
    assert hub.repo_files("org/real")["README.md"] == b"# mine\n"  # planted files win


def test_cut_downloads_close_every_file_body_but_keep_api_answers(hub, hf_api):
    sha = hub.plant("org/weights", FILES)
    url = f"{hub.endpoint}/org/weights/resolve/main/model.safetensors"
    hub.cut_downloads = True
    assert hf_api.model_info("org/weights").sha == sha
    for headers in ({}, {"Range": "bytes=10-"}):
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
            assert int(response.headers["Content-Length"]) > 0
            with pytest.raises(http.client.IncompleteRead):
                response.read()
    hub.reset()
    hub.plant("org/weights", FILES)
    with urllib.request.urlopen(url) as response:
        assert response.read() == FILES["model.safetensors"]


def test_allow_patterns_fetch_only_the_allowed_files(hub):
    hub.plant("org/partial", FILES)
    snapshot = huggingface_hub.snapshot_download("org/partial", allow_patterns=["*.json"])
    assert read_tree(snapshot) == {"config.json": FILES["config.json"]}
    assert hub.downloads() == ["config.json"]
    assert not any(path.endswith(("model.safetensors", "notes.txt")) for _, path in hub.requests)


def test_unknown_repo_raises_repository_not_found(hf_api):
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.hf_hub_download("org/missing", "config.json")
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.snapshot_download("org/missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_api.model_info("org/missing")
    assert not hf_api.repo_exists("org/missing")


def test_unknown_file_raises_entry_not_found(hub, hf_api):
    hub.plant("org/weights", FILES)
    with pytest.raises(RemoteEntryNotFoundError) as excinfo:
        huggingface_hub.hf_hub_download("org/weights", "nope.bin")
    assert isinstance(excinfo.value, EntryNotFoundError)
    assert excinfo.value.response.status_code == 404
    assert not hf_api.file_exists("org/weights", "nope.bin")
    assert hf_api.file_exists("org/weights", "config.json")


@pytest.mark.parametrize("revision", ["no-such-branch", "0123456789abcdef0123456789abcdef01234567"])
def test_unknown_revision_raises_revision_not_found(hub, hf_api, revision):
    hub.plant("org/weights", FILES)
    with pytest.raises(RevisionNotFoundError):
        huggingface_hub.hf_hub_download("org/weights", "config.json", revision=revision)
    with pytest.raises(RevisionNotFoundError):
        huggingface_hub.snapshot_download("org/weights", revision=revision)
    with pytest.raises(RevisionNotFoundError):
        hf_api.model_info("org/weights", revision=revision)


def test_writes_without_a_token_are_rejected_with_401(hub, tmp_path):
    anonymous = HfApi(endpoint=hub.endpoint)
    sha = hub.plant("org/weights", FILES)

    with pytest.raises(HfHubHTTPError) as excinfo:
        anonymous.create_repo("org/new")
    assert type(excinfo.value) is HfHubHTTPError
    assert excinfo.value.response.status_code == 401

    with pytest.raises(HfHubHTTPError) as excinfo:
        anonymous.upload_folder(repo_id="org/weights", folder_path=write_tree(tmp_path, FILES))
    assert excinfo.value.response.status_code == 401

    assert hub.commits("org/weights") == [sha]
    with pytest.raises(KeyError):
        hub.commits("org/new")
    assert anonymous.model_info("org/weights").sha == sha  # reads need no token


def test_token_from_the_environment_is_sent(hub, monkeypatch, token):
    monkeypatch.setenv("HF_TOKEN", token)
    HfApi(endpoint=hub.endpoint).create_repo("org/from-env")
    assert hub.commits("org/from-env")


def test_offline_mode_serves_cached_files_only(hub, go_offline):
    hub.plant("org/weights", FILES)
    cached = huggingface_hub.hf_hub_download("org/weights", "config.json")
    snapshot = huggingface_hub.snapshot_download("org/weights", allow_patterns=["*.json"])
    requests = len(hub.requests)

    go_offline()
    assert huggingface_hub.is_offline_mode()
    assert huggingface_hub.hf_hub_download("org/weights", "config.json") == cached
    assert huggingface_hub.snapshot_download("org/weights", allow_patterns=["*.json"]) == snapshot
    with pytest.raises(LocalEntryNotFoundError) as excinfo:
        huggingface_hub.hf_hub_download("org/weights", "model.safetensors")
    assert isinstance(excinfo.value.__cause__, OfflineModeIsEnabled)
    with pytest.raises(LocalEntryNotFoundError):
        huggingface_hub.snapshot_download("org/other")
    assert len(hub.requests) == requests


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [("bytes=10-19", 10, 19), ("bytes=2040-", 2040, 2047), ("bytes=-5", 2043, 2047)],
)
def test_range_requests_return_partial_content(hub, spec, start, end):
    data = FILES["model.safetensors"]
    assert len(data) == 2048
    hub.plant("org/weights", FILES)
    url = f"{hub.endpoint}/org/weights/resolve/main/model.safetensors"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": spec})) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes {start}-{end}/2048"
        assert response.read() == data[start : end + 1]


def test_unsatisfiable_range_is_a_416(hub):
    hub.plant("org/weights", FILES)
    url = f"{hub.endpoint}/org/weights/resolve/main/config.json"
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=500-"}))
    assert excinfo.value.code == 416


def test_hub_server_starts_and_stops_independently(tmp_path):
    with HubServer() as other:
        sha = other.plant("org/dir", write_tree(tmp_path, FILES))
        api = HfApi(endpoint=other.endpoint, token=False)
        assert api.model_info("org/dir").sha == sha
        assert other.repo_files("org/dir") == PLANTED
        assert other.requests == [("GET", "/api/models/org/dir")]
    with pytest.raises(RuntimeError):
        other.endpoint  # noqa: B018


# -- transformers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vit():
    return make_hf_model("ViTModel", image_size=32, patch_size=8)


def assert_same_weights(expected, actual):
    want, got = expected.state_dict(), actual.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name


def test_transformers_from_pretrained_loads_a_planted_repo(hub, tiny_vit, tmp_path, go_offline):
    tiny_vit.save_pretrained(tmp_path)
    hub.plant("google/tiny-vit", tmp_path)

    loaded = transformers.ViTModel.from_pretrained("google/tiny-vit")
    assert_same_weights(tiny_vit, loaded)
    assert sorted(hub.downloads()) == ["config.json", "model.safetensors"]
    auto = transformers.AutoModel.from_pretrained("google/tiny-vit")
    assert type(auto) is transformers.ViTModel

    go_offline()
    assert_same_weights(tiny_vit, transformers.ViTModel.from_pretrained("google/tiny-vit"))
    with pytest.raises(OSError):
        transformers.ViTModel.from_pretrained("google/not-cached")


def test_transformers_loads_a_folder_uploaded_with_hf_api(hf_api, hub, tiny_vit, tmp_path):
    tiny_vit.save_pretrained(tmp_path)
    hf_api.create_repo("org/pushed", exist_ok=True)
    info = hf_api.upload_folder(repo_id="org/pushed", folder_path=tmp_path)

    loaded = transformers.ViTModel.from_pretrained("org/pushed")
    assert_same_weights(tiny_vit, loaded)
    assert hub.commits("org/pushed")[-1] == info.oid


def test_transformers_push_to_hub(hub, tiny_vit, token):
    tiny_vit.push_to_hub("org/pushed-directly", token=token)
    files = hub.repo_files("org/pushed-directly")
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    assert_same_weights(tiny_vit, transformers.ViTModel.from_pretrained("org/pushed-directly"))
