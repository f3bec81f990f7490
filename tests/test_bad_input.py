"""Bad input (docs/BEHAVIOUR.md section 9): every kind gets a clear ValueError / TypeError / OSError naming what is
wrong.

Each case states the exception class we document and a fragment of the message that says what was wrong.
Comments say what transformers' own `CLIPImageProcessorPil` (5.x) does with the same input: where it also
rejects the input we agree on the class of problem; where it silently accepts garbage (inf/NaN outputs, empty
outputs, any dtype) we deliberately raise instead.

Three properties are checked:
- `test_bad_input_raises`: the documented exception and message, and afterwards the (shared) processor still
  gives the same output on a good image with an unchanged configuration;
- `test_bad_call_fails_before_the_backend_runs`: for processor calls, the error comes from validation, before any
  pixel work is handed to a backend (docs/BEHAVIOUR.md section 9: "before any kernel launches");
- `test_no_partial_state_after_every_failure`: one processor goes through every bad call in a row and still works.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import PIL.Image
import pytest

from fused_imgproc import AutoImageProcessor, BackendUnavailableError, CLIPImageProcessor
from fused_imgproc.backends import numpy as numpy_backend

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional for the package, present in the test venv
    torch = None

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"  # set by conftest when there is no GPU
GPUS = torch.cuda.device_count() if torch is not None else 0
# The device backend='triton' cannot use here: the CPU on a GPU machine, CUDA under the interpreter.
WRONG_TRITON_DEVICE = "cuda" if INTERPRETED or not GPUS else "cpu"
ON_GPU = pytest.mark.skipif(GPUS > 0, reason="a CUDA device is available: device='cuda' is valid here")


RNG = np.random.default_rng(1234)
GOOD = RNG.integers(0, 256, (32, 40, 3), dtype=np.uint8)  # HWC uint8, the image every check falls back to
GOOD_FLOAT = GOOD.astype(np.float32) / 255  # floats in [0, 1]


def _needs_torch():
    if torch is None:
        pytest.skip("torch is not installed")
    return torch


def _with(value_at_00, base=GOOD_FLOAT):
    image = base.copy()
    image[0, 0, 0] = value_at_00
    return image


# --- the cases -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """`run(proc, tmp_path)` must raise `exc` with a message matching `match` (a regex, `re.search`)."""

    id: str
    run: Callable
    exc: type[BaseException]
    match: str
    kind: str = "call"  # "call": a processor call on `proc`; "config": loading a config
    marks: tuple = ()
    early_marks: tuple = field(default=())  # marks for test_bad_call_fails_before_the_backend_runs only


def call(**kwargs):
    """A case body: `proc(images, **kwargs)` (the images are kwargs['images'], or a zero-arg callable of them)."""
    images = kwargs.pop("images")

    def run(proc, tmp_path):
        proc(images() if callable(images) else images, **kwargs)

    return run


def load_config(content):
    """A case body: AutoImageProcessor.from_pretrained on a directory holding `content` as its config file."""

    def run(proc, tmp_path):
        text = content if isinstance(content, str) else json.dumps(content)
        (tmp_path / "preprocessor_config.json").write_text(text)
        AutoImageProcessor.from_pretrained(str(tmp_path))

    return run


def _clip_config(**values):
    return {"image_processor_type": "CLIPImageProcessor", **values}


def _cuda_tensor_input(proc, tmp_path):
    t = _needs_torch()
    if not t.cuda.is_available():
        pytest.skip("no CUDA device: a CUDA tensor input cannot be built here")
    proc(t.from_numpy(GOOD).cuda())


def _missing_directory(proc, tmp_path):
    AutoImageProcessor.from_pretrained(str(tmp_path / "does" / "not" / "exist"))


def _directory_without_config(proc, tmp_path):
    (tmp_path / "unrelated.txt").write_text("hello")
    AutoImageProcessor.from_pretrained(str(tmp_path))


def _missing_config_file(proc, tmp_path):
    AutoImageProcessor.from_pretrained(str(tmp_path / "preprocessor_config.json"))


def _torch_call(make_image, **kwargs):
    def run(proc, tmp_path):
        t = _needs_torch()
        proc(make_image(t), **{k: (v(t) if callable(v) else v) for k, v in kwargs.items()})

    return run


EMPTY_IMAGE = r"empty image .*every side must be at least 1"
CHANNELS = r"Images must have 1, 3 or 4 channels, got {}"
NON_FINITE = r"NaN or infinite"
BAD_STD = r"image_std must be finite and non-zero"
BAD_DTYPE = r"Image arrays must hold integers or floats, got dtype {}"
BACKEND_TRITON = (
    r"TRITON_INTERPRET=1 runs the Triton kernels on the CPU|backend='triton' needs a CUDA device|torch sees no CUDA"
    r"|needs torch and triton"
)
DEVICE_NEEDS_GPU = r"TRITON_INTERPRET=1 runs the Triton kernels on the CPU|torch sees no CUDA GPU|needs torch and triton"
OUT_OF_UNIT_RANGE = r"outside the range \[0, 1\]"

CASES = [
    # --- empty inputs. HF 5.x: [] and a (0, H, W, C) batch are *accepted* and give an empty pixel_values; a 0-row
    # or 0-column image dies with ZeroDivisionError. We deliberately raise ValueError for all of them.
    Case("empty-list", call(images=[]), ValueError, r"empty list of images"),
    Case("empty-tuple", call(images=()), ValueError, r"empty list of images"),
    Case("nested-empty-list", call(images=[[]]), ValueError, r"empty list of images"),
    Case("empty-4d-batch", call(images=np.zeros((0, 32, 32, 3), np.uint8)), ValueError, r"empty batch.*0 images"),
    Case("zero-rows", call(images=np.zeros((0, 32, 3), np.uint8)), ValueError, EMPTY_IMAGE),
    Case("zero-cols", call(images=np.zeros((32, 0, 3), np.uint8)), ValueError, EMPTY_IMAGE),
    Case("zero-cols-channels-first", call(images=np.zeros((3, 32, 0), np.uint8)), ValueError, EMPTY_IMAGE),
    Case("zero-size-pil", call(images=lambda: PIL.Image.new("RGB", (0, 0))), ValueError, EMPTY_IMAGE),
    Case("zero-size-torch", _torch_call(lambda t: t.zeros(3, 0, 8)), ValueError, EMPTY_IMAGE),
    # A resize whose output has a 0 side (1x2000 image, longest edge capped at 300 -> 0 x 300). HF: ValueError
    # "height and width must be > 0".
    Case(
        "resize-to-empty",
        call(
            images=np.zeros((1, 2000, 3), np.uint8),
            input_data_format="channels_last",
            size={"shortest_edge": 224, "longest_edge": 300},
        ),
        ValueError,
        r"gives an empty image of size \(0, 300\)",
    ),
    # --- wrong number of dimensions. HF: ValueError "Could not make a flat list of images" (printing the array).
    Case("1d-array", call(images=np.zeros((32,), np.uint8)), ValueError, r"3 dimensions.*shape \(32,\)"),
    Case("2d-array", call(images=np.zeros((32, 40), np.uint8)), ValueError, r"3 dimensions.*shape \(32, 40\)"),
    Case("5d-array", call(images=np.zeros((1, 2, 32, 40, 3), np.uint8)), ValueError, r"shape \(1, 2, 32, 40, 3\)"),
    Case("2d-array-in-list", call(images=[GOOD, np.zeros((8, 8), np.uint8)]), ValueError, r"3 dimensions.*\(8, 8\)"),
    Case("5d-array-in-list", call(images=[np.zeros((1, 1, 8, 8, 3), np.uint8)]), ValueError, r"\(1, 1, 8, 8, 3\)"),
    Case("2d-torch-tensor", _torch_call(lambda t: t.zeros(8, 8)), ValueError, r"3 dimensions.*\(8, 8\)"),
    # --- channel counts other than 1/3/4, with the layout given so inference cannot reinterpret the shape.
    # HF: a confusing "mean must have 2 elements" ValueError or a Pillow TypeError "Cannot handle this data type".
    Case(
        "2-channels-last",
        call(images=np.zeros((32, 40, 2), np.uint8), input_data_format="channels_last"),
        ValueError,
        CHANNELS.format(2),
    ),
    Case(
        "2-channels-first",
        call(images=np.zeros((2, 32, 40), np.uint8), input_data_format="channels_first", do_convert_rgb=False),
        ValueError,
        CHANNELS.format(2),
    ),
    Case(
        "5-channels-last",
        call(images=np.zeros((32, 40, 5), np.uint8), input_data_format="channels_last"),
        ValueError,
        CHANNELS.format(5),
    ),
    Case(
        "5-channels-first",
        call(images=np.zeros((5, 32, 40), np.uint8), input_data_format="channels_first", do_convert_rgb=False),
        ValueError,
        CHANNELS.format(5),
    ),
    Case(
        "2-channels-pil-LA",
        call(images=lambda: PIL.Image.new("LA", (8, 8)), do_convert_rgb=False),
        ValueError,
        CHANNELS.format(2),
    ),
    # --- non-finite pixels. With a resize HF raises a "[0, 1] range" ValueError showing nan/inf; without a resize
    # HF silently returns NaN outputs. We deliberately raise in both cases.
    Case("nan-float-image", call(images=_with(np.nan)), ValueError, NON_FINITE),
    Case("inf-float-image", call(images=_with(np.inf)), ValueError, NON_FINITE),
    Case("neg-inf-float-image", call(images=_with(-np.inf)), ValueError, NON_FINITE),
    Case("nan-float-no-resize", call(images=_with(np.nan), do_resize=False), ValueError, NON_FINITE),
    Case("nan-float16-4d-batch", call(images=np.full((2, 8, 8, 3), np.nan, np.float16)), ValueError, NON_FINITE),
    Case("nan-torch-tensor", _torch_call(lambda t: t.full((3, 8, 8), float("nan"))), ValueError, NON_FINITE),
    Case(
        # A mode-"F" PIL image holding NaN, kept as 1 channel (scalar mean/std) and not resized.
        "nan-pil-mode-F-no-resize",
        call(
            images=lambda: PIL.Image.fromarray(np.full((8, 8), np.nan, np.float32)),
            do_convert_rgb=False, do_resize=False, do_center_crop=False, image_mean=0.5, image_std=0.5,
        ),
        ValueError,
        NON_FINITE,
    ),
    # --- out-of-range values that a resize cannot quantize. HF raises the same ValueError.
    Case("float-outside-0-1-with-resize", call(images=GOOD_FLOAT * 3 + 0.5), ValueError, OUT_OF_UNIT_RANGE),
    Case("negative-float-with-resize", call(images=GOOD_FLOAT - 0.25), ValueError, OUT_OF_UNIT_RANGE),
    Case(
        "integral-above-255-with-resize",
        call(images=np.full((8, 8, 3), 1000, np.uint16)),
        ValueError,
        r"outside the range \[0, 255\]",
    ),
    # --- normalisation statistics. HF accepts nan/inf/0 std silently (inf/NaN outputs): we deliberately raise.
    Case("std-nan", call(images=GOOD, image_std=[0.5, float("nan"), 0.5]), ValueError, BAD_STD),
    Case("std-inf", call(images=GOOD, image_std=[0.5, float("inf"), 0.5]), ValueError, BAD_STD),
    Case("std-zero", call(images=GOOD, image_std=[0.5, 0.0, 0.5]), ValueError, BAD_STD),
    Case("std-zero-scalar", call(images=GOOD, image_std=0.0), ValueError, BAD_STD),
    Case("mean-nan", call(images=GOOD, image_mean=[float("nan"), 0.5, 0.5]), ValueError, r"image_mean must be finite"),
    Case(
        "rescale-factor-inf",
        call(images=GOOD, rescale_factor=float("inf")),
        ValueError,
        r"rescale_factor must be finite",
    ),
    # Wrong lengths: HF raises too ("mean must have 3 elements if it is an iterable, got 2").
    Case(
        "mean-wrong-length",
        call(images=GOOD, image_mean=[0.5, 0.5]),
        ValueError,
        r"image_mean has 2 values but the images have 3 channels",
    ),
    Case(
        "std-wrong-length",
        call(images=GOOD, image_std=[0.5, 0.5, 0.5, 0.5]),
        ValueError,
        r"image_std has 4 values but the images have 3 channels",
    ),
    Case(
        "mean-list-of-strings",
        call(images=GOOD, image_mean=["a", "b", "c"]),
        TypeError,
        r"image_mean must contain only numbers",
    ),
    # Mixed channel counts in one batch with normalize (scalar mean/std, so only the mix is wrong). HF fails later
    # on the stacking, or with a per-image mean-length error.
    Case(
        "mixed-channel-counts-with-normalize",
        call(
            images=[GOOD, GOOD[..., :1]], do_convert_rgb=False, input_data_format="channels_last",
            image_mean=0.5, image_std=0.5,
        ),
        ValueError,
        r"mixes images with \[1, 3\] channels",
    ),
    # --- geometry <= 0. HF: crop <= 0 is *accepted* (empty output); size 0 gives a "Size must contain..." error.
    Case(
        "crop-size-zero",
        call(images=GOOD, crop_size={"height": 0, "width": 224}),
        ValueError,
        r"crop_size\['height'\] must be positive, got 0",
    ),
    Case(
        "crop-size-negative-int",
        call(images=GOOD, crop_size=-5),
        ValueError,
        r"crop_size\['height'\] must be positive, got -5",
    ),
    Case(
        "size-zero",
        call(images=GOOD, size={"shortest_edge": 0}),
        ValueError,
        r"size\['shortest_edge'\] must be positive, got 0",
    ),
    Case(
        "size-negative",
        call(images=GOOD, size={"height": -1, "width": 8}),
        ValueError,
        r"size\['height'\] must be positive, got -1",
    ),
    # --- wrong types of call arguments (HF 5.x: strict-dataclass validation errors for most of them).
    Case(
        "do-resize-string-call",
        call(images=GOOD, do_resize="yes"),
        TypeError,
        r"do_resize must be a bool, got 'yes'",
    ),
    Case(
        "resample-string-call",
        call(images=GOOD, resample="bicubic"),
        TypeError,
        r"resample must be a PILImageResampling",
    ),
    Case(
        "resample-out-of-range-call",
        call(images=GOOD, resample=99),
        ValueError,
        r"resample=99 is not a Pillow filter",
    ),
    # --- not an image. HF: a string is fetched as URL/path/base64 (ValueError); a dict is a TypeError.
    Case("string-instead-of-image", call(images="cat.png"), TypeError, r"Got a string where an image was expected"),
    Case("list-of-strings", call(images=["cat.png"]), TypeError, r"Invalid image type builtins\.str"),
    Case("dict-instead-of-image", call(images={"pixel_values": GOOD}), TypeError, r"Invalid image type builtins\.dict"),
    Case("none-instead-of-image", call(images=None), TypeError, r"Invalid image type builtins\.NoneType"),
    Case("none-in-list", call(images=[GOOD, None]), TypeError, r"Invalid image type builtins\.NoneType"),
    # --- dtypes that are not pixels. HF *accepts* complex / object / bool arrays (garbage or a crash deep in
    # numpy/Pillow); we deliberately raise TypeError.
    Case("complex-array", call(images=GOOD.astype(np.complex64)), TypeError, BAD_DTYPE.format("complex64")),
    Case(
        "complex-tensor",
        _torch_call(lambda t: t.zeros(3, 8, 8, dtype=t.complex64)),
        TypeError,
        r"Complex tensors are not images",
    ),
    Case("object-array", call(images=GOOD.astype(object)), TypeError, BAD_DTYPE.format("object")),
    Case("bool-array", call(images=GOOD > 127), TypeError, BAD_DTYPE.format("bool")),
    # --- unknown options.
    Case(
        # Validated before any pixel work (docs/BEHAVIOUR.md section 9: "before any kernel launches").
        "return-tensors-xx",
        call(images=GOOD, return_tensors="xx"),
        ValueError,
        r"xx is not a valid TensorType, please select one of",
    ),
    Case(
        "data-format-unknown",
        call(images=GOOD, data_format="channels_middle"),
        ValueError,
        r"'channels_middle' is not a valid ChannelDimension",
    ),
    Case(
        "input-data-format-unknown",
        call(images=GOOD, input_data_format="nchw"),
        ValueError,
        r"'nchw' is not a valid ChannelDimension",
    ),
    Case("backend-unknown", call(images=GOOD, backend="cupy"), ValueError, r"backend must be one of .*got 'cupy'"),
    # --- backends/devices that cannot run here: never a silent fallback (BackendUnavailableError, a ValueError).
    Case(
        "backend-triton-wrong-device",
        call(images=GOOD, backend="triton", device=WRONG_TRITON_DEVICE),
        BackendUnavailableError,
        BACKEND_TRITON,
    ),
    Case(
        "cpu-tensor-backend-triton-wrong-device",
        _torch_call(lambda t: t.from_numpy(GOOD), backend="triton", device=WRONG_TRITON_DEVICE),
        BackendUnavailableError,
        BACKEND_TRITON,
    ),
    Case(
        "backend-numpy-on-cuda",
        call(images=GOOD, backend="numpy", device="cuda"),
        BackendUnavailableError,
        r"backend='numpy' runs on the CPU, not on device='cuda'",
    ),
    Case("backend-triton-on-mps", call(images=GOOD, backend="triton", device="mps"), BackendUnavailableError,
         r"backend='triton' runs on 'cuda' devices|needs torch and triton"),
    Case("out-with-numpy-backend", call(images=GOOD, return_tensors="np", out=np.zeros((1, 3, 224, 224), np.float32)),
         ValueError, r"out= is supported by the Triton backend"),
    Case("device-cuda", call(images=GOOD, device="cuda"), BackendUnavailableError, DEVICE_NEEDS_GPU, marks=(ON_GPU,)),
    Case(
        "device-cuda-99",
        call(images=GOOD, device="cuda:99"),
        BackendUnavailableError,
        DEVICE_NEEDS_GPU + r"|device='cuda:99': only \d+ GPU\(s\) visible",
    ),
    Case(
        "device-torch-cuda",
        _torch_call(lambda t: t.from_numpy(GOOD), device=lambda t: t.device("cuda")),
        BackendUnavailableError,
        DEVICE_NEEDS_GPU,
        marks=(ON_GPU,),
    ),
    Case("device-unknown", call(images=GOOD, device="tpu"), ValueError, r"Unknown device 'tpu'"),
    Case(
        "device-wrong-type",
        call(images=GOOD, device=5),
        TypeError,
        r"device must be a str or a torch\.device, got 5",
    ),
    # A CUDA tensor while only the numpy backend exists (skipped without CUDA).
    Case("cuda-tensor-input", _cuda_tensor_input, ValueError, r"cuda"),
    # --- output dtypes.
    Case(
        "dtype-int8-numpy",
        call(images=GOOD, dtype=np.int8),
        ValueError,
        r"dtype must be one of .*got <class 'numpy\.int8'>",
    ),
    Case("dtype-int8-str", call(images=GOOD, dtype="int8"), ValueError, r"dtype must be one of .*got 'int8'"),
    Case(
        "dtype-int8-torch",
        _torch_call(lambda t: GOOD, dtype=lambda t: t.int8, return_tensors="pt"),
        ValueError,
        r"dtype must be one of .*got torch\.int8",
    ),
    Case(
        "dtype-bfloat16-no-return-tensors",
        _torch_call(lambda t: GOOD, dtype=lambda t: t.bfloat16),
        ValueError,
        r"bfloat16 needs return_tensors='pt'",
    ),
    Case(
        "dtype-bfloat16-return-np",
        call(images=GOOD, dtype="bfloat16", return_tensors="np"),
        ValueError,
        r"bfloat16 needs return_tensors='pt'",
    ),
    # --- configs with wrong value types, loaded with AutoImageProcessor.from_pretrained(<directory>). HF 5.x rejects
    # these at load time too (StrictDataclassFieldValidationError), except resample="bicubic" (accepted).
    Case(
        "config-size-string",
        load_config(_clip_config(size="224")),
        ValueError,
        r"Could not convert size input to size dict: '224'",
        kind="config",
    ),
    Case(
        "config-size-value-string",
        load_config(_clip_config(size={"shortest_edge": "224"})),
        TypeError,
        r"size\['shortest_edge'\] must be an int",
        kind="config",
    ),
    Case(
        "config-size-negative",
        load_config(_clip_config(size={"shortest_edge": -3})),
        ValueError,
        r"size\['shortest_edge'\] must be positive",
        kind="config",
    ),
    Case(
        "config-crop-size-zero",
        load_config(_clip_config(crop_size={"height": 0, "width": 0})),
        ValueError,
        r"crop_size\['height'\] must be positive",
        kind="config",
    ),
    Case(
        "config-do-resize-string",
        load_config(_clip_config(do_resize="true")),
        TypeError,
        r"do_resize must be a bool, got 'true'",
        kind="config",
    ),
    Case(
        "config-resample-string",
        load_config(_clip_config(resample="bicubic")),
        TypeError,
        r"resample must be a PILImageResampling value \(an int\), got 'bicubic'",
        kind="config",
    ),
    Case(
        "config-resample-out-of-range",
        load_config(_clip_config(resample=99)),
        ValueError,
        r"resample=99 is not a Pillow filter; valid values are",
        kind="config",
    ),
    Case(
        "config-rescale-factor-string",
        load_config(_clip_config(rescale_factor="0.5")),
        TypeError,
        r"rescale_factor must be a number, got '0\.5'",
        kind="config",
    ),
    Case(
        # Rejected when the config is loaded (HF 5.x rejects it there too), not only when a call normalizes.
        "config-image-mean-string",
        load_config(_clip_config(image_mean="0.5")),
        TypeError,
        r"image_mean must be a number or a sequence of numbers, got '0\.5'",
        kind="config",
    ),
    # --- config files that name no usable class / are not configs / are missing.
    Case(
        "config-unknown-image-processor-type",
        load_config({"image_processor_type": "FooBarImageProcessor"}),
        ValueError,
        r"Unsupported image_processor_type 'FooBarImageProcessor'; fused_imgproc supports .*'CLIPImageProcessor'",
        kind="config",
    ),
    Case(
        "config-image-processor-type-not-a-string",
        load_config({"image_processor_type": 5}),
        TypeError,
        r"image_processor_type must be a string, got 5",
        kind="config",
    ),
    Case(
        "config-without-processor-type",
        load_config({"do_resize": True, "size": {"shortest_edge": 224}}),
        ValueError,
        r"neither `image_processor_type` nor `feature_extractor_type`.*CLIPImageProcessor",
        kind="config",
    ),
    Case(
        "config-invalid-json",
        load_config('{"image_processor_type": "CLIPImageProcessor",'),
        OSError,
        r"preprocessor_config\.json' is not a valid JSON file",
        kind="config",
    ),
    Case(
        "config-json-not-an-object",
        load_config("[1, 2, 3]"),
        OSError,
        r"does not hold an image processor config.*JSON list",
        kind="config",
    ),
    Case(
        "config-directory-without-file",
        _directory_without_config,
        OSError,
        r"holds no 'preprocessor_config\.json' file",
        kind="config",
    ),
    Case(
        "config-missing-directory",
        _missing_directory,
        OSError,
        r"does/not/exist'.*not an existing file or directory",
        kind="config",
    ),
    Case(
        "config-missing-file",
        _missing_config_file,
        OSError,
        r"preprocessor_config\.json'.*not an existing file or directory",
        kind="config",
    ),
]

CALL_CASES = [case for case in CASES if case.kind == "call"]
assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"


def _params(cases, early=False):
    return [pytest.param(case, id=case.id, marks=case.early_marks if early else case.marks) for case in cases]


# --- fixtures and helpers ----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """Config cases must never reach the network: force huggingface_hub's offline mode and an empty cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


