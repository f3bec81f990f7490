"""Reading images for `fused-imgproc preprocess` within bounds, so that memory follows the batch, not the images.

- A file is opened without blocking (`O_NONBLOCK`: a FIFO opens at once) and checked with `fstat` before any read:
  anything but a regular file is skipped, also one swapped in after the inputs were listed.
- `--max-pixels` (default 2**28 = 268 million, 16384 x 16384) is checked on the size Pillow reads from the header
  (`PIL.Image.open` is lazy): a larger image is skipped by name and never decoded. While the command runs, Pillow's
  own decompression-bomb check (a warning above 89 million pixels, an error above 179 million) is off: this limit
  takes its place, in both directions.
- Decoding runs on a thread pool (Pillow releases the GIL), ahead of the processor. Decoded images are counted at
  `BYTES_PER_PIXEL` (4: Pillow's in-memory size of RGB, RGBA, I and F images). The images held at once, the batch
  in the processor plus those decoded ahead for the next one, stay within `--max-decoded-mib` (default 1024 MiB,
  which holds one image at the default `--max-pixels`); a batch is cut at half of it (or at `--batch-size`
  images), so that the next can decode meanwhile. An image larger than the budget on its own is processed alone.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import PIL.Image

from .common import describe_error
from .inputs import not_regular_reason

DEFAULT_MAX_PIXELS = 2**28
DEFAULT_MAX_DECODED_MIB = 1024
BYTES_PER_PIXEL = 4
DECODE_THREADS = min(8, os.cpu_count() or 1)


class Skip(Exception):
    """An input skipped for a reason of its own; the message is the whole reason."""


def open_regular(path: str):
    """`path` opened for binary reading, if it is a regular file; else `Skip`. The open cannot block (a FIFO
    without a writer would block a plain `open` forever) and no byte is read before the check."""
    return open(path, "rb", opener=_open_regular)


def _open_regular(path: str, flags: int) -> int:
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise Skip(not_regular_reason(mode))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_image(file, path: str):
    """`PIL.Image.open(file)`, whose "cannot identify" error names `path` (not the file object)."""
    try:
        return PIL.Image.open(file)
    except PIL.UnidentifiedImageError:
        raise PIL.UnidentifiedImageError(f"cannot identify image file {path!r}") from None


def _check_pixels(size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise Skip(f"{width}x{height} image ({width * height} pixels) is above --max-pixels {max_pixels}; not decoded")


def probe(path: str, max_pixels: int | None) -> tuple[int, int]:
    """The image's `(width, height)`, from its header only. Raises `Skip` (not a regular file, more pixels than
    `max_pixels`) or whatever Pillow raises on a file it cannot identify."""
    with open_regular(path) as file, _open_image(file, path) as image:
        size = image.size
    _check_pixels(size, max_pixels)
    return size


def load_image(path: str, max_pixels: int | None = None, expected_size: tuple[int, int] | None = None):
    """The decoded image (the first frame of an animation); any decoding problem raises. With `max_pixels`, a
    larger image is a `Skip` before decoding; with `expected_size` (from `probe`), so is an image whose size
    changed since."""
    with open_regular(path) as file, _open_image(file, path) as image:
        _check_pixels(image.size, max_pixels)
        if expected_size is not None and image.size != tuple(expected_size):
            raise Skip(f"the file changed while it was read (size {expected_size}, then {image.size}); not decoded")
        image.load()
    return image


@contextlib.contextmanager
def pillow_bomb_check_off():
    """Turns Pillow's decompression-bomb check off for the block (`--max-pixels` replaces it)."""
    previous = PIL.Image.MAX_IMAGE_PIXELS
    PIL.Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = previous


class _DecodeAhead:
    """The images submitted for decoding, in input order, and the bytes they hold."""

    def __init__(self, paths, report, pool, batch_size: int, max_pixels: int | None, budget: int):
        self.paths, self.report, self.pool = iter(paths), report, pool
        self.batch_size, self.max_pixels, self.budget = batch_size, max_pixels, budget
        self.ahead: deque = deque()  # (path, bytes, future)
        self.held = 0  # bytes of the images submitted and not yet released (decoding, decoded, in the processor)
        self.waiting = None  # (path, size): probed, waiting for room
        self.skipped = 0  # inputs skipped by `probe` since the last batch

    def skip(self, path: str, error: Exception) -> None:
        self.report(path, str(error) if isinstance(error, Skip) else f"cannot read image: {describe_error(error)}")

    def _probe_next(self):
        for path in self.paths:
            try:
                return path, probe(path, self.max_pixels)
            except Exception as error:  # noqa: BLE001 (any problem with the header is this file's problem)
                self.skip(path, error)
                self.skipped += 1
        return None

    def fill(self) -> None:
        """Submits the next images while the bytes held stay within the budget (one image is always allowed) and
        no more than two batches are ahead."""
        while len(self.ahead) < 2 * self.batch_size:
            if self.waiting is None:
                self.waiting = self._probe_next()
                if self.waiting is None:
                    return
            path, (width, height) = self.waiting
            nbytes = width * height * BYTES_PER_PIXEL
            if self.ahead and self.held + nbytes > self.budget:
                return
            self.ahead.append((path, nbytes, self.pool.submit(load_image, path, self.max_pixels, (width, height))))
            self.held += nbytes
            self.waiting = None

    def take(self) -> tuple[list, list[str], int, int] | None:
        """`(images, paths, inputs accounted for, bytes)` of the next batch: at most `batch_size` images and half
        the budget (at least one image); None when nothing is left."""
        taken, nbytes = [], 0
        while self.ahead and len(taken) < self.batch_size and (
                not taken or nbytes + self.ahead[0][1] <= self.budget // 2):
            taken.append(self.ahead.popleft())
            nbytes += taken[-1][1]
        if not taken and not self.skipped:
            return None
        images, names = [], []
        for path, _, future in taken:
            try:
                images.append(future.result())
                names.append(path)
            except Exception as error:  # noqa: BLE001 (any decoder failure is this file's problem)
                self.skip(path, error)
        count, self.skipped = len(taken) + self.skipped, 0
        return images, names, count, nbytes


def decoded_batches(paths: list[str], report, *, batch_size: int, max_pixels: int | None, max_decoded_bytes: int):
    """`(images, paths, number of inputs accounted for)` per batch, in input order; inputs that cannot be read are
    reported (`report(path, reason)`) and left out. See the module docstring for the bounds."""
    pool = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="fused-imgproc-decode")
    try:
        decoder = _DecodeAhead(paths, report, pool, batch_size, max_pixels, max_decoded_bytes)
        while True:
            decoder.fill()
            batch = decoder.take()
            if batch is None:
                break
            decoder.fill()  # the next batch decodes while this one is processed
            images, names, count, nbytes = batch
            yield images, names, count
            decoder.held -= nbytes
    except BaseException:  # closed early, an error, a signal: drop queued decodes, and let the cleanup go on without
        pool.shutdown(wait=False, cancel_futures=True)  # waiting for running ones (a read stuck on a dead disk)
        raise
    pool.shutdown(wait=True)
