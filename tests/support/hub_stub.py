"""A local stand-in for the few Hugging Face Hub HTTP endpoints that a ``push_to_hub`` uses.

``huggingface_hub`` 2.4's ``create_repo`` and ``upload_folder`` (through its Xet upload pipeline,
or ``create_commit`` when ``HF_HUB_DISABLE_XET=1``) send these requests, all implemented here:

- ``POST /api/repos/create`` (``create_repo``): JSON ``{name, organization, type, private}``;
  answers ``{"url": "<endpoint>/<repo_id>"}``, or 409 with the same ``url`` when the repo exists
  (``exist_ok=True``, as the Trainer passes, accepts the 409 and reads that url).
- ``POST /api/{type}s/{repo_id}/preupload/{revision}``: JSON ``{"files": [{path, sample, size}]}``;
  answers ``uploadMode: "regular"`` for every file, so contents travel inline, base64-encoded,
  in the commit payload and no LFS or Xet storage is involved, and ``oid: null`` (the remote file
  is unknown), so the client never drops an unchanged file and every commit carries the whole
  folder.
- ``POST /api/{type}s/{repo_id}/commit/{revision}``: an NDJSON body, one ``{"key", "value"}`` per
  line: a ``header`` (summary, description), then ``file`` (path, base64 content),
  ``deletedFile`` or ``deletedFolder`` items. Answers ``{commitUrl, commitOid}``.
- ``POST /api/validate-yaml`` (JSON ``{content, repoType}``), sent before a README.md is
  uploaded: checks that the YAML front matter parses to a mapping that ``huggingface_hub``'s
  own ``ModelCardData`` accepts (model-index, eval results), and, as the Hub does, that every
  ``base_model`` is the id of a model on this Hub (a repo created here, or one of ``models``);
  answers ``{"errors": [], "warnings": []}``, or 400 with the errors.

Downloads (``hf_hub_download``, and ``datasets.load_dataset`` of a dataset pushed here) read
``/{datasets|spaces}/{repo_id}/resolve/{revision}/{path}`` (GET and HEAD): the file of the repo's
latest tree, whatever the revision, with the ``ETag``, ``X-Repo-Commit`` and ``X-Linked-*``
headers ``huggingface_hub`` caches it by; the tree listing and ``/api/{type}s/{repo_id}`` answer
the rest of what ``load_dataset`` asks.

Because every file is "regular", no LFS or Xet transfer is ever started, so plain HTTP covers
the whole push. Any other request is logged as an error, kept in
:attr:`HubStub.unknown_requests` and answered 404, so a test shows what a new client version
started asking for.

When ``expected_token`` is given, a request without ``Authorization: Bearer <expected_token>``
gets 401 like the real Hub. The server is bounded: it binds 127.0.0.1 on a free port, refuses
bodies over ``max_body_bytes`` (413) and shuts itself down after ``max_lifetime_s`` even if a
test forgets to stop it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Commit", "HubStub", "RecordedRequest"]

logger = logging.getLogger(__name__)

_REPO = r"(?P<repo_type>model|dataset|space)s/(?P<repo_id>[^/]+/[^/]+)"
_PREUPLOAD_RE = re.compile(rf"^/api/{_REPO}/preupload/(?P<revision>[^/]+)$")
_COMMIT_RE = re.compile(rf"^/api/{_REPO}/commit/(?P<revision>[^/]+)$")
_REPO_INFO_RE = re.compile(rf"^/api/{_REPO}(/revision/(?P<revision>[^/]+))?$")
_TREE_RE = re.compile(rf"^/api/{_REPO}/tree/(?P<revision>[^/]+)(/(?P<path>.+))?$")
_LFS_BATCH_RE = re.compile(
    r"^/((?P<prefix>datasets|spaces)/)?(?P<repo_id>[^/]+/[^/]+)\.git/info/lfs/objects/batch$"
)
_LFS_UPLOAD_RE = re.compile(r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$")
# File downloads (hf_hub_download, datasets' load_dataset): /{datasets|spaces}/<id>/resolve/...
_RESOLVE_RE = re.compile(
    r"^/((?P<prefix>datasets|spaces)/)?(?P<repo_id>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$"
)


@dataclass
class _File:
    """A download's answer: the bytes, with the headers the Hub sends beside them."""

    content: bytes
    headers: dict[str, str]