def _good_output(proc):
    return proc(GOOD, return_tensors="np").pixel_values


FRESH_DICT = CLIPImageProcessor().to_dict()
FRESH_OUTPUT = _good_output(CLIPImageProcessor())


@pytest.fixture(scope="module")
def shared_proc():
    """One processor that every case in this module abuses in turn."""
    return CLIPImageProcessor()


def assert_still_works(proc):
    """Same configuration as a fresh processor, and bit-identical output on a good image (list and batch paths)."""
    assert proc.to_dict() == FRESH_DICT
    out = _good_output(proc)
    assert out.dtype == FRESH_OUTPUT.dtype and out.shape == FRESH_OUTPUT.shape == (1, 3, 224, 224)
    np.testing.assert_array_equal(out, FRESH_OUTPUT)
    batch = proc([GOOD, GOOD_FLOAT], return_tensors="np").pixel_values
    assert batch.shape == (2, 3, 224, 224)
    np.testing.assert_array_equal(batch[0], FRESH_OUTPUT[0])


# --- tests -------------------------------------------------------------------------------------------------------


def test_enough_distinct_cases():
    assert len(CASES) >= 25
    assert len(CALL_CASES) >= 25


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input_raises(case, shared_proc, tmp_path):
    with pytest.raises(case.exc, match=case.match) as info:
        case.run(shared_proc, tmp_path)
    # Only the documented families: never a KeyError/IndexError/ZeroDivisionError leaking out of the internals.
    assert isinstance(info.value, (ValueError, TypeError, OSError))
    assert_still_works(shared_proc)


