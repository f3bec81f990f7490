"""`BaseImageProcessor`: transformers' preprocessing API over a plan executed by a backend."""

from __future__ import annotations

import copy
import importlib
import logging
import math
import numbers
import operator
import sys
from typing import Any

import numpy as np

from ..backends import BackendUnavailableError
from ..backends import numpy as numpy_backend
from ..batch import BatchFeature, TensorType
from ..config import ImageProcessingMixin
from ..geometry import ImageGeometry, default_resize_size
from ..image_utils import (
    ChannelDimension,
    PILImageResampling,
    as_float,
    is_torch_tensor,
    make_flat_list_of_images,
    prepare_image,
)
from ..limits import check_aspect_ratio, check_call_bytes, check_pillow_sides, check_pixels
from ..plan import CHANNELS_FIRST, BatchPlan, ImageLayout, ImagePlan, PatchLayout, classify_source, make_value_map
from ..transforms import get_size_dict
from . import call_cache
from .methods import ImageOpsMixin

logger = logging.getLogger("fused_imgproc")

CONFIG_KEYS = (
    "do_convert_rgb",
    "do_resize",
    "size",
    "resample",
    "do_center_crop",
    "crop_size",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
)
_BOOL_KEYS = ("do_convert_rgb", "do_resize", "do_center_crop", "do_rescale", "do_normalize")
BACKENDS = ("auto", "numpy", "triton")
# transformers 5.x's backend names. Ours are bit-exact with its PIL backend, so "pil" (the CPU reference) is our numpy
# backend and "torchvision" (its fast backend, on the GPU with `device=`) is "auto": Triton on a GPU, numpy on the CPU.
BACKEND_ALIASES = {"pil": "numpy", "torchvision": "auto"}
# Keyword arguments that choose a backend when a processor is built or loaded; never saved to the config.
_BACKEND_KWARGS = ("backend", "use_fast")
_warned_kwargs: set[tuple[str, str]] = set()


