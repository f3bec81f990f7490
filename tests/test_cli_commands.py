"""The `fused-imgproc` command line: `info`, `bench` and a closed stdout (the preprocess command is in
test_cli.py), run in-process through `cli.main([...])`."""

from __future__ import annotations

import os
import subprocess
import sys

import PIL.Image
import pytest
from test_cli import leftovers, load_npz, run

from fused_imgproc import cli
from fused_imgproc.cli import bench as cli_bench

# --- info and bench ------------------------------------------------------------------------------------------


def test_info(capsys):
    code, stdout, _ = run(capsys, "info")
    assert code == 0
    for text in ("fused_imgproc 0.1.0", "numpy:", "Pillow:", "huggingface_hub:", "torch:", "transformers:",
                 "numpy:  available", "triton: ", "GPU: ", "samples: "):
        assert text in stdout


def test_bench_with_plot(tmp_path, capsys):
    plot = tmp_path / "bench.png"
    code, stdout, _ = run(capsys, "bench", "--size", "40x30", "--batch-size", 2, "--repeat", 1, "--plot", plot)
    assert code == 0
    assert "fused_imgproc numpy (CPU)" in stdout and "ms/image" in stdout and "triton: " in stdout
    if "transformers CLIPImageProcessorPil" in stdout:
        assert "identical" in stdout and "DIFFERENT" not in stdout
    with PIL.Image.open(plot) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 50


def test_bench_errors(tmp_path, capsys, monkeypatch):
    assert run(capsys, "bench", "--size", "big")[0] == 2
    monkeypatch.setattr(cli_bench, "time_all", lambda *args: pytest.fail("timed although --plot was refused"))
    for plot, message in [(tmp_path / "no" / "b.png", "its folder does not exist"),
                          (tmp_path / "b.svg", ".png, .jpg, .jpeg, .webp"), (tmp_path / "b", "(it has none)")]:
        code, stdout, stderr = run(capsys, "bench", "--no-transformers", "--repeat", 1, "--plot", plot)
        assert code == 2 and stdout == "" and stderr.startswith(f"fused-imgproc: error: cannot write --plot {str(plot)!r}")
        assert message in stderr
    assert leftovers(tmp_path, "") == []


@pytest.mark.parametrize("suffix", [".jpg", ".JPEG", ".webp", ".bmp"])
def test_bench_plot_is_written_in_the_format_its_extension_names(tmp_path, capsys, suffix):
    plot = tmp_path / f"bench{suffix}"
    code, _, _ = run(capsys, "bench", "--size", "20x30", "--batch-size", 1, "--repeat", 1, "--no-transformers",
                     "--plot", plot)
    assert code == 0
    with PIL.Image.open(plot) as image:
        assert image.format == {".jpg": "JPEG", ".JPEG": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}[suffix]
        assert image.mode == "RGB" and image.width >= 900


def test_bench_chart_names_the_machine_the_batch_and_what_was_not_timed(tmp_path, capsys, monkeypatch):
    from PIL import ImageDraw

    drawn, draw_text = [], ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda self, xy, text, *a, **k: (drawn.append(text),
                                                                                     draw_text(self, xy, text, *a, **k)))
    code, stdout, _ = run(capsys, "bench", "--size", "40x30", "--batch-size", 2, "--repeat", 1, "--no-transformers",
                          "--plot", tmp_path / "b.png")
    assert code == 0
    title, batch, machine, missing = drawn[:4]
    assert "ms per image" in title and "lower is better" in title
    assert batch == "batch: 2 random 40x30 uint8 RGB images; median of 1 run(s)"
    assert machine.startswith("machine: ") and f"({os.cpu_count()} CPUs), GPU: " in machine
    assert missing.startswith("not timed: ") and "transformers: skipped (--no-transformers)" in missing
    if "fused_imgproc triton" not in stdout:  # no GPU here: the chart says why triton is missing
        assert "triton: " in missing
    assert "fused_imgproc numpy (CPU)" in drawn
    assert "lower is better" in stdout and machine in stdout.splitlines()  # the table names the machine too


# --- a closed stdout (`fused-imgproc bench | head -1`) ------------------------------------------------------


class ClosedPipe:
    """A stdout whose reader has gone."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self):
        raise OSError("not a real file")


@pytest.mark.parametrize("command", ["info", "bench", "preprocess"])
def test_closed_stdout_ends_quietly(tmp_path, capsys, monkeypatch, command):
    argv = {"info": ["info"], "bench": ["bench", "--size", "20x20", "--batch-size", 1, "--repeat", 1,
                                        "--no-transformers"],
            "preprocess": ["preprocess", "--samples", "--out", tmp_path / "o.npz"]}[command]
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = cli.main([str(a) for a in argv])
    assert not isinstance(sys.stdout, ClosedPipe)
    sys.stdout.write("dropped quietly\n")  # stdout now goes to the null device
    sys.stdout.close()
    assert code == 141
    assert capsys.readouterr().err == ""
    if command == "preprocess":
        assert load_npz(tmp_path / "o.npz")[0].shape == (7, 3, 224, 224)  # the work was done before the summary


def test_closed_stdout_in_a_real_pipe():
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head -0` would
    try:
        done = subprocess.run([sys.executable, "-m", "fused_imgproc", "info"], stdout=write_end,
                              stderr=subprocess.PIPE, timeout=120, check=False)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == b""
