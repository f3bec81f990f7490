"""A small in-memory Hugging Face Hub served on 127.0.0.1, for tests that must never touch the network.

It answers the endpoints huggingface_hub (checked against 2.4.0) calls for:

- `hf_hub_download`: `HEAD`/`GET /{repo_id}/resolve/{revision}/{path}` with the `X-Repo-Commit`, `ETag` and
  `Content-Length` headers the client requires, and errors carrying `X-Error-Code: RepoNotFound`,
  `RevisionNotFound` or `EntryNotFound` so that the client raises `RepositoryNotFoundError`,
  `RevisionNotFoundError` or `RemoteEntryNotFoundError`;
- `HfApi.repo_info` / `HfApi.resolve_revision`: `GET /api/models/{repo}[/revision/{rev}]` (id, sha, siblings);
- `HfApi.create_repo` + `HfApi.upload_file`: `POST /api/repos/create`, `POST /api/models/{repo}/preupload/{rev}`
  (every file is "regular", i.e. sent inline) and `POST /api/models/{repo}/commit/{rev}` (ndjson, base64 content).

Every request is recorded (`hub.requests`) so tests can assert what the client did, e.g. that a cached second
load made no `GET` of the file. Use the `fake_hub` fixture, which also points huggingface_hub at the server and
isolates its cache, token and offline settings.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

DEFAULT_USER = "fake-user"
DEFAULT_TOKEN = "hf_fake_token_0123456789"


def _git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _as_bytes(content) -> bytes:
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode("utf-8")
    return (json.dumps(content, indent=2, sort_keys=True) + "\n").encode("utf-8")


@dataclass
class Recorded:
    """One request as the server saw it (header names lower-cased, `path` and query unquoted)."""

    method: str
    path: str
    query: dict
    headers: dict

    @property
    def is_file_get(self) -> bool:
        return self.method == "GET" and "/resolve/" in self.path


@dataclass
class FakeRepo:
    private: bool = False
    branches: dict = field(default_factory=dict)  # branch or tag name -> commit sha
    commits: dict = field(default_factory=dict)  # commit sha -> {path: bytes}
    prs: int = 0
    messages: dict = field(default_factory=dict)  # commit sha -> commit summary

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.commits:
            return revision
        return None


class FakeHub:
    """In-memory repos `{repo_id: FakeRepo}` behind a real HTTP server on an ephemeral port."""

    def __init__(self, user: str = DEFAULT_USER, tokens=(DEFAULT_TOKEN,)):
        self.user = user
        self.tokens = set(tokens)
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._url = ""
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-hub", daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self._url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`, the value for `HF_ENDPOINT` (still known after `stop()`)."""
        return self._url

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- content

    def _new_sha(self, repo_id: str, files: dict) -> str:
        self._counter += 1
        digest = hashlib.sha1(f"{repo_id}\0{self._counter}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path])
        return digest.hexdigest()

    def create_repo(self, repo_id: str, private: bool = False) -> FakeRepo:
        with self._lock:
            return self.repos.setdefault(repo_id, FakeRepo(private=private))

    def commit(self, repo_id: str, files: dict, branch: str = "main", message: str = "commit") -> str:
        """Add (or overwrite) `files` (path -> bytes, str, or a dict written as JSON) on `branch` and return the
        new commit sha. The repo and the branch are created as needed (a new branch starts from `main`)."""
        repo = self.create_repo(repo_id)
        with self._lock:
            base = repo.resolve(branch) or repo.branches.get("main")
            tree = dict(repo.commits.get(base, {}))
            tree.update({path: _as_bytes(content) for path, content in files.items()})
            sha = self._new_sha(repo_id, tree)
            repo.commits[sha] = tree
            repo.branches[branch] = sha
            repo.messages[sha] = message
            return sha

    def file(self, repo_id: str, path: str, revision: str = "main") -> bytes:
        repo = self.repos[repo_id]
        return repo.commits[repo.resolve(revision)][path]

    # ---- request log

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, method: str | None = None, contains: str = "") -> int:
        with self._lock:
            return sum(1 for r in self.requests if (method is None or r.method == method) and contains in r.path)

    def file_gets(self, filename: str = "") -> int:
        """Number of `GET .../resolve/...` requests (file downloads), optionally only of files named `filename`
        (matched on the whole last path component, so `processor_config.json` is not `preprocessor_config.json`)."""
        with self._lock:
            return sum(1 for r in self.requests if r.is_file_get and (not filename or r.path.endswith("/" + filename)))

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def authorized(self, headers: dict) -> bool:
        auth = headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[len("Bearer ") :] in self.tokens


