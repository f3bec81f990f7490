"""The fused kernel and its torch.library ops, below the processors.

- The kernel against an independent numpy evaluation of its documented index mapping, on a hand-made descriptor.
- `torch.library.opcheck` of both custom ops, and the functional op under `torch.compile(fullgraph=True)`.
- On a GPU: a processor call captured in a CUDA graph and replayed on new data.
"""

from __future__ import annotations

import numpy as np
import pytest
from triton_mode import DEVICE, torch

import fused_imgproc as fi
from fused_imgproc._kernels import crop_normalize as K
from fused_imgproc.backends import triton as triton_backend  # registers the ops
from fused_imgproc.geometry import ImageGeometry

SIZES = [(4, 7), (9, 3), (1, 1), (6, 5)]
OUT_HW = (6, 5)


def make_launch(rng, channels_last=False, dtype=torch.float32):
    """Four HWC uint8 images packed in one buffer, cropped/padded to 6x5, and a random (3, 256) table."""
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    starts = np.concatenate([[0], np.cumsum([im.size for im in images])])
    rows, windows = [], []
    for n, (image, start) in enumerate(zip(images, starts)):
        (y0, y1), (x0, x1), (oy0, oy1), (ox0, ox1) = (
            ImageGeometry.identity(image.shape[:2]).center_cropped(OUT_HW).source_window()
        )
        h, w, c = image.shape
        rows.append([start + y0 * w * c + x0 * c, w * c, c, 1, n * 3 * 30, *OUT_HW, oy0, oy1, ox0, ox1, 3, 0])
        windows.append(((y0, x0), (oy0, oy1, ox0, ox1)))
    table = torch.from_numpy(rng.standard_normal((3, 256)).astype(np.float32)).to(dtype)
    args = (
        torch.from_numpy(np.concatenate([im.ravel() for im in images])).to(DEVICE),
        torch.tensor(rows, dtype=torch.int64, device=DEVICE),
        table.reshape(-1).to(DEVICE),
    )
    return images, windows, table, args


def mapping_reference(images, windows, table, channels_last):
    """out[n, c, oy, ox] per the kernel docstring, evaluated with numpy indexing."""
    expected = np.empty((len(images), 3) + OUT_HW, dtype=np.float32)
    tab = table.float().numpy()
    for n, (image, ((y0, x0), (oy0, oy1, ox0, ox1))) in enumerate(zip(images, windows)):
        for c in range(3):
            expected[n, c] = tab[c, 0]
            if oy1 > oy0:
                block = image[y0 : y0 + oy1 - oy0, x0 : x0 + ox1 - ox0, c]
                expected[n, c, oy0:oy1, ox0:ox1] = tab[c][block]
    expected = torch.from_numpy(expected).to(table.dtype)
    return expected.permute(0, 2, 3, 1).contiguous() if channels_last else expected


@pytest.mark.parametrize("index_64", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_kernel_follows_its_documented_mapping(dtype, channels_last, index_64):
    images, windows, table, (src, desc, tab) = make_launch(np.random.default_rng(0), channels_last, dtype)
    out = torch.full((len(images) * 90,), float("nan"), dtype=dtype, device=DEVICE)
    K.crop_normalize(src, desc, tab, tab, out, max_pixels=30, max_channels=3, do_rescale=True, do_normalize=True,
                     layout=K.Layout(channels_last=channels_last), index_64=index_64)
    shape = (len(images),) + ((*OUT_HW, 3) if channels_last else (3, *OUT_HW))
    assert torch.equal(out.view(shape).cpu(), mapping_reference(images, windows, table, channels_last))


def test_launcher_rejects_bad_descriptors():
    _, _, _, (src, desc, tab) = make_launch(np.random.default_rng(1))
    out = torch.empty(360, device=DEVICE)
    common = dict(max_pixels=30, do_rescale=True, do_normalize=True, layout=K.Layout(), index_64=False)
    with pytest.raises(ValueError, match="desc must be a contiguous"):
        K.crop_normalize(src, desc[:, :5], tab, tab, out, max_channels=3, **common)
    with pytest.raises(TypeError, match="src must be uint8 or float32"):
        K.crop_normalize(src.double(), desc, tab, tab, out, max_channels=3, **common)
    with pytest.raises(ValueError, match="max_channels must be 1..4"):
        K.crop_normalize(src, desc, tab, tab, out, max_channels=5, **common)
    with pytest.raises(ValueError, match="bad layout"):
        K.crop_normalize(src, desc, tab, tab, out, max_channels=3, **{**common, "layout": K.Layout(patch=4, merge=0)})
    if DEVICE == "cuda":
        with pytest.raises(ValueError, match="one device"):
            K.crop_normalize(src.cpu(), desc, tab, tab, out, max_channels=3, **common)


def op_args(rng):
    images, windows, table, (src, desc, tab) = make_launch(rng)
    flags = (30, 3, True, True, [0, 0, 1, 1], False)  # max_pixels, max_channels, rescale, normalize, layout, int64
    return images, windows, table, (src, desc, tab, tab), flags


def test_opcheck_both_ops():
    _, _, _, tensors, flags = op_args(np.random.default_rng(2))
    out = torch.empty(360, device=DEVICE)
    torch.library.opcheck(torch.ops.fused_imgproc.crop_normalize_out.default, (*tensors, out, *flags))
    torch.library.opcheck(torch.ops.fused_imgproc.crop_normalize.default, (*tensors, 360, torch.float32, *flags))


def test_opcheck_resample_op():
    from fused_imgproc.backends import gpu_resize
    from fused_imgproc.plan import UINT8, ImagePlan

    rng = np.random.default_rng(6)
    passes = gpu_resize.PassPlan()
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(9, 14), (5, 3)]]
    starts = [0, images[0].size]
    for image, start, out_hw in zip(images, starts, [(4, 6), (8, 3)]):
        item = ImagePlan(ImageGeometry.identity(image.shape[:2]).resized(out_hw, 2), UINT8, 3)
        passes.add_resized(item, (start, image.shape[1] * 3, 3, 1), 3)
    split, (stage1, tiles1, _, _, blob) = passes.finish()
    src = torch.from_numpy(np.concatenate([im.ravel() for im in images])).to(DEVICE)
    work = torch.zeros(split + passes.final, dtype=torch.uint8, device=DEVICE)
    args = (src, work, *(torch.from_numpy(t).to(DEVICE) for t in (stage1, blob, tiles1)), 3)
    torch.library.opcheck(torch.ops.fused_imgproc.resample_out.default, args)


