"""An in-memory stand-in for the Hugging Face Hub, for tests that must not touch the network.

`HubServer` speaks the subset of the Hub's HTTP API that the real `huggingface_hub` client
(v2.x) uses for model repos, so `snapshot_download`, `hf_hub_download`, `HfApi.create_repo`,
`HfApi.upload_folder` / `create_commit`, `HfApi.model_info`, `HfApi.list_repo_files` and
`transformers.AutoModel.from_pretrained("org/name")` run against it unchanged:

    POST /api/repos/create                     create a repo (409 if it exists)
    POST /api/validate-yaml                    accept any README metadata
    GET  /api/whoami-v2                        a fixed user, for authenticated callers
    POST /api/models/{repo}/preupload/{rev}    every file is uploaded "regular" (no LFS, no Xet)
    POST /api/models/{repo}/commit/{rev}       ndjson commit -> exactly one new commit on branch rev
    POST /api/models/{repo}/branch/{branch}    create a branch (409 if it exists)
    GET  /api/models/{repo}[/revision/{rev}]   model info: sha, siblings, private, ...
    GET  /api/models/{repo}/tree/{rev}[/path]  file and folder listing (`recursive` honoured)
    HEAD/GET /{repo}/resolve/{rev}/{file}      file metadata / bytes (single `Range` supported)

Repos live in memory as a history of commits (each a full `path -> bytes` snapshot) and a
map of branches to commits. A revision is a branch ("main" or one made by `create_branch`) or
the full 40-hex sha of one of the repo's commits. Writes need any
`Authorization: Bearer ...` header; reads need none. Errors carry the Hub's `X-Error-Code` header
(`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) and a JSON `{"error": ...}` body, which the
client turns into `RepositoryNotFoundError`, `RevisionNotFoundError` and
`RemoteEntryNotFoundError`. A missing token gives a 401 the client raises as `HfHubHTTPError`.
A repo's `private` flag is stored and reported, not enforced. `gate()` makes a repo gated:
its files then answer 401 or 403 with `X-Error-Code: GatedRepo`, as the real Hub's do until
the licence is accepted.

The ETag of a file is its git blob sha1, as for non-LFS files on the real Hub; the same value is
the tree entry `oid` and the preupload `oid`, so re-uploading an unchanged file is a no-op.

`huggingface_hub` reads `HF_ENDPOINT` (and the cache location, offline flag, ...) once, when it is
first imported, so a test session must call `start_session_hub()` before anything imports
`huggingface_hub` or `transformers`: `tests/conftest.py` should do it at import time. See
`tests/hub/conftest.py` for the fixtures built on it.

Only the standard library is used.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "REAL_REPO_FILES",
    "HubServer",
    "clear_session_cache",
    "git_blob_sha",
    "start_session_hub",
]

MAIN = "main"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The `.gitattributes` the Hub writes into every new repo: its standard LFS patterns.
_LFS_PATTERNS = """
*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.*
*.mlmodel *.model *.msgpack *.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle
*.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* *.tar.* *.tar *.tflite *.tgz
*.wasm *.xz *.zip *.zst *tfevents*
""".split()
_GITATTRIBUTES = "".join(
    f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _LFS_PATTERNS
).encode()
# Files that real `google/vit-*` repos hold beside the ones keras_vit fetches; `plant()` adds them.
REAL_REPO_FILES: dict[str, bytes] = {
    ".gitattributes": _GITATTRIBUTES,
    "README.md": b"---\nlicense: apache-2.0\ntags:\n- vision\n- image-classification\n---\n\n"
    b"# Vision Transformer (base-sized model)\n\nA planted test repo.\n",
    "tf_model.h5": b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4,
    "flax_model.msgpack": b"\x81\xa6params\x80" + bytes(range(256)) * 4,
}
_BAD_CREDENTIALS = "Invalid credentials in Authorization header"


def git_blob_sha(data: bytes) -> str:
    """The git object id of a blob holding `data` (what the Hub uses as a regular file's ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class _Commit:
    sha: str
    files: dict[str, bytes]
    title: str
    date: str


@dataclass
class _Repo:
    repo_id: str
    private: bool
    created: str = field(default_factory=_now)
    history: list[_Commit] = field(default_factory=list)  # every commit, oldest first
    branches: dict[str, _Commit] = field(default_factory=dict)  # branch name -> head
    gated: bool = False  # files need a token that `granted` holds
    granted: set[str] = field(default_factory=set)

    @property
    def head(self) -> _Commit:
        return self.branches[MAIN]


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False  # close the connection after the headers, sending no body


class _HubError(Exception):
    """An error answer: status, message for the JSON body, optional `X-Error-Code`."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers, self.extra = headers or {}, extra or {}

    def response(self) -> _Response:
        headers = {"Content-Type": "application/json", **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        if self.status == 401:
            headers["X-Error-Message"] = self.message
        body = json.dumps({"error": self.message, **self.extra}).encode()
        return _Response(self.status, body, headers)


@contextmanager
def _as_key_error() -> Iterator[None]:
    """Turns a lookup's HTTP error into the `KeyError` the Python-side API promises."""
    try:
        yield
    except _HubError as error:
        raise KeyError(error.message) from None


def _json(data: Any, status: int = 200) -> _Response:
    return _Response(status, json.dumps(data).encode(), {"Content-Type": "application/json"})


class HubServer:
    """An in-memory Hugging Face Hub serving model repos over HTTP on 127.0.0.1.

    Use `start()` / `stop()` (or `with HubServer() as hub:`), point `huggingface_hub` at
    `endpoint`, and seed repos quickly with `plant()`. Every request is logged in `requests`.

    Set `cut_downloads = True` to cut every file download (`GET .../resolve/...`): the headers
    promise the whole file, then the connection closes before any of its bytes, so each of the
    client's retries fails as `RemoteProtocolError` and none makes progress. API answers stay
    whole. `reset()` turns it off.
    """

    def __init__(self, username: str = "user") -> None:
        """`username` is the namespace of repos created without an organization."""
        self.username = username
        self.requests: list[tuple[str, str]] = []
        self.cut_downloads = False
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> HubServer:
        """Binds a free port on 127.0.0.1 and serves from a daemon thread. Returns `self`."""
        if self._httpd is not None:
            return self
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.hub = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="hub-server", kwargs={"poll_interval": 0.05}
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the socket. Repos are kept; `start()` serves them anew."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Base URL of the running server, e.g. "http://127.0.0.1:54321" (no trailing slash)."""
        if self._httpd is None:
            raise RuntimeError("HubServer is not running: call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- direct access for tests -----------------------------------------------------------

    def plant(self, repo_id: str, files: dict[str, bytes] | str | os.PathLike[str]) -> str:
        """Commits `files` as the whole content of `repo_id`'s main branch, without HTTP.

        `files` maps repo paths ("sub/dir/file.txt") to bytes, or is a local directory whose
        files are all taken (paths relative to it). Like a real `google/vit-*` repo, the commit
        also holds `REAL_REPO_FILES` (`README.md`, `.gitattributes`, `tf_model.h5`,
        `flax_model.msgpack`) where `files` lacks them, so a client that fetches only some files
        meets the others. Creates the (public) repo if needed. Returns the new commit sha.
        """
        if not isinstance(files, dict):
            root = Path(files)
            if not root.is_dir():
                raise NotADirectoryError(root)
            files = {
                p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted(root.rglob("*"))
                if p.is_file()
            }
        _check_repo_id(repo_id)
        with self._lock:
            repo = self._repos.get(repo_id) or self._new_repo(repo_id, private=False)
            return self._commit(
                repo, {**REAL_REPO_FILES, **files}, f"Plant {len(files)} file(s)"
            ).sha

    def gate(self, repo_id: str, granted: tuple[str, ...] = ()) -> None:
        """Makes `repo_id` gated, as the Hub does for repos with a licence to accept.

        Its info and listing stay public, but its files answer 401 without a token and
        403 with a token not in `granted` (one whose user has not accepted the licence),
        both with the Hub's `X-Error-Code: GatedRepo`, which the client raises as
        `GatedRepoError`. Raises `KeyError` for an unknown repo.
        """
        with self._lock, _as_key_error():
            repo = self._repo(repo_id)
            repo.gated, repo.granted = True, set(granted)

    def repo_files(self, repo_id: str, revision: str = MAIN) -> dict[str, bytes]:
        """A copy of the files of `repo_id` at `revision` ("main" or a commit sha).

        Raises `KeyError` for an unknown repo or revision.
        """
        with self._lock, _as_key_error():
            return dict(self._resolve(self._repo(repo_id), revision).files)

    def commits(self, repo_id: str) -> list[str]:
        """The commit shas of `repo_id` on every branch, oldest first.

        Raises `KeyError` for an unknown repo.
        """
        with self._lock, _as_key_error():
            return [commit.sha for commit in self._repo(repo_id).history]

    def commit_titles(self, repo_id: str) -> list[str]:
        """The commit messages' titles of `repo_id`, in the order of `commits()`."""
        with self._lock, _as_key_error():
            return [commit.title for commit in self._repo(repo_id).history]

    def downloads(self, repo_id: str | None = None) -> list[str]:
        """Repo paths fetched with `GET .../resolve/...` (bodies, not HEADs), in request order.

        Limited to `repo_id` if given. Derived from `requests`, so `reset()` clears it too.
        """
        paths = []
        for method, path in list(self.requests):
            parts = path.lstrip("/").split("/")
            if method != "GET" or len(parts) < 5 or parts[2] != "resolve":
                continue
            if repo_id is None or "/".join(parts[:2]) == repo_id:
                paths.append("/".join(parts[4:]))
        return paths

    def reset(self) -> None:
        """Deletes every repo, clears the request log and stops cutting downloads."""
        with self._lock:
            self._repos.clear()
            self.requests.clear()
            self.cut_downloads = False

    # -- state helpers (call with the lock held) -------------------------------------------

    def _new_repo(self, repo_id: str, private: bool) -> _Repo:
        repo = self._repos[repo_id] = _Repo(repo_id, private)
        return repo

    def _commit(
        self, repo: _Repo, files: dict[str, bytes], title: str, branch: str = MAIN
    ) -> _Commit:
        parent = repo.branches[branch].sha if branch in repo.branches else ""
        digest = hashlib.sha1(f"{repo.repo_id}\n{parent}\n{title}\n{next(self._counter)}".encode())
        for path in sorted(files):
            digest.update(f"\n{path} {git_blob_sha(files[path])}".encode())
        commit = _Commit(digest.hexdigest(), files, title, _now())
        repo.history.append(commit)
        repo.branches[branch] = commit
        return commit

    def _repo(self, repo_id: str) -> _Repo:
        repo = self._repos.get(repo_id)
        if repo is None:
            raise _HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> _Commit:
        if revision in repo.branches:
            return repo.branches[revision]
        for commit in repo.history:
            if commit.sha == revision:
                return commit
        raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    # -- HTTP API --------------------------------------------------------------------------

    def _handle(
        self, method: str, path: str, query: dict[str, list[str]], auth: str | None, body: bytes
    ) -> _Response:
        """Routes one request. `path` is the raw (still percent-encoded) URL path."""
        parts = [unquote(part) for part in path.strip("/").split("/")]
        with self._lock:
            self.requests.append((method, "/" + "/".join(parts)))
        try:
            return self._route(method, parts, query, auth, body)
        except _HubError as error:
            return error.response()
        except Exception as error:  # a bug here: answer at once (501 is not retried by the client)
            return _HubError(501, f"Test Hub failed on this request: {error!r}").response()

    def _route(
        self,
        method: str,
        parts: list[str],
        query: dict[str, list[str]],
        auth: str | None,
        body: bytes,
    ) -> _Response:
        match (method, parts):
            case ("POST", ["api", "repos", "create"]):
                _require_auth(auth)
                return self._create_repo(_load_json(body))
            case ("POST", ["api", "validate-yaml"]):
                return _json({"errors": [], "warnings": []})
            case ("GET", ["api", "whoami-v2"]):
                _require_auth(auth)
                return _json({"type": "user", "name": self.username, "orgs": [], "auth": {}})
            case ("POST", ["api", "models", org, name, "preupload", revision]):
                _require_auth(auth)
                return self._preupload(f"{org}/{name}", revision, _load_json(body), query)
            case ("POST", ["api", "models", org, name, "commit", revision]):
                _require_auth(auth)
                return self._apply_commit(f"{org}/{name}", revision, body, query)
            case ("POST", ["api", "models", org, name, "branch", branch]):
                _require_auth(auth)
                return self._create_branch(f"{org}/{name}", branch, _load_json(body))
            case ("GET", ["api", "models", org, name]):
                return self._model_info(f"{org}/{name}", MAIN, query)
            case ("GET", ["api", "models", org, name, "revision", revision]):
                return self._model_info(f"{org}/{name}", revision, query)
            case ("GET", ["api", "models", org, name, "tree", revision, *sub]):
                return self._tree(f"{org}/{name}", revision, "/".join(sub), query)
            case ("GET" | "HEAD", [org, name, "resolve", revision, *file]) if file:
                return self._resolve_file(f"{org}/{name}", revision, "/".join(file), auth)
        raise _HubError(404, f"No such endpoint: {method} /{'/'.join(parts)}")

    def _create_repo(self, payload: dict[str, Any]) -> _Response:
        name, organization = payload.get("name") or "", payload.get("organization")
        if "/" in name:
            organization, name = name.split("/", 1)
        repo_id = f"{organization or self.username}/{name}"
        if payload.get("type") not in (None, "model"):
            raise _HubError(400, "This test Hub only hosts model repos")
        _check_repo_id(repo_id)
        private = bool(payload.get("private")) or payload.get("visibility") == "private"
        url = f"{self.endpoint}/{repo_id}"
        with self._lock:
            if repo_id in self._repos:
                raise _HubError(409, "You already created this model repo", extra={"url": url})
            self._commit(
                self._new_repo(repo_id, private),
                {".gitattributes": _GITATTRIBUTES},
                "initial commit",
            )
        return _json({"url": url, "name": repo_id, "id": repo_id})

    def _create_branch(self, repo_id: str, branch: str, payload: dict[str, Any]) -> _Response:
        with self._lock:
            repo = self._repo(repo_id)
            if branch in repo.branches:
                raise _HubError(409, f"Branch {branch} already exists")
            repo.branches[branch] = self._resolve(repo, payload.get("startingPoint") or MAIN)
        return _json({})

    def _preupload(
        self, repo_id: str, revision: str, payload: dict[str, Any], query: dict[str, list[str]]
    ) -> _Response:
        _reject_pull_requests(query)
        with self._lock:
            head = self._branch(self._repo(repo_id), revision)
        answers = []
        for entry in payload.get("files", []):
            answer = {"path": entry["path"], "uploadMode": "regular", "shouldIgnore": False}
            if entry["path"] in head.files:
                answer["oid"] = git_blob_sha(head.files[entry["path"]])
            answers.append(answer)
        return _json({"files": answers, "commitOid": head.sha})

    def _apply_commit(
        self, repo_id: str, revision: str, body: bytes, query: dict[str, list[str]]
    ) -> _Response:
        _reject_pull_requests(query)
        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        except ValueError as error:
            raise _HubError(400, f"Malformed ndjson commit payload: {error}") from None
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "A commit payload starts with a header line")
        header = lines[0]["value"]
        with self._lock:
            repo = self._repo(repo_id)
            head = self._branch(repo, revision)
            parent = header.get("parentCommit")
            if parent and parent != head.sha:
                raise _HubError(412, f"A commit has happened since {parent}. Please refresh")
            files = dict(head.files)
            for line in lines[1:]:
                _apply_operation(files, line.get("key"), line.get("value") or {})
            commit = self._commit(repo, files, header.get("summary") or "Commit", revision)
        url = f"{self.endpoint}/{repo_id}/commit/{commit.sha}"
        return _json({"success": True, "commitOid": commit.sha, "commitUrl": url})

    def _model_info(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> _Response:
        with self._lock:
            repo = self._repo(repo_id)
            commit = self._resolve(repo, revision)
        with_blobs = _flag(query, "blobs")
        siblings = []
        for path in sorted(commit.files):
            sibling: dict[str, Any] = {"rfilename": path}
            if with_blobs:
                sibling["size"] = len(commit.files[path])
                sibling["blobId"] = git_blob_sha(commit.files[path])
            siblings.append(sibling)
        return _json(
            {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit.sha,
                "lastModified": commit.date,
                "createdAt": repo.created,
                "private": repo.private,
                "disabled": False,
                "gated": "manual" if repo.gated else False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
            }
        )

    def _tree(
        self, repo_id: str, revision: str, folder: str, query: dict[str, list[str]]
    ) -> _Response:
        with self._lock:
            files = self._resolve(self._repo(repo_id), revision).files
        folder = folder.strip("/")
        prefix = f"{folder}/" if folder else ""
        below = {
            path[len(prefix) :]: data for path, data in files.items() if path.startswith(prefix)
        }
        if folder and not below:
            raise _HubError(404, f"{folder} does not exist on {revision}", "EntryNotFound")
        recursive = _flag(query, "recursive")
        entries: dict[str, dict[str, Any]] = {}
        for rel, data in below.items():
            *dirs, _ = rel.split("/")
            for depth in range(1, len(dirs) + 1):
                if depth > 1 and not recursive:
                    break
                sub = "/".join(dirs[:depth])
                entries.setdefault(sub, _folder_entry(prefix + sub, below, sub))
            if recursive or not dirs:
                entries[rel] = {
                    "type": "file",
                    "oid": git_blob_sha(data),
                    "size": len(data),
                    "path": prefix + rel,
                }
        return _json([entries[key] for key in sorted(entries)])

    def _resolve_file(
        self, repo_id: str, revision: str, path: str, auth: str | None = None
    ) -> _Response:
        with self._lock:
            repo = self._repo(repo_id)
            commit = self._resolve(repo, revision)
        if repo.gated:
            _check_gate(repo, auth)
        data = commit.files.get(path)
        if data is None:
            raise _HubError(
                404,
                f"{path} does not exist on {revision}",
                "EntryNotFound",
                {"X-Repo-Commit": commit.sha},
            )
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{git_blob_sha(data)}"',
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
        }
        return _Response(200, data, headers, cut=self.cut_downloads)

    def _branch(self, repo: _Repo, revision: str) -> _Commit:
        """The head of the branch `revision`."""
        if revision not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {revision} (not a branch)", "RevisionNotFound")
        return repo.branches[revision]


def _folder_entry(path: str, below: dict[str, bytes], rel: str) -> dict[str, Any]:
    inside = sorted(p for p in below if p.startswith(rel + "/"))
    digest = hashlib.sha1("\n".join(f"{p} {git_blob_sha(below[p])}" for p in inside).encode())
    return {"type": "directory", "oid": digest.hexdigest(), "size": 0, "path": path}


def _apply_operation(files: dict[str, bytes], key: str | None, value: dict[str, Any]) -> None:
    path = value.get("path", "")
    if key == "file":
        if value.get("encoding", "base64") != "base64":
            raise _HubError(400, f"Unsupported encoding for {path}: {value.get('encoding')}")
        files[path] = base64.b64decode(value.get("content", ""))
    elif key == "deletedFile":
        if files.pop(path, None) is None:
            raise _HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
    elif key == "deletedFolder":
        prefix = path.rstrip("/") + "/"
        doomed = [p for p in files if p.startswith(prefix)]
        if not doomed:
            raise _HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
        for p in doomed:
            del files[p]
    else:
        raise _HubError(400, f"Unsupported commit operation {key!r} (this test Hub has no LFS)")


def _check_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.match(part) for part in parts):
        raise _HubError(400, f"Invalid repo id {repo_id!r}: expected 'org/name'")