class BaseImageProcessor(ImageOpsMixin, ImageProcessingMixin):
    r"""
    Base class of the image processors: resize -> center crop -> rescale -> normalize -> layout, for a batch.

    Families declare defaults as class attributes (as transformers 5.x does) and, where their geometry differs,
    override `_resize_geometry`. Every argument of `preprocess` defaults to the attribute of the same name.
    """

    model_input_names = ["pixel_values"]
    extra_config_keys: tuple[str, ...] = ()

    do_convert_rgb = None
    do_resize = None
    size = None
    default_to_square = True
    resample = None
    do_center_crop = None
    crop_size = None
    do_rescale = None
    rescale_factor = 1 / 255
    do_normalize = None
    image_mean = None
    image_std = None

    # What a call's result depends on besides its arguments and inputs (the call cache's key compares them by value).
    _settings_getter = operator.attrgetter(*CONFIG_KEYS, "default_to_square", "backend")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._init_kwargs = CONFIG_KEYS + cls.extra_config_keys + _BACKEND_KWARGS
        cls._settings_getter = operator.attrgetter(*CONFIG_KEYS, *cls.extra_config_keys, "default_to_square", "backend")

    def __init__(self, **kwargs):
        default_backend = _default_backend(kwargs.pop("backend", None), kwargs.pop("use_fast", None))
        default_to_square = kwargs.get("default_to_square", type(self).default_to_square)
        values = {}
        for key in CONFIG_KEYS + self.extra_config_keys:
            # An explicit None is kept (and saved as null), as transformers keeps it; only a missing key takes the
            # class default.
            values[key] = kwargs.pop(key) if key in kwargs else copy.deepcopy(getattr(type(self), key, None))
        values = self._standardize(values, default_to_square)
        super().__init__(**kwargs)
        for key, value in values.items():
            setattr(self, key, value)
        self._backend = default_backend

    @property
    def backend(self) -> str:
        """`str`: the backend a call uses when it does not name one (`"auto"` unless chosen when built or loaded)."""
        return getattr(self, "_backend", "auto")

    # --- configuration ---------------------------------------------------------------------------------------

    def _standardize(self, values: dict[str, Any], default_to_square: bool) -> dict[str, Any]:
        """Normalises and type-checks config values (the same rules for `__init__` and `preprocess`)."""
        for key in _BOOL_KEYS:
            if values.get(key) is not None and not isinstance(values[key], (bool, np.bool_)):
                raise TypeError(f"{key} must be a bool, got {values[key]!r}")
        if values.get("size") is not None:
            values["size"] = _check_size_dict(get_size_dict(values["size"], default_to_square=default_to_square), "size")
        if values.get("crop_size") is not None:
            values["crop_size"] = _check_size_dict(get_size_dict(values["crop_size"], param_name="crop_size"), "crop_size")
        for key in ("image_mean", "image_std"):
            value = values.get(key)
            if value is None:
                continue
            if isinstance(value, (str, bytes, dict)) or not (_is_number(value) or hasattr(value, "__len__")):
                raise TypeError(f"{key} must be a number or a sequence of numbers, got {value!r}")
            if not _is_number(value) and not all(_is_number(v) for v in value):
                raise TypeError(f"{key} must contain only numbers, got {value!r}")
            for number in [value] if _is_number(value) else value:
                as_float(number, key)  # 10**400 is a ValueError here, at construction, not an OverflowError later
            if isinstance(value, list):
                values[key] = tuple(value)
        resample = values.get("resample")
        if resample is not None:
            if isinstance(resample, bool) or not isinstance(resample, (int, np.integer)):
                raise TypeError(f"resample must be a PILImageResampling value (an int), got {resample!r}")
            try:
                PILImageResampling(int(resample))
            except ValueError:
                raise ValueError(
                    f"resample={resample!r} is not a Pillow filter; valid values are "
                    f"{ {int(m): m.name for m in PILImageResampling} }"
                ) from None
        factor = values.get("rescale_factor")
        if factor is not None and (isinstance(factor, bool) or not isinstance(factor, numbers.Real)):
            raise TypeError(f"rescale_factor must be a number, got {factor!r}")
        if factor is not None:
            as_float(factor, "rescale_factor")
        return values

    def __getstate__(self) -> dict[str, Any]:
        # Pickles and copies leave the call cache behind (it holds device tensors and a lock).
        state = dict(self.__dict__)
        state.pop("_call_cache", None)
        return state

    def _calls(self) -> call_cache.CallCache:
        cache = self.__dict__.get("_call_cache")
        if cache is None:
            cache = self.__dict__.setdefault("_call_cache", call_cache.CallCache())
        return cache

    def to_dict(self) -> dict[str, Any]:
        """Attributes as transformers 5.x serialises them: a `None` is kept only where the class default is not."""
        output = {}
        for key, value in super().to_dict().items():
            if value is None and getattr(type(self), key, None) is None:
                continue
            output[key] = value
        return output

    # --- preprocessing ---------------------------------------------------------------------------------------

    def __call__(self, images, *args, **kwargs) -> BatchFeature:
        """Preprocess an image or a batch of images (same as `preprocess`)."""
        return self.preprocess(images, *args, **kwargs)

    def preprocess(
        self,
        images,
        do_resize: bool | None = None,
        size: dict[str, int] | None = None,
        resample: PILImageResampling | int | None = None,
        do_center_crop: bool | None = None,
        crop_size: dict[str, int] | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: float | list[float] | None = None,
        image_std: float | list[float] | None = None,
        do_convert_rgb: bool | None = None,
        return_tensors: str | TensorType | None = None,
        data_format: str | ChannelDimension | None = ChannelDimension.FIRST,
        input_data_format: str | ChannelDimension | None = None,
        dtype: Any = None,
        device: Any = None,
        backend: str | None = None,
        out: Any = None,
        **kwargs,
    ) -> BatchFeature:
        r"""
        Preprocess an image or a batch of images into `pixel_values`.

        Args:
            images (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them):
                One image, a list of images (any sizes, any PIL mode), or a 4-D batch. Arrays are HWC or CHW,
                uint8 or float.
            do_resize (`bool`, *optional*, defaults to `self.do_resize`): Whether to resize.
            size (`dict[str, int]`, *optional*, defaults to `self.size`): Target size of the resize.
            resample (`PILImageResampling`, *optional*, defaults to `self.resample`): Pillow filter of the resize.
            do_center_crop (`bool`, *optional*, defaults to `self.do_center_crop`): Whether to center crop.
            crop_size (`dict[str, int]`, *optional*, defaults to `self.crop_size`): Size of the center crop.
            do_rescale (`bool`, *optional*, defaults to `self.do_rescale`): Whether to multiply by `rescale_factor`.
            rescale_factor (`float`, *optional*, defaults to `self.rescale_factor`): The rescale factor.
            do_normalize (`bool`, *optional*, defaults to `self.do_normalize`): Whether to normalize.
            image_mean (`float` or `list[float]`, *optional*, defaults to `self.image_mean`): Per-channel mean.
            image_std (`float` or `list[float]`, *optional*, defaults to `self.image_std`): Per-channel std.
            do_convert_rgb (`bool`, *optional*, defaults to `self.do_convert_rgb`): Whether to convert to RGB.
            return_tensors (`str` or `TensorType`, *optional*):
                `None` for a list of arrays, `"np"` or `"pt"` for one (N, C, H, W) array/tensor (`"jax"`, `"tf"`
                when installed).
            data_format (`ChannelDimension` or `str`, *optional*, defaults to `ChannelDimension.FIRST`):
                Layout of the outputs: `"channels_first"` (C, H, W) or `"channels_last"` (H, W, C).
            input_data_format (`ChannelDimension` or `str`, *optional*):
                Layout of array inputs; inferred per image when not given.
            dtype (`np.dtype`, `torch.dtype` or `str`, *optional*, defaults to `float32`):
                Output dtype: float32, float16, float64, or bfloat16 (with `return_tensors="pt"`).
            device (`str` or `torch.device`, *optional*, defaults to the CPU):
                Where `pixel_values` is computed and returned. `"cuda"` runs the Triton backend.
            backend (`str`, *optional*, defaults to `self.backend`, `"auto"` unless chosen when built or loaded):
                `"numpy"` (CPU), `"triton"` (the fused kernel: a CUDA device, or the CPU under `TRITON_INTERPRET=1`),
                or `"auto"` (Triton for a CUDA device, numpy otherwise). Never falls back silently. transformers 5.x's
                names work too: `"pil"` is `"numpy"`, `"torchvision"` is `"auto"` (both are bit-exact with the PIL
                reference).
            out (`torch.Tensor`, *optional*):
                A contiguous tensor of the result's shape, dtype and device (Triton backend, `return_tensors="pt"`)
                to write `pixel_values` into, e.g. a server's fixed model-input buffer.
        """
        key = None
        if _may_run_triton(backend if backend is not None else self.backend, device):
            # A repeated call of the same settings, arguments and input shapes replays its program (call_cache.py).
            arguments = (do_resize, size, resample, do_center_crop, crop_size, do_rescale, rescale_factor, do_normalize,
                         image_mean, image_std, do_convert_rgb, return_tensors, data_format, input_data_format, dtype,
                         device, backend)
            key = call_cache.call_key(self, images, arguments, kwargs, out, device)
            if key is not None:
                cached = self._calls().get(key)
                if cached is not None:
                    return cached(images, out)
        backend = _select_backend(backend if backend is not None else self.backend, device)
        if return_tensors is not None:
            _require_framework(TensorType(return_tensors))  # an unknown or missing one fails before any pixel work
        if out is not None:
            if backend != "triton":
                raise ValueError("out= is supported by the Triton backend (backend='triton' or a CUDA device)")
            if return_tensors is None or TensorType(return_tensors) != TensorType.PYTORCH:
                raise ValueError("out= needs return_tensors='pt'")
            if dtype is None and is_torch_tensor(out):
                dtype = out.dtype
        extras = {key: kwargs.pop(key) for key in self.extra_config_keys if key in kwargs}
        if kwargs:
            key = (type(self).__name__, ",".join(sorted(kwargs)))
            if key not in _warned_kwargs:
                _warned_kwargs.add(key)
                logger.warning("%s.preprocess ignores unknown arguments: %s", type(self).__name__, sorted(kwargs))
        given = dict(
            do_resize=do_resize, size=size, resample=resample, do_center_crop=do_center_crop, crop_size=crop_size,
            do_rescale=do_rescale, rescale_factor=rescale_factor, do_normalize=do_normalize, image_mean=image_mean,
            image_std=image_std, do_convert_rgb=do_convert_rgb, **extras,
        )
        settings = self._call_settings(given)
        data_format = ChannelDimension(data_format if data_format is not None else ChannelDimension.FIRST)
        if input_data_format is not None:
            input_data_format = ChannelDimension(input_data_format)
        out_dtype = _output_dtype(dtype, return_tensors)
        if backend == "triton":
            return self._preprocess_triton(images, settings, device, data_format, input_data_format, out_dtype,
                                           return_tensors, out, key)

        prepared = [
            prepare_image(image, bool(settings["do_convert_rgb"]), input_data_format)
            for image in make_flat_list_of_images(images)
        ]
        plan = self._plan(prepared, settings, out_dtype, self._layout(settings, data_format))
        pixel_values = numpy_backend.execute(plan, prepared, out_dtype=out_dtype, stack=return_tensors is not None)
        if out_dtype == "bfloat16":
            import torch

            if isinstance(pixel_values, list):
                pixel_values = [torch.from_numpy(v).view(torch.bfloat16) for v in pixel_values]
            else:
                pixel_values = torch.from_numpy(pixel_values).view(torch.bfloat16)
        elif return_tensors is None and not plan.layout.concatenated:
            pixel_values = list(pixel_values)
        return BatchFeature(data={"pixel_values": pixel_values, **self._outputs(plan)}, tensor_type=return_tensors)

    def _call_settings(self, given: dict[str, Any]) -> dict[str, Any]:
        """A call's settings: the processor's attributes, overridden by the call's arguments that are not None,
        standardised and validated."""
        settings = {key: getattr(self, key, None) for key in CONFIG_KEYS + self.extra_config_keys}
        settings.update({k: v for k, v in given.items() if v is not None})
        settings = self._standardize(settings, self.default_to_square)
        _validate_settings(settings)
        return settings

    def _preprocess_triton(self, images, settings, device, data_format, input_data_format, out_dtype,
                           return_tensors, out, key=None) -> BatchFeature:
        triton_backend = _triton_backend()
        device = triton_backend.resolve_device(device)
        if device.type != "cpu" and return_tensors is not None and TensorType(return_tensors) != TensorType.PYTORCH:
            raise ValueError(f"device={str(device)!r} returns torch tensors: use return_tensors='pt' (or None)")
        flat = make_flat_list_of_images(images)
        preparation = {
            "do_convert_rgb": bool(settings["do_convert_rgb"]), "input_data_format": input_data_format,
            "device": device, "resize_filter": int(settings["resample"]) if settings["do_resize"] else None,
        }
        prepared = [triton_backend.prepare(image, **preparation) for image in flat]
        plan = self._plan(prepared, settings, out_dtype, self._layout(settings, data_format))
        program = triton_backend.Program(
            plan, prepared, device=device, out_dtype=out_dtype, stack=return_tensors is not None, out=out
        )
        pixel_values = program.run(prepared, out)
        if return_tensors is None and not isinstance(pixel_values, list) and not plan.layout.concatenated:
            pixel_values = list(pixel_values)
        # Other outputs (image_grid_thw) are host tensors on this backend, as transformers' torchvision backend has them.
        outputs = {name: _torch_from_numpy(value) if return_tensors is None else value
                   for name, value in self._outputs(plan).items()}
        result = BatchFeature(data={"pixel_values": pixel_values, **outputs}, tensor_type=return_tensors)
        if key is not None:
            recipes = [triton_backend.replay_recipe(image, p, preparation) for image, p in zip(flat, prepared)]
            if all(recipe is not None for recipe in recipes):
                cached = call_cache.CachedCall(program, recipes, call_cache.batched(key), return_tensors, outputs)
                self._calls().put(key, cached)
        return result

    def _layout(self, settings: dict, data_format: ChannelDimension) -> ImageLayout | PatchLayout:
        """The output layout of a call (part of its plan): images in `data_format`. Families override it."""
        return ImageLayout(data_format == ChannelDimension.FIRST)

    def _outputs(self, plan: BatchPlan) -> dict[str, np.ndarray]:
        """Outputs besides `pixel_values`, computed from the plan alone (`image_grid_thw`). Families override it."""
        return {}

    def _plan(self, prepared, settings, out_dtype=None, layout: ImageLayout = CHANNELS_FIRST) -> BatchPlan:
        geometries = [self._geometry(image, settings) for image in prepared]
        _check_resources(prepared, geometries, out_dtype, layout.copies)  # before any pass over the pixels
        value_maps = {}
        items = []
        for image, geometry in zip(prepared, geometries, strict=True):
            source = classify_source(image, resized=bool(settings["do_resize"]))
            items.append(ImagePlan(geometry, source, image.channels))
            if image.channels not in value_maps:
                value_maps[image.channels] = make_value_map(
                    settings["do_rescale"], settings["rescale_factor"], settings["do_normalize"],
                    settings["image_mean"], settings["image_std"], image.channels,
                )
        if len(value_maps) > 1 and settings["do_normalize"]:
            raise ValueError(
                f"The batch mixes images with {sorted(value_maps)} channels; normalize needs one channel count "
                "(set do_convert_rgb=True to make every image RGB)"
            )
        layout.validate(items)
        return BatchPlan(tuple(items), next(iter(value_maps.values())), layout)

    def _geometry(self, image, settings) -> ImageGeometry:
        geometry = ImageGeometry.identity((image.height, image.width))
        if settings["do_resize"]:
            extras = {key: settings[key] for key in self.extra_config_keys}
            geometry = self._resize_geometry(geometry, settings["size"], int(settings["resample"]), **extras)
        if settings["do_center_crop"]:
            geometry = geometry.center_cropped((settings["crop_size"]["height"], settings["crop_size"]["width"]))
        return geometry

    def _resize_geometry(self, geometry: ImageGeometry, size: dict, resample: int, **extras) -> ImageGeometry:
        """The resize step of this family (transformers' `resize`); may end with a crop. Override per family."""
        return geometry.resized(default_resize_size(geometry.src_hw, size), resample)


