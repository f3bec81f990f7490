"""The main job: preprocess a few sample images with the default CLIP config and print what happened.

    python -m fused_imgproc
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import PIL
import PIL.Image

from . import __version__
from .processors import CLIPImageProcessor


def sample_images(seed: int = 0) -> list:
    """Deterministic sample images: photo-like gradients with noise, in the shapes and types users pass."""
    rng = np.random.default_rng(seed)
    images = []
    for h, w in [(480, 640), (640, 480), (375, 500), (120, 90)]:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin((xx + yy) / 37.0)], axis=-1) * 200
        images.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))
    images.append(PIL.Image.fromarray(images[2]).convert("L"))  # a grayscale PIL image
    images.append(PIL.Image.fromarray(np.dstack([images[3], np.full((120, 90), 200, np.uint8)]), "RGBA"))
    return images


def describe(image) -> str:
    if isinstance(image, PIL.Image.Image):
        return f"PIL {image.mode} {image.width}x{image.height}"
    return f"numpy {image.dtype} {'x'.join(map(str, image.shape))}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fused_imgproc", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed repetitions (median is printed)")
    args = parser.parse_args(argv)

    images = sample_images()
    processor = CLIPImageProcessor()
    print(f"fused_imgproc {__version__} | Python {platform.python_version()} | numpy {np.__version__} | "
          f"Pillow {PIL.__version__}")
    print("config: CLIPImageProcessor defaults (shortest edge 224, bicubic, center crop 224, OpenAI CLIP mean/std)")
    print("inputs: " + ", ".join(describe(image) for image in images))

    batch = processor(images, return_tensors="np")  # warm-up, and the result we report
    times = []
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        processor(images, return_tensors="np")
        times.append(time.perf_counter() - start)
    pixel_values = batch["pixel_values"]
    median_ms = float(np.median(times)) * 1e3
    print(f"pixel_values: shape {tuple(pixel_values.shape)}, dtype {pixel_values.dtype}, "
          f"range [{pixel_values.min():.4f}, {pixel_values.max():.4f}]")
    print(f"backend: numpy (CPU) | batch of {len(images)}: {median_ms:.2f} ms median over {len(times)} runs, "
          f"{median_ms / len(images):.3f} ms per image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
