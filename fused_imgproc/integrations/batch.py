"""`BatchPreprocessor`: a processor as a batch function of Hugging Face `datasets` and Ray Data."""

from __future__ import annotations

import io
import itertools
import os
from typing import Any

import numpy as np
import PIL.Image

from ..backends import numpy as numpy_backend
from ..image_utils import is_torch_tensor, load_image


class BatchPreprocessor:
    """A processor as a function of a batch of rows: a dict of columns in, the same dict with the image column
    replaced by the processor's outputs out.

    Hugging Face `datasets`:

        ds = ds.map(BatchPreprocessor(processor), batched=True, batch_size=64, num_proc=4, remove_columns=["image"])
        ds = ds.with_transform(BatchPreprocessor(processor, return_tensors="pt"))   # on the fly, torch tensors

    Ray Data (one instance per actor, so the config loads and device tables upload once per actor):

        ds.map_batches(BatchPreprocessor, fn_constructor_kwargs={"processor": "openai/clip-vit-base-patch32"},
                       compute=ray.data.ActorPoolStrategy(size=2), batch_size=64)

    Args:
        processor: a fused_imgproc processor, or what `AutoImageProcessor.from_pretrained` takes (a local folder or
            config file, or a Hub repo id), loaded here.
        image_column (`str`, defaults to `"image"`): the column of images. Its values: PIL images (a `datasets`
            `Image` column), numpy arrays or torch tensors (any layout the processor takes; a Ray batch of same-sized
            images is one 4-D array), file paths (`str`/`os.PathLike`; also `file://` and `http(s)://` URLs), encoded
            bytes (Ray's `read_binary_files`), or `{"bytes": ..., "path": ...}` dicts (a `datasets`
            `Image(decode=False)` column). Paths and bytes are decoded as transformers' `load_image` does: EXIF
            orientation applied, converted to RGB.
        dtype (defaults to `"float32"`): the output dtype: float32, float16 or float64; bfloat16 only with
            `return_tensors="pt"` (Arrow and numpy have no bfloat16).
        return_tensors (`"np"` or `"pt"`, defaults to `"np"`): numpy arrays (for `map` and Ray: Arrow-friendly, on the
            host whatever the device) or torch tensors (for `with_transform`, kept on the processor's device).
        keep_image_column (`bool`, defaults to `False`): also return the image column (Ray drops a column its
            function does not return; `datasets` keeps it unless `remove_columns` names it).
        **call_kwargs: passed to every processor call: `device="cuda"`, `backend=...`, or any preprocess argument.

    The outputs are one row per image: `pixel_values` as an (N, C, H, W) array, or for Qwen2-VL a list (object array
    when the batch's image column is an array, as in Ray) of each image's (rows, C * T * P * P) patch rows, with `image_grid_thw` (N, 3). Other columns pass
    through unchanged. The instance pickles (`num_proc`, Ray actors): a Triton processor re-creates its device state
    in each worker on its first call.
    """

    def __init__(self, processor, *, image_column: str = "image", dtype: Any = "float32", return_tensors: str = "np",
                 keep_image_column: bool = False, **call_kwargs):
        if isinstance(processor, (str, os.PathLike)):
            from ..processors.auto import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(processor)
        if not callable(getattr(processor, "preprocess", None)):
            raise TypeError(f"processor must be a fused_imgproc processor or a config path/repo id, got "
                            f"{type(processor).__name__}")
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"return_tensors must be 'np' or 'pt', got {return_tensors!r}")
        if return_tensors == "np" and "bfloat16" in str(dtype):
            raise ValueError("dtype=bfloat16 needs return_tensors='pt': numpy and Arrow have no bfloat16 (store "
                             "float32 or float16 and cast when loading)")
        self.processor, self.image_column, self.dtype = processor, image_column, dtype
        self.return_tensors, self.keep_image_column, self.call_kwargs = return_tensors, keep_image_column, call_kwargs

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.image_column not in batch:
            raise KeyError(f"the batch has no column {self.image_column!r} (its columns: {sorted(batch)}); pass "
                           f"image_column=")
        column = batch[self.image_column]
        images = images_of(column)
        count = len(column)
        # a device result comes back as torch tensors (return_tensors="np" needs a CPU result), copied below
        on_device = str(self.call_kwargs.get("device") or "cpu") != "cpu"
        tensors = "pt" if on_device else self.return_tensors
        result = self.processor(images, return_tensors=tensors, dtype=self.dtype, **self.call_kwargs)
        out = {key: value for key, value in batch.items() if key != self.image_column or self.keep_image_column}
        out.update(self._rows(result, count, as_list=not isinstance(column, np.ndarray)))
        return out

    def _rows(self, result, count: int, as_list: bool) -> dict[str, Any]:
        """The processor's outputs as columns of `count` rows, numpy on the host unless torch was asked for."""
        values = dict(result)
        if self.return_tensors == "np":
            values = {key: _host(value) for key, value in values.items()}
        grid = values.get("image_grid_thw")
        if grid is not None:  # patch rows: one (rows, D) block per image
            sizes = [int(t) * int(h) * int(w) for t, h, w in _host(grid)]
            starts = np.cumsum([0, *sizes])
            pixels = values["pixel_values"]
            blocks = [pixels[a:b] for a, b in itertools.pairwise(starts)]
            if not as_list:  # a Ray batch: a column is an array (of arrays, here)
                column = np.empty(len(blocks), dtype=object)
                column[:] = blocks
                blocks = column
            values["pixel_values"] = blocks
        for key, value in values.items():
            if len(value) != count:
                raise ValueError(f"output {key!r} has {len(value)} rows for {count} images")
        return values


def _host(value):
    """A numpy array of `value` (a torch tensor is copied to the host; bfloat16 never gets here)."""
    if is_torch_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def images_of(column) -> list | np.ndarray:
    """The images of a batch column (see `BatchPreprocessor`): a 4-D array stays one batch, everything else becomes
    a list with paths and bytes decoded."""
    if isinstance(column, np.ndarray) and column.dtype != object and column.dtype.kind not in "USV":
        return column  # (N, H, W, C) or (N, C, H, W): one batch
    encoded = sum(isinstance(value, (*_PATHS, *_BYTES, dict)) for value in column)
    if encoded > 1 and not numpy_backend._on_pool_thread():  # decode on every core (Pillow releases the GIL)
        return list(numpy_backend._pool().map(_image, column))
    return [_image(value) for value in column]


_PATHS = (str, np.str_, os.PathLike)
_BYTES = (bytes, bytearray, memoryview, np.bytes_)


def _image(value):
    if isinstance(value, _PATHS):
        return load_image(os.fspath(value))
    if isinstance(value, _BYTES):
        return _decode(bytes(value))
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return _decode(bytes(value["bytes"]))
        if value.get("path") is not None:
            return load_image(os.fspath(value["path"]))
        raise ValueError(f"an image dict needs 'bytes' or 'path', got keys {sorted(value)}")
    return value


def _decode(data: bytes) -> PIL.Image.Image:
    try:
        image = PIL.Image.open(io.BytesIO(data))
    except PIL.UnidentifiedImageError as error:
        raise ValueError(f"cannot decode {len(data)} bytes as an image: {error}") from None
    return load_image(image)
