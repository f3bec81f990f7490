"""`BatchFeature`: the dictionary returned by every image processor.

A drop-in for `transformers.BatchFeature` (`transformers/feature_extraction_utils.py`): a
`collections.UserDict` with attribute access, framework conversion (`convert_to_tensors`) and device /
dtype moves (`to`). Frameworks are imported lazily, inside the functions that need them, so this module
imports (and converts to NumPy) without torch, jax or tensorflow installed.

Deliberate differences from transformers (all stricter or more lenient in corner cases only):

- ragged data (arrays or nested lists of different shapes) always raises a `ValueError` that mentions
  padding; transformers returns a NumPy `object` array for some 1-D ragged inputs with `"np"`;
- bfloat16 (and other floating dtypes NumPy lacks) torch tensors are cast to float32 before `"np"`;
- `to(True)` / `to(False)` raise the `ValueError` of any other non-device, non-dtype argument (transformers
  treats a bool as a device index: its floating tensors are silently cast to `torch.bool` and its integer
  tensors raise a `TypeError`), and namedtuples are rebuilt field by field (transformers raises a `TypeError`);
- `to` updates the same `data` dict (transformers assigns a new one; both leave it unchanged on failure);
- pickling keeps `skip_tensor_conversion` and any other instance attribute.
"""

from __future__ import annotations

import enum
import sys
from collections import UserDict
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["BatchFeature", "TensorType"]


class TensorType(str, enum.Enum):
    """
    Possible values for the `return_tensors` argument of image processors. Useful for tab-completion.

    An invalid value raises a `ValueError` listing the valid ones.
    """

    PYTORCH = "pt"
    NUMPY = "np"
    JAX = "jax"
    TENSORFLOW = "tf"

    @classmethod
    def _missing_(cls, value):
        raise ValueError(
            f"{value} is not a valid {cls.__name__}, please select one of {list(cls._value2member_map_.keys())}"
        )


_FRAMEWORK_NAMES = {
    TensorType.PYTORCH: ("PyTorch", "torch"),
    TensorType.JAX: ("JAX", "jax"),
    TensorType.TENSORFLOW: ("TensorFlow", "tensorflow"),
}


def _import_framework(tensor_type: TensorType):
    """Imports the framework module for `tensor_type`, or raises an `ImportError` naming it."""
    pretty, module = _FRAMEWORK_NAMES[tensor_type]
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(
            f"Unable to convert output to {pretty} tensors format, {pretty} (`{module}`) is not installed."
        ) from e


def _loaded_torch():
    """Returns the torch module if it is already imported (no value can be a tensor otherwise), else `None`."""
    return sys.modules.get("torch")


def _is_torch_tensor(value) -> bool:
    torch = _loaded_torch()
    return torch is not None and isinstance(value, torch.Tensor)


def _is_array_like(value) -> bool:
    """Mirror of transformers' `_is_tensor_or_array_like`: what conversion should attempt (first-element rule)."""
    if isinstance(value, np.ndarray) or _is_torch_tensor(value):
        return True
    if isinstance(value, (int, float, bool, np.number, np.bool_)):
        return True
    for name in ("jax", "tensorflow"):
        module = sys.modules.get(name)
        if module is not None and _is_framework_tensor(module, value):
            return True
    if isinstance(value, (list, tuple)):
        return len(value) == 0 or _is_array_like(value[0])
    return False


def _is_framework_tensor(module, value) -> bool:
    if module.__name__ == "jax":
        return isinstance(value, module.Array)
    return bool(module.is_tensor(value))


def _first_leaf(value):
    """The first non-sequence element of a nested list/tuple (`None` for an empty one)."""
    while isinstance(value, (list, tuple)):
        if len(value) == 0:
            return None
        value = value[0]
    return value


def _torch_to_numpy(tensor) -> np.ndarray:
    """Host NumPy copy/view of a torch tensor; floating dtypes NumPy lacks (bfloat16, float8) go to float32."""
    import torch

    tensor = tensor.detach()
    if tensor.is_floating_point() and tensor.dtype not in (torch.float16, torch.float32, torch.float64):
        tensor = tensor.float()
    return tensor.cpu().numpy()


def _to_numpy(value) -> np.ndarray:
    """Converts arrays, tensors and (nested) lists of them to one NumPy array, stacking equal shapes."""
    if isinstance(value, np.ndarray):
        return value
    if _is_torch_tensor(value):
        return _torch_to_numpy(value)
    if isinstance(value, (list, tuple)) and len(value) > 0:
        leaf = _first_leaf(value)
        if isinstance(leaf, np.ndarray) or _is_torch_tensor(leaf) or hasattr(leaf, "__array__"):
            return np.stack([_to_numpy(v) for v in value])
    array = np.asarray(value)
    if array.dtype == object:
        raise ValueError("the nested sequences have inhomogeneous shapes")
    return array


