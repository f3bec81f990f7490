"""Output geometry of one image: resize-size rules and the crop window (below both `transforms` and `plan`).

Geometry conventions (all integers, in resized-image coordinates):
    output pixel (i, j) reads resized pixel (top + i, left + j) when ``valid_y[0] <= top + i < valid_y[1]`` and
    ``valid_x[0] <= left + j < valid_x[1]``; otherwise it is padding, which is 0 in the input domain.
A center crop to (ch, cw) of an (h, w) image is ``top = (h - ch) // 2`` (floor, negative when padding), which is
exactly transformers 5.x: the canvas is padded by ``ceil((ch - h) / 2)`` on top, so the extra row goes on top.
Two successive crops compose by adding origins and intersecting valid ranges, so any chain of crops is one window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .resample import axis_coefficients


@dataclass(frozen=True)
class ImageGeometry:
    """Where one output image comes from.

    Attributes:
        src_hw (`tuple[int, int]`): size of the image entering the resize.
        resize_hw (`tuple[int, int]`): size after the resize (`== src_hw` and `resample is None` when not resized).
        resample (`int`, *optional*): the Pillow filter, or `None` for no resize.
        out_hw (`tuple[int, int]`): size of the output image.
        top, left (`int`): resized-image coordinates of output pixel (0, 0).
        valid_y, valid_x (`tuple[int, int]`): half-open ranges of resized rows/columns that hold image data.
    """

    src_hw: tuple[int, int]
    resize_hw: tuple[int, int]
    resample: int | None
    out_hw: tuple[int, int]
    top: int
    left: int
    valid_y: tuple[int, int]
    valid_x: tuple[int, int]

    @classmethod
    def identity(cls, src_hw: tuple[int, int]) -> ImageGeometry:
        h, w = src_hw
        return cls(src_hw, src_hw, None, src_hw, 0, 0, (0, h), (0, w))

    def resized(self, resize_hw: tuple[int, int], resample: int) -> ImageGeometry:
        """Resize the (uncropped) source to ``resize_hw``. Only valid before any crop."""
        if self.out_hw != self.src_hw or self.resample is not None:
            raise AssertionError("a resize must come before any crop in the plan")
        h, w = (int(v) for v in resize_hw)
        if h <= 0 or w <= 0:
            raise ValueError(
                f"Resizing an image of size {self.src_hw} gives an empty image of size {(h, w)}: the image is too "
                "thin for the requested size"
            )
        if (h, w) == tuple(self.src_hw):
            return self  # same size in and out is an exact copy
        return ImageGeometry(self.src_hw, (h, w), int(resample), (h, w), 0, 0, (0, h), (0, w))

    def center_cropped(self, crop_hw: tuple[int, int]) -> ImageGeometry:
        """Center-crop (or zero-pad) the current output to ``crop_hw``."""
        ch, cw = (int(v) for v in crop_hw)
        if ch <= 0 or cw <= 0:
            raise ValueError(f"crop size must be positive, got height={ch}, width={cw}")
        oh, ow = self.out_hw
        dy, dx = (oh - ch) // 2, (ow - cw) // 2
        top, left = self.top + dy, self.left + dx
        # Data of the current output lives in its own [0, oh) x [0, ow), i.e. [top', top' + oh) in resized coords.
        valid_y = (max(self.valid_y[0], self.top), min(self.valid_y[1], self.top + oh))
        valid_x = (max(self.valid_x[0], self.left), min(self.valid_x[1], self.left + ow))
        return ImageGeometry(self.src_hw, self.resize_hw, self.resample, (ch, cw), top, left, valid_y, valid_x)

    def working_bytes(self, channels: int, out_itemsize: int) -> int:
        """An upper bound of the memory this image needs: the output, and for a resize its uint8 intermediates
        (a copy of the source for Pillow, the one-axis pass, the resized image)."""
        (h, w), (rh, rw), (oh, ow) = self.src_hw, self.resize_hw, self.out_hw
        total = oh * ow * channels * out_itemsize
        if self.resample is not None:
            total += (h * w + max(rh * w, h * rw) + rh * rw) * channels
        return total

    def source_window(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
        """The rectangle of the resized image that is read, and where it lands in the output.

        Returns `((y0, y1), (x0, x1), (oy0, oy1), (ox0, ox1))`: resized rows/cols `[y0, y1) x [x0, x1)` go to output
        rows/cols `[oy0, oy1) x [ox0, ox1)`; every other output pixel is padding. An empty window has y0 == y1.
        """
        oh, ow = self.out_hw
        y0, y1 = max(self.top, self.valid_y[0]), min(self.top + oh, self.valid_y[1])
        x0, x1 = max(self.left, self.valid_x[0]), min(self.left + ow, self.valid_x[1])
        if y1 <= y0 or x1 <= x0:
            return (0, 0), (0, 0), (0, 0), (0, 0)
        return (y0, y1), (x0, x1), (y0 - self.top, y1 - self.top), (x0 - self.left, x1 - self.left)

    def source_rect(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Rows and columns of the image entering the resize that the window of `source_window` reads through the
        resize's taps (Pillow's coefficient tables, on each axis the resize changes): what a GPU resize uploads."""
        (y0, y1), (x0, x1), _, _ = self.source_window()
        if y1 <= y0:
            return (0, 0), (0, 0)
        (h, w), (oh, ow) = self.src_hw, self.resize_hw
        rows = axis_coefficients(h, oh, self.resample).input_range(y0, y1) if h != oh else (y0, y1)
        cols = axis_coefficients(w, ow, self.resample).input_range(x0, x1) if w != ow else (x0, x1)
        return rows, cols


