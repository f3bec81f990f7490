"""`preprocess_to_shards`: image files through Ray Data on several workers, one `.npz` shard per batch plus an index."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .batch import BatchPreprocessor

SHARD_INDEX = "index.json"
FORMAT = "fused_imgproc shards 1"


class _ShardWriter:
    """Ray Data actor: preprocesses its batch of `{"index", "path"}` rows and writes them as one shard."""

    def __init__(self, processor, out_dir: str, dtype, call_kwargs: dict):
        self.out_dir = Path(out_dir)
        self.preprocess = BatchPreprocessor(processor, image_column="path", dtype=dtype, keep_image_column=True,
                                            **call_kwargs)

    def __call__(self, batch: dict) -> dict:
        rows = self.preprocess(batch)
        first = int(batch["index"][0])
        name = f"shard-{first:09d}.npz"
        arrays = {"index": np.asarray(batch["index"], dtype=np.int64), "path": np.asarray(batch["path"], dtype=str)}
        if "image_grid_thw" in rows:  # patch rows of every image, one after another (as `preprocess --out` writes)
            arrays["pixel_values"] = np.concatenate(list(rows["pixel_values"]))
            arrays["image_grid_thw"] = np.asarray(rows["image_grid_thw"])
        else:
            arrays["pixel_values"] = np.asarray(rows["pixel_values"])
        partial = self.out_dir / f".{name}.partial"
        with open(partial, "wb") as file:
            np.savez(file, **arrays)
        os.replace(partial, self.out_dir / name)
        return {"shard": np.array([name]), "rows": np.array([len(batch["index"])]), "first": np.array([first]),
                "worker": np.array([os.getpid()])}


def preprocess_to_shards(paths, out_dir, processor, *, workers: int = 2, batch_size: int = 32, dtype="float32",
                         num_gpus: float = 0, **call_kwargs) -> dict:
    """Preprocesses image files on `workers` Ray actors and writes `out_dir/shard-<first row>.npz` per batch (arrays
    `pixel_values`, `index` (the rows' positions in `paths`), `path`, and `image_grid_thw` for patch rows) plus
    `out_dir/index.json` (`{"format", "rows", "shards": [{"path", "rows", "first", "worker"}]}`, shards in row
    order; `worker` is the process id of the actor that wrote the shard).

    Args:
        paths: the image files (or URLs), in output order. Relative paths are made absolute here: on a cluster,
            every actor must reach them (shared storage).
        out_dir: the output folder (created; also written by the actors, so shared storage on a cluster).
        processor: a fused_imgproc processor (pickled to each actor) or a config path / Hub repo id (loaded by each).
        workers: the actor pool's size. Uses the running Ray cluster, or starts a local one.
        batch_size: rows per batch, so per shard (the last may have fewer).
        dtype: output dtype (float32, float16 or float64).
        num_gpus: GPUs per actor (with `device="cuda"` in `call_kwargs` for the Triton backend).
        **call_kwargs: passed to every processor call.

    Returns the index. Rows equal a single-process run on the same files (`read_shards` reads them back in order).
    A file that cannot be read or decoded fails its batch's task (Ray's error names the file).
    """
    try:
        import ray
    except ImportError as error:
        raise ImportError('preprocess_to_shards needs Ray: pip install "fused-imgproc[ray]"') from error
    if workers < 1 or batch_size < 1:
        raise ValueError(f"workers and batch_size must be >= 1, got {workers} and {batch_size}")
    # absolute: the actors do not share the driver's working directory (on a cluster, use shared storage)
    paths = [path if "://" in path else os.path.abspath(path) for path in map(os.fspath, paths)]
    if not paths:
        raise ValueError("no input files")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    items = ray.data.from_items([{"index": i, "path": path} for i, path in enumerate(paths)])
    written = items.map_batches(
        _ShardWriter,
        fn_constructor_kwargs={"processor": processor, "out_dir": str(out), "dtype": dtype, "call_kwargs": call_kwargs},
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_size=batch_size,
        batch_format="numpy",
        num_gpus=num_gpus,
    ).take_all()
    shards = sorted(({"path": str(row["shard"]), "rows": int(row["rows"]), "first": int(row["first"]),
                      "worker": int(row["worker"])} for row in written), key=lambda shard: shard["first"])
    index = {"format": FORMAT, "rows": sum(shard["rows"] for shard in shards), "shards": shards}
    if index["rows"] != len(paths):
        raise RuntimeError(f"the shards hold {index['rows']} rows for {len(paths)} inputs")
    partial = out / f".{SHARD_INDEX}.partial"
    partial.write_text(json.dumps(index, indent=1) + "\n")
    os.replace(partial, out / SHARD_INDEX)
    return index


def read_shards(out_dir) -> dict[str, np.ndarray]:
    """The arrays of every shard under `out_dir`, concatenated in row order (`index.json`'s)."""
    out = Path(out_dir)
    index = json.loads((out / SHARD_INDEX).read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{out / SHARD_INDEX} is not a fused_imgproc shard index")
    parts: dict[str, list] = {}
    for shard in index["shards"]:
        with np.load(out / shard["path"]) as data:
            for key in data.files:
                parts.setdefault(key, []).append(data[key])
    return {key: np.concatenate(values) for key, values in parts.items()}
