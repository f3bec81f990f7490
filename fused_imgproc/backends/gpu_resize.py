"""Host-side planning of the GPU resize: which pixels each pass computes, as descriptor rows for the kernel.

For every image the plan's crop window (`ImageGeometry.source_window`, rows [Y0, Y1) x cols [X0, X1) of the
resized image) decides everything: the last pass computes exactly that window, the first pass only the
rows (or columns) the last one reads, and only the source rectangle those read is uploaded. Pass order, the
skipping of unchanged axes and the coefficient tables are `fused_imgproc.resample`'s (Pillow's).

Buffers: one uint8 `work` buffer per call, intermediates in `[0, split)` and final windows in `[split, ...)`.
Stage 1 writes both (intermediates of two-pass images, final windows of single-pass ones); stage 2 reads the
intermediates and writes final windows; the crop/normalize kernel reads the final windows. Every offset of
`finish` and `planned` is into `work` itself, so no launch needs a view of it.
"""

from __future__ import annotations

import functools

import numpy as np

from .._kernels import resample as RK
from ..image_utils import PreparedImage
from ..plan import ImagePlan
from ..resample import AxisCoefficients, axis_coefficients, passes, table_resize


def on_gpu(item: ImagePlan, image: PreparedImage) -> bool:
    """Whether the GPU reproduces Pillow's resize of this image (L or RGB, a supported filter, something to do).

    Pillow resizes RGBA and LA images with premultiplied alpha: those, and filters without a GPU version (MKS2013,
    MKS2021), take the host path.
    """
    if not table_resize(item, image):
        return False
    (y0, y1), _, _, _ = item.geometry.source_window()
    return y1 > y0


@functools.lru_cache(maxsize=256)
def _identity(size: int) -> AxisCoefficients:
    """A one-tap copy (weight 2**22): exact, used to move host-resized or unresized windows into `work`."""
    index = np.arange(size, dtype=np.int32)
    return AxisCoefficients(size, size, index, np.ones(size, np.int32), np.full((size, 1), 1 << 22, np.int32))


_BLOB_PARTS: dict = {}


def _blob_part(key, table: AxisCoefficients) -> np.ndarray:
    """A table's `[first, count, coef]` int32 section of the coefficient blob, built once per table (`key`)."""
    part = _BLOB_PARTS.get(key)
    if part is None:
        part = np.concatenate([table.first, table.count, table.coef.reshape(-1)]).astype(np.int32)
        part.setflags(write=False)
        if len(_BLOB_PARTS) >= 1024:  # as many as `axis_coefficients` keeps
            _BLOB_PARTS.clear()
        _BLOB_PARTS[key] = part
    return part


