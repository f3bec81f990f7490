"""Hypothesis strategies of tests/test_fuzz.py: a fuzz example is plain data (dicts, tuples, numbers, strings), so
a falsifying example prints as a readable, copyable reproducer; `build_images` turns it into the actual inputs.

An example is `{"family", "wild", "images", "ctor", "call", "return_tensors", "input_data_format", "triton"}`:

- `images`: one image spec, a list of them (ragged), a list of lists (nested), or a 4-D batch spec; an image spec
  is an array or tensor (any rank, HWC/CHW, dtype, value range, contiguous / reversed view / zero-stride
  broadcast), a PIL image of any common mode, or something that is not an image (`None`, a string).
- `ctor` / `call`: config values given to the constructor / to the call (sizes incl. 0, negative and huge; crop
  sizes; resample values; rescale factors; means and stds incl. 0, tiny, huge, NaN, the wrong length; do_* flags
  incl. None).
- `wild`: which parts may be odd ("none", "images", "config" or "all"); the other parts are plausible, so that one
  odd value meets an otherwise valid call and reaches further than a call where everything is odd.
- `triton`: also run our Triton backend (small images and sizes only: the interpreter costs milliseconds per
  program).
"""

from __future__ import annotations

import numpy as np
import PIL.Image
from hypothesis import strategies as st

# (our class name, transformers' class name, extra config keys the family takes)
FAMILIES = {
    "CLIP": ("CLIPImageProcessor", "CLIPImageProcessorPil", ()),
    "ViT": ("ViTImageProcessor", "ViTImageProcessorPil", ()),
    "DeiT": ("DeiTImageProcessor", "DeiTImageProcessorPil", ()),
    "ConvNext": ("ConvNextImageProcessor", "ConvNextImageProcessorPil", ("crop_pct",)),
    "Levit": ("LevitImageProcessor", "LevitImageProcessorPil", ()),
    "PoolFormer": ("PoolFormerImageProcessor", "PoolFormerImageProcessorPil", ("crop_pct",)),
    "Bit": ("BitImageProcessor", "BitImageProcessorPil", ()),
    "MobileNetV2": ("MobileNetV2ImageProcessor", "MobileNetV2ImageProcessorPil", ()),
    "Segformer": ("SegformerImageProcessor", "SegformerImageProcessorPil", ()),
    "Beit": ("BeitImageProcessor", "BeitImageProcessorPil", ()),
}

# Each part of an example is tame (plausible: most such calls reach a result to compare) or wild (anything).
TAME_DTYPES = ["uint8", "uint8", "float32", "float64"]
WILD_DTYPES = ["uint8", "float32", "float64", "float16", "uint16", "int32", "bool", "complex64"]
# unit: [0, 1]; integral: integers in [0, 255]; edge: [0, 1]'s ends (-0.0, 1.0, the floats just inside); wide: out
# of range both ways; nan/inf: unit with a few specials.
TAME_VALUES = ["integral", "integral", "unit", "unit", "edge", "zeros", "ones"]
WILD_VALUES = ["integral", "unit", "edge", "wide", "nan", "inf"]
TAME_MODES = ["RGB", "RGB", "RGB", "L", "RGBA", "P"]
WILD_MODES = ["RGB", "L", "RGBA", "P", "LA", "I", "F", "1"]
HUGE = [10**6, 2**31, 10**9, 20000]


def _side(max_side: int, wild: bool):
    """An image side: mostly small, sometimes 1; when wild also 0 or larger than the small range."""
    tame = st.one_of(st.integers(1, max_side), st.integers(1, max_side), st.just(1))
    return st.one_of(tame, tame, st.sampled_from([0, 97, 300])) if wild else tame


@st.composite
def array_spec(draw, small: bool, wild: bool):
    max_side = 16 if small else 48
    h, w = draw(_side(max_side, wild and not small)), draw(_side(max_side, wild and not small))
    channels = draw(st.sampled_from([3, 3, 3, 1, 4, 2, 5, 7] if wild else [3, 3, 3, 1, 4]))
    layout = draw(st.sampled_from(["hwc", "hwc", "chw", "chw", "hw", "flat", "5d"] if wild else ["hwc", "chw"]))
    container = draw(st.sampled_from(["numpy", "numpy", "numpy", "torch", "reversed", "broadcast"]))
    if container == "broadcast" and wild and not small and draw(st.integers(0, 3)) == 0:
        # A zero-stride view of a huge logical image: a few bytes of memory, gigabytes if anything copies it.
        h = w = draw(st.sampled_from([4096, 20000, 2**16]))
    shape = {"hwc": (h, w, channels), "chw": (channels, h, w), "hw": (h, w), "flat": (h * w,),
             "5d": (1, 1, h, w, channels)}[layout]
    return {"kind": "array", "shape": shape, "layout": layout,
            "dtype": draw(st.sampled_from(WILD_DTYPES if wild else TAME_DTYPES)),
            "values": draw(st.sampled_from(WILD_VALUES if wild else TAME_VALUES)), "container": container,
            "seed": draw(st.integers(0, 9))}


