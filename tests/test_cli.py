"""The `fused-imgproc` command line (the fused_imgproc/cli/ package), run in-process through `cli.main([...])`."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from fake_hub import fake_hub, point_huggingface_hub_at  # noqa: F401  (fake_hub: a pytest fixture)

from fused_imgproc import AutoImageProcessor, CLIPImageProcessor, cli
from fused_imgproc.cli import preprocess as cli_preprocess
from fused_imgproc.cli.files import SAMPLES_DIR

FORMATS = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "GIF", ".bmp": "BMP", ".tiff": "TIFF"}


def write_image(path: Path, size=(30, 40), mode="RGB", seed=0) -> Path:
    """A random image (height, width) = size, saved in the format of `path`'s extension."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(array[..., 0] if channels == 1 else array, mode).save(path)
    return path


def open_images(paths) -> list:
    images = []
    for path in paths:
        with PIL.Image.open(path) as image:
            image.load()
        images.append(image)
    return images


def expected(paths, processor=None, **kwargs) -> np.ndarray:
    processor = processor or CLIPImageProcessor()
    return processor(open_images(paths), return_tensors="np", **kwargs).pixel_values


def load_npz(path) -> tuple[np.ndarray, list[str]]:
    with np.load(path, allow_pickle=False) as data:
        return data["pixel_values"], list(data["paths"])


def read_safetensors(path) -> tuple[dict, dict]:
    """A minimal reader of the format (independent of the writer): bfloat16 comes back as uint16 bits."""
    kinds = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "BF16": "<u2"}
    data = Path(path).read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    metadata = header.pop("__metadata__")
    body = data[8 + length:]
    return metadata, {
        name: np.frombuffer(body[i["data_offsets"][0]:i["data_offsets"][1]], kinds[i["dtype"]]).reshape(i["shape"])
        for name, i in header.items()
    }


@pytest.fixture
def mixed(tmp_path) -> tuple[Path, list[Path]]:
    """A folder tree with one image per format (in subfolders too), a grayscale and an RGBA image, and a text
    file; returns (root, the images in the order a folder walk gives them)."""
    root = tmp_path / "images"
    deeper = root / "sub" / "deeper"
    paths = [write_image(deeper / f"c{ext}", (20 + k, 37 - k), seed=k) for k, ext in enumerate(FORMATS)]
    paths += [write_image(root / "A.PNG", (25, 25), "L", seed=10), write_image(root / "b.png", (31, 19), "RGBA", 11)]
    (root / "notes.txt").write_text("not an image")
    return root, sorted(paths, key=str)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep and p.is_file())


# --- preprocess: results -------------------------------------------------------------------------------------


def test_folder_matches_processor_bit_exactly(mixed, tmp_path, capsys):
    root, paths = mixed
    out = tmp_path / "out.npz"
    code, stdout, stderr = run(capsys, "preprocess", root, "--out", out)
    assert code == 0, stderr
    pixel_values, listed = load_npz(out)
    assert listed == [str(p) for p in paths]  # recursive, sorted, every format, the .txt left out
    assert {p.suffix.lower() for p in paths} == set(FORMATS) | {".png"}
    reference = expected(paths)
    assert pixel_values.dtype == reference.dtype == np.float32 and np.array_equal(pixel_values, reference)
    assert f"preprocessed {len(paths)} image(s)" in stdout and "(8, 3, 224, 224)" in stdout and str(out) in stdout
    assert "skipping" not in stderr
    assert leftovers(tmp_path, "out.npz") == []  # no scratch or temporary file left behind


def test_globs_and_explicit_files_in_order(mixed, tmp_path, capsys):
    root, _ = mixed
    gif = root / "sub" / "deeper" / "c.gif"
    out = tmp_path / "out.npz"
    code, _, stderr = run(capsys, "preprocess", gif, f"{root}/**/*.jp*g", f"{root}/*.png", root / "notes.txt",
                          f"{root}/sub/deeper/*.gif", "--out", out)
    # notes.txt is taken (explicit) but cannot be read; the gif matched by the last glob is already listed.
    assert code == 1 and "notes.txt" in stderr and "cannot read image" in stderr
    pixel_values, listed = load_npz(out)
    order = [gif, root / "sub" / "deeper" / "c.jpg", root / "b.png"]  # glob: case-sensitive *.png, not A.PNG
    assert listed == [str(p) for p in order]
    assert np.array_equal(pixel_values, expected(order))


