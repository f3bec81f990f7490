"""fused_imgproc.transforms against transformers.image_transforms / image_processing_utils (bit-exact)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fused_imgproc import transforms as F
from fused_imgproc.image_utils import ChannelDimension, PILImageResampling

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers.image_transforms")
HF_utils = pytest.importorskip("transformers.image_processing_utils")

FIRST, LAST = ChannelDimension.FIRST, ChannelDimension.LAST
FILTERS = list(PILImageResampling)


def assert_same(ours, ref):
    """Same type, dtype, shape and values (PIL images: same mode, size and pixels)."""
    assert type(ours) is type(ref), (type(ours), type(ref))
    if isinstance(ref, PIL.Image.Image):
        assert (ours.mode, ours.size) == (ref.mode, ref.size)
        ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert np.array_equal(ours, ref)


def make_image(rng, kind, channels, height, width, layout):
    """A random image; kind is "uint8", "int16", "float16/32/64" (values in [0, 1]) or "integral32/64"."""
    shape = (height, width, channels) if layout == LAST else (channels, height, width)
    if kind in ("uint8", "int16"):
        return rng.integers(0, 256, shape).astype(kind)
    if kind.startswith("integral"):
        return rng.integers(0, 256, shape).astype("float" + kind[-2:])
    image = rng.random(shape).astype(kind)
    image.flat[0] = 0.0  # the exact ends of [0, 1] must survive the round trip
    image.flat[-1] = 1.0
    return image


def layout_arg(rng, channels, layout):
    """`layout` or None (inference) where inference gives `layout` for sure; 4 channels need the argument."""
    return layout if channels == 4 or rng.random() < 0.5 else None


# ---------------------------------------------------------------------------------------------- layout / rescale


def test_to_channel_dimension_format_matches():
    rng = np.random.default_rng(0)
    for channels, (h, w), layout, target, given_fmt in itertools.product(
        (1, 3, 4), ((1, 1), (5, 7), (2, 9)), (FIRST, LAST), (FIRST, LAST, "channels_first", "channels_last"), (0, 1)
    ):
        image = make_image(rng, "uint8", channels, h, w, layout)
        fmt = layout if (given_fmt or channels == 4) else None
        if fmt is None and F.infer_channel_dimension_format(image) != layout:
            fmt = layout
        ref = T.to_channel_dimension_format(image, target, fmt)
        ours = F.to_channel_dimension_format(image, target, fmt)
        assert_same(ours, ref)
        assert (ours is image) == (ref is image)
        batch = np.stack([image, image + 1])
        ref = T.to_channel_dimension_format(batch, target, layout)
        assert_same(F.to_channel_dimension_format(batch, target, layout), ref)
        tensor = torch.from_numpy(image)
        out_t = F.to_channel_dimension_format(tensor, target, layout)
        assert isinstance(out_t, torch.Tensor)
        assert torch.equal(out_t, T.to_channel_dimension_format(tensor, target, layout))


def test_rescale_matches():
    rng = np.random.default_rng(1)
    scales = (1 / 255, 0.5, 3.7, np.float32(1 / 255), 1 / 127.5, -2.0)
    for kind, scale, dtype, data_format in itertools.product(
        ("uint8", "int16", "float16", "float32", "float64"), scales, (np.float32, np.float64, np.float16),
        (None, FIRST, LAST),
    ):
        image = make_image(rng, kind, 3, 4, 6, LAST)
        ref = T.rescale(image, scale, data_format=data_format, dtype=dtype, input_data_format=LAST)
        assert_same(F.rescale(image, scale, data_format=data_format, dtype=dtype, input_data_format=LAST), ref)
    # All 256 uint8 values: the float64 product cast to float32 (not a float32 product).
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    ours = F.rescale(values, 1 / 255)
    assert_same(ours, T.rescale(values, 1 / 255))
    assert np.array_equal(ours, (values.astype(np.float64) * (1 / 255)).astype(np.float32))


# ---------------------------------------------------------------------------------------------- normalize


def test_normalize_matches():
    rng = np.random.default_rng(2)
    cases = 0
    for kind, channels, layout, data_format, scalar in itertools.product(
        ("uint8", "int16", "float16", "float32", "float64", "integral32"), (1, 3, 4), (FIRST, LAST),
        (None, FIRST, LAST), (0, 1),
    ):
        h, w = rng.integers(1, 9, 2)
        image = make_image(rng, kind, channels, h, w, layout)
        if scalar:
            mean, std = float(rng.random()), float(rng.random() + 0.05)
        else:
            mean, std = list(rng.random(channels)), tuple(rng.random(channels) + 0.05)
        fmt = layout_arg(rng, channels, layout)
        if fmt is None and F.infer_channel_dimension_format(image) != layout:
            fmt = layout
        ref = T.normalize(image, mean, std, data_format=data_format, input_data_format=fmt)
        assert_same(F.normalize(image, mean, std, data_format=data_format, input_data_format=fmt), ref)
        cases += 1
    assert cases == 6 * 3 * 2 * 3 * 2
    # Typical processor constants on every uint8 value, after rescale (the table the fast path gathers from).
    values = F.rescale(np.arange(256, dtype=np.uint8).reshape(1, 256, 1).repeat(3, axis=2), 1 / 255)
    clip = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
    for mean, std in (clip, ([0.5] * 3, [0.5] * 3), ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])):
        ref = T.normalize(values, mean, std, input_data_format=LAST)
        assert_same(F.normalize(values, mean, std, input_data_format=LAST), ref)


# ---------------------------------------------------------------------------------------------- center_crop


CROP_GEOMETRIES = [
    # (height, width, crop_height, crop_width): smaller, equal, larger by odd and even amounts, mixed, 1-pixel sides
    (1, 1, 1, 1), (1, 1, 4, 3), (1, 7, 1, 3), (7, 1, 2, 4), (5, 5, 3, 3), (6, 9, 3, 4), (6, 9, 6, 9),
    (4, 4, 7, 7), (4, 4, 8, 9), (5, 8, 10, 3), (9, 2, 4, 5), (3, 10, 6, 10), (10, 3, 10, 6), (2, 2, 5, 2),
    (13, 7, 2, 12), (8, 8, 1, 1), (224, 300, 224, 224), (7, 7, 224, 224),
]


@pytest.mark.parametrize("height,width,crop_h,crop_w", CROP_GEOMETRIES)
def test_center_crop_matches(height, width, crop_h, crop_w):
    rng = np.random.default_rng(height * 1000 + width * 10 + crop_h + crop_w)
    for kind, channels, layout, data_format in itertools.product(
        ("uint8", "float32", "float64"), (1, 3, 4), (FIRST, LAST), (None, FIRST, LAST)
    ):
        image = make_image(rng, kind, channels, height, width, layout)
        image += 1  # no zeros in the image, so any padding is visible
        fmt = layout_arg(rng, channels, layout)
        if fmt is None and F.infer_channel_dimension_format(image) != layout:
            fmt = layout
        ref = T.center_crop(image, (crop_h, crop_w), data_format=data_format, input_data_format=fmt)
        ours = F.center_crop(image, (crop_h, crop_w), data_format=data_format, input_data_format=fmt)
        assert_same(ours, ref)
        out_layout = data_format or layout
        assert F.get_image_size(ours, out_layout) == (crop_h, crop_w)
        if crop_h > height or crop_w > width:
            assert (ours == 0).any()  # really took the padding branch


def test_center_crop_odd_padding_goes_top_left():
    image = np.full((1, 2, 2), 7, dtype=np.uint8)
    out = F.center_crop(image, (5, 3), input_data_format=FIRST)
    assert out.shape == (1, 5, 3)
    rows, cols = np.nonzero(out[0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 3, 1, 2)


# ---------------------------------------------------------------------------------------------- resize / PIL


RESIZE_SIZES = [  # ((height, width), output size): up, down, mixed, same size, 1-pixel sides
    ((1, 1), (5, 3)), ((7, 5), (3, 2)), ((6, 9), (12, 17)), ((9, 6), (9, 6)), ((1, 13), (4, 1)), ((31, 23), (8, 40)),
]
RESIZE_KINDS = {"uint8": np.uint8, "float16": np.float32, "float32": np.float32, "float64": np.float32,
                "integral32": np.uint8, "integral64": np.uint8, "int16": np.uint8}


@pytest.mark.parametrize("resample", FILTERS, ids=[f.name for f in FILTERS])
@pytest.mark.parametrize("kind", list(RESIZE_KINDS))
def test_resize_matches(resample, kind):
    rng = np.random.default_rng(int(resample) * 100 + len(kind))
    for ((h, w), size), channels, layout in itertools.product(RESIZE_SIZES, (1, 3, 4), (FIRST, LAST)):
        image = make_image(rng, kind, channels, h, w, layout)
        fmt = layout_arg(rng, channels, layout)
        if fmt is None and F.infer_channel_dimension_format(image) != layout:
            fmt = layout
        data_format = [None, FIRST, LAST][rng.integers(3)]
        ref = T.resize(image, size, resample=resample, data_format=data_format, input_data_format=fmt)
        ours = F.resize(image, size, resample=resample, data_format=data_format, input_data_format=fmt)
        assert_same(ours, ref)
        integral = image.size == 1 and kind.startswith("float")  # a lone 1.0 counts as integral
        assert ours.dtype == (np.uint8 if integral else RESIZE_KINDS[kind])  # each branch really runs
        assert F.get_image_size(ours, data_format or layout) == size


def test_resize_extras_match():
    rng = np.random.default_rng(5)
    # Default filter, reducing_gap, return_numpy=False, torch input, PIL input, binary and all-zero float images.
    image = make_image(rng, "float32", 3, 40, 30, LAST)
    for gap in (None, 1.0, 2.0, 3.5):
        for resample in FILTERS:
            assert_same(F.resize(image, (9, 7), resample=resample, reducing_gap=gap),
                        T.resize(image, (9, 7), resample=resample, reducing_gap=gap))
    assert_same(F.resize(image, (9, 7), return_numpy=False), T.resize(image, (9, 7), return_numpy=False))
    ref = T.resize(image, (9, 7))
    assert_same(F.resize(torch.from_numpy(image), (9, 7)), ref)
    pil = PIL.Image.fromarray(make_image(rng, "uint8", 3, 12, 10, LAST))
    assert_same(F.resize(pil, (5, 4), input_data_format=LAST), T.resize(pil, (5, 4), input_data_format=LAST))
    assert_same(F.resize(pil, (5, 4)), T.resize(pil, (5, 4), input_data_format=LAST))
    for special in (np.zeros((6, 5, 3), np.float32), (rng.random((6, 5, 3)) > 0.5).astype(np.float64),
                    np.full((6, 5, 3), 200.001, np.float64)):
        ours = F.resize(special, (4, 8))
        assert ours.dtype == np.uint8  # np.allclose calls these "integral": no rescale, uint8 out
        assert_same(ours, T.resize(special, (4, 8)))
    same = make_image(rng, "float64", 3, 8, 8, LAST)  # same size: still quantised to uint8 and back
    ours = F.resize(same, (8, 8))
    assert_same(ours, T.resize(same, (8, 8)))
    assert not np.array_equal(ours, same.astype(np.float32))


def test_to_pil_image_matches():
    rng = np.random.default_rng(6)
    for kind, channels, layout, do_rescale in itertools.product(
        ("uint8", "float32", "float64", "integral32"), (1, 3, 4), (FIRST, LAST), (None, False, True)
    ):
        image = make_image(rng, kind, channels, 5, 6, layout)
        if do_rescale is False and kind.startswith("float"):
            continue  # explicit do_rescale=False on [0, 1] floats: both just truncate to 0/1
        if do_rescale is True and kind != "float32":
            continue
        ref = T.to_pil_image(image, do_rescale=do_rescale, input_data_format=layout)
        ours = F.to_pil_image(image, do_rescale=do_rescale, input_data_format=layout)
        assert_same(ours, ref)
        assert ours.mode == {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    image = make_image(rng, "uint8", 3, 5, 6, FIRST)
    assert_same(F.to_pil_image(torch.from_numpy(image)), T.to_pil_image(torch.from_numpy(image)))
    assert_same(F.to_pil_image(image, image_mode="RGB"), T.to_pil_image(image, image_mode="RGB"))
    pil = PIL.Image.new("RGB", (3, 2))
    assert F.to_pil_image(pil) is pil


def _pil_inputs(rng):
    rgba = make_image(rng, "uint8", 4, 7, 5, LAST)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255
    images = [PIL.Image.fromarray(rgba), PIL.Image.fromarray(rgba[..., :3]), PIL.Image.fromarray(rgba[..., 0]),
              PIL.Image.fromarray(rgba).convert("LA"), PIL.Image.fromarray(rgba[..., :3]).convert("P"),
              PIL.Image.fromarray(rgba[..., 0]).convert("1"), PIL.Image.fromarray(rgba[..., :3]).convert("CMYK")]
    palette = PIL.Image.fromarray(rgba[..., :3]).convert("P")
    palette.info["transparency"] = int(np.asarray(palette)[0, 0])
    grey = PIL.Image.fromarray(rgba[..., 0])
    grey.info["transparency"] = int(rgba[0, 0, 0])
    rgb_t = PIL.Image.fromarray(rgba[..., :3])
    rgb_t.info["transparency"] = tuple(int(v) for v in rgba[0, 0, :3])
    return images + [palette, grey, rgb_t, PIL.Image.fromarray(rgba).convert("PA")]


def test_convert_to_rgb_pil_matches():
    rng = np.random.default_rng(7)
    for image, return_numpy in itertools.product(_pil_inputs(rng), (False, True)):
        ref = T.convert_to_rgb(image, return_numpy=return_numpy)
        assert_same(F.convert_to_rgb(image, return_numpy=return_numpy), ref)


def test_convert_to_rgb_numpy_matches():
    rng = np.random.default_rng(8)
    for kind, channels, layout, fmt_given in itertools.product(
        ("uint8", "int16", "float32", "float64"), (1, 3, 4), (FIRST, LAST), (0, 1)
    ):
        image = make_image(rng, kind, channels, 6, 5, layout)
        fmt = layout if fmt_given else None
        if fmt is None and F.infer_channel_dimension_format(image, (1, 3, 4)) != layout:
            fmt = layout
        ref = T.convert_to_rgb(image, return_numpy=True, input_data_format=fmt)
        ours = F.convert_to_rgb(image, return_numpy=True, input_data_format=fmt)
        assert_same(ours, ref)
        assert ours.shape[0 if layout == FIRST else -1] == 3
        if kind == "uint8" and layout == LAST:
            assert_same(F.convert_to_rgb(image, input_data_format=fmt), T.convert_to_rgb(image, input_data_format=fmt))


# ---------------------------------------------------------------------------------------------- size helpers


size_values = st.integers(1, 4096)
sizes = st.one_of(
    st.none(), size_values, st.tuples(size_values, size_values), st.lists(size_values, min_size=2, max_size=2),
    st.sampled_from(sorted(map(sorted, HF_utils.VALID_SIZE_DICT_KEYS)) + [["height"], ["width", "shortest_edge"]])
    .flatmap(lambda keys: st.fixed_dictionaries({k: size_values for k in keys})),
)


@settings(max_examples=400, deadline=None)
@given(size=sizes, max_size=st.one_of(st.none(), size_values), hw_order=st.booleans(), square=st.booleans())
def test_get_size_dict_matches(size, max_size, hw_order, square):
    kwargs = dict(max_size=max_size, height_width_order=hw_order, default_to_square=square, param_name="crop_size")
    try:
        ref = HF_utils.get_size_dict(size, **kwargs)
    except ValueError:
        with pytest.raises(ValueError):
            F.get_size_dict(size, **kwargs)
        return
    assert F.get_size_dict(size, **kwargs) == ref


def test_get_size_dict_accepts_transformers_size_dict():
    from transformers.image_utils import SizeDict

    for size in (SizeDict(height=3, width=4), SizeDict(shortest_edge=5), SizeDict(shortest_edge=5, longest_edge=9)):
        assert F.get_size_dict(size) == HF_utils.get_size_dict(size) == dict(size)
    with pytest.raises(ValueError, match="crop_size must have one of"):
        F.get_size_dict(SizeDict(height=3), param_name="crop_size")


@settings(max_examples=400, deadline=None)
@given(
    hw=st.tuples(st.integers(1, 3000), st.integers(1, 3000)), channels=st.sampled_from([1, 3]),
    layout=st.sampled_from([FIRST, LAST]),
    size=st.one_of(st.integers(1, 1500), st.lists(st.integers(1, 1500), min_size=1, max_size=2),
                   st.tuples(st.integers(1, 1500), st.integers(1, 1500))),
    square=st.booleans(), max_size=st.one_of(st.none(), st.integers(1, 3000)),
)
def test_get_resize_output_image_size_matches(hw, channels, layout, size, square, max_size):
    shape = (*hw, channels) if layout == LAST else (channels, *hw)
    image = np.broadcast_to(np.uint8(0), shape)
    try:
        ref = T.get_resize_output_image_size(image, size, square, max_size, layout)
    except ValueError:
        with pytest.raises(ValueError, match="max_size"):
            F.get_resize_output_image_size(image, size, square, max_size, layout)
        return
    assert F.get_resize_output_image_size(image, size, square, max_size, layout) == ref
    if not square and not isinstance(size, (tuple, list)) or (isinstance(size, list) and len(size) == 1):
        assert F.get_resize_output_image_size(hw, size, square, max_size) == ref


# ---------------------------------------------------------------------------------------------- errors and extras


def test_normalize_errors():
    image = np.random.default_rng(9).random((4, 4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="mean must have 3 elements"):
        F.normalize(image, [0.5, 0.5], 0.5)
    with pytest.raises(ValueError, match="std must have 3 elements"):
        F.normalize(image, 0.5, [0.5] * 4)
    for std in (0.0, [0.5, 0.0, 0.5], float("inf"), [0.5, float("nan"), 0.5], 1e300):
        with pytest.raises(ValueError, match="std must be finite and non-zero"):
            F.normalize(image, 0.5, std)
    with pytest.raises(ValueError, match="std must be finite and non-zero"):
        F.normalize(image.astype(np.float16), 0.5, 1e-8)  # underflows to 0 in the image dtype
    with pytest.raises(ValueError, match="mean must be finite"):
        F.normalize(image, [0.5, float("nan"), 0.5], 0.5)
    with pytest.raises(TypeError, match="numpy array"):
        F.normalize(image.tolist(), 0.5, 0.5)
    with pytest.raises(ValueError, match="3 dimensions"):
        F.normalize(image[..., 0], 0.5, 0.5, input_data_format=LAST)


def test_center_crop_errors():
    image = np.zeros((3, 4, 4), np.uint8)
    for size in ((0, 2), (2, 0), (-1, 3)):
        with pytest.raises(ValueError, match="must be positive"):
            F.center_crop(image, size)
    for size in ((2,), (1, 2, 3), 5):
        with pytest.raises(ValueError, match="2 elements"):
            F.center_crop(image, size)
    with pytest.raises(TypeError, match="np.ndarray"):
        F.center_crop(torch.zeros(3, 4, 4), (2, 2))


def test_resize_errors():
    image = np.random.default_rng(10).random((5, 5, 3))
    for bad in (np.nan, np.inf, -np.inf):
        poisoned = image.copy()
        poisoned[2, 3, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            F.resize(poisoned, (3, 3))
        with pytest.raises(ValueError, match="NaN or infinite"):
            F.to_pil_image(poisoned, do_rescale=True)
    with pytest.raises(ValueError, match=r"outside the range \[0, 1\]"):
        F.resize(image * 1.5, (3, 3))
    with pytest.raises(ValueError, match=r"outside the range \[0, 255\]"):
        F.resize(np.full((5, 5, 3), 256.0), (3, 3))
    with pytest.raises(ValueError, match=r"outside the range \[0, 255\]"):
        F.resize(np.full((5, 5, 3), -1, np.int16), (3, 3))
    for size in ((3,), (3, 3, 3), "ab"):
        with pytest.raises(ValueError, match="2 elements"):
            F.resize(image, size)
    for size in ((0, 3), (3, -2)):
        with pytest.raises(ValueError, match="must be positive"):
            F.resize(image, size)
    with pytest.raises(TypeError, match="must be integers"):
        F.resize(image, (3.0, 3))
    with pytest.raises(ValueError, match="no zero-sized axis"):
        F.resize(np.zeros((0, 4, 3), np.uint8), (2, 2), input_data_format=LAST)
    with pytest.raises(ValueError, match="1 to 4 channels"):
        F.resize(np.zeros((4, 4, 5), np.uint8), (2, 2), input_data_format=LAST)
    with pytest.raises(ValueError, match="3-D"):
        F.resize(np.zeros((2, 4, 4, 3), np.uint8), (2, 2))
    with pytest.raises(ValueError, match="3 dimensions"):
        F.resize(np.zeros((4, 4), np.uint8), (2, 2))
    with pytest.raises(TypeError, match="np.ndarray"):
        F.resize([[0]], (2, 2), input_data_format=LAST)


def test_other_errors():
    with pytest.raises(ValueError, match="not a valid ChannelDimension"):
        F.to_channel_dimension_format(np.zeros((3, 4, 4)), "channels_middle")
    with pytest.raises(TypeError, match="np.ndarray or torch.Tensor"):
        F.to_channel_dimension_format([[[0]]], FIRST)
    with pytest.raises(TypeError, match="np.ndarray"):
        F.rescale(torch.zeros(3, 2, 2), 0.5)
    with pytest.raises(ValueError, match="not supported"):
        F.to_pil_image([[0, 1]])
    with pytest.raises(ValueError, match=r"outside the range \[0, 1\]"):
        F.convert_to_rgb(np.full((4, 4, 4), 2.0, np.float32), return_numpy=True)
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        F.convert_to_rgb(np.zeros((4, 4, 2), np.uint8), return_numpy=True, input_data_format=LAST)
    with pytest.raises(ValueError, match="PIL or numpy"):
        F.convert_to_rgb("image.png")
    with pytest.raises(ValueError, match="Could not convert"):
        F.get_size_dict(224.0)
    with pytest.raises(ValueError, match="2 elements"):
        F.get_size_dict((1, 2, 3))


def test_no_torch_import_at_module_level():
    code = "import sys, fused_imgproc.transforms; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
