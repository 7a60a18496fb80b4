"""Publishing a folder to the Hugging Face Hub: chosen files only, one commit, any repo type.

Every road out of the package pushes through :func:`push_folder`: the trained model and its
checkpoints, and later an ``onnx/`` folder, a Space or a dataset. The caller names what is
published as glob patterns relative to the folder (``*`` stays inside one folder level, so
``"config.json"`` never matches ``checkpoint-5/config.json`` and ``"onnx/*.onnx"`` matches only
files directly in ``onnx/``); everything else in the folder stays local. Only the public
``huggingface_hub`` API is used: ``HfApi.create_repo`` and ``HfApi.create_commit`` with one
``CommitOperationAdd`` per file, so no pattern syntax of the client's decides what leaves the
machine.

Privacy: model pushes follow ``--hub_private_repo`` (the Hub's default when unset), as the
Trainer's do; a dataset or a Space carries a user's photos or opens a public page, so
:func:`private_unless_public` makes those private unless the user asked for ``--public``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "REPO_TYPES",
    "PushError",
    "hub_is_offline",
    "hub_reachable",
    "is_hub_id",
    "matching_files",
    "private_unless_public",
    "push_folder",
    "push_later_hint",
]

logger = logging.getLogger(__name__)

REPO_TYPES = ("model", "dataset", "space")


class PushError(RuntimeError):
    """A push to the Hub failed; every local file is still in place.

    Attributes:
        reason: what the Hub or the client said (exception type and message).
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def private_unless_public(repo_type: str, public: bool) -> bool | None:
    """The ``private`` flag of a new repo under the package's one privacy rule.

    Args:
        repo_type: ``model``, ``dataset`` or ``space``.
        public: the user's ``--public``; only datasets and Spaces read it.

    Returns:
        ``None`` for a model (the caller passes ``--hub_private_repo`` instead, ``None`` meaning
        the Hub's default); for a dataset or a Space, ``True`` unless ``public``.
    """
    _check_repo_type(repo_type)
    if repo_type == "model":
        return None
    return not public


def _check_repo_type(repo_type: str) -> None:
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type must be one of {REPO_TYPES}, got {repo_type!r}")


def _matches(relative: str, pattern: str) -> bool:
    # fnmatch's "*" crosses "/"; compare level by level so that a pattern's "*" stays inside
    # one folder and a top-level pattern never publishes a file of a sub-folder.
    parts, pattern_parts = relative.split("/"), pattern.split("/")
    return len(parts) == len(pattern_parts) and all(
        fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, pattern_parts, strict=True)
    )


def matching_files(folder: str | os.PathLike, patterns: Iterable[str]) -> list[str]:
    """Paths (relative, ``/``-separated, sorted) of the files in ``folder`` that ``patterns`` select.

    Symbolic links are never followed out of ``folder``, so a link cannot publish a file
    from elsewhere on the machine.
    """
    root = Path(folder)
    patterns = list(patterns)
    found = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        if any(_matches(relative, pattern) for pattern in patterns):
            found.append(relative)
    return sorted(found)