def test_corrupt_file_and_missing_paths_are_reported_and_skipped(mixed, tmp_path, capsys):
    root, paths = mixed
    corrupt = root / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    truncated = root / "truncated.png"
    truncated.write_bytes((root / "b.png").read_bytes()[:60])
    missing, nothing = tmp_path / "missing.png", f"{tmp_path}/nowhere/*.jpg"
    out = tmp_path / "out.npz"
    code, stdout, stderr = run(capsys, "preprocess", root, missing, nothing, "--out", out)
    assert code == 1
    for name in (corrupt, truncated, missing, nothing):
        assert f"skipping {name}" in stderr
    assert "skipped 4 of" in stderr
    pixel_values, listed = load_npz(out)
    assert listed == [str(p) for p in paths]
    assert np.array_equal(pixel_values, expected(paths))
    assert f"preprocessed {len(paths)} image(s)" in stdout


def test_nothing_readable(tmp_path, capsys):
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    code, _, stderr = run(capsys, "preprocess", tmp_path / "bad.jpg", tmp_path / "nope", "--out", tmp_path / "o.npz")
    assert code == 1 and "nothing written" in stderr and "bad.jpg" in stderr
    assert not (tmp_path / "o.npz").exists() and leftovers(tmp_path, "bad.jpg") == []


def test_an_image_the_processor_rejects_is_skipped(mixed, tmp_path, capsys, monkeypatch):
    root, paths = mixed
    original = CLIPImageProcessor.preprocess

    def picky(self, images, **kwargs):
        if any(getattr(image, "size", None) == (19, 31) for image in images):
            raise ValueError("an image this processor does not like")
        return original(self, images, **kwargs)

    monkeypatch.setattr(CLIPImageProcessor, "preprocess", picky)
    code, _, stderr = run(capsys, "preprocess", root, "--out", tmp_path / "out.npz")
    assert code == 1 and f"skipping {root / 'b.png'}: cannot preprocess: an image this processor" in stderr
    kept = [p for p in paths if p.name != "b.png"]
    monkeypatch.undo()
    pixel_values, listed = load_npz(tmp_path / "out.npz")
    assert listed == [str(p) for p in kept] and np.array_equal(pixel_values, expected(kept))


def test_more_images_than_one_batch(tmp_path, capsys, monkeypatch):
    paths = [write_image(tmp_path / "in" / f"{k}.png", (30 + 7 * k, 50 - 3 * k), seed=k) for k in range(5)]
    batches = []
    original = CLIPImageProcessor.preprocess

    def spy(self, images, **kwargs):
        batches.append(len(images))
        return original(self, images, **kwargs)

    monkeypatch.setattr(CLIPImageProcessor, "preprocess", spy)
    code, _, stderr = run(capsys, "preprocess", tmp_path / "in", "--batch-size", 2, "--out", tmp_path / "o.npz")
    assert code == 0
    # The config's output-shape probe and the one-image check of the options, then streamed in batches of 2.
    assert batches == [len(cli_preprocess.PROBE_SIZES), 1, 2, 2, 1]
    assert "5/5" in stderr  # the progress bar (more than one batch)
    monkeypatch.undo()
    pixel_values, listed = load_npz(tmp_path / "o.npz")
    assert listed == [str(p) for p in paths] and np.array_equal(pixel_values, expected(paths))
    code, _, stderr = run(capsys, "preprocess", tmp_path / "in", "--batch-size", 2, "-q", "--out", tmp_path / "o.npz")
    assert code == 0 and stderr == ""


def test_samples_are_the_main_job(tmp_path, capsys):
    out = tmp_path / "demo.npz"
    code, stdout, _ = run(capsys, "preprocess", "--samples", "--out", out)
    assert code == 0
    pixel_values, listed = load_npz(out)
    samples = sorted(SAMPLES_DIR.iterdir())
    assert listed == [str(p) for p in samples] and len(samples) == 7
    assert {p.suffix for p in samples} == set(FORMATS)
    assert np.array_equal(pixel_values, expected(samples))
    for text in ("preprocessed 7 image(s)", "(7, 3, 224, 224)", "float32", "backend: numpy", str(out)):
        assert text in stdout


