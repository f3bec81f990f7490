"""`fused-imgproc preprocess` inputs within bounds, in-process: symlink loops and duplicates, folders that cannot be
listed, special files, the pixel limit (read from the header, nothing decoded) and decoding ahead limited in bytes.
FIFOs and signals need a child process: tests/test_cli_signals.py."""

from __future__ import annotations

import os
import signal
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageFile
import pytest
from test_cli import expected, leftovers, load_npz, run, write_image

from fused_imgproc import CLIPImageProcessor
from fused_imgproc.cli import decode, inputs


@pytest.fixture
def looped(tmp_path) -> tuple[Path, list[Path]]:
    """Two images, and symlinks that loop: sub/up -> .., self -> ., and a file link that points at itself."""
    root = tmp_path / "root"
    images = [write_image(root / "a.png", (30, 40)), write_image(root / "sub" / "b.png", (40, 30), seed=1)]
    (root / "sub" / "up").symlink_to("..")
    (root / "self").symlink_to(".")
    (root / "loop.png").symlink_to("loop.png")
    return root, images


@pytest.fixture
def watchdog():
    """Fails the test instead of hanging the suite: two looping links make a loop-following `**` exponential."""
    def expire(signum, frame):
        raise TimeoutError("still expanding after 60 s: going round a symlink loop?")

    if not hasattr(signal, "SIGALRM"):  # Windows
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_symlink_loops_are_not_followed_round(looped, tmp_path, capsys, watchdog):
    root, images = looped
    for pattern in (f"{root}/**/*.png", f"{root}/**", f"{root}/*/*.png", root):
        out = tmp_path / "o.npz"
        code, _, stderr = run(capsys, "preprocess", pattern, "--out", out)
        pixel_values, listed = load_npz(out)
        real = sorted(os.path.realpath(p) for p in listed)
        assert real == sorted(str(p) for p in images), pattern  # each image once (not 40 times), whatever its path
        assert code == 1 and "loop.png: Too many levels of symbolic links" in stderr and "skipped 1 of" in stderr
        assert np.array_equal(pixel_values, expected([Path(p) for p in listed]))


def test_duplicates_are_found_by_real_path(looped, tmp_path, capsys):
    root, images = looped
    (tmp_path / "link.png").symlink_to(images[0])
    out = tmp_path / "o.npz"
    code, _, stderr = run(capsys, "preprocess", images[0], root / "sub" / "up" / "a.png", tmp_path / "link.png",
                          root / "self" / "sub" / "b.png", images[1], "--out", out)
    assert code == 0, stderr
    assert load_npz(out)[1] == [str(images[0]), str(root / "self" / "sub" / "b.png")]


def test_symlinked_folders_are_walked_once(tmp_path, capsys):
    image = write_image(tmp_path / "elsewhere" / "c.png", (30, 40))
    write_image(tmp_path / "root" / "a.png", (30, 40), seed=1)
    (tmp_path / "root" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "root" / "again").symlink_to(tmp_path / "elsewhere")
    code, _, stderr = run(capsys, "preprocess", tmp_path / "root", "--out", tmp_path / "o.npz")
    listed = load_npz(tmp_path / "o.npz")[1]
    assert code == 0 and stderr == "" and len(listed) == 2 and str(tmp_path / "root" / "a.png") in listed
    assert {os.path.realpath(p) for p in listed} == {str(image.resolve()), str(tmp_path / "root" / "a.png")}


@pytest.fixture
def locked(tmp_path, monkeypatch) -> Path:
    """A subfolder that cannot be listed: mode 000, or, for root (who reads it anyway), os.scandir refusing it."""
    folder = tmp_path / "root" / "locked"
    write_image(folder / "hidden.png", (30, 40))
    folder.chmod(0)
    if os.access(folder, os.R_OK):
        scandir = os.scandir

        def refusing(path="."):
            if os.path.realpath(path) == str(folder):
                raise PermissionError(13, "Permission denied", str(path))
            return scandir(path)

        monkeypatch.setattr(os, "scandir", refusing)
    yield folder
    folder.chmod(0o755)


