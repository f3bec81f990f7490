"""Inputs of `fused-imgproc preprocess`: image files, folders and globs into the list of files to read.

Nothing here opens a file. Each candidate is `os.stat`ed and only regular files are kept: a FIFO, a socket or a
device (a reader could block on it forever, or never reach its end) is reported by name, not opened. Folder walks
and `**` follow symlinked folders but enter each real folder once, so a symlink loop cannot send them round; a file
reached twice, by any path, is kept once (duplicates are found by real path, symlinks resolved). A folder that
cannot be listed is reported by name, like a file that cannot be read.

The glob syntax is Python's `glob.glob(pattern, recursive=True)`: `*`, `?`, `[...]` within one path component, `**`
as a whole component for any number of folders, and names starting with `.` matched only by a pattern component
that starts with `.`. It is reimplemented here because `glob.glob` neither reports folders it cannot list nor stops
at symlink loops (it follows one until the path is too long: 40 copies of every image behind it).
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable

from .common import describe_error

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
_MAGIC = re.compile(r"[*?[]")
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))

Report = Callable[[str, str], None]


def not_regular_reason(mode: int) -> str:
    """Why a file of this `st_mode` (neither a regular file nor a folder) is skipped."""
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return f"not a regular file ({kind}): not opened"


def classify(path: str) -> tuple[str, str]:
    """`("file", "")`, `("folder", "")`, or `("skip", why)` for a path, from `os.stat` (symlinks followed)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            return "skip", "broken symbolic link" if os.path.islink(path) else "no such file or directory"
        return "skip", describe_error(error)
    if stat.S_ISREG(mode):
        return "file", ""
    if stat.S_ISDIR(mode):
        return "folder", ""
    return "skip", not_regular_reason(mode)


def _entries(folder: str, report: Report) -> list[os.DirEntry]:
    """The entries of `folder`, sorted by name; a folder that cannot be listed is reported (a missing one is not:
    nothing matches there)."""
    try:
        with os.scandir(folder or os.curdir) as scan:
            return sorted(scan, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as error:
        report(folder or os.curdir, f"cannot read folder: {describe_error(error)}")
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a symlink; a broken or looping one is not a folder
    except OSError:
        return False


def walk(folder: str, report: Report) -> list[str]:
    """The image files under `folder` (by extension, any case), recursively, sorted by path. Symlinked folders are
    followed, each real folder once; a candidate that is not a regular file, or a folder that cannot be listed, is
    reported."""
    found, visited, pending = [], set(), [folder]
    while pending:
        current = pending.pop()
        real = os.path.realpath(current)
        if real in visited:
            continue
        visited.add(real)
        for entry in _entries(current, report):
            if _is_dir(entry):
                pending.append(entry.path)
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                kind, reason = classify(entry.path)
                if kind == "file":
                    found.append(entry.path)
                else:
                    report(entry.path, reason)
    return sorted(found)


def _glob(pattern: str, report: Report, dirs_only: bool = False) -> list[str]:
    """What `glob.glob(pattern, recursive=True)` matches, in the same form, reporting unreadable folders."""
    head, tail = os.path.split(pattern)
    if not _MAGIC.search(pattern):
        exists = os.path.lexists(pattern) if tail else os.path.isdir(head)
        return [pattern] if exists else []
    bases = _glob(head, report, dirs_only=True) if head and head != pattern and _MAGIC.search(head) else [head]
    if tail == "**":
        match = _match_recursive
    elif _MAGIC.search(tail):
        match = _match_one
    else:
        def match(base, name, dirs_only, report):
            return [name] if os.path.lexists(os.path.join(base, name)) else []
    return [os.path.join(base, name) for base in bases for name in match(base, tail, dirs_only, report)]


def _match_one(base: str, name_pattern: str, dirs_only: bool, report: Report) -> list[str]:
    names = [e.name for e in _entries(base, report) if not dirs_only or _is_dir(e)]
    if not name_pattern.startswith("."):
        names = [name for name in names if not name.startswith(".")]
    return fnmatch.filter(names, name_pattern)


def _match_recursive(base: str, _: str, dirs_only: bool, report: Report) -> list[str]:
    """`**`: "" (the folder itself), then every entry below it, relative to `base`; symlinked folders are followed,
    each real folder once, and names starting with `.` are left out (as `glob` does)."""
    found, visited, pending = [""], set(), [""]
    while pending:
        relative = pending.pop()
        folder = os.path.join(base, relative)
        real = os.path.realpath(folder or os.curdir)
        if real in visited:
            continue
        visited.add(real)
        for entry in _entries(folder, report):
            if entry.name.startswith("."):
                continue
            is_dir = _is_dir(entry)
            if is_dir or not dirs_only:
                found.append(os.path.join(relative, entry.name))
            if is_dir:
                pending.append(os.path.join(relative, entry.name))
    return found


def expand_inputs(inputs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Image paths in order, and `(name, reason)` for each input, file or folder that was skipped.

    An existing file is taken whatever its extension; a folder gives its images (recursively, sorted); anything
    else with `*`, `?` or `[` is a glob (`**` recursive; matched folders are walked too). A file listed twice (e.g. by
    a folder and a glob, or through a symlink) is kept at its first position only.
    """
    paths, problems, seen = [], [], set()

    def first_time(path: str) -> bool:  # a file or folder reached again, by any path, is neither kept nor reported
        key = os.path.normcase(os.path.realpath(path))
        if key in seen:
            return False
        seen.add(key)
        return True

    def report(name: str, reason: str) -> None:
        if first_time(name):
            problems.append((name, reason))

    def add(path: str) -> None:
        if first_time(path):
            paths.append(path)

    for item in inputs:
        kind, reason = classify(item)
        if kind == "file":
            add(item)
        elif kind == "folder":
            reported = len(problems)
            found = walk(item, report)
            if not found and len(problems) == reported:
                problems.append((item, f"folder contains no images ({', '.join(IMAGE_EXTENSIONS)})"))
            for path in found:
                add(path)
        elif _MAGIC.search(item):
            found = _expand_glob(item, report)
            if not found:
                problems.append((item, "no files match this pattern"))
            for path in found:
                add(path)
        else:
            problems.append((item, reason))
    return paths, problems


def _expand_glob(pattern: str, report: Report) -> list[str]:
    """The files a glob gives: its matches, sorted, each folder among them walked."""
    found = []
    for match in sorted(set(_glob(pattern, report)) - {""}):  # "" is `**`'s "this folder" at the top: not a match
        kind, reason = classify(match)
        if kind == "folder":
            found.extend(walk(match, report))
        elif kind == "file":
            found.append(match)
        else:
            report(match, reason)
    return found