def test_samples_match_transformers(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "demo.npz"
    assert run(capsys, "preprocess", "--samples", "--out", out)[0] == 0
    samples = sorted(SAMPLES_DIR.iterdir())
    reference = transformers.CLIPImageProcessorPil()(open_images(samples), return_tensors="np").pixel_values
    assert np.array_equal(load_npz(out)[0], reference)


# --- preprocess: formats and options -----------------------------------------------------------------------


def test_safetensors_float16(mixed, tmp_path, capsys):
    root, paths = mixed
    out = tmp_path / "out.safetensors"
    code, _, _ = run(capsys, "preprocess", root, "--out", out, "--dtype", "float16")
    assert code == 0
    metadata, tensors = read_safetensors(out)
    assert json.loads(metadata["paths"]) == [str(p) for p in paths]
    assert np.array_equal(tensors["pixel_values"], expected(paths, dtype="float16"))
    assert tensors["pixel_values"].dtype == np.float16
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    assert np.array_equal(safetensors_numpy.load_file(str(out))["pixel_values"], tensors["pixel_values"])


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_bfloat16(mixed, tmp_path, capsys, suffix):
    torch = pytest.importorskip("torch")
    root, paths = mixed
    out = tmp_path / f"out{suffix}"
    assert run(capsys, "preprocess", root, "--out", out, "--dtype", "bfloat16")[0] == 0
    reference = CLIPImageProcessor()(open_images(paths), return_tensors="pt", dtype=torch.bfloat16).pixel_values
    if suffix == ".pt":
        saved = torch.load(out, weights_only=True)
        values, listed = saved["pixel_values"], saved["paths"]
    else:
        metadata, tensors = read_safetensors(out)
        values = torch.from_numpy(tensors["pixel_values"].copy()).view(torch.bfloat16)
        listed = json.loads(metadata["paths"])
        safetensors_torch = pytest.importorskip("safetensors.torch")
        assert torch.equal(safetensors_torch.load_file(str(out))["pixel_values"], reference)
    assert values.dtype == torch.bfloat16 and torch.equal(values, reference)
    assert listed == [str(p) for p in paths]


def test_pt_float32(mixed, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    root, paths = mixed
    assert run(capsys, "preprocess", root, "--out", tmp_path / "o.pt")[0] == 0
    saved = torch.load(tmp_path / "o.pt", weights_only=True)
    assert np.array_equal(saved["pixel_values"].numpy(), expected(paths)) and saved["paths"] == [str(p) for p in paths]


def test_config_from_fake_hub(mixed, tmp_path, capsys, fake_hub):  # noqa: F811
    root, paths = mixed
    config = {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 40}, "crop_size": 32,
              "resample": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}
    fake_hub.commit("org/tiny-clip", {"preprocessor_config.json": config})
    out = tmp_path / "out.npz"
    code, stdout, stderr = run(capsys, "preprocess", root, "--config", "org/tiny-clip", "--out", out)
    assert code == 0, stderr
    pixel_values, _ = load_npz(out)
    assert pixel_values.shape == (len(paths), 3, 32, 32) and "org/tiny-clip" in stdout
    assert np.array_equal(pixel_values, expected(paths, AutoImageProcessor.from_pretrained("org/tiny-clip")))

    code, _, stderr = run(capsys, "preprocess", root, "--config", "org/missing", "--out", tmp_path / "x.npz")
    assert code == 2 and "cannot load --config 'org/missing'" in stderr and not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("config", ["ViT warp", "ConvNeXt square crop", "crop only"])
def test_config_without_center_crop_but_one_output_shape(mixed, tmp_path, capsys, config):
    from fused_imgproc import ConvNextImageProcessor, ViTImageProcessor

    root, paths = mixed
    processor, shape = {
        "ViT warp": (ViTImageProcessor(size={"height": 16, "width": 20}, do_convert_rgb=True), (3, 16, 20)),
        "ConvNeXt square crop": (ConvNextImageProcessor(size={"shortest_edge": 32}, do_convert_rgb=True),
                                 (3, 32, 32)),
        "crop only": (CLIPImageProcessor(do_resize=False, crop_size=24), (3, 24, 24)),
    }[config]
    assert not processor.do_center_crop or config == "crop only"
    processor.save_pretrained(tmp_path / "cfg")
    out = tmp_path / "o.npz"
    code, stdout, stderr = run(capsys, "preprocess", root, "--config", tmp_path / "cfg", "--out", out)
    assert code == 0, stderr
    pixel_values, listed = load_npz(out)
    assert pixel_values.shape == (len(paths), *shape) and f"{(len(paths), *shape)}" in stdout
    assert listed == [str(p) for p in paths] and np.array_equal(pixel_values, expected(paths, processor))


@pytest.mark.parametrize("config", ["shortest edge", "max size", "no resize"])
def test_config_whose_output_shape_varies_is_refused_before_reading(mixed, tmp_path, capsys, no_reading, config):
    root, _ = mixed
    kwargs, reason = {
        "shortest edge": ({"do_center_crop": False, "size": 16},
                          "a shortest_edge resize without a center crop gives one shape per aspect ratio"),
        "max size": ({"do_center_crop": False, "size": {"max_height": 16, "max_width": 16}},
                     "a max_height/max_width resize without a center crop"),
        "no resize": ({"do_center_crop": False, "do_resize": False}, "each image keeps its own size"),
    }[config]
    (tmp_path / "cfg").mkdir()
    CLIPImageProcessor(**kwargs).save_pretrained(tmp_path / "cfg")
    out = tmp_path / "out" / "o.npz"
    out.parent.mkdir()
    code, stdout, stderr = run(capsys, "preprocess", root, "--config", tmp_path / "cfg", "--out", out)
    assert code == 2 and stdout == "" and "Traceback" not in stderr
    assert "fused-imgproc: error: this config gives pixel_values whose shape depends on the image" in stderr
    assert reason in stderr and "a 24x40 image gives (3, " in stderr and "do_center_crop" in stderr
    assert list(out.parent.iterdir()) == []  # no output, no scratch file


def test_patch_row_config_is_refused_before_reading(mixed, tmp_path, capsys, no_reading):
    """Qwen2-VL gives patch rows (a count per image) plus image_grid_thw: not one (C, H, W) array per image."""
    root, _ = mixed
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "Qwen2VLImageProcessorFast", "min_pixels": 3136, "max_pixels": 100000}))
    out = tmp_path / "out" / "o.npz"
    out.parent.mkdir()
    code, stdout, stderr = run(capsys, "preprocess", root, "--config", tmp_path / "cfg", "--out", out)
    assert code == 2 and stdout == "" and "Traceback" not in stderr
    assert "fused-imgproc: error: Qwen2VLImageProcessor gives pixel_values, image_grid_thw" in stderr
    assert "use the Python API" in stderr and list(out.parent.iterdir()) == []


