"""Resource limits: what one call may ask for, checked from the plan before any pixel is touched.

A bad request must cost microseconds and kilobytes, never the process: a config with `shortest_edge` 20000, a
2 x 20000 image resized to a shortest edge of 224, or a crop of 10**6 x 10**6 would otherwise allocate gigabytes
(or terabytes) before failing. Three limits, each a `ValueError` naming the image, the sizes and the limit:

- `max_image_pixels` (default `2**28`, 268 million: 16384 x 16384): the height x width of any input image that is
  processed, any resize target and any output image. Real inputs pass: 8K frames are 33 Mpx, the largest
  medium-format photos about 150 Mpx; model configs resize to at most a few Mpx (Qwen2-VL: 12.8 Mpx).
- `max_aspect_ratio` (default 200, the bound transformers documents for Qwen2-VL): the long side over the short
  side of a resize target. A 2 x 20000 image resized to a shortest edge of 224 would be 224 x 2240000.
- `max_call_bytes` (default 16 GiB): the memory a call is estimated to need, from the plan: every image's resize
  intermediates (uint8: Pillow's input copy, the one-axis pass, the resized image) and every output.

Change them for the process with `set_limits(...)` (returns the previous values; use it as a context manager to
change them for a block), or with the environment variables `FUSED_IMGPROC_MAX_IMAGE_PIXELS`,
`FUSED_IMGPROC_MAX_ASPECT_RATIO` and `FUSED_IMGPROC_MAX_CALL_BYTES`, read at import. `None` (or 0 in the
environment) disables a limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading

_ENV = {
    "max_image_pixels": "FUSED_IMGPROC_MAX_IMAGE_PIXELS",
    "max_aspect_ratio": "FUSED_IMGPROC_MAX_ASPECT_RATIO",
    "max_call_bytes": "FUSED_IMGPROC_MAX_CALL_BYTES",
}


@dataclasses.dataclass(frozen=True)
class Limits:
    """The limits in force (see the module docstring); `None` disables one."""

    max_image_pixels: int | None = 2**28
    max_aspect_ratio: float | None = 200.0
    max_call_bytes: int | None = 16 * 2**30

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isnan(value):
                raise ValueError(f"{field.name} must be a positive number or None, got {value!r}")


def _from_environment() -> Limits:
    values = {}
    for name, variable in _ENV.items():
        text = os.environ.get(variable)
        if text is None or text.strip() == "":
            continue
        try:
            number = float(text) if name == "max_aspect_ratio" else int(text)
        except ValueError:
            raise ValueError(f"{variable}={text!r} is not a number") from None
        values[name] = number if number != 0 else None
    return Limits(**values)


_lock = threading.Lock()
_current = _from_environment()


def get_limits() -> Limits:
    """The limits in force."""
    return _current


class _Restore(contextlib.AbstractContextManager):
    def __init__(self, previous: Limits):
        self.previous = previous

    def __exit__(self, *exc_info):
        global _current
        with _lock:
            _current = self.previous
        return False


def set_limits(**changes) -> _Restore:
    """Change some limits for the whole process: `set_limits(max_image_pixels=2**30, max_call_bytes=None)`.

    Returns an object that restores the previous limits when used as a context manager
    (`with set_limits(max_call_bytes=2**30): ...`); its `previous` attribute holds them.
    """
    global _current
    unknown = set(changes) - set(_ENV)
    if unknown:
        raise TypeError(f"Unknown limit(s) {sorted(unknown)}; the limits are {sorted(_ENV)}")
    with _lock:
        previous = _current
        _current = dataclasses.replace(previous, **changes)
    return _Restore(previous)


def check_pixels(height: int, width: int, what: str) -> None:
    """`ValueError` when an image plane of `height` x `width` is over `max_image_pixels`."""
    limit = _current.max_image_pixels
    if limit is not None and int(height) * int(width) > limit:
        raise ValueError(
            f"{what} would be {height}x{width} = {int(height) * int(width):,} pixels, over the limit of {limit:,} "
            "pixels (fused_imgproc.set_limits(max_image_pixels=...) or FUSED_IMGPROC_MAX_IMAGE_PIXELS changes it)"
        )


def check_aspect_ratio(height: int, width: int, what: str) -> None:
    """`ValueError` when `height` x `width` is more elongated than `max_aspect_ratio`."""
    limit = _current.max_aspect_ratio
    if limit is not None and max(height, width) > limit * min(height, width):
        raise ValueError(
            f"{what} would be {height}x{width}, an aspect ratio of {max(height, width) / min(height, width):.0f}:1, "
            f"over the limit of {limit:g}:1 (fused_imgproc.set_limits(max_aspect_ratio=...) or "
            "FUSED_IMGPROC_MAX_ASPECT_RATIO changes it)"
        )


def check_call_bytes(estimate: int, what: str) -> None:
    """`ValueError` when a call's estimated memory is over `max_call_bytes`."""
    limit = _current.max_call_bytes
    if limit is not None and estimate > limit:
        raise ValueError(
            f"{what} needs about {estimate / 2**30:.2f} GiB, over the limit of {limit / 2**30:.2f} GiB "
            "(fused_imgproc.set_limits(max_call_bytes=...) or FUSED_IMGPROC_MAX_CALL_BYTES changes it)"
        )


PILLOW_MAX_SIDE = 2**31 - 1  # Pillow stores sizes in C ints: a larger side is an OverflowError there


def check_pillow_sides(height: int, width: int, what: str) -> None:
    """`ValueError` for a resize side Pillow cannot represent, whatever the limits above (they may be disabled)."""
    if max(height, width) > PILLOW_MAX_SIDE:
        raise ValueError(f"{what} would be {height}x{width}: Pillow's sides are below 2**31")