# Files whose preupload answer is "lfs", as the Hub's .gitattributes makes them: datasets
# uploads its Parquet shards before the commit and deletes each temporary file right after.
_LFS_SUFFIXES = (".parquet",)
SPACE_SDKS = ("gradio", "docker", "static")


@dataclass
class RecordedRequest:
    """One request as the stub saw it."""

    method: str
    path: str
    authorization: str | None
    body: bytes = b""


@dataclass
class Commit:
    """One commit received on ``/commit``: the files it adds (path to bytes) and deletes."""

    repo_id: str
    revision: str
    summary: str
    oid: str
    files: dict[str, bytes] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)


class _StubError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None, **extra: object):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.extra = extra  # more fields of the JSON answer


class HubStub:
    """A threaded HTTP server answering like the Hub for repo creation and commits.

    Use as a context manager (or call :meth:`start` and :meth:`stop`); point
    ``HF_ENDPOINT`` at :attr:`url` before ``huggingface_hub`` is imported.

    Args:
        expected_token: if set, every request must carry ``Authorization: Bearer <token>``.
        models: ids of models that exist on this Hub besides the repos created on it (what a
            card's ``base_model`` may name).
        max_body_bytes: larger request bodies are refused with 413.
        max_lifetime_s: the server stops itself this many seconds after :meth:`start`.
        commit_delay_s: each commit is answered (and recorded) this many seconds after it
            arrives, like a slow upload; :attr:`commits_started` counts those that arrived.
    """

    def __init__(
        self,
        expected_token: str | None = None,
        *,
        models: tuple[str, ...] = (),
        max_body_bytes: int = 64 * 1024 * 1024,
        max_lifetime_s: float = 300.0,
        commit_delay_s: float = 0.0,
    ):
        self.expected_token = expected_token
        self.models = set(models)
        self.max_body_bytes = max_body_bytes
        self.max_lifetime_s = max_lifetime_s
        self.commit_delay_s = commit_delay_s
        self.commits_started = 0
        self.repos: dict[str, dict] = {}
        self.commits: list[Commit] = []
        self.requests: list[RecordedRequest] = []
        self.unknown_requests: list[str] = []
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, uploaded before commits
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, the value for ``HF_ENDPOINT``."""
        if self._server is None:
            raise RuntimeError("HubStub is not running: call start() or use it as a context")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubStub:
        stub = self

        class Handler(_Handler):
            hub = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="hub-stub", daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(self.max_lifetime_s, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def _expire(self) -> None:
        logger.error("HubStub outlived max_lifetime_s=%s; stopping it", self.max_lifetime_s)
        self.stop()

    def stop(self) -> None:
        """Shut the server down and free its port; safe to call twice."""
        if self._timer is not None:
            self._timer.cancel()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> HubStub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ queries

    def commits_to(self, repo_id: str) -> list[Commit]:
        """Commits received for ``repo_id``, oldest first."""
        with self._lock:
            return [c for c in self.commits if c.repo_id == repo_id]

    def tree(self, repo_id: str) -> dict[str, bytes]:
        """The repo's files after replaying every commit it received (path to bytes)."""
        files: dict[str, bytes] = {}
        for commit in self.commits_to(repo_id):
            for path in commit.deleted:
                prefix = path.rstrip("/") + "/"
                files = {p: b for p, b in files.items() if p != path and not p.startswith(prefix)}
            files.update(commit.files)
        return files

    # ------------------------------------------------------------------ endpoints

    def _check_auth(self, authorization: str | None) -> None:
        if self.expected_token is None:
            return
        if authorization != f"Bearer {self.expected_token}":
            raise _StubError(401, "Invalid credentials in Authorization header")

    def _create_repo(self, payload: dict) -> dict:
        name, organization = payload.get("name"), payload.get("organization")
        if not name:
            raise _StubError(400, f"repo creation needs a 'name', got {payload!r}")
        repo_id = f"{organization}/{name}" if organization else name
        if "/" not in repo_id:
            raise _StubError(
                400, f"the stub needs namespaced repo ids (user/name), got {repo_id!r}"
            )
        with self._lock:
            if repo_id in self.repos:
                # Like the Hub, name the existing repo: create_repo(exist_ok=True) reads its url.
                raise _StubError(
                    409, "You already created this model repo", url=f"{self.url}/{repo_id}"
                )
            if payload.get("type") == "space" and payload.get("sdk") not in SPACE_SDKS:
                # The Hub creates a Space only with the SDK it runs.
                raise _StubError(400, f"a Space needs an sdk in {SPACE_SDKS}, got {payload!r}")
            self.repos[repo_id] = {"type": payload.get("type", "model"), **payload}
        return {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def _list_tree(self, repo_id: str, folder: str) -> list:
        """``list_repo_tree``: the files and folders directly in ``folder``."""
        self._require_repo(repo_id)
        prefix = folder.rstrip("/") + "/" if folder else ""
        entries: dict[str, dict] = {}
        for name, content in sorted(self.tree(repo_id).items()):
            if not name.startswith(prefix):
                continue
            head, _, rest = name[len(prefix) :].partition("/")
            if rest:
                oid = hashlib.sha1((prefix + head).encode()).hexdigest()
                entries.setdefault(
                    prefix + head, {"type": "directory", "path": prefix + head, "oid": oid}
                )
            else:
                oid = hashlib.sha1(content).hexdigest()
                entries[name] = {"type": "file", "path": name, "size": len(content), "oid": oid}
        if folder and not entries:
            raise _StubError(404, f"{folder} does not exist in {repo_id}", "EntryNotFound")
        return list(entries.values())

    def _lfs_batch(self, payload: dict) -> dict:
        """The LFS batch API: an upload action (a PUT here) for each object not stored yet."""
        objects = []
        for item in payload.get("objects", []):
            answer = {"oid": item["oid"], "size": item["size"]}
            with self._lock:
                stored = item["oid"] in self.lfs_objects
            if not stored:
                href = f"{self.url}/lfs-upload/{item['oid']}"
                answer["actions"] = {"upload": {"href": href, "header": {}}}
            objects.append(answer)
        return {"transfer": "basic", "objects": objects}

    def _repo_info(self, repo_id: str) -> dict:
        """``model_info`` / ``dataset_info``: the repo's files and its card's metadata."""
        files = self.tree(repo_id)
        with self._lock:
            known = repo_id in self.repos or repo_id in self.models
        if not known or (not files and repo_id not in self.repos):
            raise _StubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        card = files.get("README.md", b"").decode()
        match = re.match(r"^---\s*\n(.*?)\n---", card, flags=re.DOTALL)
        import yaml

        return {
            "id": repo_id,
            "sha": (self.commits_to(repo_id) or [Commit(repo_id, "main", "", "0" * 40)])[-1].oid,
            "siblings": [{"rfilename": name} for name in sorted(files)],
            "cardData": yaml.safe_load(match[1]) if match else None,
            "private": self.repos.get(repo_id, {}).get("visibility") == "private",
        }

    def _resolve(self, repo_id: str, path: str) -> _File:
        """A file of the repo's latest tree (every revision reads the latest: tests push once),
        with the commit and the ETag ``hf_hub_download`` caches it by."""
        self._require_repo(repo_id)
        content = self.tree(repo_id).get(path)
        if content is None:
            raise _StubError(404, f"{path} does not exist in {repo_id}", "EntryNotFound")
        etag = f'"{hashlib.sha256(content).hexdigest()}"'
        commit = self.commits_to(repo_id)[-1].oid
        return _File(
            content,
            {
                "ETag": etag,
                "X-Repo-Commit": commit,
                "X-Linked-Etag": etag,
                "X-Linked-Size": str(len(content)),
            },  # fmt: skip
        )

    def _require_repo(self, repo_id: str) -> None:
        with self._lock:
            if repo_id not in self.repos:
                raise _StubError(404, f"Repository {repo_id} not found", "RepoNotFound")

    def _preupload(self, repo_id: str, payload: dict) -> dict:
        self._require_repo(repo_id)
        files = payload.get("files")
        if not isinstance(files, list):
            raise _StubError(400, f"preupload needs a 'files' list, got {payload!r}")
        return {
            "files": [
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if f["path"].endswith(_LFS_SUFFIXES) else "regular",
                    "shouldIgnore": False,
                    "oid": None,
                }
                for f in files
            ]
        }

    def _commit(self, repo_id: str, revision: str, body: bytes) -> dict:
        self._require_repo(repo_id)
        with self._lock:
            self.commits_started += 1
        time.sleep(self.commit_delay_s)
        items = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not items or items[0].get("key") != "header":
            raise _StubError(400, "a commit payload starts with a 'header' line")
        commit = Commit(
            repo_id=repo_id, revision=revision, summary=items[0]["value"]["summary"], oid=""
        )
        for item in items[1:]:
            key, value = item.get("key"), item.get("value", {})
            if key == "file":
                if value.get("encoding") != "base64":
                    raise _StubError(400, f"unsupported file encoding {value.get('encoding')!r}")
                commit.files[value["path"]] = base64.b64decode(value["content"], validate=True)
            elif key in ("deletedFile", "deletedFolder"):
                commit.deleted.append(value["path"])
            elif key == "lfsFile":
                with self._lock:
                    content = self.lfs_objects.get(value.get("oid", ""))
                if content is None:
                    raise _StubError(400, f"LFS object of {value.get('path')} was never uploaded")
                commit.files[value["path"]] = content
            else:
                # lfsFile would reference storage the stub never offered (it answers "regular").
                raise _StubError(400, f"the stub accepts only inline files, got a {key!r} item")
        with self._lock:
            commit.oid = hashlib.sha1(f"{repo_id}:{len(self.commits)}".encode()).hexdigest()
            self.commits.append(commit)
        return {
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{self.url}/{repo_id}/commit/{commit.oid}",
            "pullRequestUrl": None,
        }

    def _route(self, method: str, path: str, body: bytes) -> dict:
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(body))
        if method == "POST" and path == "/api/validate-yaml":
            with self._lock:
                known = self.models | set(self.repos)
            payload = json.loads(body)
            return _validate_yaml(payload.get("content", ""), known, payload.get("repoType"))
        if method == "POST" and (match := _PREUPLOAD_RE.match(path)):
            return self._preupload(match["repo_id"], json.loads(body))
        if method == "POST" and (match := _COMMIT_RE.match(path)):
            return self._commit(match["repo_id"], match["revision"], body)
        if method in ("GET", "HEAD") and (match := _RESOLVE_RE.match(path)):
            return self._resolve(match["repo_id"], match["path"])
        if method == "GET" and (match := _REPO_INFO_RE.match(path)):
            return self._repo_info(match["repo_id"])
        if method == "GET" and (match := _TREE_RE.match(path)):
            return self._list_tree(match["repo_id"], match["path"] or "")
        if method == "POST" and (match := _LFS_BATCH_RE.match(path)):
            return self._lfs_batch(json.loads(body))
        if method == "PUT" and (match := _LFS_UPLOAD_RE.match(path)):
            if hashlib.sha256(body).hexdigest() != match["oid"]:
                raise _StubError(400, "LFS upload does not match its sha256")
            with self._lock:
                self.lfs_objects[match["oid"]] = body
            return {}
        with self._lock:
            self.unknown_requests.append(f"{method} {path}")
        logger.error("HubStub: unhandled request %s %s; answering 404", method, path)
        raise _StubError(404, f"HubStub does not implement {method} {path}", "EntryNotFound")