def _check_resources(prepared, geometries, out_dtype, copies: int = 1) -> None:
    """The limits of `fused_imgproc.limits`, from the plan's geometry alone: every resize target and output size,
    the aspect ratio of a resize target, and the memory of the whole call (`copies`: outputs written per output
    pixel value, the layout's: patch rows repeat each value over the temporal patch)."""
    itemsize = 8 if out_dtype is not None and out_dtype != "bfloat16" and np.dtype(out_dtype).itemsize == 8 else 4
    total = 0
    for index, (image, geometry) in enumerate(zip(prepared, geometries, strict=True)):
        name = f"Image {index} ({image.height}x{image.width})"
        if geometry.resample is not None:
            check_pixels(*geometry.resize_hw, f"{name} resized")
            check_aspect_ratio(*geometry.resize_hw, f"{name} resized")
            check_pillow_sides(*geometry.resize_hw, f"{name} resized")
        check_pixels(*geometry.out_hw, f"{name}'s output")
        total += geometry.working_bytes(image.channels, itemsize)
        total += (copies - 1) * geometry.out_hw[0] * geometry.out_hw[1] * image.channels * itemsize
    check_call_bytes(total, f"This call ({len(geometries)} image(s))")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_size_dict(size: dict, name: str) -> dict:
    for key, value in size.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}[{key!r}] must be an int, got {value!r}")
        if value <= 0:
            raise ValueError(f"{name}[{key!r}] must be positive, got {value}")
    return size