@st.composite
def pil_spec(draw, small: bool, wild: bool):
    max_side = 16 if small else 48
    size = (draw(_side(max_side, wild and not small)), draw(_side(max_side, wild and not small)))
    return {"kind": "pil", "mode": draw(st.sampled_from(WILD_MODES if wild else TAME_MODES)), "size": size,
            "values": draw(st.sampled_from(WILD_VALUES if wild else TAME_VALUES)), "seed": draw(st.integers(0, 9))}


def image_spec(small: bool, wild: bool):
    arrays, pils = array_spec(small, wild), pil_spec(small, wild)
    if wild and not small:
        return st.one_of(arrays, arrays, pils, st.sampled_from([{"kind": "none"}, {"kind": "string"}]))
    return st.one_of(arrays, arrays, pils)


@st.composite
def images_spec(draw, small: bool, wild: bool):
    shape = draw(st.sampled_from(["one", "one", "list", "list", "nested", "batch"] + ["empty"] * wild))
    if shape == "one":
        return draw(image_spec(small, wild))
    if shape == "list":
        return draw(st.lists(image_spec(small, wild), min_size=1, max_size=4))
    if shape == "nested":
        return draw(st.lists(st.lists(image_spec(small, wild), min_size=1, max_size=2), min_size=1, max_size=2))
    if shape == "batch":
        item = draw(array_spec(small, wild).filter(lambda spec: len(spec["shape"]) == 3 and max(spec["shape"]) <= 300))
        return {"kind": "batch", "n": draw(st.integers(0 if wild else 1, 3)), "item": item}
    return []


# --- config values ---------------------------------------------------------------------------------------------


def _size_value(small: bool, wild: bool):
    good = st.integers(1, 16) if small else st.one_of(st.integers(1, 48), st.integers(1, 48), st.just(224))
    return st.one_of(good, st.sampled_from([0, -1, -224] + HUGE)) if wild else good


def size_strategy(small: bool, wild: bool):
    n = _size_value(small, wild)
    forms = [
        st.builds(lambda v: {"shortest_edge": v}, n),
        st.builds(lambda h, w: {"height": h, "width": w}, n, n),
        n,
        st.builds(lambda s, m: {"shortest_edge": s, "longest_edge": m}, n, n),
        st.builds(lambda h, w: {"max_height": h, "max_width": w}, n, n),
    ]
    return st.one_of(*forms, st.sampled_from([{"width": 10}, {"longest_edge": 9}, {}])) if wild else st.one_of(*forms)


def crop_strategy(small: bool, wild: bool):
    n = _size_value(small, wild)
    return st.one_of(st.builds(lambda h, w: {"height": h, "width": w}, n, n), n)


_WILD_NUMBERS = [0.0, 0.5, 1.0, -1.0, 1e-50, 1e-45, 1e-38, 1e39, 1e300, 10**400, float("nan"), float("inf"),
                 -float("inf"), 2, 0]


def number(wild: bool):
    tame = st.one_of(st.floats(0.05, 2), st.sampled_from([0.5, 0.48145466, 1, 2, -0.25]))
    odd = st.sampled_from(_WILD_NUMBERS)
    return st.one_of(tame, odd, odd, st.floats(width=64)) if wild else tame


def mean_std(wild: bool):
    if not wild:
        return st.one_of(number(False), st.lists(number(False), min_size=3, max_size=3))
    return st.one_of(number(True), st.lists(number(True), min_size=0, max_size=5),
                     st.lists(st.floats(0.1, 1), min_size=3, max_size=3))


def config_values(family: str, small: bool, wild: bool):
    """Strategies of the config keys (some keys of some examples are drawn, the rest keep the defaults)."""
    flags = st.sampled_from([True, False, None])
    values = {
        "do_resize": flags, "do_center_crop": flags, "do_rescale": flags, "do_normalize": flags,
        "do_convert_rgb": flags,
        "size": size_strategy(small, wild), "crop_size": crop_strategy(small, wild),
        "resample": st.one_of(st.integers(0, 5), st.sampled_from([-1, 6, 2.0, "bicubic", None, True])) if wild
        else st.integers(0, 5),
        "rescale_factor": st.one_of(st.sampled_from([1 / 255, 1 / 127.5]), number(wild)),
        "image_mean": mean_std(wild), "image_std": mean_std(wild),
    }
    if "crop_pct" in FAMILIES[family][2]:
        values["crop_pct"] = st.sampled_from([0.875, 0.9, 1.0, 0.5, 1.5] + [0, -1, 1e-9, 10.0, None, float("nan")]
                                             * wild)
    return values