def _validate_yaml(content: str, known_models: set[str], repo_type: str | None = None) -> dict:
    import yaml
    from huggingface_hub import ModelCardData
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.DOTALL)
    if match is None:
        return {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]}
    try:
        metadata = yaml.safe_load(match[1])
    except yaml.YAMLError as err:
        raise _StubError(400, f"Invalid metadata in README.md: {err}") from err
    if not isinstance(metadata, dict):
        raise _StubError(400, "Invalid metadata in README.md: the YAML is not a mapping")
    if repo_type == "space":
        _validate_space(metadata, known_models)
        return {"errors": [], "warnings": []}
    try:
        ModelCardData(**metadata)
    except (ValueError, TypeError) as err:
        raise _StubError(400, f"Invalid metadata in README.md: {err}") from err
    base_models = metadata.get("base_model") or []
    for model_id in [base_models] if isinstance(base_models, str) else base_models:
        try:
            validate_repo_id(str(model_id))
        except HFValidationError as err:
            raise _StubError(
                400, f'Invalid metadata in README.md: "base_model" {model_id!r} is not a model id'
            ) from err
        if model_id not in known_models:
            raise _StubError(
                400, f'Invalid metadata in README.md: "base_model" {model_id!r} is not a model'
            )
    return {"errors": [], "warnings": []}