def _validate_settings(s: dict) -> None:
    """transformers' `validate_preprocess_arguments`, plus the value checks docs/BEHAVIOUR.md section 9 asks for."""
    if s["do_rescale"] and s["rescale_factor"] is None:
        raise ValueError("`rescale_factor` must be specified if `do_rescale` is `True`.")
    if s["do_rescale"] and not math.isfinite(as_float(s["rescale_factor"], "rescale_factor")):
        raise ValueError(f"rescale_factor must be finite, got {s['rescale_factor']}")
    if s["do_normalize"] and (s["image_mean"] is None or s["image_std"] is None):
        raise ValueError("`image_mean` and `image_std` must both be specified if `do_normalize` is `True`.")
    if s["do_center_crop"]:
        if s["crop_size"] is None:
            raise ValueError("`crop_size` must be specified if `do_center_crop` is `True`.")
        if set(s["crop_size"]) != {"height", "width"}:
            raise ValueError(f"crop_size must have keys 'height' and 'width', got {sorted(s['crop_size'])}")
    if s["do_resize"] and not (s["size"] is not None and s["resample"] is not None):
        raise ValueError("`size` and `resample` must be specified if `do_resize` is `True`.")


def _default_backend(backend, use_fast) -> str:
    """A processor's default backend from the `backend=`/`use_fast=` given when it is built or loaded (as
    transformers 5.x's `AutoImageProcessor.from_pretrained` takes them): `use_fast=True` is `"torchvision"`,
    `use_fast=False` is `"pil"`; an explicit `backend` wins."""
    if use_fast is not None and not isinstance(use_fast, (bool, np.bool_)):
        raise TypeError(f"use_fast must be a bool, got {use_fast!r}")
    if backend is None:
        backend = "auto" if use_fast is None else ("torchvision" if use_fast else "pil")
    _check_backend_name(backend)
    return backend