class PassPlan:
    """Descriptor rows of both resample stages and the coefficient blob for one launch group."""

    def __init__(self):
        self.blob: list[np.ndarray] = []
        self.blob_size = 0
        self.tables: dict[object, int] = {}
        self.stage1: list[list[int]] = []
        self.stage1_final: list[bool] = []  # True where a stage-1 row writes a final window (offset from `split`)
        self.stage2: list[list[int]] = []
        self.intermediate = 0
        self.final = 0
        self.channels = 1

    def _table(self, key, make) -> tuple[int, AxisCoefficients]:
        table = make()
        if key not in self.tables:
            self.tables[key] = self.blob_size
            part = _blob_part(key, table)
            self.blob.append(part)
            self.blob_size += part.size
        return self.tables[key], table

    def _row(self, src, axis: int, other: tuple[int, int], out: tuple[int, int], table_key, make, dst, channels):
        """A descriptor row: `src = (offset, s_row, s_col, s_c)` in absolute source coordinates; `dst = (offset,
        d_row, d_col)` of the computed block's first element; `other`/`out`: absolute ranges of the kept and
        the resampled axis."""
        offset, s_row, s_col, s_c = src
        s_other, s_axis = (s_col, s_row) if axis == 0 else (s_row, s_col)
        d_off, d_row, d_col = dst
        d_other, d_axis = (d_col, d_row) if axis == 0 else (d_row, d_col)
        coef, table = self._table(table_key, make)
        return [offset, s_other, s_axis, s_c, d_off, d_other, d_axis, other[1] - other[0], out[1] - out[0], other[0],
                out[0], coef, table.out_size, table.ksize, channels]

    def add_resized(self, item: ImagePlan, src, channels: int) -> int:
        """Both (or one) passes of `item` reading `src`; returns the final window's offset in `work[split:]`."""
        self.channels = max(self.channels, channels)
        (h, w), (oh, ow), f = item.geometry.src_hw, item.geometry.resize_hw, item.geometry.resample
        (y0, y1), (x0, x1), _, _ = item.geometry.source_window()
        (sy0, sy1), (sx0, sx1) = item.geometry.source_rect()
        final, width = self.final, (x1 - x0) * channels
        self.final += (y1 - y0) * width
        tables = {
            0: ((h, oh, f), lambda: axis_coefficients(h, oh, f)),
            1: ((w, ow, f), lambda: axis_coefficients(w, ow, f)),
        }
        axes = passes((h, w), (oh, ow))
        if len(axes) == 1:
            axis = axes[0]
            other, out = ((x0, x1), (y0, y1)) if axis == 0 else ((y0, y1), (x0, x1))
            dst = (final, width, channels)
            self.stage1.append(self._row(src, axis, other, out, *tables[axis], dst, channels))
            self.stage1_final.append(True)
            return final
        first_axis, second_axis = axes
        if first_axis == 1:  # horizontal first: rows [sy0, sy1) x output cols [x0, x1)
            inter_width = (x1 - x0) * channels
            inter, origin = (self.intermediate, inter_width, channels), (sy0, x0)
            self.intermediate += (sy1 - sy0) * inter_width
            self.stage1.append(self._row(src, 1, (sy0, sy1), (x0, x1), *tables[1], inter, channels))
            second_other = (x0, x1)
        else:  # vertical first: output rows [y0, y1) x cols [sx0, sx1)
            inter_width = (sx1 - sx0) * channels
            inter, origin = (self.intermediate, inter_width, channels), (y0, sx0)
            self.intermediate += (y1 - y0) * inter_width
            self.stage1.append(self._row(src, 0, (sx0, sx1), (y0, y1), *tables[0], inter, channels))
            second_other = (y0, y1)
        self.stage1_final.append(False)
        second_out = (y0, y1) if second_axis == 0 else (x0, x1)
        # The intermediate block in absolute coordinates: its element (origin row, origin col) is at inter[0].
        inter_src = (inter[0] - origin[0] * inter_width - origin[1] * channels, inter_width, channels, 1)
        self.stage2.append(self._row(inter_src, second_axis, second_other, second_out, *tables[second_axis],
                                     (final, width, channels), channels))
        return final

    def add_copy(self, shape: tuple[int, int, int], src) -> int:
        """A window already at its final size (host-resized or not resized): one identity pass into `work`."""
        rows, cols, channels = shape
        self.channels = max(self.channels, channels)
        final = self.final
        self.final += rows * cols * channels
        dst = (final, cols * channels, channels)
        self.stage1.append(self._row(src, 1, (0, rows), (0, cols), ("identity", cols), lambda: _identity(cols), dst,
                                     channels))
        self.stage1_final.append(True)
        return final

    def finish(self) -> tuple[int, list[np.ndarray]]:
        """`(split, [stage-1 rows, stage-1 tiles, stage-2 rows, stage-2 tiles, coefficient blob])`; the offsets of
        final windows (stage-1 rows that write one, every stage-2 row) are moved past `split`."""
        split = -(-self.intermediate // 64) * 64
        stage1 = np.array(self.stage1, dtype=np.int64).reshape(-1, RK.DESC_FIELDS)
        stage1[np.array(self.stage1_final, dtype=bool), RK.DST] += split
        stage2 = np.array(self.stage2, dtype=np.int64).reshape(-1, RK.DESC_FIELDS)
        stage2[:, RK.DST] += split
        blob = np.concatenate(self.blob) if self.blob else np.zeros(1, np.int32)
        return split, [stage1, RK.tile_map(stage1), stage2, RK.tile_map(stage2), blob]




def plan_passes(items, mappings, resize_here) -> tuple[PassPlan, list]:
    """The passes of one launch group.

    `mappings[k] = (offset, s_row, s_col, s_c)` addresses image k in the stage-1 source in absolute coordinates:
    of the image entering the resize when `resize_here[k]`, else of the already resized (or unresized) image,
    whose crop window is then copied. Returns the plan and each image's `(offset, (SY, SX, SC))` in
    `work[split:]` for the crop/normalize descriptor.
    """
    passes, sources = PassPlan(), []
    for item, (offset, s_row, s_col, s_c), resize in zip(items, mappings, resize_here):
        (y0, y1), (x0, x1), _, _ = item.geometry.source_window()
        if resize and y1 > y0:
            final = passes.add_resized(item, (offset, s_row, s_col, s_c), item.channels)
        else:
            window = (offset + y0 * s_row + x0 * s_col, s_row, s_col, s_c)
            final = passes.add_copy((y1 - y0, x1 - x0, item.channels), window)
        sources.append((final, ((x1 - x0) * item.channels, item.channels, 1)))
    return passes, sources


@functools.lru_cache(maxsize=256)
def planned(items: tuple, mappings: tuple, resize_here: tuple):
    """`plan_passes` + `finish`, memoised on its (hashable) arguments: a repeated shape skips the planning.

    Returns `(split, final, channels, tables, sources)`, `sources` being each final window's `(offset, strides)` in
    `work` (past `split`); `tables` and `sources` are shared between calls: they are only copied, never modified.
    """
    passes, sources = plan_passes(items, mappings, resize_here)
    split, tables = passes.finish()
    sources = tuple((offset + split, strides) for offset, strides in sources)
    return split, passes.final, passes.channels, tuple(tables), sources
