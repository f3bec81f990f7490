"""The processors' call cache (fused_imgproc/processors/call_cache.py): a repeated call of the same settings,
arguments and input shapes replays its program, and gives exactly what the full path gives; anything that changes
the result (a setting changed in place, the limits, an argument's type) is a different key."""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import PIL.Image
import pytest
from triton_mode import DEVICE, torch

import fused_imgproc as fi
from fused_imgproc.processors import call_cache

TRITON = {"backend": "triton", "device": DEVICE}
RNG = np.random.default_rng(11)


def small(**config):
    return fi.CLIPImageProcessor(**{"size": {"shortest_edge": 15}, "crop_size": {"height": 13, "width": 12}, **config})


def image(h=20, w=24, c=3, dtype=np.uint8):
    return RNG.integers(0, 256, (h, w, c), dtype=np.uint8).astype(dtype)


def reference(proc, images, **kwargs):
    """The numpy backend's result (bit-exact with transformers), as a torch tensor or a list of them."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("backend", "device", "out")}
    if isinstance(images, torch.Tensor):
        images = images.cpu()
    elif isinstance(images, list):
        images = [x.cpu() if isinstance(x, torch.Tensor) else x for x in images]
    return proc(images, backend="numpy", **kwargs).pixel_values


def same(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    a = torch.as_tensor(a).cpu()
    b = torch.as_tensor(b).cpu()
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def count_plans(monkeypatch, proc) -> list:
    """Records every full-path Triton call (each prepares, plans and builds a program)."""
    calls = []
    real = proc._preprocess_triton
    monkeypatch.setattr(proc, "_preprocess_triton", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    return calls


INPUTS = {
    "numpy HWC": lambda: image(),
    "numpy CHW": lambda: np.ascontiguousarray(image().transpose(2, 0, 1)),
    "numpy 4-D batch": lambda: np.stack([image(), image()]),
    "list of numpy": lambda: [image(), image(30, 17)],
    "tensor HWC": lambda: torch.from_numpy(image()).to(DEVICE),
    "tensor CHW view": lambda: torch.from_numpy(image()).to(DEVICE).permute(2, 0, 1),
    "tensor 4-D batch": lambda: torch.from_numpy(np.stack([image(), image()])).to(DEVICE),
    "list of tensors": lambda: [torch.from_numpy(image()).to(DEVICE), torch.from_numpy(image(22, 31)).to(DEVICE)],
    "1-channel tensor made RGB": lambda: torch.from_numpy(image(c=1)).to(DEVICE),
    "PIL RGB": lambda: PIL.Image.fromarray(image()),
    "PIL L made RGB": lambda: PIL.Image.fromarray(image()[..., 0]),
    "PIL RGBA composited": lambda: PIL.Image.fromarray(image(c=4)),
    "list of PIL": lambda: [PIL.Image.fromarray(image()), PIL.Image.fromarray(image(17, 30))],
}


@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize("call", [{"return_tensors": "pt", "dtype": torch.bfloat16}, {"return_tensors": None},
                                  {"return_tensors": "pt", "data_format": "channels_last"}], ids=["pt-bf16", "list", "nhwc"])
def test_repeated_calls_replay_and_equal_the_full_path(monkeypatch, name, call):
    proc = small()
    plans = count_plans(monkeypatch, proc)
    for _ in range(3):
        images = INPUTS[name]()  # new pixels every call, same shapes
        got = proc(images, **TRITON, **call).pixel_values
        assert same(got, reference(proc, images, **call)), name
    assert len(plans) == 1, "the second and third calls must replay the first one's program"
    assert len(proc._calls()) == 1


def test_out_buffer_is_written_on_every_replay(monkeypatch):
    proc = small()
    plans = count_plans(monkeypatch, proc)
    out = torch.empty((2, 3, 13, 12), dtype=torch.float16, device=DEVICE)
    for _ in range(3):
        batch = torch.from_numpy(np.stack([image(), image()])).to(DEVICE)
        out.fill_(float("nan"))
        result = proc(batch, return_tensors="pt", out=out, **TRITON)
        assert result.pixel_values is out
        assert same(out, reference(proc, batch, return_tensors="pt", dtype=torch.float16))
    assert len(plans) == 1
    with pytest.raises(ValueError, match="out has shape"):  # another out shape is another key: checked again
        proc(batch, return_tensors="pt", out=torch.empty((1, 3, 13, 12), dtype=torch.float16, device=DEVICE),
             **TRITON)


def test_a_setting_changed_in_place_is_seen():
    proc = small()
    x = image(40, 50)
    first = proc(x, return_tensors="pt", **TRITON).pixel_values
    proc.crop_size["height"] = 9  # mutated in place, not reassigned
    second = proc(x, return_tensors="pt", **TRITON).pixel_values
    assert second.shape[-2:] == (9, 12) and same(second, reference(proc, x, return_tensors="pt"))
    proc.image_mean = [0.0, 0.0, 0.0]
    third = proc(x, return_tensors="pt", **TRITON).pixel_values
    assert same(third, reference(proc, x, return_tensors="pt")) and not same(third, second)
    assert first.shape[-2:] == (13, 12)


def test_argument_types_are_part_of_the_key():
    proc = small()
    x = image()
    proc(x, return_tensors="pt", do_resize=True, **TRITON)
    with pytest.raises(TypeError, match="do_resize must be a bool"):
        proc(x, return_tensors="pt", do_resize=1, **TRITON)


def test_limits_are_part_of_the_key():
    proc = small()
    x = image(40, 50)
    proc(x, return_tensors="pt", **TRITON)
    with fi.set_limits(max_image_pixels=100), pytest.raises(ValueError, match="over the limit"):
        proc(x, return_tensors="pt", **TRITON)
    proc(x, return_tensors="pt", **TRITON)


@pytest.mark.parametrize("name, make, config", [
    ("16-bit PIL image read as an array", lambda: PIL.Image.fromarray(image()[..., 0].astype(np.uint16)),
     {"do_convert_rgb": False, "image_mean": 0.5, "image_std": 0.5}),
    ("float32 array", lambda: image(dtype=np.float32) / 255, {}),
    ("RGBA array made RGB", lambda: image(c=4), {}),
    ("nested list", lambda: [[image()], [image()]], {}),
])
def test_inputs_whose_preparation_reads_pixels_are_never_cached(monkeypatch, name, make, config):
    proc = small(**config)
    plans = count_plans(monkeypatch, proc)
    for _ in range(2):
        images = make()
        got = proc(images, return_tensors="pt", **TRITON).pixel_values
        assert same(got, reference(proc, images, return_tensors="pt")), name
    assert len(plans) == 2 and len(proc._calls()) == 0


def test_a_pil_images_transparency_key_is_part_of_the_key():
    """A palette image with a transparency index is composited onto white; without one it is not."""
    proc = small()
    plain = PIL.Image.fromarray(image()).convert("P")
    keyed = plain.copy()
    keyed.info["transparency"] = 0
    for x in (plain, keyed, plain, keyed):
        got = proc(x, return_tensors="pt", **TRITON).pixel_values
        assert same(got, reference(proc, x, return_tensors="pt"))
    assert len(proc._calls()) == 2


def test_unhashable_settings_are_not_cached(monkeypatch):
    proc = small()
    plans = count_plans(monkeypatch, proc)
    for _ in range(2):
        proc(image(), return_tensors="pt", image_mean=np.array([0.5, 0.5, 0.5]), **TRITON)
    assert len(plans) == 2 and len(proc._calls()) == 0


def test_nan_in_a_float_tensor_is_found_on_every_call():
    """Float inputs are never cached: the preparation of a host tensor scans its values, call after call."""
    proc = small(do_resize=False)
    x = torch.rand((20, 24, 3))  # on the host (under the interpreter the host is the device)
    proc(x, return_tensors="pt", **TRITON)
    x[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        proc(x, return_tensors="pt", **TRITON)


def test_the_cache_is_bounded():
    proc = small(do_resize=False, crop_size={"height": 2, "width": 2})
    for width in range(2, call_cache.MAX_ENTRIES + 12):
        proc(image(3, width), return_tensors="pt", **TRITON)
    assert len(proc._calls()) == call_cache.MAX_ENTRIES


def test_the_cache_is_bounded_by_its_device_tables(monkeypatch):
    proc = small()
    batches = [[image(20 + k, 24 + j) for j in range(6)] for k in range(6)]
    proc(batches[0], return_tensors="pt", **TRITON)
    (entry,) = proc._calls().entries.values()
    assert entry.program.table_bytes > 0
    monkeypatch.setattr(proc._calls(), "table_bytes", int(entry.program.table_bytes * 2.5))
    for batch in batches[1:]:
        proc(batch, return_tensors="pt", **TRITON)
    cache = proc._calls()
    assert len(cache) == 2 and cache.held == sum(e.program.table_bytes for e in cache.entries.values())
    assert cache.held <= cache.table_bytes


def test_copies_and_pickles_leave_the_cache_behind():
    proc = small()
    proc(image(), return_tensors="pt", **TRITON)
    assert len(proc._calls()) == 1
    for clone in (copy.deepcopy(proc), copy.copy(proc), pickle.loads(pickle.dumps(proc))):
        assert "_call_cache" not in clone.__dict__
        assert clone.to_dict() == proc.to_dict()
        assert tuple(clone(image(), return_tensors="pt", **TRITON).pixel_values.shape) == (1, 3, 13, 12)
    assert "call_cache" not in proc.to_json_string()


def test_threads_share_the_cache():
    proc = small()
    images = [image() for _ in range(8)]
    expected = [reference(proc, x, return_tensors="pt") for x in images]
    errors = []

    def work(k):
        try:
            for _ in range(3):
                assert same(proc(images[k], return_tensors="pt", **TRITON).pixel_values, expected[k])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(proc._calls()) == 1


def test_the_numpy_backend_keeps_no_programs():
    proc = small()
    proc(image(), return_tensors="np")
    proc(image(), return_tensors="np", backend="numpy")
    assert len(proc._calls()) == 0