def test_functional_op_under_torch_compile_fullgraph():
    images, windows, table, tensors, flags = op_args(np.random.default_rng(3))

    def preprocess(src, desc, table, params):
        flat = torch.ops.fused_imgproc.crop_normalize(src, desc, table, params, 360, torch.float32, *flags)
        return flat.view(4, 3, *OUT_HW)

    compiled = torch.compile(preprocess, fullgraph=True)
    got = compiled(*tensors)
    assert torch.equal(got.cpu(), mapping_reference(images, windows, table, False))
    assert torch.equal(got, preprocess(*tensors))


def test_out_op_under_torch_compile_fullgraph():
    images, windows, table, tensors, flags = op_args(np.random.default_rng(4))

    def preprocess_into(src, desc, table, params, out):
        torch.ops.fused_imgproc.crop_normalize_out(src, desc, table, params, out, *flags)
        return out

    out = torch.full((360,), float("nan"), device=DEVICE)
    compiled = torch.compile(preprocess_into, fullgraph=True)
    compiled(*tensors, out)
    assert torch.equal(out.view(4, 3, *OUT_HW).cpu(), mapping_reference(images, windows, table, False))


@pytest.mark.skipif(DEVICE != "cuda", reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_processor_call_captured_in_a_cuda_graph(dtype):
    """Fixed shapes, inputs on the GPU, out=: the call captures (no sync, no H2D copy) and replays on new data,
    both without and with the GPU resize."""
    for config in ({"do_resize": False}, {}):  # center crop 224; CLIP's shortest-edge 224 bicubic resize + crop
        _capture_and_replay(fi.CLIPImageProcessor(**config), dtype)


def _capture_and_replay(proc, dtype):
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.integers(0, 256, (8, 3, 256, 300), dtype=np.uint8)).cuda()
    out = torch.empty((8, 3, 224, 224), dtype=dtype, device="cuda")
    call = lambda: proc(x, return_tensors="pt", device="cuda", out=out)  # noqa: E731
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        call()  # warm-up: uploads the descriptor and the table once
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    fresh = torch.from_numpy(rng.integers(0, 256, (8, 3, 256, 300), dtype=np.uint8))
    x.copy_(fresh)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    expected = proc(fresh, return_tensors="pt", dtype=dtype).pixel_values
    assert torch.equal(out.cpu().view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                       expected.view(torch.int16 if dtype == torch.bfloat16 else torch.int32))


@pytest.mark.skipif(DEVICE != "cuda", reason="host images in a CUDA graph are refused only on a GPU")
def test_host_images_are_refused_during_capture():
    proc = fi.CLIPImageProcessor(do_resize=False)
    image = np.zeros((256, 256, 3), np.uint8)
    proc(image, return_tensors="pt", device="cuda")
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="CUDA-graph capture needs every input already on the GPU"):
        with torch.cuda.graph(graph):
            proc(image, return_tensors="pt", device="cuda")


def test_ops_are_registered():
    assert triton_backend.ops.crop_normalize is not None
    assert hasattr(torch.ops.fused_imgproc, "crop_normalize") and hasattr(torch.ops.fused_imgproc, "crop_normalize_out")


def test_eager_launches_skip_the_dispatcher_but_traced_ones_use_the_ops(monkeypatch):
    """Eagerly the backend calls the launchers directly (host time); under tracing it must call the registered ops."""
    from fused_imgproc.backends import ops

    seen = []
    monkeypatch.setattr(ops, "_crop_normalize_launch", lambda *a: seen.append("direct"))
    monkeypatch.setattr(torch.ops.fused_imgproc, "crop_normalize_out", lambda *a: seen.append("op"))
    args = (torch.zeros(4, dtype=torch.uint8), *[None] * 10)
    ops.crop_normalize_into(*args)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    ops.crop_normalize_into(*args)
    assert seen == ["direct", "op"]