@st.composite
def examples(draw, triton_share: int = 8):
    """One fuzz example (see the module docstring). About one in `triton_share` is small and runs Triton too.

    Which parts are wild: none (a third of the examples), the images, some config values, or everything; one odd
    value among plausible ones reaches further into the pipeline than an example where everything is odd."""
    family = draw(st.sampled_from(sorted(FAMILIES)))
    triton = draw(st.integers(0, triton_share - 1)) == 0
    wild = draw(st.sampled_from(["none", "none", "images", "config", "config", "all"]))
    tame_values, wild_values = config_values(family, triton, False), config_values(family, triton, True)
    ctor, call = {}, {}
    for key in tame_values:
        where = draw(st.sampled_from(["default", "default", "ctor", "call"]))
        if where != "default":
            odd = wild == "all" or (wild == "config" and draw(st.integers(0, 2)) == 0)
            (ctor if where == "ctor" else call)[key] = draw((wild_values if odd else tame_values)[key])
    if triton:  # the family defaults (224, 384) would cost the interpreter seconds: small sizes unless drawn
        ctor.setdefault("size", {"height": 12, "width": 11} if family in ("ViT", "DeiT") else {"shortest_edge": 12})
        ctor.setdefault("crop_size", {"height": 10, "width": 9})
    return {
        "family": family, "wild": wild, "images": draw(images_spec(triton, wild in ("images", "all"))),
        "ctor": ctor, "call": call, "triton": triton, "return_tensors": draw(st.sampled_from([None, "np"])),
        "input_data_format": draw(st.sampled_from([None, None, None, "channels_first", "channels_last"])),
    }


# --- building the inputs from a spec ------------------------------------------------------------------------------


def _values(shape, values: str, dtype: str, rng) -> np.ndarray:
    """float64 values of `shape` for the value range `values`, cast to `dtype` (no warnings on wrap-around)."""
    if values == "integral":
        data = rng.integers(0, 256, shape).astype(np.float64)
    elif values == "wide":
        data = rng.uniform(-1000, 70000, shape)
    elif values == "edge":
        data = rng.choice(np.array([-0.0, 0.0, 2.0**-149, 1e-9, 0.5, 1 - 2.0**-24, 1 - 2.0**-53, 1.0]), shape)
    elif values in ("zeros", "ones"):
        data = np.full(shape, 0.0 if values == "zeros" else 1.0)
    else:
        data = rng.random(shape)
        if values in ("nan", "inf") and data.size:
            flat = data.reshape(-1)
            flat[rng.integers(0, flat.size, max(1, flat.size // 50))] = np.nan if values == "nan" else np.inf
    if dtype == "bool":
        return data > 0.5
    if dtype == "complex64":
        return (data + 1j * data[::-1]).astype(np.complex64) if data.ndim else data.astype(np.complex64)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        data = np.nan_to_num(data, nan=0, posinf=info.max, neginf=info.min)
        return np.clip(np.round(data) if values != "wide" else data, info.min, info.max).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        return data.astype(dtype)


def build_image(spec, torch=None):
    """The input an image spec describes (`torch` is the torch module when the spec asks for a tensor)."""
    kind = spec["kind"]
    if kind == "none":
        return None
    if kind == "string":
        return "cat.png"
    rng = np.random.default_rng(spec["seed"])
    if kind == "pil":
        return _pil(spec, rng)
    shape, container = tuple(spec["shape"]), spec["container"]
    if container == "broadcast":  # one pixel (its channels) repeated through zero strides
        channel_axis = {"chw": 0, "hwc": 2, "5d": 4}.get(spec["layout"])
        base_shape = tuple(n if i == channel_axis else 1 for i, n in enumerate(shape))
        return np.broadcast_to(_values(base_shape, spec["values"], spec["dtype"], rng), shape)
    array = _values(shape, spec["values"], spec["dtype"], rng)
    if container == "reversed":
        return array[::-1, ::-1] if array.ndim >= 2 else array[::-1]
    if container == "torch":
        return torch.from_numpy(np.ascontiguousarray(array))
    return array


def _pil(spec, rng) -> PIL.Image.Image:
    w, h = spec["size"]
    mode, values = spec["mode"], spec["values"]
    if mode == "F":
        return PIL.Image.fromarray(_values((h, w), values, "float32", rng), "F")
    if mode == "I":
        data = _values((h, w), "wide" if values == "wide" else "integral", "int32", rng)
        return PIL.Image.fromarray(data.astype(np.int32), "I")
    pixels = _values((h, w, 4), "integral", "uint8", rng)
    if mode in ("RGB", "P", "1"):
        image = PIL.Image.fromarray(np.ascontiguousarray(pixels[..., :3]), "RGB")
        return image if mode == "RGB" else image.convert(mode)
    if mode == "RGBA":
        return PIL.Image.fromarray(pixels, "RGBA")
    if mode == "LA":
        return PIL.Image.fromarray(pixels[..., :3], "RGB").convert("LA")
    return PIL.Image.fromarray(np.ascontiguousarray(pixels[..., 0]), "L")


def build_images(spec, torch=None):
    """The `images` argument a spec describes: an image, a (nested) list of images, or a 4-D batch."""
    if isinstance(spec, list):
        return [build_images(item, torch) for item in spec]
    if spec["kind"] == "batch":
        item = spec["item"]
        items = [build_image({**item, "seed": item["seed"] + k}, torch) for k in range(spec["n"])]
        if not items:
            return np.zeros((0,) + tuple(item["shape"]), dtype=item["dtype"])
        if item["container"] == "torch":
            return torch.stack(items)
        return np.stack(items)
    return build_image(spec, torch)