def test_unreadable_subfolder_is_reported_and_counted(tmp_path, capsys, locked):
    image = write_image(tmp_path / "root" / "open" / "a.png", (30, 40))
    for k, pattern in enumerate((tmp_path / "root", f"{tmp_path}/root/**/*.png", f"{tmp_path}/root/*/*.png")):
        code, _, stderr = run(capsys, "preprocess", pattern, "--out", tmp_path / f"{k}.npz")
        assert code == 1 and f"skipping {locked}: cannot read folder: Permission denied" in stderr, pattern
        assert "skipped 1 of 2 input(s)" in stderr
        assert load_npz(tmp_path / f"{k}.npz")[1] == [str(image)]
    code, _, stderr = run(capsys, "preprocess", locked, "--out", tmp_path / "x.npz")
    assert code == 1 and "cannot read folder: Permission denied" in stderr and "nothing written" in stderr
    assert "folder contains no images" not in stderr


def test_special_files_are_skipped_by_kind(tmp_path):
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    paths, problems = inputs.expand_inputs([os.devnull, str(tmp_path / "gone.png"), str(tmp_path / "none.png")])
    assert paths == [] and problems == [
        (os.devnull, "not a regular file (a character device): not opened"),
        (str(tmp_path / "gone.png"), "broken symbolic link"),
        (str(tmp_path / "none.png"), "no such file or directory"),
    ]


# --- pixels and bytes -----------------------------------------------------------------------------------------


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG header declaring `width` x `height` 1-bit pixels, with (far too little) data: tiny on disk,
    billions of pixels for whoever decodes it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def test_images_above_max_pixels_are_skipped_without_decoding(tmp_path, capsys, monkeypatch):
    small = write_image(tmp_path / "in" / "small.png", (30, 40))
    wide = tmp_path / "in" / "wide.png"
    PIL.Image.new("1", (3000, 2000)).save(wide)
    bomb = png_header_only(tmp_path / "in" / "bomb.png", 100_000, 100_000)  # 10**10 pixels in 100 bytes
    decoded = []
    original_load = PIL.ImageFile.ImageFile.load

    def spy(self):
        decoded.append(self.size)
        return original_load(self)

    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", spy)
    code, _, stderr = run(capsys, "preprocess", tmp_path / "in", "--max-pixels", 1_000_000, "--out", tmp_path / "o.npz")
    assert code == 1 and load_npz(tmp_path / "o.npz")[1] == [str(small)]
    assert f"skipping {wide}: 3000x2000 image (6000000 pixels) is above --max-pixels 1000000; not decoded" in stderr
    assert f"skipping {bomb}: 100000x100000 image (10000000000 pixels) is above --max-pixels 1000000" in stderr
    assert (3000, 2000) not in decoded and (100_000, 100_000) not in decoded and (40, 30) in decoded
    # The default limit, 2**28 pixels, lets the 6-megapixel image through and still stops the bomb.
    code, _, stderr = run(capsys, "preprocess", tmp_path / "in", "--out", tmp_path / "o.npz")
    assert code == 1 and load_npz(tmp_path / "o.npz")[1] == [str(small), str(wide)]
    assert f"{bomb}: 100000x100000 image (10000000000 pixels) is above --max-pixels {2**28}" in stderr
    assert (100_000, 100_000) not in decoded and PIL.Image.MAX_IMAGE_PIXELS is not None