def push_later_hint(
    repo_id: str | None,
    folder: str | os.PathLike,
    patterns: Iterable[str],
    repo_type: str = "model",
) -> str:
    """The ``hf upload`` command that publishes the same files as :func:`push_folder`."""
    includes = " ".join(f'--include "{pattern}"' for pattern in patterns)
    kind = "" if repo_type == "model" else f" --repo-type {repo_type}"
    return f"hf upload {repo_id or '<user>/<repo>'} {folder} .{kind} {includes}"


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    patterns: Iterable[str],
    *,
    commit_message: str,
    repo_type: str = "model",
    private: bool | None = None,
    revision: str | None = None,
    space_sdk: str | None = None,
    token: str | None = None,
) -> str:
    """Create ``repo_id`` if needed and publish the files of ``folder`` that ``patterns`` select.

    The files go up in one commit; a file already on the Hub that is not among them is left
    there. Runs in the calling thread (pushes of checkpoints run it in a thread of their own).

    Args:
        folder: the local folder; paths on the Hub are relative to it.
        repo_id: ``user/name``; a bare ``name`` goes to the token owner's namespace.
        patterns: globs relative to ``folder`` (see the module docstring).
        commit_message: the commit's summary line.
        repo_type: ``model``, ``dataset`` or ``space``.
        private: the visibility of a repo created here (``None``: the Hub's default); an
            existing repo keeps its own. See :func:`private_unless_public`.
        revision: the branch to commit to (default ``main``); it must exist.
        space_sdk: for a Space, the SDK it runs (``gradio``, ``docker``, ``static``).
        token: a Hub token; default the one ``huggingface_hub`` finds (``HF_TOKEN``, ``hf auth
            login``).

    Returns:
        The id of the repo pushed to, namespace included.

    Raises:
        PushError: nothing matched ``patterns``, or the Hub refused or could not be reached
            (the message holds the Hub's reason and the ``hf upload`` command to retry).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    import nail_segformer

    _check_repo_type(repo_type)
    if repo_type == "space" and not space_sdk:
        raise ValueError("a Space needs space_sdk ('gradio', 'docker' or 'static')")
    patterns = list(patterns)
    names = matching_files(folder, patterns)
    if not names:
        raise PushError(f"nothing to push: no file in {folder} matches {patterns}")
    api = HfApi(
        token=token, library_name="nail_segformer", library_version=nail_segformer.__version__
    )
    try:
        created = api.create_repo(
            repo_id,
            repo_type=repo_type,
            private=private,
            exist_ok=True,
            space_sdk=space_sdk if repo_type == "space" else None,
        )
        api.create_commit(
            created.repo_id,
            [CommitOperationAdd(path_in_repo=n, path_or_fileobj=Path(folder, n)) for n in names],
            commit_message=commit_message,
            repo_type=repo_type,
            revision=revision,
        )
    except Exception as err:  # any client, HTTP or file error: the caller decides what follows
        reason = f"{type(err).__name__}: {err}"
        raise PushError(
            f"pushing to the Hub failed ({repo_id}: {reason}); every file stays in {folder}. "
            f"Push later with: {push_later_hint(repo_id, folder, patterns, repo_type)}",
            reason,
        ) from err
    logger.info("pushed %d file(s) to %s (%s)", len(names), created.repo_id, commit_message)
    return created.repo_id


def is_hub_id(name: str) -> bool:
    """True when ``name`` has the form of a Hub repository id (``name`` or ``namespace/name``).

    Only the form is checked, nothing is looked up: a missing local path such as ``./run`` or
    ``/data/run`` is not a Hub id, so it can be reported as a missing folder.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


_HUB_PROBE_TIMEOUT_S = 3.0


def hub_is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (as ``huggingface_hub`` read it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


# Answers that come from a proxy or gateway in front of the Hub, not from the Hub itself.
_PROXY_FAILURES = {407, 502, 503, 504}


def hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """One request to the Hub endpoint, instead of the clients' minutes of retries.

    It goes through ``huggingface_hub``'s own HTTP client, so it takes the way every download
    takes: ``HF_ENDPOINT``, ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` and whatever client
    ``huggingface_hub.set_client_factory`` installed (a company proxy, custom certificates).
    """
    from huggingface_hub import constants, get_session

    try:
        response = get_session().head(constants.ENDPOINT, timeout=timeout, follow_redirects=False)
    # Refused, DNS, TLS, timeout, proxy refused: the client's exception classes are httpx's in
    # huggingface_hub 1.x and httpx2's in 2.x, so catch them all.
    except Exception as err:  # noqa: BLE001
        logger.debug("Hub probe %s failed: %s", constants.ENDPOINT, err)
        return False
    return response.status_code not in _PROXY_FAILURES