def _check_backend_name(backend) -> None:
    if not isinstance(backend, str) or (backend not in BACKENDS and backend not in BACKEND_ALIASES):
        raise ValueError(f"backend must be one of {list(BACKENDS) + list(BACKEND_ALIASES)}, got {backend!r}")


def _may_run_triton(backend, device) -> bool:
    """Whether a call with these `backend` and `device` arguments may run the Triton backend (cheap, no checks)."""
    backend = BACKEND_ALIASES.get(backend, backend) if isinstance(backend, str) else backend
    if backend == "triton":
        return True
    if backend != "auto" or device is None:
        return False
    return (device.split(":")[0] if isinstance(device, str) else getattr(device, "type", None)) == "cuda"


def _select_backend(backend, device) -> str:
    """`"numpy"` or `"triton"` for the arguments, or `BackendUnavailableError`; never a silent fallback."""
    if backend is None:
        backend = "auto"
    _check_backend_name(backend)
    given, backend = backend, BACKEND_ALIASES.get(backend, backend)
    device_type = _device_type(device)
    if backend == "auto":
        backend = "numpy" if device_type == "cpu" else "triton"
    if backend == "numpy" and device_type != "cpu":
        named = "backend='numpy'" if given == "numpy" else f"backend={given!r} (the numpy backend)"
        raise BackendUnavailableError(
            f"{named} runs on the CPU, not on device={device!r}: use backend='triton' (or 'auto')"
        )
    if backend == "triton":
        _triton_backend()
        if device_type not in ("cpu", "cuda"):
            raise BackendUnavailableError(f"backend='triton' runs on 'cuda' devices, not on device={device!r}")
    return backend