def _make_handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # keep test output clean
            pass

        # ---- plumbing

        def _parse(self):
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            rec = Recorded(self.command, unquote(parts.path), parse_qs(parts.query), headers)
            hub._record(rec)
            return parts.path, rec

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload, headers: dict | None = None):
            self._send(status, json.dumps(payload).encode(), headers)

        def _error(self, status: int, code: str | None, message: str, headers: dict | None = None):
            extra = {"X-Error-Message": message, **(headers or {})}
            if code is not None:
                extra["X-Error-Code"] = code
            self._json(status, {"error": message}, extra)

        def _repo_or_error(self, repo_id: str, rec: Recorded):
            repo = hub.repos.get(repo_id)
            if repo is None or (repo.private and not hub.authorized(rec.headers)):
                # Like the real Hub: a private repo without a valid token looks like a missing one.
                status = 404 if hub.authorized(rec.headers) else 401
                self._error(status, "RepoNotFound", "Repository not found")
                return None
            return repo

        # ---- downloads

        def do_HEAD(self):
            self._resolve()

        def do_GET(self):
            if self.path.startswith("/api/models/"):
                self._repo_info()
            else:
                self._resolve()

        def _repo_info(self):
            """`HfApi.repo_info` / `resolve_revision`: `GET /api/models/{repo_id}[/revision/{revision}]`."""
            raw_path, rec = self._parse()
            repo_part, sep, raw_revision = raw_path[len("/api/models/") :].partition("/revision/")
            repo_id, revision = unquote(repo_part), unquote(raw_revision) if sep else "main"
            repo = self._repo_or_error(repo_id, rec)
            if repo is None:
                return
            sha = repo.resolve(revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            siblings = [{"rfilename": path} for path in sorted(repo.commits[sha])]
            self._json(200, {"id": repo_id, "sha": sha, "private": repo.private, "siblings": siblings})

        def _resolve(self):
            raw_path, rec = self._parse()
            if "/resolve/" not in raw_path:
                return self._error(404, None, f"Not found: {rec.path}")
            repo_part, _, rest = raw_path.lstrip("/").partition("/resolve/")
            raw_revision, _, raw_file = rest.partition("/")
            repo_id, revision, path = unquote(repo_part), unquote(raw_revision), unquote(raw_file)
            repo = self._repo_or_error(repo_id, rec)
            if repo is None:
                return None
            sha = repo.resolve(revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            files = repo.commits[sha]
            if path not in files:
                return self._error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": sha})
            content = files[path]
            self._send(
                200,
                content,
                {"X-Repo-Commit": sha, "ETag": f'"{_git_blob_sha(content)}"', "Accept-Ranges": "bytes"},
                content_type="application/octet-stream",
            )
            return None

        # ---- uploads

        def do_POST(self):
            raw_path, rec = self._parse()
            body = self._body()
            if raw_path == "/api/repos/create":
                return self._create(json.loads(body or b"{}"), rec)
            if raw_path.startswith("/api/models/"):
                rest = raw_path[len("/api/models/") :]
                for action in ("preupload", "commit"):
                    repo_part, sep, raw_revision = rest.partition(f"/{action}/")
                    if sep:
                        handler = self._preupload if action == "preupload" else self._commit
                        return handler(unquote(repo_part), unquote(raw_revision), body, rec)
            return self._error(404, None, f"Not found: {rec.path}")

        def _require_token(self, rec: Recorded) -> bool:
            if hub.authorized(rec.headers):
                return True
            self._error(401, None, "Invalid credentials in Authorization header")
            return False

        def _create(self, payload: dict, rec: Recorded):
            if not self._require_token(rec):
                return None
            repo_id = f"{payload.get('organization') or hub.user}/{payload['name']}"
            url = f"{hub.url}/{repo_id}"
            if repo_id in hub.repos:
                return self._json(409, {"error": "You already created this model repo", "url": url})
            hub.create_repo(repo_id, private=payload.get("visibility") == "private")
            return self._json(200, {"url": url, "name": repo_id, "id": repo_id})

        def _preupload(self, repo_id: str, revision: str, body: bytes, rec: Recorded):
            if not self._require_token(rec) or self._repo_or_error(repo_id, rec) is None:
                return None
            repo = hub.repos[repo_id]
            current = repo.commits.get(repo.resolve(revision), {})
            listing = []
            for entry in json.loads(body)["files"]:
                item = {"path": entry["path"], "uploadMode": "regular", "shouldIgnore": False}
                if entry["path"] in current:  # lets the client skip unchanged files
                    item["oid"] = _git_blob_sha(current[entry["path"]])
                listing.append(item)
            return self._json(200, {"files": listing, "commitOid": repo.resolve(revision)})

        def _commit(self, repo_id: str, revision: str, body: bytes, rec: Recorded):
            if not self._require_token(rec):
                return None
            repo = self._repo_or_error(repo_id, rec)
            if repo is None:
                return None
            create_pr = rec.query.get("create_pr") == ["1"]
            if repo.branches and repo.resolve(revision) is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            files, summary = {}, ""
            for line in body.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                if item["key"] == "header":
                    summary = item["value"]["summary"]
                elif item["key"] == "file":
                    value = item["value"]
                    assert value.get("encoding") == "base64", value
                    files[value["path"]] = base64.b64decode(value["content"])
                else:
                    return self._error(400, None, f"Unsupported commit operation: {item['key']}")
            target, pr_url = revision, None
            if create_pr:  # the PR is a new ref "refs/pr/N" starting from `revision`
                with hub._lock:
                    repo.prs += 1
                    target = f"refs/pr/{repo.prs}"
                    pr_url = f"{hub.url}/{repo_id}/discussions/{repo.prs}"
                    base = repo.resolve(revision)
                    if base is not None:
                        repo.branches[target] = base
            sha = hub.commit(repo_id, files, branch=target, message=summary)
            return self._json(
                200,
                {"commitUrl": f"{hub.url}/{repo_id}/commit/{sha}", "commitOid": sha, "pullRequestUrl": pr_url},
            )

    return Handler


def point_huggingface_hub_at(monkeypatch, endpoint: str, cache_dir: str, token_dir: str) -> None:
    """Make huggingface_hub talk to `endpoint`, cache under `cache_dir`, and ignore the machine's token and
    offline/proxy settings, for the duration of a test.

    huggingface_hub reads `HF_ENDPOINT` once, at import, into `constants.ENDPOINT` and derives
    `constants.HUGGINGFACE_CO_URL_TEMPLATE` (used by `hf_hub_url`), `constants.HF_URL_HOSTS` and
    `utils._http._HUB_ORIGINS` from it; `HfApi()` reads `constants.ENDPOINT` when constructed. All are patched.
    """
    from huggingface_hub import constants
    from huggingface_hub import utils as hf_utils
    from huggingface_hub.utils import _http

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    host = urlsplit(endpoint).hostname
    if hasattr(constants, "HF_URL_HOSTS"):
        monkeypatch.setattr(constants, "HF_URL_HOSTS", frozenset(constants.HF_URL_HOSTS) | {host})
    if hasattr(_http, "_HUB_ORIGINS") and hasattr(_http, "_url_origin"):
        monkeypatch.setattr(_http, "_HUB_ORIGINS", frozenset(_http._HUB_ORIGINS) | {_http._url_origin(endpoint)})

    # Cache and token isolation.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache_dir)
    monkeypatch.setenv("HF_HUB_CACHE", cache_dir)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", os.path.join(token_dir, "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", os.path.join(token_dir, "stored_tokens"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    # huggingface_hub fetches an "agent harnesses" registry from ENDPOINT once per process (to build its
    # user-agent) and caches it under HF_HOME: pre-seed it so that no such request or file happens.
    if hasattr(constants, "AGENT_HARNESSES_PATH"):
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", os.path.join(token_dir, "agent_harnesses.json"))
    try:
        from huggingface_hub.utils import _detect_agent
    except ImportError:
        _detect_agent = None
    if _detect_agent is not None and hasattr(_detect_agent, "_EMPTY_REGISTRY"):
        monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)

    # Online, no proxies.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    if hasattr(constants, "HF_HUB_ETAG_TIMEOUT"):
        monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", constants.DEFAULT_ETAG_TIMEOUT)
    # The shared HTTP client reads proxy settings when created: start from a fresh one.
    hf_utils.close_session()


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A running `FakeHub` that huggingface_hub talks to; its cache is `tmp_path / "hf_cache"`."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        close_session,
        disable_progress_bars,
        enable_progress_bars,
    )

    hub = FakeHub().start()
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    tokens = tmp_path / "hf_token_home"
    tokens.mkdir()
    point_huggingface_hub_at(monkeypatch, hub.url, str(cache), str(tokens))
    hub.cache_dir = str(cache)
    bars_were_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield hub
    finally:
        if not bars_were_disabled:
            enable_progress_bars()
        hub.stop()
        close_session()
