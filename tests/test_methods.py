"""The processors' per-image methods (`rescale`, `normalize`, `center_crop`, `resize`, `pad`, `convert_to_rgb`,
`fetch_images`) against transformers' own methods on the same processors: same values, same dtype, same shape."""

from __future__ import annotations

import base64
import functools
import http.server
import os
import threading

import numpy as np
import PIL.Image
import pytest

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from test_parity import FAMILIES  # noqa: E402
from transformers import image_transforms as T_ops  # noqa: E402
from transformers.image_utils import SizeDict  # noqa: E402

import fused_imgproc as fi  # noqa: E402

PAIRS = [pytest.param(ours, ref, base, id=ours.__name__) for ours, ref, base, _ in FAMILIES]
SIZES = [{"shortest_edge": 20}, {"shortest_edge": 400}, {"height": 30, "width": 17}, {"shortest_edge": 21,
         "longest_edge": 25}, {"max_height": 19, "max_width": 40}]


def _images(seed: int):
    """CHW images (transformers 5's methods take channels-first arrays): uint8, unit floats, integral floats."""
    rng = np.random.default_rng(seed)
    u8 = rng.integers(0, 256, (3, 37, 51), dtype=np.uint8)
    return [u8, rng.random((3, 29, 23)).astype(np.float32), u8[:, :11, :14].astype(np.float64)]


def _same(ours, ref):
    assert type(ours) is type(ref)
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert np.array_equal(ours, ref), f"{np.sum(ours != ref)} of {ours.size} values differ"


def _outcome(call):
    try:
        return call()
    except (ValueError, TypeError, AttributeError) as error:
        return error


# Qwen2-VL's resize also takes a `factor` (test_qwen2_vl.py compares it with transformers').
@pytest.mark.parametrize("ours_cls, ref_cls, ref_base", [p for p in PAIRS if p.id != "Qwen2VLImageProcessor"])
def test_resize_is_the_familys_resize(ours_cls, ref_cls, ref_base):
    ours, ref = ours_cls(), ref_cls(**ref_base)
    compared = 0
    for image in _images(1):
        for size in [ours.size, *SIZES]:
            for resample in (ours.resample, fi.PILImageResampling.NEAREST, None):
                expected = _outcome(lambda: ref.resize(image, SizeDict(**size), resample))  # noqa: B023
                if isinstance(expected, Exception):
                    # transformers refuses this size for the family: so do we, with a ValueError naming it
                    with pytest.raises(ValueError, match="[Ss]ize"):
                        ours.resize(image, size, resample)
                    continue
                _same(ours.resize(image, size, resample), expected)
                # channels-last in, channels-last out (transformers 4's signature; inferred layout)
                hwc = ours.resize(np.moveaxis(image, 0, -1), size, resample)
                _same(np.ascontiguousarray(np.moveaxis(hwc, -1, 0)), expected)
                compared += 1
    assert compared >= 12


@pytest.mark.parametrize("crop_pct", [0.875, 0.5, 1.25, None])
@pytest.mark.parametrize("family", ["ConvNext", "PoolFormer"])
def test_crop_pct_resize(family, crop_pct):
    ours = getattr(fi, f"{family}ImageProcessor")()
    ref = getattr(transformers, f"{family}ImageProcessorPil")()
    for image in _images(2):
        for size in ({"shortest_edge": 20}, {"shortest_edge": 384}, {"height": 30, "width": 30},
                     {"height": 30, "width": 17}):
            kwargs = {} if crop_pct is None else {"crop_pct": crop_pct}
            expected = _outcome(lambda: ref.resize(image, SizeDict(**size), ref.resample, **kwargs))  # noqa: B023
            if isinstance(expected, Exception):
                with pytest.raises(ValueError, match="shortest_edge"):
                    ours.resize(image, size, ours.resample, **kwargs)
                continue
            _same(ours.resize(image, size, ours.resample, **kwargs), expected)


def test_crop_pct_in_the_resample_position_is_refused():
    """transformers 4 ordered ConvNeXt's resize (size, crop_pct, resample): a float filter is named, not guessed."""
    image = _images(3)[0]
    for cls in (fi.ConvNextImageProcessor, fi.PoolFormerImageProcessor):
        with pytest.raises(TypeError, match="pass crop_pct by keyword"):
            cls().resize(image, {"shortest_edge": 20}, 0.875)


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base", PAIRS)
def test_rescale_normalize_center_crop(ours_cls, ref_cls, ref_base):
    ours, ref = ours_cls(), ref_cls(**ref_base)
    for image in _images(4):
        for scale in (1 / 255, 0.5, 3):
            _same(ours.rescale(image, scale), ref.rescale(image, scale))
        for mean, std in ((ours.image_mean, ours.image_std), (0.5, 0.25), ([1, 2, 3], [3, 2, 1])):
            _same(ours.normalize(image, mean, std), ref.normalize(image, mean, std))
        for height, width in ((20, 60), (37, 51), (50, 10), (1, 1)):
            _same(ours.center_crop(image, {"height": height, "width": width}),
                  ref.center_crop(image, SizeDict(height=height, width=width)))