def test_config_that_cannot_preprocess_is_refused_before_reading(mixed, tmp_path, capsys, no_reading):
    root, _ = mixed
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "CLIPImageProcessor", "size": {"longest_edge": 16}, "do_center_crop": False}))
    code, _, stderr = run(capsys, "preprocess", root, "--config", tmp_path / "cfg", "--out", tmp_path / "o.npz")
    assert code == 2 and "fused-imgproc: error: cannot preprocess with this config: " in stderr
    assert "longest_edge" in stderr and not (tmp_path / "o.npz").exists()


def test_images_that_still_differ_in_shape_stop_the_run(tmp_path, capsys):
    """A fixed geometry, but no RGB conversion and no normalize: an RGBA image gives 4 channels, not 3."""
    from fused_imgproc import ViTImageProcessor

    ViTImageProcessor(size={"height": 8, "width": 8}, do_normalize=False).save_pretrained(tmp_path / "cfg")
    write_image(tmp_path / "in" / "a.png", (20, 30))
    write_image(tmp_path / "in" / "b.png", (20, 30), "RGBA")
    out = tmp_path / "out" / "o.npz"
    out.parent.mkdir()
    code, _, stderr = run(capsys, "preprocess", tmp_path / "in", "--config", tmp_path / "cfg", "--batch-size", 1,
                          "--out", out)
    assert code == 2 and "gives pixel_values of shape (4, 8, 8), earlier images (3, 8, 8)" in stderr
    assert "do_convert_rgb" in stderr and list(out.parent.iterdir()) == []


