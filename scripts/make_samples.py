"""Regenerates the sample images bundled in fused_imgproc/samples/ (used by `fused-imgproc preprocess --samples`,
`fused-imgproc bench` and `make demo`). Deterministic inputs; the encoded files are committed, so the samples do
not change with the local Pillow/libjpeg/libwebp versions unless this script is rerun.

    .venv/bin/python scripts/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image

OUT = Path(__file__).resolve().parent.parent / "fused_imgproc" / "samples"


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like RGB image: smooth gradients, a few blobs, mild noise (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin((xx + 2 * yy) / 41.0)], axis=-1) * 180 + 30
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.3) * min(h, w)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        image = image * (1 - 0.6 * blob) + 0.6 * blob * rng.uniform(0, 255, 3)
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        if old.suffix.lower() in {".jpg", ".png", ".webp", ".gif", ".bmp", ".tiff"}:
            old.unlink()
    PIL.Image.fromarray(photo(480, 640, 1)).save(OUT / "landscape.jpg", quality=85)
    PIL.Image.fromarray(photo(320, 240, 2)).save(OUT / "portrait.png", optimize=True)
    PIL.Image.fromarray(photo(90, 120, 3)).save(OUT / "small.webp", quality=90)
    PIL.Image.fromarray(photo(150, 200, 4)).convert("L").save(OUT / "grayscale.tiff")
    alpha = np.linspace(40, 255, 128, dtype=np.float32)[None, :].repeat(96, 0).astype(np.uint8)
    rgba = np.dstack([photo(96, 128, 5), alpha])
    PIL.Image.fromarray(rgba, "RGBA").save(OUT / "transparent.png", optimize=True)
    frames = [PIL.Image.fromarray(photo(120, 160, 6 + k)).quantize(64, dither=PIL.Image.Dither.NONE) for k in range(2)]
    frames[0].save(OUT / "animated.gif", save_all=True, append_images=frames[1:], duration=200, loop=0)
    PIL.Image.fromarray(photo(48, 64, 8)).save(OUT / "tiny.bmp")
    total = 0
    for path in sorted(OUT.iterdir()):
        total += path.stat().st_size
        print(f"{path.name:20s} {path.stat().st_size / 1024:7.1f} KiB")
    print(f"{'total':20s} {total / 1024:7.1f} KiB")


if __name__ == "__main__":
    main()