def test_methods_honour_data_format_like_transformers_4():
    """`data_format` / `input_data_format` as transformers 4's methods take them (5's PIL methods assume CHW)."""
    proc = fi.ViTImageProcessor()
    hwc = np.random.default_rng(5).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    first, last = fi.ChannelDimension.FIRST, fi.ChannelDimension.LAST
    _same(proc.rescale(hwc, 1 / 255, data_format=first), T_ops.rescale(hwc, 1 / 255, data_format=first))
    _same(proc.normalize(hwc, 0.5, 0.5, data_format=first), T_ops.normalize(hwc, 0.5, 0.5, data_format=first))
    _same(proc.center_crop(hwc, 5, data_format=first), T_ops.center_crop(hwc, (5, 5), data_format=first))
    chw = np.ascontiguousarray(hwc.transpose(2, 0, 1))
    _same(proc.resize(chw, {"height": 4, "width": 6}, data_format=last),
          T_ops.resize(chw, (4, 6), data_format=last))
    # an ambiguous (3, W, 3) array is channels-first unless told otherwise
    odd = hwc[:3]
    _same(proc.normalize(odd, [1, 2, 3], 1.0, input_data_format=last),
          T_ops.normalize(odd, [1, 2, 3], 1.0, input_data_format=last))


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base", PAIRS[:3])
def test_pad_and_convert_to_rgb(ours_cls, ref_cls, ref_base):
    ours, ref = ours_cls(), ref_cls(**ref_base)
    images = _images(6)
    ragged = [images[0], images[0][:, :20, :33]]
    got, want = ours.pad(ragged, return_mask=True), ref.pad(ragged, return_mask=True)
    for a, b in zip(got[0] + got[1], want[0] + want[1], strict=True):
        _same(a, b)
    for mode, fill in (("constant", 7), ("edge", 0), ("reflect", 0), ("symmetric", 0)):
        kwargs = {"pad_size": {"height": 40, "width": 60}, "fill_value": fill, "padding_mode": mode}
        ref_kwargs = {**kwargs, "pad_size": SizeDict(height=40, width=60)}
        for a, b in zip(ours.pad(images[:2], **kwargs), ref.pad(images[:2], **ref_kwargs), strict=True):
            _same(a, b)
    with pytest.raises(ValueError, match="Padding dimensions are negative"):
        ours.pad(ragged, pad_size={"height": 10, "width": 60})
    with pytest.raises(TypeError, match="list of images"):
        ours.pad(images[0])
    with pytest.raises(ValueError, match="padding_mode"):
        ours.pad(ragged, padding_mode="mirror")
    # channels-last images pad their own spatial axes
    hwc = np.moveaxis(images[0], 0, -1)
    _same(ours.pad([hwc], pad_size={"height": 40, "width": 60})[0],
          np.moveaxis(ref.pad([images[0]], pad_size=SizeDict(height=40, width=60))[0], 0, -1))

    rng = np.random.default_rng(7)
    for image in (images[0][:1], rng.integers(0, 256, (4, 6, 5), dtype=np.uint8), rng.random((4, 6, 5)),
                  PIL.Image.fromarray(rng.integers(0, 256, (6, 5, 4), dtype=np.uint8), "RGBA"),
                  PIL.Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8), "L")):
        _same(ours.convert_to_rgb(image), ref.convert_to_rgb(image))


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(8)
    image = PIL.Image.fromarray(rng.integers(0, 256, (12, 17, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotated: loaders must apply the orientation
    image.save(folder / "rotated.jpg", exif=exif.tobytes())
    PIL.Image.fromarray(rng.integers(0, 256, (5, 4, 4), dtype=np.uint8), "RGBA").save(folder / "alpha.png")
    return folder


@pytest.fixture(scope="module")
def http_root(image_files):
    """A plain HTTP server on 127.0.0.1 serving the image folder (never the network)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(image_files))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_images(image_files, http_root):
    proc, ref = fi.CLIPImageProcessor(), transformers.CLIPImageProcessorPil()
    paths = [str(image_files / "rotated.jpg"), str(image_files / "alpha.png")]
    with open(paths[1], "rb") as f:
        encoded = base64.b64encode(f.read()).decode()
    wrapped = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))  # MIME-style lines, as decodebytes takes
    sources = [*paths, (image_files / "alpha.png").as_uri(), encoded, "data:image/png;base64," + encoded,
               f"{http_root}/rotated.jpg", wrapped]
    expected = [np.asarray(ref.fetch_images(paths[i])) for i in (0, 1, 1, 1, 1, 0, 1)]
    got = proc.fetch_images(sources)
    assert len(got) == len(sources)
    for image, want in zip(got, expected, strict=True):
        assert isinstance(image, PIL.Image.Image) and image.mode == "RGB"
        _same(np.asarray(image), want)
    assert got[0].size == (12, 17)  # EXIF orientation applied
    nested = proc.fetch_images([[paths[0]], paths[1]])
    assert isinstance(nested[0], list) and isinstance(nested[1], PIL.Image.Image)
    array = np.zeros((2, 2, 3), np.uint8)
    assert proc.fetch_images(array) is array
    with pytest.raises(FileNotFoundError, match="missing.png"):
        proc.fetch_images((image_files / "missing.png").as_uri())
    with pytest.raises(ValueError, match="Incorrect image source"):
        proc.fetch_images(os.path.join(str(image_files), "missing.png"))
    with pytest.raises(TypeError, match="only a single or a list"):
        proc.fetch_images(3)
    with pytest.raises(Exception, match="404"):
        proc.fetch_images(f"{http_root}/missing.png")


def test_methods_exist_on_every_processor():
    for name in fi.IMAGE_PROCESSOR_CLASSES:
        proc = getattr(fi, name)()
        for method in ("rescale", "normalize", "center_crop", "resize", "pad", "convert_to_rgb", "fetch_images",
                       "preprocess", "__call__"):
            assert callable(getattr(proc, method)), (name, method)
