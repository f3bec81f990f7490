"""The machine and library versions stamped on every result row (and the header of the markdown report)."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
from pathlib import Path

# Distribution names, as importlib.metadata knows them, in the order of the CSV columns.
LIBRARIES = ("torch", "triton", "transformers", "torchvision", "numpy", "Pillow")
# The CSV/markdown columns an environment contributes, in order.
FIELDS = ("gpu", "driver", "cuda", *(name.lower() for name in LIBRARIES), "python", "commit", "date")


def library_versions() -> dict[str, str]:
    """`{"torch": "2.13.0", ..., "torchvision": "not installed"}` (lower-case keys), without importing them."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name.lower()] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name.lower()] = "not installed"
    return versions


def driver_version() -> str:
    """The NVIDIA driver version from nvidia-smi, else from /proc/driver/nvidia/version, else "unknown"."""
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20, check=True)
        first = result.stdout.strip().splitlines()
        if first and first[0].strip():
            return first[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return "unknown"
    for word in text.split():
        if word.count(".") >= 1 and word.replace(".", "").isdigit():
            return word
    return "unknown"


def git_commit(repo: Path) -> str:
    """`git describe --always --dirty` of the checkout, or "unknown" (the GPU machine may get a tree without .git)."""
    try:
        result = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=repo,
                                capture_output=True, text=True, timeout=20, check=True)
        return result.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def collect(repo: Path, gpu: str | None = None, cuda: str | None = None) -> dict[str, str]:
    """Every field of `FIELDS`. `gpu` and `cuda` come from torch in the benchmark process; without them (the report
    rebuilt after a benchmark that died early) the GPU name is asked of nvidia-smi."""
    if gpu is None:
        try:
            result = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=20, check=True)
            gpu = result.stdout.strip().splitlines()[0].strip() or "unknown"
        except (OSError, subprocess.SubprocessError, IndexError):
            gpu = "none (CPU)"
    return {
        "gpu": gpu,
        "driver": driver_version() if not gpu.startswith("none") else "n/a",
        "cuda": cuda or "n/a",
        **library_versions(),
        "python": platform.python_version(),
        "commit": git_commit(repo),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
