"""File and Hub I/O of image processor configs: from a path or a Hub repo id to a JSON dict, and back.

This module knows where a config lives (a JSON file, a folder, a repo on the Hugging Face Hub, the local Hub
cache, offline mode) and turns every failure on the way into an `OSError` naming the path or repo. It also
writes files atomically and uploads them. What the JSON means is `config.ImageProcessingMixin`'s business.
It imports neither torch nor transformers; huggingface_hub is imported when a function needs it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from typing import Any

logger = logging.getLogger(__name__)

IMAGE_PROCESSOR_NAME = "preprocessor_config.json"
PROCESSOR_NAME = "processor_config.json"

_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")


def is_offline_mode() -> bool:
    """Whether Hub downloads are disabled.

    True when huggingface_hub's offline flag is set (it reads `HF_HUB_OFFLINE` once, at import) or when
    `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` is set now, so that setting the variable after import also works.
    """
    from huggingface_hub import constants

    if getattr(constants, "HF_HUB_OFFLINE", False):
        return True
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in _TRUE_VALUES:
            return True
    return False


# ---------------------------------------------------------------------------------------------- local files


def _config_bytes_from_environment(default: int = 16 * 2**20) -> int | None:
    text = os.environ.get("FUSED_IMGPROC_MAX_CONFIG_BYTES", "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"FUSED_IMGPROC_MAX_CONFIG_BYTES={text!r} is not a number") from None
    return value if value > 0 else None


MAX_CONFIG_BYTES: int | None = _config_bytes_from_environment()
"""The largest config file read (default 16 MiB; real ones are a few KB), refused with an `OSError` before it is
parsed; `None` disables the limit. Change it for the process by assigning `fused_imgproc.hub.MAX_CONFIG_BYTES`, or
with the environment variable `FUSED_IMGPROC_MAX_CONFIG_BYTES` (read at import; 0 disables)."""
MAX_CONFIG_DEPTH = 100
"""The deepest nesting of JSON arrays and objects accepted in a config (real ones nest 2 or 3 levels): deeper
values would fail later, in copying or saving, with a `RecursionError`."""


def read_json_dict(path: str) -> dict[str, Any]:
    """Read a JSON file whose top level must be an object; every failure is an `OSError` naming the path.

    A file larger than `MAX_CONFIG_BYTES` is refused before it is read (at most that many bytes plus one are ever
    read), and one nested deeper than `MAX_CONFIG_DEPTH` levels before it is used.
    """
    limit = MAX_CONFIG_BYTES
    with open(path, "rb") as reader:
        size = os.fstat(reader.fileno()).st_size
        if limit is None:
            raw = reader.read()
        else:
            raw = b"" if size > limit else reader.read(limit + 1)
    if limit is not None and (size > limit or len(raw) > limit):
        raise OSError(
            f"The file at '{path}' is too large for an image processor config: {max(size, len(raw))} bytes, more "
            f"than the limit of {limit} bytes (fused_imgproc.hub.MAX_CONFIG_BYTES, or the environment variable "
            "FUSED_IMGPROC_MAX_CONFIG_BYTES)."
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise OSError(f"The file at '{path}' is not a valid JSON file (it is not UTF-8 text): {err}") from err
    except json.JSONDecodeError as err:
        raise OSError(f"The file at '{path}' is not a valid JSON file: {err}") from err
    except RecursionError as err:
        raise OSError(f"The file at '{path}' is not a valid JSON file: it nests arrays or objects too deeply for "
                      f"Python's JSON parser ({err})") from None
    if _nesting_depth(data) > MAX_CONFIG_DEPTH:
        raise OSError(f"The file at '{path}' is not a valid JSON file for a config: it nests arrays or objects more "
                      f"than {MAX_CONFIG_DEPTH} levels deep (fused_imgproc.hub.MAX_CONFIG_DEPTH).")
    if not isinstance(data, dict):
        raise OSError(
            f"The file at '{path}' does not hold an image processor config: its top level is a JSON "
            f"{type(data).__name__}, expected a JSON object."
        )
    return data


def _nesting_depth(value: Any) -> int:
    """How deeply JSON arrays and objects nest in `value` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _umask() -> int:
    """The process umask, read once (reading it means setting it, which is not thread-safe to repeat)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and `os.replace`."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as writer:
            writer.write(text)
            writer.flush()
            os.fsync(writer.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise


def _select_config(path: str, name: str, filename: str) -> dict[str, Any] | None:
    """Read a candidate config file; a `processor_config.json` counts only with an `"image_processor"` dict."""
    data = read_json_dict(path)
    if name == filename:
        return data
    nested = data.get("image_processor")
    if nested is None:
        return None
    if not isinstance(nested, dict):
        raise OSError(f"The 'image_processor' entry of '{path}' is not a JSON object.")
    return nested


# ---------------------------------------------------------------------------------------------- the Hub


def _hub_error(err: Exception, repo_id: str, revision: str, in_repo: str, local_files_only: bool) -> OSError:
    """Translate a huggingface_hub exception into an `OSError` naming the repo (and the revision or file)."""
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"'{in_repo}' of '{repo_id}' (revision '{revision}')"
    if isinstance(err, GatedRepoError):  # a subclass of RepositoryNotFoundError
        return OSError(f"'{repo_id}' is a gated repo: request access on the Hub and pass a token with `token=`.")
    if isinstance(err, RepositoryNotFoundError):
        return OSError(
            f"'{repo_id}' is not a local file or directory, nor a repo id on the Hub. If it is a private repo, pass "
            "a token that can read it with `token=` or log in with `hf auth login`."
        )
    if isinstance(err, RevisionNotFoundError):
        return OSError(f"'{revision}' is not a valid git revision (branch, tag or commit id) of the repo '{repo_id}'.")
    if isinstance(err, LocalEntryNotFoundError):  # a subclass of EntryNotFoundError: test it first
        reason = (
            "downloads are disabled (offline mode or local_files_only=True)"
            if local_files_only
            else "the Hub could not be reached"
        )
        return OSError(f"Can't load {where}: it is not in the local cache and {reason}.")
    if isinstance(err, EntryNotFoundError):
        return OSError(f"'{repo_id}' (revision '{revision}') does not contain a file named '{in_repo}'.")
    if isinstance(err, HfHubHTTPError):
        return OSError(f"HTTP error while fetching {where}: {err}")
    # HFValidationError (neither an existing path nor a valid repo id), proxy errors, ...
    return OSError(
        f"Can't load image processor for '{repo_id}': it is not an existing file or directory, and fetching {where} "
        f"from the Hub failed: {type(err).__name__}: {err}"
    )


def _pin_revision(repo_id: str, revision: str, *, cache_dir, local_files_only: bool, token):
    """Resolve `revision` to the commit it points to, once per load, like transformers 5.x.

    Both candidate files then come from the same repo state, and files of a pinned commit that are already cached
    (or known to be absent) are served without any request. Offline, the commit comes from the cache's refs.
    Returns a `huggingface_hub.ResolvedRevision` (a `str` equal to `revision`), or `revision` unchanged where the
    installed huggingface_hub cannot resolve or the resolution fails for a reason the download reports better.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import RepositoryNotFoundError, RevisionNotFoundError

    if not hasattr(HfApi, "resolve_revision"):
        return revision
    try:
        return HfApi().resolve_revision(
            repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise _hub_error(err, repo_id, revision, IMAGE_PROCESSOR_NAME, local_files_only) from err
    except Exception:  # fail open: hf_hub_download below raises (or recovers) with better context
        logger.debug("Could not resolve revision %r of %r", revision, repo_id, exc_info=True)
        return revision


def _hub_file(
    repo_id: str,
    filename: str,
    *,
    subfolder: str,
    revision: str,
    cache_dir,
    force_download: bool,
    local_files_only: bool,
    token,
    user_agent,
    missing_ok: bool,
) -> str | None:
    """Return the local path of one file of a Hub repo, from the cache or downloaded.

    Every failure is an `OSError` (see `_hub_error`). With `missing_ok`, a file that does not exist in the repo,
    or that is not cached while downloads are disabled or failing, gives `None`: the caller tries its next file.
    A missing file costs one HEAD request (404, never retried); at a pinned commit it is remembered in the cache.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.utils import EntryNotFoundError

    in_repo = f"{subfolder}/{filename}" if subfolder else filename
    commit = getattr(revision, "resolved", None) or (revision if _COMMIT_HASH.fullmatch(revision) else None)
    if commit is not None and not force_download:
        cached = try_to_load_from_cache(repo_id, in_repo, cache_dir=cache_dir, revision=commit)
        if isinstance(cached, str):
            return cached
        if cached is not None:  # huggingface_hub's "known to be absent at this commit" marker
            if missing_ok:
                return None
            raise OSError(f"'{repo_id}' (revision '{revision}') does not contain a file named '{in_repo}'.")
    try:
        return hf_hub_download(
            repo_id,
            filename,
            subfolder=subfolder or None,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            user_agent=user_agent,
        )
    except EntryNotFoundError as err:  # remote 404, or not cached while offline / unreachable
        if missing_ok:
            return None
        raise _hub_error(err, repo_id, revision, in_repo, local_files_only) from err
    except Exception as err:  # every failure becomes an OSError naming the repo
        raise _hub_error(err, repo_id, revision, in_repo, local_files_only) from err


# ---------------------------------------------------------------------------------------------- entry points


def looks_like_local_path(text: str) -> bool:
    """Whether `text` names a local file or folder rather than a Hub repo id (`"name"` or `"org/name"`): it starts
    with `.`, `/` or `~`, ends with `.json`, has more than one `/`, or holds a platform separator other than `/`."""
    return (text.startswith((".", "/", "~")) or text.endswith(".json") or text.count("/") > 1
            or any(sep in text for sep in (os.sep, os.altsep) if sep and sep != "/"))


def load_config_dict(
    source: str,
    *,
    filename: str = IMAGE_PROCESSOR_NAME,
    subfolder: str = "",
    revision: str = "main",
    cache_dir=None,
    force_download: bool = False,
    local_files_only: bool = False,
    token=None,
    user_agent=None,
) -> dict[str, Any]:
    """
    Find and read the image processor config of a JSON file, a directory or a Hub repo.

    In a directory or repo, a `processor_config.json` with an `"image_processor"` entry is preferred when
    `filename` is the standard `preprocessor_config.json`; otherwise `filename` is read. Offline mode
    (see [`is_offline_mode`]) forces `local_files_only`.

    Args:
        source (`str`):
            A JSON file, a directory, or a Hub repo id.
        filename (`str`, *optional*, defaults to `"preprocessor_config.json"`):
            The name of the config file in a directory or repo.
        subfolder (`str`, *optional*, defaults to `""`):
            A folder inside the directory or repo that holds the file.
        revision (`str`, *optional*, defaults to `"main"`):
            The Hub revision (branch, tag or commit id); resolved to one commit for the whole load.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Directory of the Hub cache.
        force_download (`bool`, *optional*, defaults to `False`):
            Whether to download the files again even if they are cached.
        local_files_only (`bool`, *optional*, defaults to `False`):
            Whether to use only cached files.
        token (`str` or `bool`, *optional*):
            The token for the Hub.
        user_agent (`str` or `dict`, *optional*):
            Extra user-agent information sent with Hub requests.

    Returns:
        `dict[str, Any]`: the config's JSON object.

    Raises:
        `OSError`: the file, directory or repo cannot be found or read, the revision does not exist, the file is
        not cached while offline, or the file is not a valid JSON object.
    """
    if is_offline_mode() and not local_files_only:
        logger.info("Offline mode: forcing local_files_only=True")
        local_files_only = True

    # A processor_config.json is only looked for next to a file with the standard name.
    candidates = ([PROCESSOR_NAME] if filename == IMAGE_PROCESSOR_NAME else []) + [filename]

    if looks_like_local_path(source) and not os.path.exists(source):
        raise OSError(
            f"Can't load image processor for '{source}': it is not an existing file or directory (no such file or "
            "folder; a value that looks like a local path is not tried as a Hub repo id)"
        )
    if os.path.isfile(source):
        data = read_json_dict(source)
        nested = data.get("image_processor")
        if os.path.basename(source) == PROCESSOR_NAME and isinstance(nested, dict):
            data = nested
        logger.info("loading configuration file %s", source)
        return data

    if os.path.isdir(source):
        folder = os.path.join(source, subfolder) if subfolder else source
        for name in candidates:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                continue
            data = _select_config(path, name, filename)
            if data is not None:
                logger.info("loading configuration file %s", path)
                return data
        raise OSError(f"Can't load image processor from directory '{folder}': it holds no '{filename}' file.")

    revision = _pin_revision(source, revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    for name in candidates:
        path = _hub_file(
            source,
            name,
            subfolder=subfolder,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            user_agent=user_agent,
            missing_ok=name != filename,
        )
        if path is None:
            continue
        data = _select_config(path, name, filename)
        if data is not None:
            logger.info("loading configuration file %s from cache at %s", name, path)
            return data
    # Not reached: the last candidate is not `missing_ok`, so `_hub_file` returned its path or raised.
    raise OSError(f"Can't load image processor for '{source}' (revision '{revision}'): no '{filename}' file.")


def upload_config_file(
    path: str,
    repo_id: str,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
):
    """
    Create the Hub repo if needed and upload the file at `path` to it as `preprocessor_config.json`.

    Args:
        path (`str`):
            The local file to upload.
        repo_id (`str`):
            `namespace/name`, or a bare `name`, which the Hub resolves to the token's user.
        commit_message (`str`, *optional*, defaults to `"Upload image processor"`):
            Message of the commit.
        private (`bool`, *optional*):
            Visibility of the repo if it has to be created.
        token (`str` or `bool`, *optional*):
            The token for the Hub; `None` uses the locally saved one.
        revision (`str`, *optional*):
            Branch to push to.
        create_pr (`bool`, *optional*, defaults to `False`):
            Whether to open a pull request instead of committing to the branch.

    Returns:
        `huggingface_hub.CommitInfo`: the commit.
    """
    from huggingface_hub import HfApi

    # A fresh HfApi reads the endpoint (HF_ENDPOINT) now, not at import time.
    api = HfApi()
    repo_id = api.create_repo(repo_id, exist_ok=True, token=token, private=private).repo_id
    return api.upload_file(
        path_or_fileobj=path,
        path_in_repo=IMAGE_PROCESSOR_NAME,
        repo_id=repo_id,
        commit_message=commit_message or "Upload image processor",
        token=token,
        revision=revision,
        create_pr=create_pr,
    )