def test_triton_backend_through_the_interpreter(mixed, tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 (set by conftest.py when there is no GPU)")
    root, paths = mixed
    (tmp_path / "cfg").mkdir()
    CLIPImageProcessor(size=12, crop_size=8).save_pretrained(tmp_path / "cfg")  # small: the interpreter is slow
    out = tmp_path / "o.npz"
    code, stdout, _ = run(capsys, "preprocess", root, "--config", tmp_path / "cfg", "--backend", "triton", "--out", out)
    assert code == 0 and "backend: triton on cpu" in stdout
    assert np.array_equal(load_npz(out)[0], expected(paths, CLIPImageProcessor(size=12, crop_size=8)))


# --- preprocess: usage errors (nothing is read, nothing is written) -------------------------------------------


@pytest.fixture
def no_reading(monkeypatch):
    def fail(path):
        pytest.fail(f"{path} was opened although the command should have stopped first")  # not an Exception

    monkeypatch.setattr("fused_imgproc.cli.decode.open_regular", fail)


@pytest.mark.parametrize("case", ["missing folder", "file as folder", "is a folder", "suffix", "bf16 npz", "read-only"])
def test_unwritable_output_fails_before_any_work(mixed, tmp_path, capsys, monkeypatch, no_reading, case):
    root, _ = mixed
    out, message = {
        "missing folder": (tmp_path / "no" / "such" / "out.npz", "does not exist"),
        "file as folder": (root / "b.png" / "out.npz", "is not a folder"),
        "is a folder": (tmp_path, "is a folder"),
        "suffix": (tmp_path / "out.csv", ".npz, .safetensors, .pt"),
        "bf16 npz": (tmp_path / "out.npz", "bfloat16 cannot be stored in .npz"),
        "read-only": (tmp_path / "ro" / "out.npz", "Permission denied"),
    }[case]
    extra = ["--dtype", "bfloat16"] if case == "bf16 npz" else []
    if case == "read-only":
        out.parent.mkdir()
        out.parent.chmod(0o555)
        if os.access(out.parent, os.W_OK):  # root: a read-only folder is still writable, so make it fail
            def denied(*args, **kwargs):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr("fused_imgproc.cli.files.OutputWriter._create", denied)
    try:
        code, stdout, stderr = run(capsys, "preprocess", root, "--out", out, *extra)
    finally:
        if case == "read-only":
            out.parent.chmod(0o755)
    assert code == 2 and stdout == ""
    assert stderr.startswith("fused-imgproc: error: ") and message in stderr and "Traceback" not in stderr
    assert not out.exists() or out.is_dir()


def test_usage_errors(tmp_path, capsys, no_reading):
    assert run(capsys, "preprocess", "--out", tmp_path / "o.npz")[0] == 2  # no inputs
    code, _, stderr = run(capsys, "preprocess", tmp_path, "--batch-size", "0", "--out", tmp_path / "o.npz")
    assert code == 2 and "positive integer" in stderr
    assert run(capsys, "preprocess", tmp_path, "--dtype", "int8", "--out", tmp_path / "o.npz")[0] == 2
    assert run(capsys)[0] == 2  # no command
    assert run(capsys, "--help")[0] == 0


def test_device_is_checked_up_front(mixed, tmp_path, capsys, no_reading):
    root, _ = mixed
    for device in ("gpu", "cuda:x", "cpu:0"):
        code, _, stderr = run(capsys, "preprocess", root, "--device", device, "--out", tmp_path / "o.npz")
        error = stderr.strip().splitlines()[-1]
        assert code == 2 and f"argument --device: expected cpu, cuda or cuda:N (N: a GPU index), got {device!r}" in error
    assert leftovers(tmp_path, "images") == []


@pytest.mark.parametrize("case", ["no GPU", "no torch", "GPU index", "numpy backend"])
def test_unavailable_device_names_the_device_and_suggests_cpu(mixed, tmp_path, capsys, monkeypatch, no_reading, case):
    root, _ = mixed
    device, message = {
        "no GPU": ("cuda", "--device cuda: no CUDA GPU is available (torch "),
        "no torch": ("cuda:0", "--device cuda:0 needs torch with CUDA, which is not installed"),
        "GPU index": ("cuda:3", "--device cuda:3: this machine has 1 CUDA GPU(s), cuda:0 to cuda:0"),
        "numpy backend": ("cuda", "--backend numpy runs on the CPU, not on --device cuda: use --device cpu"),
    }[case]
    if case == "no torch":
        monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    elif case != "numpy backend":
        torch = pytest.importorskip("torch")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: case == "GPU index")
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    extra = ["--backend", "numpy"] if case == "numpy backend" else []
    code, stdout, stderr = run(capsys, "preprocess", root, "--device", device, *extra, "--out", tmp_path / "o.npz")
    assert code == 2 and stdout == "" and stderr.startswith(f"fused-imgproc: error: {message}")
    assert "--device cpu" in stderr or case == "GPU index"
    assert "--backend triton" not in stderr and leftovers(tmp_path, "images") == []