def test_max_pixels_replaces_pillows_bomb_check(tmp_path):
    bomb = str(png_header_only(tmp_path / "bomb.png", 20_000, 10_000))  # 200 Mpx: Pillow refuses to open it
    with pytest.raises(PIL.Image.DecompressionBombError):
        decode.probe(bomb, None)
    before = PIL.Image.MAX_IMAGE_PIXELS
    with decode.pillow_bomb_check_off():
        assert decode.probe(bomb, 2 * 10**8) == (20_000, 10_000)
        with pytest.raises(decode.Skip, match="above --max-pixels 199999999; not decoded"):
            decode.probe(bomb, 2 * 10**8 - 1)
    assert PIL.Image.MAX_IMAGE_PIXELS == before


def test_an_image_that_changed_since_its_header_was_read_is_skipped(tmp_path):
    path = str(write_image(tmp_path / "a.png", (30, 40)))
    assert decode.load_image(path, None, (40, 30)).size == (40, 30)
    with pytest.raises(decode.Skip, match=r"the file changed while it was read \(size \(50, 30\), then \(40, 30\)\)"):
        decode.load_image(path, None, (50, 30))


def test_decoding_ahead_stays_within_the_byte_budget(tmp_path, monkeypatch):
    paths = [str(write_image(tmp_path / f"{k:02}.png", (100, 100), seed=k)) for k in range(12)]
    per_image = 100 * 100 * decode.BYTES_PER_PIXEL
    started, original = [], decode.load_image
    monkeypatch.setattr(decode, "load_image", lambda *args: started.append(args[0]) or original(*args))
    batches, released = [], 0
    for images, names, count in decode.decoded_batches(paths, None, batch_size=8, max_pixels=None,
                                                       max_decoded_bytes=5 * per_image):
        assert len(started) - released <= 5  # decoded or decoding, not yet done with: within the budget
        assert len(images) == count == len(names) <= 2  # a batch holds at most half of the budget
        batches.append(names)
        released += count
    assert [name for names in batches for name in names] == paths


def test_stopping_early_does_not_wait_for_a_stuck_read(tmp_path, monkeypatch):
    """An error or a signal in the consumer closes the batches; the cleanup must not wait for a read that hangs."""
    paths = [str(write_image(tmp_path / f"{k}.png", (30, 40), seed=k)) for k in range(2)]
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    original = decode.load_image

    def stuck_on_the_second(path, *args):
        if path == paths[1]:
            started.set()
            release.wait(30)
            finished.set()
        return original(path, *args)

    monkeypatch.setattr(decode, "load_image", stuck_on_the_second)
    batches = decode.decoded_batches(paths, None, batch_size=1, max_pixels=None, max_decoded_bytes=2**20)
    try:
        assert next(batches)[1] == [paths[0]]
        assert started.wait(30)  # the second is being read meanwhile, and hangs
        batches.close()
        assert not finished.is_set()  # close() came back while the read still hangs
    finally:
        release.set()


def test_max_decoded_mib_cuts_batches_and_an_image_larger_than_it_is_processed_alone(tmp_path, capsys, monkeypatch):
    paths = [write_image(tmp_path / "in" / f"{k}.png", (300, 300), seed=k) for k in range(3)]  # 0.34 MiB each
    paths.append(write_image(tmp_path / "in" / "3.png", (600, 600), seed=3))  # 1.37 MiB: over the whole budget
    sizes, original = [], CLIPImageProcessor.preprocess

    def spy(self, images, **kwargs):
        sizes.append(len(images))
        return original(self, images, **kwargs)

    monkeypatch.setattr(CLIPImageProcessor, "preprocess", spy)
    code, _, stderr = run(capsys, "preprocess", tmp_path / "in", "--max-decoded-mib", 1, "-q", "--out",
                          tmp_path / "o.npz")
    assert code == 0, stderr
    assert sizes == [3, 1, 1, 1, 1, 1]  # the config's probe, the option check, then one image per batch (0.5 MiB)
    monkeypatch.undo()
    pixel_values, listed = load_npz(tmp_path / "o.npz")
    assert listed == [str(p) for p in paths] and np.array_equal(pixel_values, expected(paths))
    assert leftovers(tmp_path, "in") == ["o.npz"]