# --- resize-size rules (transformers' PIL backend) ------------------------------------------------------------


def size_with_aspect_ratio(image_hw, size: int, max_size: int | None = None) -> tuple[int, int]:
    """transformers' `get_size_with_aspect_ratio`: shortest edge `size`, longest edge capped at `max_size`."""
    height, width = image_hw
    raw_size = None
    if max_size is not None:
        min_original, max_original = float(min(height, width)), float(max(height, width))
        if max_original / min_original * size > max_size:
            raw_size = max_size * min_original / max_original
            size = int(round(raw_size))
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    if width < height:
        ow = size
        oh = int(raw_size * height / width) if raw_size is not None else int(size * height / width)
    else:
        oh = size
        ow = int(raw_size * width / height) if raw_size is not None else int(size * width / height)
    return oh, ow


def size_for_max_height_width(image_hw, max_height: int, max_width: int) -> tuple[int, int]:
    height, width = image_hw
    scale = min(max_height / height, max_width / width)
    return int(height * scale), int(width * scale)


def default_resize_size(image_hw: tuple[int, int], size: dict) -> tuple[int, int]:
    """Output size of the standard resize step for a size dict (transformers' `PilBackend.resize`)."""
    se, le = size.get("shortest_edge"), size.get("longest_edge")
    if se and le:
        return size_with_aspect_ratio(image_hw, se, le)
    if se:
        return shortest_edge_size(image_hw[0], image_hw[1], se)
    if size.get("max_height") and size.get("max_width"):
        return size_for_max_height_width(image_hw, size["max_height"], size["max_width"])
    if size.get("height") and size.get("width"):
        return int(size["height"]), int(size["width"])
    raise ValueError(
        "Size must contain 'height' and 'width' keys, or 'max_height' and 'max_width', or 'shortest_edge' key. "
        f"Got {size}."
    )


def shortest_edge_size(height: int, width: int, size: int, max_size: int | None = None) -> tuple[int, int]:
    """transformers' `get_resize_output_image_size` for an int size and `default_to_square=False`: the shorter edge
    becomes `size`, the longer `int(size * long / short)` (truncated); `max_size` caps the longer edge."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    if max_size is not None:
        if max_size <= size:
            raise ValueError(
                f"max_size = {max_size} must be strictly greater than the requested size for the smaller edge "
                f"size = {size}"
            )
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if width <= height else (new_short, new_long)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's `smart_resize` (transformers 5.x, docs/BEHAVIOUR.md section 11): both sides multiples of `factor`,
    the area within `[min_pixels, max_pixels]`, the aspect ratio kept as closely as possible.

    `ValueError` when `max(height, width) / min(height, width) > 200` (transformers' limit), and when the result has a
    side of 0 (a `min_pixels` of 0 lets a side that rounds to 0 through; transformers would fail later, reshaping)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)} "
            f"(an image of {height}x{width})"
        )
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if h_bar <= 0 or w_bar <= 0:
        raise ValueError(
            f"An image of {height}x{width} resizes to {h_bar}x{w_bar} (sides rounded to multiples of {factor}, "
            f"min_pixels={min_pixels}, max_pixels={max_pixels}): an empty image; raise min_pixels"
        )
    return h_bar, w_bar