def _numpy_to_torch(array: np.ndarray) -> torch.Tensor:
    """`torch.from_numpy` (zero-copy) after fixing what it rejects: negative strides and non-native byte order."""
    import torch

    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    if any(stride < 0 for stride in array.strides):
        array = np.ascontiguousarray(array)
    return torch.from_numpy(array)


def _to_torch(value) -> torch.Tensor:
    """Converts arrays and (nested) lists to one torch tensor; tensors are returned as they are."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return _numpy_to_torch(value)
    if isinstance(value, (list, tuple)) and len(value) > 0:
        leaf = _first_leaf(value)
        if isinstance(leaf, torch.Tensor):
            # Stays on the tensors' device: a list of CUDA tensors is never copied through the host.
            return torch.stack([_to_torch(v) for v in value])
        if isinstance(leaf, np.ndarray):
            # One copy (the stack), then a zero-copy wrap.
            return _numpy_to_torch(_to_numpy(value))
    if isinstance(value, np.generic):
        return torch.from_numpy(np.asarray(value))
    return torch.tensor(value)


class BatchFeature(UserDict):
    r"""
    Holds the output of an image processor's `__call__` / `preprocess` methods (`pixel_values`, ...).

    This class is derived from `collections.UserDict` (not from `dict`) and can be used as a dictionary. Values
    are also reachable as attributes (`batch.pixel_values`); a missing key raises `AttributeError`.

    Args:
        data (`dict[str, Any]`, *optional*, defaults to `None`):
            Dictionary of lists/arrays/tensors returned by the image processor (`pixel_values`, ...).
        tensor_type (`str` or [`TensorType`], *optional*, defaults to `None`):
            The type of tensors to convert the values to at initialization (`"pt"`, `"np"`, `"jax"` or `"tf"`).
            If `None`, no conversion is done.
        skip_tensor_conversion (`list[str]` or `set[str]`, *optional*, defaults to `None`):
            Keys that should NOT be converted to tensors, even when `tensor_type` is specified.
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        tensor_type: str | TensorType | None = None,
        skip_tensor_conversion: list[str] | set[str] | None = None,
    ):
        super().__init__(data)
        self.skip_tensor_conversion = skip_tensor_conversion
        self.convert_to_tensors(tensor_type=tensor_type)

    def __getitem__(self, item: str) -> Any:
        """Returns the value stored under the string key `item` (`pixel_values`, ...)."""
        if isinstance(item, str):
            return self.data[item]
        raise KeyError("Indexing with integers is not available when using Python based feature extractors")

    def __getattr__(self, item: str) -> Any:
        # Only called when normal lookup fails. Read `data` through `__dict__` so that an instance without it
        # (during unpickling or `copy.deepcopy`, before `__setstate__`) raises instead of recursing.
        data = self.__dict__.get("data")
        if data is not None and not (item.startswith("__") and item.endswith("__")):
            try:
                return data[item]
            except KeyError:
                pass
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{item}'", name=item, obj=self)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Also accepts transformers' state (`{"data": ...}` only).
        self.__dict__.update(state)
        self.__dict__.setdefault("data", {})
        self.__dict__.setdefault("skip_tensor_conversion", None)

    def _get_is_as_tensor_fns(self, tensor_type: str | TensorType):
        """Returns `(is_tensor, as_tensor)` for `tensor_type`, importing its framework (or raising `ImportError`)."""
        tensor_type = TensorType(tensor_type)
        if tensor_type == TensorType.NUMPY:
            return (lambda value: isinstance(value, np.ndarray)), _to_numpy
        framework = _import_framework(tensor_type)
        if tensor_type == TensorType.PYTORCH:
            return framework.is_tensor, _to_torch
        if tensor_type == TensorType.JAX:
            import jax.numpy as jnp

            return (lambda value: isinstance(value, framework.Array)), (lambda value: jnp.asarray(_to_numpy(value)))
        return framework.is_tensor, (lambda value: framework.convert_to_tensor(_to_numpy(value)))

    def convert_to_tensors(
        self,
        tensor_type: str | TensorType | None = None,
        skip_tensor_conversion: list[str] | set[str] | None = None,
    ) -> BatchFeature:
        """
        Converts the inner content to tensors, in place.

        Lists of equally shaped arrays/tensors are stacked into one array/tensor. Values that already are of the
        requested kind are kept as they are (the same object; a CUDA tensor is never copied through the host).
        Values that are not array-like (strings, dicts, `None`, lists of strings, ...) are left untouched.

        Args:
            tensor_type (`str` or [`TensorType`], *optional*, defaults to `None`):
                The type of tensors to use: `"pt"`, `"np"`, `"jax"` or `"tf"`. If `None`, no modification is done.
            skip_tensor_conversion (`list[str]` or `set[str]`, *optional*, defaults to `self.skip_tensor_conversion`):
                Keys that should NOT be converted to tensors.

        Returns:
            [`BatchFeature`]: The same instance after modification.

        Raises:
            ValueError: If `tensor_type` is not a valid [`TensorType`], or a value cannot be converted (e.g. ragged
                data, which needs padding).
            ImportError: If the framework for `tensor_type` is not installed.
        """
        if tensor_type is None:
            return self

        is_tensor, as_tensor = self._get_is_as_tensor_fns(tensor_type)
        if skip_tensor_conversion is None:
            skip_tensor_conversion = self.__dict__.get("skip_tensor_conversion")

        for key, value in list(self.data.items()):
            if skip_tensor_conversion and key in skip_tensor_conversion:
                continue
            if not _is_array_like(value) or is_tensor(value):
                continue
            try:
                self.data[key] = as_tensor(value)
            except Exception as e:
                raise ValueError(
                    f"Unable to create tensor for '{key}' (type: {type(value).__name__}): {e}\n"
                    f"You should probably activate padding (e.g. `padding=True`) or resizing so that all outputs "
                    f"have the same shape, or set `return_tensors=None` to return Python objects instead of tensors."
                ) from e
        return self

    def to(self, *args, **kwargs) -> BatchFeature:
        """
        Sends all torch tensors to a device and casts the floating-point ones to a dtype (PyTorch only), in place.

        The arguments are passed as they are to the `to(...)` method of every floating-point tensor, exactly as
        transformers' `BatchFeature.to` does, so the forms of `torch.Tensor.to` work (`to(device)`, `to(dtype)`,
        `to(device, dtype)`, `to(device=..., dtype=..., non_blocking=..., copy=..., memory_format=...)`; not
        `to(other_tensor)`, which transformers rejects too) and a call torch rejects raises torch's own exception
        (e.g. the `TypeError` of `to(torch.bfloat16, "cpu")`). As in transformers, such a call goes unnoticed when
        the batch holds no floating-point tensor.
        Integer and boolean tensors keep their dtype (so that e.g. masks are never cast to float): they are only
        moved, to the `device` keyword or else to the first positional argument when it is not a dtype (a string
        naming a torch dtype, like `"float16"`, counts as a dtype), with `non_blocking`. Values that are not torch
        tensors are left untouched; lists and tuples (namedtuples included) are handled recursively. If any
        tensor fails, the batch is left unchanged.

        Args:
            args (`tuple`, *optional*):
                Passed to the `to(...)` of the floating-point tensors: a device (`str`, `int` or `torch.device`)
                and/or a `torch.dtype`, in the order `torch.Tensor.to` accepts them.
            kwargs (`dict`, *optional*):
                Passed to the `to(...)` of the floating-point tensors (`device`, `dtype`, `non_blocking`, `copy`,
                `memory_format`). `device` and `non_blocking` (defaults to `False`) also apply to the other tensors.

        Returns:
            [`BatchFeature`]: The same instance after modification.

        Raises:
            ImportError: If torch is not installed.
            ValueError: If no `device` keyword is given and the first positional argument is neither a device
                (`str`, `int`, `torch.device`) nor a dtype (`torch.dtype` or the name of one), e.g. a float, a
                bool, `None` or a tensor.
            TypeError, RuntimeError: Whatever torch raises for arguments its `Tensor.to` rejects (a combination it
                does not accept, an unknown keyword, an invalid device string...), as transformers does.
        """
        torch = _import_framework(TensorType.PYTORCH)
        device = kwargs.get("device")
        non_blocking = kwargs.get("non_blocking", False)
        if device is None and args:
            # Same rule as transformers: the first positional argument is a dtype or else a device.
            arg = args[0]
            if _is_torch_dtype(torch, arg):
                pass
            elif isinstance(arg, (str, int, torch.device)) and not isinstance(arg, bool):
                device = arg
            else:
                raise ValueError(f"Attempting to cast a BatchFeature to type {arg!s}. This is not supported.")

        def maybe_to(v):
            if isinstance(v, torch.Tensor):
                if torch.is_floating_point(v):
                    return v.to(*args, **kwargs)
                if device is not None:
                    return v.to(device=device, non_blocking=non_blocking)
                return v
            if isinstance(v, (list, tuple)):
                items = [maybe_to(item) for item in v]
                return type(v)(*items) if hasattr(v, "_fields") else type(v)(items)
            return v

        # Every value is converted before any is stored: a failure leaves the batch as it was.
        self.data.update({key: maybe_to(value) for key, value in self.data.items()})
        return self


def _is_torch_dtype(torch, value) -> bool:
    """Whether `value` is a `torch.dtype` or the name of one (`"float16"`), as transformers' `is_torch_dtype`."""
    if isinstance(value, str):
        value = getattr(torch, value, None)
    return isinstance(value, torch.dtype)