def _validate_space(metadata: dict, known_models: set[str]) -> None:
    """What the Hub checks of a Space's README: an SDK (with its version for Gradio), an app
    file, a short description of at most 60 characters, and models that exist."""
    problems = []
    if metadata.get("sdk") not in SPACE_SDKS:
        problems.append(f'"sdk" must be one of {SPACE_SDKS}')
    if metadata.get("sdk") == "gradio" and not re.fullmatch(
        r"\d+\.\d+\.\d+", str(metadata.get("sdk_version", ""))
    ):
        problems.append('"sdk_version" must be a version such as 6.31.0')
    if not str(metadata.get("app_file", "")).endswith(".py"):
        problems.append('"app_file" must name a .py file')
    if len(str(metadata.get("short_description", ""))) > 60:
        problems.append('"short_description" must be at most 60 characters')
    for model_id in metadata.get("models") or []:
        if model_id not in known_models:
            problems.append(f'"models" entry {model_id!r} is not a model')
    if problems:
        raise _StubError(400, "Invalid metadata in README.md: " + "; ".join(problems))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer has a length
    hub: HubStub

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while size := int(self.rfile.readline().split(b";")[0], 16):
                total += size
                if total > self.hub.max_body_bytes:
                    raise _StubError(413, f"body over {self.hub.max_body_bytes} bytes")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.hub.max_body_bytes:
            raise _StubError(413, f"body of {length} bytes is over {self.hub.max_body_bytes}")
        return self.rfile.read(length)

    def _handle(self) -> None:
        path = self.path.split("?", 1)[0]
        authorization = self.headers.get("Authorization")
        headers = {}
        request = RecordedRequest(self.command, self.path, authorization)
        with self.hub._lock:
            self.hub.requests.append(request)
        try:
            body = request.body = self._read_body()
            if not _LFS_UPLOAD_RE.match(path):  # an upload URL carries its own authorisation
                self.hub._check_auth(authorization)
            status, answer = 200, self.hub._route(self.command, path, body)
        except _StubError as err:
            status = err.status
            answer = {"error": str(err), "errors": [{"message": str(err)}], **err.extra}
            headers["X-Error-Message"] = str(err)
            if err.error_code:
                headers["X-Error-Code"] = err.error_code
            if status == 413:
                self.close_connection = True
        except (ValueError, KeyError) as err:  # malformed JSON or a missing field
            logger.exception("HubStub: bad request %s %s", self.command, path)
            status, answer = 400, {"error": f"bad request: {err!r}"}
        if isinstance(answer, _File):
            data, content_type = answer.content, "application/octet-stream"
            headers.update(answer.headers)
        else:
            data, content_type = json.dumps(answer).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        logger.debug("HubStub: " + format, *args)