@pytest.mark.parametrize("case", _params(CALL_CASES, early=True))
def test_bad_call_fails_before_the_backend_runs(case, shared_proc, tmp_path, monkeypatch):
    """Validation happens before any pixel work is handed to a backend (docs/BEHAVIOUR.md section 9: "before any
    kernel launches")."""

    def backend_must_not_run(*args, **kwargs):
        raise AssertionError("the backend ran on a bad input: validation must come first")

    monkeypatch.setattr(numpy_backend, "execute", backend_must_not_run)
    try:
        from fused_imgproc.backends import triton as triton_backend
    except ImportError:
        pass
    else:
        monkeypatch.setattr(triton_backend, "execute", backend_must_not_run)
    with pytest.raises(case.exc, match=case.match):
        case.run(shared_proc, tmp_path)


def test_no_partial_state_after_every_failure(tmp_path):
    """One processor goes through every bad call in a row, and is checked after each and at the end."""
    proc = CLIPImageProcessor()
    for case in CALL_CASES:
        try:
            case.run(proc, tmp_path)
        except (ValueError, TypeError, OSError):
            pass
        except pytest.skip.Exception:
            continue
        assert_still_works(proc)
    assert_still_works(proc)
    # The global per-(class, kwargs) warning registry and table cache must not be poisoned either: a fresh
    # processor gives the same bytes.
    np.testing.assert_array_equal(_good_output(CLIPImageProcessor()), FRESH_OUTPUT)


def test_good_config_still_loads_after_bad_ones(tmp_path):
    """A failed load leaves nothing behind: the same directory with a good config loads and works."""
    with pytest.raises(OSError, match="not a valid JSON file"):
        load_config("{")(None, tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(CLIPImageProcessor().to_json_string())
    proc = AutoImageProcessor.from_pretrained(str(tmp_path))
    assert type(proc) is CLIPImageProcessor
    assert_still_works(proc)
