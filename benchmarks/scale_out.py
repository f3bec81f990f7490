"""Throughput of the scaling-out recipes (README "Scaling out"): 1 and 2 workers, same images, same run.

    python benchmarks/scale_out.py [--images 256] [--repeats 3]

Writes `--images` photo-like 480x640 JPEGs to a temporary folder, then times, with the CLIP defaults (numpy backend):
one process (`BatchPreprocessor` on batches of 32 paths), Ray (`preprocess_to_shards`, 1 and 2 actors, batches of
32, shards written) on a local cluster, and Hugging Face datasets (`map` over a column of paths into memory,
`num_proc` 1 and 2, with the features datasets infers and with an `Array3D` feature). Each time is the whole call: decoding, preprocessing, writing, and for Ray the actor pool's start-up (the
cluster itself is started before the timing). Prints images per second, medians of `--repeats` runs. Nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image

import fused_imgproc as fi
from fused_imgproc.integrations import BatchPreprocessor, preprocess_to_shards


def photos(folder: Path, count: int) -> list[str]:
    """Smooth, photo-like 480x640 JPEGs (quality 90)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    paths = []
    for k in range(count):
        phase = rng.uniform(0, 6.3, 3)
        image = np.stack([127 + 100 * np.sin(x / (40 + 9 * c) + y / (55 + 7 * c) + phase[c]) for c in range(3)], -1)
        image += rng.normal(0, 12, image.shape)
        path = folder / f"photo-{k:05d}.jpg"
        PIL.Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import datasets
    import ray

    datasets.disable_progress_bars()
    processor = fi.CLIPImageProcessor()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        paths = photos(folder, args.images)
        rows: list[tuple[str, float]] = []

        def one_process():
            pre = BatchPreprocessor(processor, image_column="path")
            for start in range(0, len(paths), 32):
                pre({"path": paths[start : start + 32]})

        rows.append(("one process (BatchPreprocessor, batches of 32)", timed(one_process, args.repeats)))

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            for workers in (1, 2):
                out = Path(tmp) / f"shards-{workers}"
                seconds = timed(lambda w=workers, o=out: preprocess_to_shards(paths, o, processor, workers=w,
                                                                               batch_size=32), args.repeats)
                rows.append((f"Ray preprocess_to_shards, {workers} worker(s)", seconds))
        finally:
            ray.shutdown()

        table = datasets.Dataset.from_dict({"path": paths})
        fixed = datasets.Features({"pixel_values": datasets.Array3D((3, 224, 224), "float32")})
        for features in (None, fixed):
            for num_proc in (None, 2):
                def run(n=num_proc, f=features):
                    table.map(BatchPreprocessor(processor, image_column="path"), batched=True, batch_size=32,
                              num_proc=n, remove_columns=["path"], keep_in_memory=True, features=f)

                kind = "Array3D features" if features else "inferred features (nested lists)"
                rows.append((f"datasets map, {kind}, num_proc={num_proc or 1}", timed(run, args.repeats)))

    print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, ray {ray.__version__}, datasets {datasets.__version__}; "
          f"{args.images} JPEGs of 480x640, CLIP defaults, numpy backend, medians of {args.repeats} runs")
    print("| recipe | seconds | images/s |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {args.images / seconds:.0f} |")


if __name__ == "__main__":
    main()
