"""Output side of `fused-imgproc preprocess`: the bundled samples and writing the output file.

Outputs (`.npz`, `.safetensors`, `.pt`) hold `pixel_values` (N, C, H, W) and the source paths in order. Rows are
appended batch by batch to a scratch file next to the output (so memory stays bounded whatever N is), and the final
file is written to a temporary name in the same folder and renamed into place (`os.replace`): an interrupted run
never leaves a half-written output under the requested name, and `OutputWriter.close` removes the scratch and
temporary files (the command runs it after an error, Ctrl-C, SIGTERM or SIGHUP too).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from .common import CLIError, describe_error
from .inputs import IMAGE_EXTENSIONS

OUTPUT_FORMATS = (".npz", ".safetensors", ".pt")
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
_SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "float64": "F64", "bfloat16": "BF16"}


def sample_paths() -> list[str]:
    """The bundled sample images (one per supported format), sorted."""
    return sorted(str(p) for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


class OutputWriter:
    """Checks the output path up front, appends rows to a scratch file, then writes the output atomically.

    The rows go to the scratch file with plain sequential writes and are copied from it in 16 MiB pieces, so
    neither the process's heap nor its mapped memory grows with the number of images (a `.pt` output is the
    exception: `torch.save` reads the scratch file through a memory map). `dtype` is the output dtype's name;
    bfloat16 rows arrive, and are stored, as their uint16 bit patterns.
    """

    def __init__(self, out: str, dtype: str):
        self.out = os.path.abspath(out)
        self.format = Path(out).suffix.lower()
        self.dtype = dtype
        if os.path.isdir(self.out):
            raise CLIError(f"--out {out!r} is a folder; give a file name such as {os.path.join(out, 'pixels.npz')!r}")
        if self.format not in OUTPUT_FORMATS:
            raise CLIError(f"--out {out!r}: the output must end in {', '.join(OUTPUT_FORMATS)}")
        if self.format == ".npz" and dtype == "bfloat16":
            raise CLIError("--dtype bfloat16 cannot be stored in .npz (numpy has no bfloat16): use .safetensors or .pt")
        if self.format == ".pt" or dtype == "bfloat16":
            try:
                import torch  # noqa: F401
            except ImportError:
                what = "a .pt output" if self.format == ".pt" else "--dtype bfloat16"
                raise CLIError(f"{what} needs torch, which is not installed (pip install torch)") from None
        parent = os.path.dirname(self.out)
        if not os.path.isdir(parent):
            problem = "is not a folder" if os.path.exists(parent) else "does not exist"
            raise CLIError(f"cannot write {out!r}: folder {parent!r} {problem}")
        self.scratch = self.scratch_file = None
        try:  # the real test of writability (os.access can be wrong, e.g. for root or on network file systems)
            self.tmp = self._create("tmp")
        except OSError as error:
            raise CLIError(f"cannot write {out!r}: {describe_error(error)}") from None
        self.item_shape: tuple[int, ...] | None = None
        self.count = 0

    def _create(self, kind: str) -> str:
        """A new empty file next to the output, with the permissions a new output would get (umask applies)."""
        for _ in range(100):
            path = os.path.join(os.path.dirname(self.out), f".{os.path.basename(self.out)}.{os.urandom(4).hex()}.{kind}")
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                return path
            except FileExistsError:
                continue
        raise FileExistsError(f"cannot find a free temporary name next to {self.out!r}")

    @property
    def storage_dtype(self) -> np.dtype:
        return np.dtype("<u2" if self.dtype == "bfloat16" else self.dtype).newbyteorder("<")

    def append(self, rows: np.ndarray) -> None:
        """Adds `rows` (all of the first rows' item shape: the caller checks) to the scratch file."""
        try:
            if self.scratch_file is None:
                self.scratch = self._create("scratch")
                self.scratch_file = open(self.scratch, "wb")  # noqa: SIM115 (closed by commit or close)
                self.item_shape = tuple(rows.shape[1:])
            self.scratch_file.write(np.ascontiguousarray(rows, dtype=self.storage_dtype).tobytes())
        except OSError as error:  # e.g. a full disk
            raise CLIError(f"cannot write the scratch file next to {self.out!r}: {describe_error(error)}") from None
        self.count += len(rows)

    def commit(self, paths: list[str]) -> int:
        """Writes the output file (atomically) and returns its size in bytes."""
        try:
            return self._commit(paths)
        except OSError as error:
            raise CLIError(f"cannot write {self.out!r}: {describe_error(error)}") from None

    def _commit(self, paths: list[str]) -> int:
        assert self.item_shape is not None and self.count == len(paths)
        self.scratch_file.close()
        shape = (self.count, *self.item_shape)
        if self.format == ".npz":  # what np.savez writes, with the big member streamed from the scratch file
            with zipfile.ZipFile(self.tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                with archive.open("pixel_values.npy", "w", force_zip64=True) as member:
                    header = {"descr": np.lib.format.dtype_to_descr(self.storage_dtype), "fortran_order": False,
                              "shape": shape}
                    np.lib.format.write_array_header_1_0(member, header)
                    _copy_scratch(self.scratch, member)
                with archive.open("paths.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.array(paths, dtype=str))
        elif self.format == ".safetensors":
            nbytes = os.path.getsize(self.scratch)
            header = {
                "__metadata__": {"paths": json.dumps(paths)},
                "pixel_values": {"dtype": _SAFETENSORS_DTYPES[self.dtype], "shape": list(shape),
                                 "data_offsets": [0, nbytes]},
            }
            encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
            encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
            with open(self.tmp, "wb") as f:
                f.write(len(encoded).to_bytes(8, "little"))
                f.write(encoded)
                _copy_scratch(self.scratch, f)
        else:
            import torch

            numel = int(np.prod(shape))
            dtype = torch.bfloat16 if self.dtype == "bfloat16" else getattr(torch, self.dtype)
            tensor = torch.from_file(self.scratch, shared=False, size=numel, dtype=dtype).view(shape)
            with open(self.tmp, "wb") as f:
                torch.save({"pixel_values": tensor, "paths": list(paths)}, f)
        size = os.path.getsize(self.tmp)
        os.replace(self.tmp, self.out)
        self.tmp = None
        return size

    def close(self) -> None:
        """Removes the scratch and temporary files (also after an error)."""
        if self.scratch_file is not None:
            self.scratch_file.close()
        for path in (self.scratch, self.tmp):
            if path is not None and os.path.exists(path):
                os.unlink(path)
        self.scratch = self.tmp = self.scratch_file = None


def _copy_scratch(path: str, destination) -> None:
    with open(path, "rb") as source:
        shutil.copyfileobj(source, destination, 16 << 20)