_FRAMEWORK_MODULES = {TensorType.PYTORCH: "torch", TensorType.JAX: "jax", TensorType.TENSORFLOW: "tensorflow"}


def _require_framework(tensor_type: TensorType) -> None:
    """`ImportError` naming the install command when `return_tensors` asks for a framework that is not installed."""
    module = _FRAMEWORK_MODULES.get(tensor_type)
    if module is None or sys.modules.get(module) is not None:
        return
    try:
        importlib.import_module(module)
    except ImportError as error:
        hint = "pip install torch (a CPU-only build is enough)" if module == "torch" else f"pip install {module}"
        raise ImportError(
            f"return_tensors={tensor_type.value!r} needs {module}, which is not installed ({error}): {hint}, or use "
            "return_tensors='np'"
        ) from None


def _torch_from_numpy(array: np.ndarray):
    import torch

    return torch.from_numpy(array)


def _triton_backend():
    """The Triton backend module, imported on first use (it needs torch and triton)."""
    try:
        from ..backends import triton as triton_backend
    except ImportError as error:
        raise BackendUnavailableError(
            f"backend='triton' needs torch and triton ({error}); install fused-imgproc[gpu]"
        ) from error
    return triton_backend


def _device_type(device) -> str:
    if device is None:
        return "cpu"
    if isinstance(device, str):
        name = device.split(":")[0]
        if name not in ("cpu", "cuda", "mps", "xpu", "meta") or (name == "cpu" and ":" in device and device != "cpu:0"):
            raise ValueError(f"Unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        return name
    device_type = getattr(device, "type", None)
    if isinstance(device_type, str):
        return device_type
    raise TypeError(f"device must be a str or a torch.device, got {device!r}")


_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64, "bfloat16": "bfloat16"}


def _output_dtype(dtype, return_tensors):
    """`None` (the plan's own dtype), a numpy float dtype, or `"bfloat16"`."""
    if dtype is None:
        return None
    name = str(dtype).removeprefix("torch.")
    if not isinstance(dtype, str) and name not in _DTYPES:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            pass
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {list(_DTYPES)} (numpy, torch or str), got {dtype!r}")
    if name == "bfloat16" and (return_tensors is None or TensorType(return_tensors) != TensorType.PYTORCH):
        raise ValueError("dtype=bfloat16 needs return_tensors='pt': numpy has no bfloat16")
    return _DTYPES[name] if name == "bfloat16" else np.dtype(_DTYPES[name])