def _check_gate(repo: _Repo, auth: str | None) -> None:
    """Answers as the Hub does for a gated repo's file: 401 anonymous, 403 not granted."""
    scheme, _, token = (auth or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        message = (
            f"Access to model {repo.repo_id} is restricted. You must have access to it and be "
            "authenticated to access it. Please log in."
        )
        raise _HubError(401, message, "GatedRepo", {"X-Error-Message": message})
    if token.strip() not in repo.granted:
        message = (
            f"Access to model {repo.repo_id} is restricted and you are not in the authorized "
            "list. Visit the model page to ask for access."
        )
        raise _HubError(403, message, "GatedRepo", {"X-Error-Message": message})


def _require_auth(auth: str | None) -> None:
    scheme, _, token = (auth or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _HubError(401, _BAD_CREDENTIALS)


def _reject_pull_requests(query: dict[str, list[str]]) -> None:
    if _flag(query, "create_pr"):
        raise _HubError(400, "create_pr is not supported by this test Hub")


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, [""])[-1].lower() in ("1", "true")


def _load_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError as error:
        raise _HubError(400, f"Malformed JSON body: {error}") from None
    if not isinstance(data, dict):
        raise _HubError(400, "Expected a JSON object")
    return data


def _partial(response: _Response, spec: str) -> _Response:
    """The part of a 200 `response` that a single `bytes=a-b`, `a-` or `-n` range asks for."""
    size = len(response.body)
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", spec.strip())
    if match is None or match.groups() == ("", ""):
        return _Response(416, b"", {"Content-Range": f"bytes */{size}"})
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(size - int(last), 0), size - 1
    if start > end:
        return _Response(416, b"", {"Content-Range": f"bytes */{size}"})
    headers = {**response.headers, "Content-Range": f"bytes {start}-{end}/{size}"}
    return _Response(206, response.body[start : end + 1], headers, cut=response.cut)


class _Handler(BaseHTTPRequestHandler):
    """Reads the request, lets `HubServer._handle` answer it, writes the answer."""

    server_version = "TestHub/1.0"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: tests assert on `HubServer.requests` instead."""

    def _serve(self, method: str) -> None:
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization")
        response = hub._handle(method, url.path, parse_qs(url.query), auth, body)
        range_spec = self.headers.get("Range")
        if response.status == 200 and range_spec and "Accept-Ranges" in response.headers:
            response = _partial(response, range_spec)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.cut and method == "GET":
            self.close_connection = True
        elif method != "HEAD":
            self.wfile.write(response.body)


_SESSION: HubServer | None = None
_SESSION_CACHE: Path | None = None


def start_session_hub() -> HubServer:
    """Starts the process-wide `HubServer` once and points `huggingface_hub` at it via env vars.

    Must run before `huggingface_hub` (or `transformers`, which imports it) is first imported,
    because the client reads these variables into `huggingface_hub.constants` at import time.
    Call it at import time of `tests/conftest.py`; later calls return the same server. Sets:

    - `HF_ENDPOINT` to the server, so every client call goes there;
    - `HF_HOME` to a fresh temporary directory (removed at exit) and `HF_HUB_CACHE` to its
      `hub/` subfolder, so no real cache or stored token is read or written;
    - `HF_HUB_DISABLE_XET=1` (the server speaks plain HTTP only), `HF_HUB_DISABLE_TELEMETRY=1`,
      `HF_HUB_DISABLE_PROGRESS_BARS=1`, `HF_HUB_OFFLINE=0`;
    - 127.0.0.1 in `NO_PROXY`, and drops `HF_TOKEN_PATH` and `HUGGINGFACE_CO_STAGING`.

    Raises `RuntimeError` if `huggingface_hub` was already imported with another endpoint:
    the environment can no longer take effect then.
    """
    global _SESSION
    if _SESSION is None:
        _SESSION = _start_session()
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and getattr(constants, "ENDPOINT", None) != _SESSION.endpoint:
        raise RuntimeError(
            "huggingface_hub was imported before start_session_hub() ran, so it still points at "
            f"{constants.ENDPOINT}. Call tests.support.hub_server.start_session_hub() at the top "
            "of tests/conftest.py, before anything imports huggingface_hub or transformers."
        )
    return _SESSION


def clear_session_cache() -> None:
    """Empties the `HF_HUB_CACHE` directory that `start_session_hub()` created.

    Only ever touches that temporary directory, never a cache configured elsewhere.
    """
    if _SESSION_CACHE is None:
        raise RuntimeError("start_session_hub() has not run")
    if _SESSION_CACHE.is_dir():
        for child in _SESSION_CACHE.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def _start_session() -> HubServer:
    global _SESSION_CACHE
    hub = HubServer().start()
    home = tempfile.mkdtemp(prefix="keras-vit-hf-home-")
    _SESSION_CACHE = Path(home, "hub")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    atexit.register(hub.stop)
    os.environ.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HOME=home,
        HF_HUB_CACHE=str(_SESSION_CACHE),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_OFFLINE="0",
    )
    for name in ("HF_TOKEN_PATH", "HUGGINGFACE_CO_STAGING"):
        os.environ.pop(name, None)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, [os.environ.get(name), "127.0.0.1", "localhost"]))
    return hub