@pytest.mark.parametrize("value", ["./no_such_folder", "no/such/folder", "missing.json", "~/no_such_folder"])
def test_missing_local_config_is_not_a_repo_id(mixed, tmp_path, capsys, monkeypatch, no_reading, fake_hub, value):  # noqa: F811
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    root, _ = mixed
    code, _, stderr = run(capsys, "preprocess", root, "--config", value, "--out", tmp_path / "o.npz")
    assert code == 2 and stderr == f"fused-imgproc: error: --config {value!r}: no such file or folder\n"
    assert fake_hub.requests == [] and not (tmp_path / "o.npz").exists()  # never asked the Hub


def test_unreachable_hub_hints_at_offline_mode(mixed, tmp_path, capsys, monkeypatch, no_reading):
    from huggingface_hub.utils import close_session

    root, _ = mixed
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound but never listening: every connection is refused
    (tmp_path / "cache").mkdir()
    (tmp_path / "tokens").mkdir()
    point_huggingface_hub_at(monkeypatch, f"http://127.0.0.1:{closed.getsockname()[1]}", str(tmp_path / "cache"),
                             str(tmp_path / "tokens"))
    sleeps = []
    monkeypatch.setattr(time, "sleep", sleeps.append)  # huggingface_hub's retries, without their waits
    try:
        code, stdout, stderr = run(capsys, "preprocess", root, "--config", "org/model", "--out", tmp_path / "o.npz")
    finally:
        closed.close()
        close_session()
    assert code == 2 and stdout == "" and sleeps  # huggingface_hub did retry
    assert stderr.count("fused-imgproc: the Hub does not answer; huggingface_hub retries") == 1
    error = stderr.strip().splitlines()[-1]
    assert error.startswith("fused-imgproc: error: cannot load --config 'org/model': ")
    assert "no network? set HF_HUB_OFFLINE=1" in error and "local folder" in error
    assert not (tmp_path / "o.npz").exists()


def test_offline_mode_without_the_config_in_cache(mixed, tmp_path, capsys, monkeypatch, no_reading, fake_hub):  # noqa: F811
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    root, _ = mixed
    code, _, stderr = run(capsys, "preprocess", root, "--config", "org/model", "--out", tmp_path / "o.npz")
    assert code == 2 and "cannot load --config 'org/model'" in stderr
    assert "HF_HUB_OFFLINE is set, so only the local cache is read" in stderr and fake_hub.requests == []


@pytest.mark.parametrize("argv", [["preprocess", "--samples", "--dtyp", "float16"], ["preprocess", "--sample"],
                                  ["bench", "--repe", "1"], ["--vers"]])
def test_option_abbreviations_are_refused(tmp_path, capsys, no_reading, argv):
    extra = ["--out", tmp_path / "o.npz"] if argv[0] == "preprocess" else []
    code, stdout, stderr = run(capsys, *argv, *extra)
    assert code == 2 and stdout == "" and not (tmp_path / "o.npz").exists()
    assert f"unrecognized arguments: {argv[-2] if argv[-1] in ('float16', '1') else argv[-1]}" in stderr or (
        argv == ["--vers"] and "required: COMMAND" in stderr)
